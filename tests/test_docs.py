"""The ```python blocks of README.md and docs/*.md run as written.

The convention for writing documentation:

- Every ```python block runs, unless an HTML comment just before it (blank lines
  between are allowed) says otherwise:

  - ``<!-- not run: <reason> -->``: not run; the reason is required (a fragment of a
    settings file, a block being replaced, ...).
  - ``<!-- run with: <setup> -->``: run in a fresh namespace prepared by one of
    :data:`SETUPS` below (for a block that continues a program the reader already has,
    such as ``app.wsgi_app = ...`` in their Flask app).

- A block without a comment continues the namespace of the file's previous block that
  ran (a page is read top to bottom), or, for a page's first block, starts from
  :data:`COMMON`. ``...`` alone on a line is Python's Ellipsis: fine where a statement
  may stand.
- A block that defines ``test_*`` functions has them called: an example test is run,
  not only defined.
- Blocks run in a temporary directory, with ``README_METRICS_SERVER`` pointing at a local
  stand-in of the metrics API; any attempt to resolve a host other than the loopback
  fails the block (no block may reach the network).
"""

from __future__ import annotations

import re
import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.standin import MetricsStandIn

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"<!--\s*(not run|run with):\s*(.*?)\s*-->", re.S)

#: Markers README.md should carry, until it does (README.md is edited by the lead; the
#: exact lines are in the report of issue 20). Keyed by the block's first line. The test
#: fails once README.md carries its own marker for one of these, so this table empties.
WEBHOOK_SECRET = "docs-webhook-secret"


