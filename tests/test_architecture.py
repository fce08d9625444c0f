"""The layers stay apart: who may import whom (read from the source, not from sys.modules)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers", "services", "storage", "recommender", "scheduler")
CHAT_FRAMEWORKS = ("aiogram", "telegram", "wechatpy", "wechatpayv3")

#: package (or module path prefix) → top-level names it must never import
FORBIDDEN = {
    "scheduler": ("handlers",),
    "recommender": ("handlers",),
    "storage": ("handlers",),
    "bot/channels": ("handlers",),
    "bench": ("handlers",),
    "handlers": CHAT_FRAMEWORKS,
    "services": CHAT_FRAMEWORKS + ("handlers",),
}
FORBIDDEN_FRAMEWORKS_TOO = ("storage", "recommender", "scheduler")


def imports_of(path: Path) -> set[str]:
    """Top-level names a module imports, anywhere in it (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def graph() -> dict[str, set[str]]:
    """Package → the project packages its modules import."""
    edges: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            edges[package] |= (imports_of(path) & set(PACKAGES)) - {package}
    return edges


def test_layers_never_import_what_they_must_not():
    problems = []
    rules = {
        **FORBIDDEN,
        **{p: FORBIDDEN.get(p, ()) + CHAT_FRAMEWORKS for p in FORBIDDEN_FRAMEWORKS_TOO},
    }
    for prefix, banned in rules.items():
        for path in (ROOT / prefix).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            bad = imports_of(path) & set(banned)
            if bad:
                problems.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not problems, "\n".join(problems)


def test_the_import_graph_has_no_cycle_between_layers_below_handlers():
    edges = graph()
    for lower in ("storage", "recommender"):
        assert "services" not in edges[lower], f"{lower} imports services"
        assert "scheduler" not in edges[lower], f"{lower} imports scheduler"
    assert "scheduler" not in edges["storage"]


if __name__ == "__main__":  # python -m tests.test_architecture: the import graph as text
    for package, targets in sorted(graph().items()):
        print(f"{package:12} → {', '.join(sorted(targets)) or '—'}")
