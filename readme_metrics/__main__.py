"""``python -m readme_metrics`` / ``readme-metrics``: the command line (being written: issue 8)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write("readme-metrics: no commands yet\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