def _common() -> dict[str, Any]:
    """What a page's examples may take as given: the user's key, grouping function and config."""
    from readme_metrics import MetricsApiConfig

    def group_fn(request: Any) -> dict[str, str]:
        return {"api_key": "k-1234", "label": "Docs", "email": "docs@example.test"}

    return {
        "api_key": "docs-api-key",
        "group_fn": group_fn,
        "grouping": group_fn,
        "config": MetricsApiConfig("docs-api-key", group_fn),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def _flask() -> dict[str, Any]:
    """The user's Flask app (``app``) and what :func:`_common` gives."""
    import flask

    return {**_common(), "app": flask.Flask("docs_example")}


def _fastapi() -> dict[str, Any]:
    """The user's FastAPI app, after the README's Flask example (its imports and ``config``)."""
    import fastapi

    from readme_metrics import MetricsApiConfig, MetricsMiddleware

    namespace = _common()
    namespace.update(app=fastapi.FastAPI(), MetricsApiConfig=MetricsApiConfig, MetricsMiddleware=MetricsMiddleware)
    return namespace


def _webhook() -> dict[str, Any]:
    """Inside a Flask view that received a correctly signed webhook call: ``request``,
    ``raw_body_bytes``, ``lookup_key``, a Flask ``app``."""
    import flask

    from readme_metrics.webhooks import sign

    body = b'{"email":"reader@example.test"}'
    app = flask.Flask("docs_example")
    context = app.test_request_context(
        "/webhook",
        method="POST",
        data=body,
        headers={"ReadMe-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )
    context.push()
    return {
        **_common(),
        "app": app,
        "request": flask.request,
        "raw_body_bytes": body,
        "lookup_key": lambda email: "key-for-" + email,
        "_pop": context.pop,
    }


#: The prepared namespaces a block may ask for with ``<!-- run with: <name> -->``.
SETUPS: dict[str, Callable[[], dict[str, Any]]] = {"flask": _flask, "fastapi": _fastapi, "webhook": _webhook}
COMMON = _common


@dataclass
class Block:
    page: str
    line: int
    code: str
    mark: tuple[str, str] | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        head = before.rstrip()
        mark = _MARK.fullmatch(head[head.rfind("<!--") :]) if head.endswith("-->") else None
        found.append(
            Block(
                page,
                before.count("\n") + 1,
                match.group(1),
                (mark.group(1), mark.group(2)) if mark else None,
            )
        )
    return found


def _pages() -> list[tuple[str, list[Block]]]:
    return [(str(p.relative_to(ROOT)), blocks_of(p)) for p in PAGES if blocks_of(p)]


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn(api_key="docs-api-key") as standin:
        standin.base_url = "https://docs.example.test"
        yield standin


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, api: MetricsStandIn, tmp_path: Path) -> list[str]:
    """No network but the loopback; the metrics server is the stand-in. Returns the hosts
    a block tried to resolve that were refused."""
    refused: list[str] = []
    real = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in {"127.0.0.1", "localhost", "::1"}:
            refused.append(name)
            raise socket.gaierror(f"docs test: {name} is not reachable (no network in examples)")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    monkeypatch.setenv("README_METRICS_SERVER", api.url)
    monkeypatch.chdir(tmp_path)
    return refused


def _module(namespace: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``namespace`` as the globals of an importable module (some frameworks, Litestar for
    one, look a handler's module up in ``sys.modules``)."""
    module = types.ModuleType("docs_example")
    module.__dict__.update(namespace)
    monkeypatch.setitem(sys.modules, "docs_example", module)
    return module.__dict__


def _run(block: Block, namespace: dict[str, Any]) -> None:
    before = set(namespace)
    code = compile(block.code, block.id, "exec")
    exec(code, namespace)  # the documentation's own examples
    for name in set(namespace) - before:
        value = namespace[name]
        if name.startswith("test_") and callable(value):
            value()


@pytest.mark.parametrize(("page", "blocks"), _pages(), ids=[page for page, _ in _pages()])
def test_the_python_blocks_of_a_page_run(
    page: str, blocks: list[Block], offline: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, Any] | None = None
    ran = 0
    try:
        for block in blocks:
            mark = block.mark
            if mark is not None and mark[0] == "not run":
                assert mark[1], f"{block.id}: '<!-- not run: -->' needs a reason"
                continue
            if mark is not None:
                assert mark[1] in SETUPS, f"{block.id}: no setup {mark[1]!r} (known: {sorted(SETUPS)})"
                namespace = _module(SETUPS[mark[1]](), monkeypatch)
            elif namespace is None:
                namespace = _module(COMMON(), monkeypatch)
            try:
                _run(block, namespace)
            except Exception as exc:
                raise AssertionError(f"{block.id} fails: {type(exc).__name__}: {exc}\n{block.code}") from exc
            ran += 1
            assert not offline, f"{block.id} tried to reach {offline}"
    finally:
        if namespace is not None and "_pop" in namespace:
            namespace["_pop"]()
    assert ran, f"{page}: no block ran"


def test_markers_are_read(tmp_path: Path) -> None:
    """The marker parser: a comment just before a block (blank lines between) applies to
    it, one further up or followed by text does not."""
    page = tmp_path / "sample.md"
    page.write_text(
        "<!-- not run: a fragment -->\n\n```python\nx\n```\n\n"
        "<!-- run with: flask -->\n```python\ny\n```\n\n"
        "<!-- not run: far away -->\n\nSome text.\n\n```python\nz\n```\n",
        encoding="utf-8",
    )
    marks = [b.mark for b in blocks_of(page)]
    assert marks == [("not run", "a fragment"), ("run with", "flask"), None]


def test_a_failing_block_fails_the_page(offline: list[str]) -> None:
    """The runner really runs code: a broken example is an error, a network one refused."""
    with pytest.raises(NameError):
        _run(Block("x.md", 1, "undefined_name\n", None), COMMON())
    with pytest.raises(AssertionError):
        _run(Block("x.md", 1, "def test_it():\n    assert False\n", None), COMMON())
    with pytest.raises(OSError):
        _run(Block("x.md", 1, "import socket\nsocket.create_connection(('metrics.readme.io', 443))\n", None), {})
    assert offline == ["metrics.readme.io"]
