"""The layering of gitproof's modules, read from their import statements.

Lower layers never import higher ones, lazily or not, and no modules import
each other in a cycle:

    foundation (receipt, policy, fingerprint, notes, GPU facts, ...)
      <- trust <- verify <- hook, sync, record, install, the plugin, ...
      <- cli
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gitproof"

FOUNDATION, TRUST, VERIFY, ACTIONS, CLI = range(5)
LAYER_NAMES = ["foundation", "trust", "verify", "actions", "cli"]

# The first matching prefix decides a module's layer; anything unlisted is foundation.
LAYERS: list[tuple[str, int]] = [
    ("gitproof.cli", CLI),
    ("gitproof.__main__", CLI),
    ("gitproof.trust", TRUST),
    ("gitproof.verify", VERIFY),
    *[(f"gitproof.{name}", ACTIONS) for name in (
        "hook", "sync", "record", "recorder", "install", "doctor", "pending", "plugin", "skips",
        "collect_errors", "signing", "preflight", "run_check", "interpreter", "migrate", "demo", "export",
        "receive")],
]


def layer_of(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return FOUNDATION


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, name: str) -> set[str]:
    """gitproof modules that ``path`` imports anywhere in it (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("gitproof")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "demo/" not in str(p.relative_to(PACKAGE))
               or p.parent == PACKAGE / "demo"}
    return {name: {m for m in imported(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} ({LAYER_NAMES[layer_of(a)]}) imports {b} ({LAYER_NAMES[layer_of(b)]})"
              for a, targets in graph().items() for b in targets if layer_of(b) > layer_of(a)]
    assert upward == []


def test_no_import_cycles():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("module, layer", [("gitproof.cli.run", CLI), ("gitproof.trust.sshsig", TRUST),
                                           ("gitproof.verify.checks", VERIFY), ("gitproof.hook", ACTIONS),
                                           ("gitproof.receipt", FOUNDATION)])
def test_layers_are_assigned_as_documented(module, layer):
    assert layer_of(module) == layer
