"""Nodes stay thin: no function in ``pipelines/`` is longer than 30 lines (issue 17).

A node unpacks its inputs, calls library code and returns; loops over pairs, report assembly
and MLflow calls live in the library, where they are tested without Kedro.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mrihisto_kedro import pipelines

MAX_LINES = 30


def _long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines})")
    return found


def test_no_function_in_pipelines_is_longer_than_30_lines() -> None:
    assert _long_functions(Path(pipelines.__file__).parent) == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "nodes.py").write_text(f"def fat():\n{body}\n\ndef thin():\n    return 1\n")
    assert _long_functions(tmp_path) == [f"nodes.py:1 fat ({MAX_LINES + 1})"]
