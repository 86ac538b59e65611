"""The package's architecture, checked: layers, no import cycle, no private names across
modules, modules and classes small enough to read.

Read from the source with ``ast`` (every import counts, those under ``TYPE_CHECKING`` and
inside functions too), so a change that breaks a rule fails here, whatever imports at run
time. The rules are the ones README.md ("Layout") describes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "readme_metrics"

#: The request path: what runs in the app's threads. It records and enqueues; it never
#: imports the builder or an exporter.
REQUEST_PATH = {
    "readme_metrics._adapter",
    "readme_metrics._asgi_request",
    "readme_metrics._hooks",
    "readme_metrics._links",
    "readme_metrics._middleware",
    "readme_metrics._policy",
    "readme_metrics.asgi",
    "readme_metrics.capture",
    "readme_metrics.django",
    "readme_metrics.doclink",
    "readme_metrics.fastapi",
    "readme_metrics.flask_readme",
    "readme_metrics.routes",
    "readme_metrics.wsgi",
    # Outgoing calls are recorded in the app's threads too (readme_metrics.outgoing).
    "readme_metrics.outgoing",
}

#: Module (or package prefix) -> prefixes it must not import.
FORBIDDEN = {
    **{module: ("readme_metrics.build", "readme_metrics.exporters") for module in REQUEST_PATH},
    # The queue and the sender know nothing of captures, building or the wire.
    "readme_metrics.delivery.queue": (
        "readme_metrics.build",
        "readme_metrics.exporters.readme",
        "readme_metrics.capture",
    ),
    "readme_metrics.delivery.sender": ("readme_metrics.build", "readme_metrics.exporters.readme"),
    # Exporters own the wire only: no queue, no builder, no middleware.
    "readme_metrics.exporters": ("readme_metrics.delivery", "readme_metrics.build", "readme_metrics.capture"),
    # The builder is pure: capture in, log out.
    "readme_metrics.build": ("readme_metrics.delivery", "readme_metrics.exporters", "readme_metrics.wsgi"),
    # The public configuration imports nothing of the machinery.
    "readme_metrics.config": ("readme_metrics.build", "readme_metrics.delivery", "readme_metrics.exporters"),
    # The collector depends on nothing of the SDK but its logger and version.
    "readme_metrics.collector": (
        "readme_metrics.build",
        "readme_metrics.delivery",
        "readme_metrics.exporters",
        "readme_metrics.capture",
        "readme_metrics.config",
    ),
}

MAX_MODULE_LINES = 420
MAX_CLASS_LINES = 250
#: Modules over the size limit, each with its reason (an entry here is a debt, not a rule).
OVERSIZED = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(known: dict[str, ast.Module]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} within the package."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for module, tree in known.items():
        is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()
        found: set[tuple[str, str | None]] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {(alias.name, None) for alias in node.names if alias.name.startswith("readme_metrics")}
            elif isinstance(node, ast.ImportFrom):
                target = resolve(module, node, is_package)
                if not target.startswith("readme_metrics"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add((sub, None) if sub in known else (target, alias.name))
        out[module] = {(target, name) for target, name in found if target != module}
    return out


KNOWN = modules()
IMPORTS = imports(KNOWN)


def edges(module: str) -> set[str]:
    """The package modules ``module`` imports (a package's ``__init__`` counts as one)."""
    return {target for target, _ in IMPORTS[module] if target in KNOWN}


def test_the_scan_sees_the_package() -> None:
    # A scan that found nothing would pass every rule below.
    assert {"readme_metrics.delivery.client", "readme_metrics.build.har", "readme_metrics.wsgi"} <= set(KNOWN)
    assert "readme_metrics.build" in edges("readme_metrics.delivery.client")
    assert "readme_metrics.capture" in edges("readme_metrics.wsgi")


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges(module)):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(KNOWN):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("module", sorted(KNOWN))
def test_layers(module: str) -> None:
    rules = [banned for prefix, banned in FORBIDDEN.items() if module == prefix or module.startswith(prefix + ".")]
    for banned in rules:
        for target in edges(module):
            bad = [b for b in banned if target == b or target.startswith(b + ".")]
            assert not bad, f"{module} imports {target}, which its layer must not use"


@pytest.mark.parametrize("module", sorted(KNOWN))
def test_no_private_names_across_modules(module: str) -> None:
    for target, name in IMPORTS[module]:
        if name is not None and name.startswith("_") and not name.startswith("__"):
            pytest.fail(f"{module} imports the private name {name} of {target}")


@pytest.mark.parametrize("module", sorted(KNOWN))
def test_modules_and_classes_stay_readable(module: str) -> None:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    lines = len(path.read_text().splitlines())
    if module in OVERSIZED:
        pytest.skip(f"{module}: {lines} lines; oversized until {OVERSIZED[module]}")
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines (at most {MAX_MODULE_LINES}): split it"
    for node in ast.walk(KNOWN[module]):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{module}.{node.name}: {size} lines (at most {MAX_CLASS_LINES})"
