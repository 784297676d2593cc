"""The data modules import no circle: a source module (folder, hf, trees...) takes what it shares
from ``vae.data.source``, and only ``vae.data.raw`` picks and imports a source module."""

from __future__ import annotations

import ast
from pathlib import Path

import vae.data

DATA = Path(vae.data.__file__).parent


def data_imports(folder: Path) -> dict[str, set[str]]:
    """Module name under vae.data -> the vae.data modules it imports anywhere in its code (at the
    top or inside a function; ``TYPE_CHECKING`` blocks left out, as they never run)."""
    names = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        skipped = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {
            module.split(".")[2] for module in found if module.startswith("vae.data.")
        } & (names - {name})
    return graph


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as the modules met round it), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name) :] + [name]
        if name in done:
            return None
        for imported in sorted(graph[name]):
            if (found := visit(imported, [*path, name])) is not None:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        if (found := visit(name, [])) is not None:
            return found
    return None


def test_no_two_data_modules_import_each_other() -> None:
    graph = data_imports(DATA)
    assert {"source", "raw", "splits", "folder", "hf"} <= set(graph)  # the check sees them
    assert "folder" in graph["raw"]  # and the imports inside functions (raw's are all there)
    assert circle(graph) is None, " -> ".join(circle(graph) or [])


def test_the_check_finds_a_circle_through_an_import_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from vae.data.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from vae.data.a import y\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vae.data.a import y\n"
    )
    graph = data_imports(tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert circle(graph) == ["a", "b", "a"]
