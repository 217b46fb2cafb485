"""utils/files.atomic_write: whole files only, with the mode open() would give."""

import os
import stat

import numpy as np
import pytest

from utils.evaluation.detections import save_detections
from utils.checkpoint import atomic_torch_save
from utils.files import atomic_write


@pytest.fixture
def umask():
    """Set the process umask for one test, and restore it."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_allows(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_torch_save({"step": 1}, tmp_path / "last.pt")
    save_detections(tmp_path / "mafl-test.npz", detected_xy_px=np.zeros((1, 2, 2)),
                    annotated_xy_px=np.array([[[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]]]), names=["a"],
                    split="mafl-test", checkpoint="c", settings={})
    (tmp_path / "config.yaml").write_text("beside them\n")
    for name in ("last.pt", "mafl-test.npz", "config.yaml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    atomic_write(tmp_path / "a.bin", lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.bin", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"old"
