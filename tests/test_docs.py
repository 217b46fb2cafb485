"""The README says what the code does: its commands are the ones the scripts and tests run."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_the_readme_quickstart_commands_are_the_scripts():
    marker = "<!-- quickstart commands: copied from scripts/quickstart.sh"
    block = README[README.index(marker):]
    block = block[block.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("\n```")]
    script = (REPO / "scripts" / "quickstart.sh").read_text()
    assert block in script and "-m datasets.synthetic" in block and "eval_regressor.py" in block
    assert block.count("--out") == script.count("--out")  # every output folder is named, as in the script


def test_the_readme_torchrun_lines_are_the_tested_single_node_form_and_a_c10d_rendezvous():
    lines = [line for line in README.splitlines() if line.startswith("torchrun ")]
    single, multi = lines
    # tests/test_train.py::test_two_process_ddp_keeps_ranks_identical runs `torch.distributed.run --standalone
    # --nproc_per_node 2 train.py`: the same form
    assert single.split()[:4] == ["torchrun", "--standalone", "--nproc_per_node", "4"]
    tested = (REPO / "tests" / "test_train.py").read_text()
    assert re.search(r'"--standalone", "--nproc_per_node", "2",\s+"train.py"', tested)
    options = multi.split()
    assert options[options.index("--rdzv-backend") + 1] == "c10d" and "--rdzv-endpoint" in options
