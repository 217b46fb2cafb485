"""The test suite's own layout: shared helpers in tests/helpers.py, fixtures in conftest.py, and no test module
importing another test module or conftest (each can be read, moved or deleted alone)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import SHARED_DATA, imported_modules

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_another_test_module_or_conftest():
    offenders = {path.name: sorted(name for name in imported_modules(path)
                                   if name == "conftest" or name.startswith(("test_", "tests.")))
                 for path in sorted(TESTS.glob("*.py"))}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_conftest_holds_fixtures_only():
    tree = ast.parse((TESTS / "conftest.py").read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions and all(any("fixture" in ast.unparse(d) for d in f.decorator_list) for f in functions)
    assert not [node for node in tree.body if isinstance(node, (ast.Assign, ast.ClassDef))]


def test_the_real_face_data_follows_the_documented_variable(monkeypatch):
    import importlib

    import helpers

    try:
        monkeypatch.setenv("LANDMARKS_SHARED_DATA", "/somewhere/data")
        assert importlib.reload(helpers).SHARED_DATA == Path("/somewhere/data")
        monkeypatch.delenv("LANDMARKS_SHARED_DATA")
        assert importlib.reload(helpers).SHARED_DATA == TESTS.parents[1] / "shared" / "data"
    finally:
        monkeypatch.undo()
        importlib.reload(helpers)
    assert helpers.SHARED_DATA == SHARED_DATA
    readme = (TESTS.parent / "README.md").read_text()
    assert "LANDMARKS_SHARED_DATA" in readme
