"""The layers can be drawn: utils/ below model.py and the scripts, the core of utils/ below datasets/ too, model.py
without network access, train.py short enough to read top to bottom, no function too long to hold in one's head."""

import ast
from pathlib import Path

import pytest

from helpers import SCRIPTS, imported_modules

REPO = Path(__file__).resolve().parents[1]
ABOVE_CORE = ("datasets", "inference")  # packages above the core of utils/ (README, "Layout")
UPPER_UTILS = ("training", "evaluation")  # utils/ packages above datasets/ and model.py
NETWORK_MODULES = ("urllib", "http", "socket", "requests", "torch.hub", "utils.pretrained")  # utils.pretrained downloads


def source_files() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not {".venv", "tests", ".git", "runs", "data"} & set(p.relative_to(REPO).parts)]


def test_imported_modules_sees_both_import_forms(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import model\nfrom train import main\nfrom . import sibling\n")
    assert imported_modules(probe) == {"model", "train"}


def test_nothing_under_utils_imports_the_model_or_a_script():
    offenders = {str(p.relative_to(REPO)): sorted(imported_modules(p) & set(SCRIPTS))
                 for p in (REPO / "utils").rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def layer_offenders(files: list[Path], banned: tuple[str, ...]) -> dict[str, list[str]]:
    """{file: the banned modules (or their submodules) it imports} for the files that import any."""
    found = {str(p.relative_to(REPO) if p.is_relative_to(REPO) else p):
             sorted(name for name in imported_modules(p) if name.split(".")[0] in banned) for p in files}
    return {path: names for path, names in found.items() if names}


def core_utils_files() -> list[Path]:
    return [p for p in (REPO / "utils").rglob("*.py") if p.relative_to(REPO / "utils").parts[0] not in UPPER_UTILS]


def test_the_core_of_utils_imports_neither_datasets_nor_the_model_nor_a_script():
    core = core_utils_files()
    assert REPO / "utils" / "extraction.py" in core and REPO / "utils" / "training" / "runtime.py" not in core
    assert layer_offenders(core, ABOVE_CORE + SCRIPTS) == {}


def test_the_layer_check_catches_a_core_module_that_imports_datasets(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from datasets.transforms import clamp_box\nimport inference.photo\n"
                     "from export_model import run\n")
    clean = tmp_path / "clean.py"
    clean.write_text("import numpy\nfrom utils.errors import UserError\nfrom datasets_extra import x\n")
    assert layer_offenders([probe, clean], ABOVE_CORE + SCRIPTS) == {
        str(probe): ["datasets.transforms", "export_model", "inference.photo"]}


def test_model_py_opens_no_network_connection():
    imports = imported_modules(REPO / "model.py")
    assert imports and not [name for name in imports if name.startswith(NETWORK_MODULES)]


def test_train_py_reads_in_at_most_300_lines_with_main_last():
    text = (REPO / "train.py").read_text()
    assert len(text.splitlines()) <= 300
    functions = [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]
    assert functions[-1] == "main"


@pytest.mark.parametrize("limit", [80])
def test_no_function_outside_tests_is_longer_than_80_lines(limit):
    long = [f"{p.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for p in source_files() for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]
    assert long == []


@pytest.mark.slow
def test_the_old_import_reference_command_still_runs():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "utils.import_reference", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--fan" in out.stdout and "import_reference.py" in out.stdout
