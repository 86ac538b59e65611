"""``python -m readme_metrics`` / ``readme-metrics``: the command line.

Commands:

- ``serve``: the local collector and dashboard (see :mod:`readme_metrics.collector.cli`
  and docs/collector.md).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from readme_metrics.collector.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
