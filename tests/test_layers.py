"""Tests use the product as users do and never import benchmark internals: a benchmark is
free to change how it measures, and a test that leaned on it would hide that. (The layers
of the product itself are checked by import-linter in ``make lint``: pyproject.toml.)"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_test_imports_the_bench_package() -> None:
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.split(".")[0] == "bench")
        for path in sorted(TESTS.glob("*.py"))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_check_sees_an_import_of_the_bench(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import json\nfrom bench.query import cases\nimport bench.ingest as b\n")
    assert imported_modules(sample) >= {"bench.query", "bench.ingest"}
