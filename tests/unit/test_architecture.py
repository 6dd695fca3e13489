"""The import contract: the package reads in the order data flows, and no import points back up.

Every import counts, at the top of a module, inside a function or under TYPE_CHECKING: a back edge
hidden in a function is still a part reaching into one that should not be its concern.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nurture"

# Bottom to top: a module may import from its own layer (without a cycle) and from the layers below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("vocabulary", ("nurture", "nurture.clock", "nurture.errors", "nurture.settings", "nurture.models")),
    ("pure rules", ("nurture.program", "nurture.score.rules", "nurture.score.machines", "nurture.score.history",
                    "nurture.track.tokens", "nurture.track.urls", "nurture.send.answers")),
    ("store", ("nurture.store",)),
    ("intake and content", ("nurture.intake", "nurture.content")),
    ("render", ("nurture.render",)),
    ("send", ("nurture.send",)),
    ("track", ("nurture.track",)),
    ("inbound", ("nurture.inbound",)),  # what comes back: bounces and complaints
    ("score", ("nurture.score",)),
    ("hand-off", ("nurture.handoff",)),
    ("report", ("nurture.report",)),  # reads what the stages left behind
    ("engine and tools", ("nurture.engine", "nurture.runtime", "nurture.preview", "nurture.lint", "nurture.demo")),
    ("server", ("nurture.server",)),
    ("scheduler", ("nurture.scheduler",)),  # `nurture run`: the jobs beside the server
    ("command line", ("nurture.cli", "nurture.console")),
]
PURE = dict(LAYERS)["pure rules"]
IO_LIBRARIES = ("sqlalchemy", "sqlmodel", "starlette", "uvicorn", "aiosmtplib", "aiosmtpd", "httpx", "feedparser",
                "socket", "asyncio", "subprocess", "multiprocessing", "nurture.store")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> Iterator[str]:
    """Every module `path` imports, resolved to the most precise name among `known` or outside the package."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in known else node.module


def layer_of(module: str) -> int:
    """The layer whose most precise entry names `module` or a package holding it."""
    best, depth = -1, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or (entry != "nurture" and module.startswith(entry + "."))
            if matches and entry.count(".") > depth:
                best, depth = index, entry.count(".")
    return best


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: {target for target in imports(path, set(found)) if target.startswith("nurture")}
            for name, path in found.items()}


def back_edges(edges: dict[str, set[str]]) -> list[str]:
    return [f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
            for source, targets in sorted(edges.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(source)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    assert [name for name in modules() if layer_of(name) < 0] == []


def test_no_import_points_up_the_pipeline() -> None:
    assert back_edges(graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("module", PURE)
def test_the_pure_rules_do_no_io(module: str) -> None:
    path = modules()[module]
    reached = {target for target in imports(path, set(modules()))
               if target.split(".")[0] in {lib.split(".")[0] for lib in IO_LIBRARIES if "." not in lib}
               or any(target == lib or target.startswith(lib + ".") for lib in IO_LIBRARIES)}
    assert reached == set()


def test_the_contract_sees_a_back_edge_and_a_cycle() -> None:
    edges = {"nurture.send.batch": {"nurture.engine"}, "nurture.engine": {"nurture.send.batch"}}
    assert back_edges(edges) == ["nurture.send.batch (send) imports nurture.engine (engine and tools)"]
    assert cycles(edges) == [["nurture.engine", "nurture.send.batch"]]
