"""Faults that meet a long run, each through a script's real `main()` (or the real process): a second run in
the same run folder, a test split that holds training faces, data overrides on resume, SIGTERM, outputs
that cannot be written (a read-only place, a file in the way, a disk that fills up), an empty config, and
smaller ones. Each ends in one line naming the file and what to do, a non-zero exit and no traceback, with
the earlier work (checkpoints, CSV rows, log.jsonl) intact. Also the GPU settings (bf16 autocast,
channels_last, torch.compile) run and resume on the CPU."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import detect
import eval_regressor
import extract_data
import losses
import train
import utils.evaluation.report
import utils.visualize
from bench import profile_step
from datasets import build_training_pairs
from helpers import (CONFIG, assert_one_line_error, tiny_run_args, tiny_train_overrides, write_detections,
                     write_pair)
from utils.checkpoint import atomic_torch_save, read_checkpoint
from utils.config import load_config
from utils.evaluation.detections import load_detections, save_detections
from utils.run_config import DataConfig, RunConfig, ValidationConfig
from utils.training.run_folder import check_config
from utils.training.run_lock import lock_run_folder
from utils.training.stopping import StopSignals, ignore_stop_signals

REPO = Path(__file__).resolve().parents[1]
NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --- helpers -----------------------------------------------------------------------------------------


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read()[-3000:]}")
        if time.time() > end:
            proc.kill()
            raise AssertionError("timed out waiting for training")
        time.sleep(0.05)


def logged_steps(run_dir: Path) -> list[int]:
    """The steps of the complete lines of a log.jsonl that a running process is writing."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[:-1]  # the last piece may be a line in mid-write
    return [json.loads(line)["step"] for line in lines]


@pytest.fixture
def start_training():
    """Start train.py (or `torch.distributed.run` with `command`) in a child process of its own process group,
    with the default SIGINT handling (a shell's background job ignores it); whatever of the group is still
    running at the end of the test is killed."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], command: tuple[str, ...] = ("train.py",), **env: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *command, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **env},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


@pytest.fixture(scope="module")
def trained_run(synthetic_root, tmp_path_factory) -> Path:
    """A tiny run of 4 steps with step_00000002.pt, step_00000004.pt and last.pt (= step 4)."""
    run_dir = tmp_path_factory.mktemp("faults_run") / "run"
    assert train.main(tiny_run_args(synthetic_root, run_dir.parent, 4, run_dir, "log.checkpoint_every=2")) == 0
    return run_dir


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A copy of `trained_run` that a test may change (last.pt becomes its own file)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture
def unwritable(tmp_path, request) -> Path:
    """An output path that cannot be made: under a read-only folder, or an existing file."""
    if request.param == "file":
        taken = tmp_path / "taken"
        taken.write_text("a file where the output folder should be\n")
        yield taken
        return
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    # root ignores the mode bits: use a place the kernel refuses to anyone instead
    yield Path("/sys/inter-intra-landmarks-test/out") if os.access(read_only, os.W_OK) else read_only / "out"
    read_only.chmod(0o755)


# --- 1. one run per run folder ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_folder_in_use_is_refused_and_a_killed_run_leaves_it_free(synthetic_root, tmp_path, capsys,
                                                                        start_training):
    run_dir = tmp_path / "run"
    proc = start_training(tiny_run_args(synthetic_root, tmp_path, 100000, run_dir, "log.checkpoint_every=3"))
    wait_for(lambda: (run_dir / "last.pt").exists() and len(logged_steps(run_dir)) >= 4, proc)
    # a new run with the same log.run_dir, and a --resume of the folder: refused, naming it and the pid
    rc = train.main(tiny_run_args(synthetic_root, tmp_path, 2, run_dir))
    assert_one_line_error(rc, capsys, f"{run_dir}: another training run (pid {proc.pid}) is using this run folder")
    rc = train.main(["--resume", str(run_dir)])
    assert_one_line_error(rc, capsys, f"{run_dir}: another training run (pid {proc.pid})")
    assert proc.poll() is None
    # the running run is undisturbed: its log parses, one record per step
    steps = logged_steps(run_dir)
    assert steps == list(range(1, len(steps) + 1))

    stale = run_dir / ".step_00000099.pt.0123456789abcdef.tmp"  # what a checkpoint write killed in mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    (run_dir / ".notes.tmp").write_text("not atomic_write's: kept")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = read_checkpoint(run_dir)["step"]
    with open(run_dir / "log.jsonl", "a") as log:  # records past the checkpoint, the last one torn by the kill
        log.write(json.dumps({"step": saved + 1, "total": 1.0}) + "\n" + '{"step": ' + str(saved + 2))
    # the lock died with the process: the run resumes, and logs each step once
    assert train.main(["--resume", str(run_dir), f"train.max_steps={saved + 2}"]) == 0
    assert [r["step"] for r in records(run_dir)] == list(range(1, saved + 3))
    assert not stale.exists() and (run_dir / ".notes.tmp").exists()


def test_resuming_a_folder_in_use_says_it_runs_even_when_it_holds_later_checkpoints(run_copy, capsys):
    # a running run writes step files before last.pt catches up: the folder's holder is named, not the files
    shutil.copy(run_copy / "step_00000004.pt", run_copy / "step_00000006.pt")
    with lock_run_folder(run_copy):
        rc = train.main(["--resume", str(run_copy)])
    assert_one_line_error(rc, capsys, f"{run_copy}: another training run (pid {os.getpid()}) is using this run folder")
    rc = train.main(["--resume", str(run_copy)])  # free: the later step file is what stops it
    assert_one_line_error(rc, capsys, "holds later checkpoints (step_00000006.pt)")


# --- 2. a test split that holds training faces ----------------------------------------------------


def test_eval_refuses_a_test_split_that_overlaps_the_training_split(tmp_path, capsys):
    train_npz = write_detections(tmp_path / "mafl-train.npz", [f"{i:06d}.jpg" for i in range(30)], "mafl-train", 1)
    test_names = ["900001.jpg", "000007.jpg", "900002.jpg", "000003.jpg"] + [f"9{i:05d}.jpg" for i in range(10, 16)]
    test_npz = write_detections(tmp_path / "mafl-test.npz", test_names, "mafl-test", 2)
    out = tmp_path / "eval"
    rc = eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz), "--no-fewshot", "--out", str(out)])
    assert_one_line_error(rc, capsys, f"{test_npz}: 2 of its 10 images overlap the training file {train_npz}",
                          "(first: 000007.jpg)")
    assert not out.exists()
    # our pair disjoint, a --compare folder whose pair overlaps
    ours, other = tmp_path / "ours", tmp_path / "other"
    write_pair(ours)
    write_detections(other / "mafl-train.npz", [f"{i}.jpg" for i in range(30)], "mafl-train", 1)
    other_test = write_detections(other / "mafl-test.npz", [f"{i}.jpg" for i in range(25, 35)], "mafl-test", 2)
    rc = eval_regressor.main(["--dir", str(ours), "--dataset", "mafl", "--no-fewshot", "--compare", f"x={other}"])
    assert_one_line_error(rc, capsys, f"{other_test}: 5 of its 10 images overlap", "(first: 25.jpg)")
    assert not (ours / "eval").exists()


# --- 3. data overrides on resume ---------------------------------------------------------------------


@pytest.mark.parametrize("override, saved", [("data.image_size=64", "data.image_size=32"),
                                             ("data.dataset=mafl-train", "data.dataset=synthetic"),
                                             ("data.tight=70", "data.tight=20"), ("data.angle=0", "data.angle=15.0"),
                                             ("data.flip=true", "data.flip=false")])
def test_resume_refuses_a_data_override_that_changes_what_it_trains_on(run_copy, capsys, override, saved):
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    rc = train.main(["--resume", str(run_copy), override])
    assert_one_line_error(rc, capsys, f"{override}: {run_copy / 'last.pt'} was trained with {saved}",
                          "start a new run with --config")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before  # config.yaml, log, checkpoints


@pytest.mark.slow
def test_resume_takes_more_workers_and_a_moved_copy_of_its_data_but_not_other_data(run_copy, synthetic_root,
                                                                                     tmp_path, capsys):
    from datasets.synthetic import generate

    moved = Path(shutil.copytree(synthetic_root, tmp_path / "moved"))
    assert train.main(["--resume", str(run_copy), f"data.root={moved}", "data.num_workers=1",
                       "train.max_steps=5"]) == 0
    ckpt = read_checkpoint(run_copy)
    assert ckpt["step"] == 5 and ckpt["config"]["data"]["root"] == str(moved) and len(ckpt["data_fingerprint"]) == 64
    capsys.readouterr()
    other = generate(tmp_path / "other", num_images=100, seed=0)  # the same layout, other faces
    rc = train.main(["--resume", str(run_copy), f"data.root={other}", "train.max_steps=6"])
    assert_one_line_error(rc, capsys, f"data.root={other}: its training images or annotated points differ from those "
                          f"{run_copy / 'last.pt'} was trained on (data.root={moved})")
    # a checkpoint from before the fingerprint: only its own data.root
    old = read_checkpoint(run_copy)
    del old["data_fingerprint"], old["path"]
    (run_copy / "last.pt").unlink()
    atomic_torch_save(old, run_copy / "last.pt")
    rc = train.main(["--resume", str(run_copy), f"data.root={synthetic_root}", "train.max_steps=6"])
    assert_one_line_error(rc, capsys, "does not record which data it was trained on",
                          f"resume with data.root={moved}")
    assert read_checkpoint(run_copy)["step"] == 5


# --- 4. SIGTERM and Ctrl-C ------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_within_a_step_and_the_resumed_run_is_exact(synthetic_root, tmp_path,
                                                                                start_training):
    steps = 40
    straight_dir = tmp_path / "straight"
    assert train.main(tiny_run_args(synthetic_root, tmp_path, steps, straight_dir, "log.checkpoint_every=1000")) == 0
    run_dir = tmp_path / "terminated"
    proc = start_training(tiny_run_args(synthetic_root, tmp_path, steps, run_dir, "log.checkpoint_every=1000"))
    wait_for(lambda: len(logged_steps(run_dir)) >= 3, proc)
    logged = logged_steps(run_dir)[-1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    saved = read_checkpoint(run_dir)["step"]
    assert logged <= saved <= logged + 2 and saved < steps  # the step in flight, at most one more
    assert f"terminated (SIGTERM) at step {saved}: saved {run_dir / 'last.pt'}; continue with python train.py " \
           f"--resume {run_dir}" in err
    assert train.main(["--resume", str(run_dir)]) == 0
    resumed, straight = read_checkpoint(run_dir), read_checkpoint(straight_dir)
    assert resumed["step"] == steps
    assert [k for k in straight["model"] if not torch.equal(resumed["model"][k], straight["model"][k])] == []
    assert [r["step"] for r in records(run_dir)] == list(range(1, steps + 1))


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_loader_workers(synthetic_root, tmp_path, start_training):
    """As SLURM and `docker stop` do: every process of the group gets it, loader workers too."""
    run_dir = tmp_path / "run"
    proc = start_training(tiny_run_args(synthetic_root, tmp_path, 100000, run_dir, "data.num_workers=2",
                                        "log.checkpoint_every=100000"))
    wait_for(lambda: len(logged_steps(run_dir)) >= 3, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "DataLoader worker" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"terminated (SIGTERM) at step {read_checkpoint(run_dir)['step']}: saved {run_dir / 'last.pt'}; continue "
        f"with python train.py --resume {run_dir}"]
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # the workers were shut down with the run: none is left
        os.killpg(proc.pid, 0)


@pytest.mark.slow
def test_sigterm_to_one_ddp_rank_stops_every_rank_at_the_same_step(synthetic_root, tmp_path, start_training):
    run_dir = tmp_path / "run"
    args = tiny_run_args(synthetic_root, tmp_path, 100000, run_dir, "log.checkpoint_every=100000")
    proc = start_training(args, ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"),
                          OMP_NUM_THREADS="1")
    wait_for(lambda: len(logged_steps(run_dir)) >= 3, proc)
    rank_1 = next(pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                  if _parent(pid) == proc.pid and b"\0RANK=1\0" in _environ(pid))
    os.kill(rank_1, signal.SIGTERM)  # as pre-emption of one node would: rank 0 is not signalled
    _, err = proc.communicate(timeout=180)  # without the reduced flag rank 0 waits for rank 1 in vain
    saved = read_checkpoint(run_dir)["step"]
    assert f"terminated (SIGTERM) at step {saved}: saved {run_dir / 'last.pt'}" in err, err[-3000:]
    assert logged_steps(run_dir)[-1] == saved


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _environ(pid: int) -> bytes:
    try:
        return b"\0" + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def test_loader_workers_do_not_outlive_a_run_that_a_worker_error_stopped(synthetic_root, tmp_path, capsys):
    """They ignore SIGTERM, so multiprocessing's exit handler could not stop them: the run stops them itself."""
    import multiprocessing

    root = Path(shutil.copytree(synthetic_root, tmp_path / "celeba"))
    image = root / "Img" / "img_align_celeba" / "000005.jpg"
    image.write_bytes(image.read_bytes()[:1000])
    argv = tiny_run_args(root, tmp_path, 3, tmp_path / "run", "data.num_workers=1", "train.batch_size=108")
    assert_one_line_error(train.main(argv), capsys, "000005.jpg: truncated JPEG")
    assert multiprocessing.active_children() == []


def test_a_stop_signal_sets_a_flag_and_a_second_ctrl_c_interrupts_at_once():
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = StopSignals.install()
    try:
        assert stop.requested(False, torch.device("cpu")) == 0
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # Python runs the handler between bytecodes
        assert stop.requested(False, torch.device("cpu")) == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    finally:
        stop.restore()
    assert {s: signal.getsignal(s) for s in previous} == previous
    try:  # a loader worker's setting
        ignore_stop_signals(0)
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- 5. outputs that cannot be written ------------------------------------------------------------


@pytest.mark.parametrize("unwritable", ["read-only", "file"], indirect=True)
def test_every_script_refuses_an_unwritable_output_before_the_work(unwritable, trained_run, synthetic_root,
                                                                   tmp_path, capsys):
    file_in_the_way = unwritable.name == "taken"
    reason = f": {unwritable} is a file, not a folder" if file_in_the_way else "there ("

    def refused(rc: int, what: str) -> None:
        line = assert_one_line_error(rc, capsys, f"{unwritable}: cannot write {what}", reason)
        assert file_in_the_way or line.endswith(("(Permission denied)", "(Operation not permitted)")), line

    refused(train.main(CONFIG + tiny_train_overrides(synthetic_root, unwritable, 2) + ["validation.enabled=false"]),
            "the run folder")
    refused(extract_data.main(["--checkpoint", str(trained_run), "--data-root", str(synthetic_root), "--out",
                               str(unwritable), "--quiet", "--workers", "0"]), "the detections (--out)")
    train_npz, test_npz = write_pair(tmp_path / "det")
    refused(eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz), "--out", str(unwritable)]),
            "the report (--out)")
    refused(detect.main(["--checkpoint", str(trained_run), str(synthetic_root / "Img"), "--out", str(unwritable)]),
            "the pictures and landmarks.csv (--out)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det", "taken" if file_in_the_way else "read-only"]


@pytest.mark.slow
def test_a_full_disk_stops_training_with_the_resume_command_and_the_checkpoints_intact(synthetic_root, tmp_path,
                                                                                       monkeypatch, capsys):
    real_save, calls = torch.save, []

    def fills_up(obj, f, *args, **kwargs):  # the second checkpoint finds the disk full half way
        calls.append(1)
        if len(calls) == 2:
            f.write(b"the first bytes")
            raise NO_SPACE
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_up)
    run_dir = tmp_path / "run"
    rc = train.main(tiny_run_args(synthetic_root, tmp_path, 6, run_dir, "log.checkpoint_every=2"))
    assert_one_line_error(rc, capsys, f"{run_dir / 'step_00000004.pt'}: cannot write (No space left on device)",
                          "(newest: step_00000002.pt)", f"continue with python train.py --resume {run_dir}")
    assert read_checkpoint(run_dir)["step"] == 2 and temp_files(run_dir) == []
    assert [r["step"] for r in records(run_dir)] == [1, 2, 3, 4]
    monkeypatch.setattr(torch, "save", real_save)  # space made
    assert train.main(["--resume", str(run_dir)]) == 0
    assert read_checkpoint(run_dir)["step"] == 6 and [r["step"] for r in records(run_dir)] == list(range(1, 7))


def test_a_full_disk_stops_extraction_with_the_splits_left_to_do(trained_run, synthetic_root, tmp_path,
                                                                monkeypatch, capsys):
    real_savez, calls = np.savez, []

    def fills_up(file, **arrays):
        calls.append(1)
        if len(calls) == 2:
            file.write(b"PK")
            raise NO_SPACE
        return real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", fills_up)
    out = tmp_path / "det"
    rc = extract_data.main(["--checkpoint", str(trained_run), "--data-root", str(synthetic_root), "--out", str(out),
                            "--splits", "mafl-train,mafl-test", "--workers", "0", "--quiet"])
    assert_one_line_error(rc, capsys, f"{out / 'mafl-test.npz'}: cannot write (No space left on device)",
                          "run again with --splits mafl-test")
    assert load_detections(out / "mafl-train.npz").n > 0 and temp_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["mafl-train.npz"]


def test_a_full_disk_stops_eval_after_the_tables_are_written(tmp_path, monkeypatch, capsys):
    def fills_up(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(utils.visualize, "save_line_plot", fills_up)  # the first figure
    train_npz, test_npz = write_pair(tmp_path)
    rc = eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz), "--sizes", "1,all",
                              "--repeats", "2"])
    out = tmp_path / "eval"
    assert_one_line_error(rc, capsys, f"{out / 'nme_vs_n.png'}: cannot write (No space left on device)",
                          "results.csv, results.json, results.md")
    assert json.loads((out / "results.json").read_text())["main"]["fwd"]["nme_percent"] > 0
    assert "## Few-shot" in (out / "results.md").read_text() and temp_files(out) == []


def test_a_full_disk_stops_detect_with_the_rows_written_before(trained_run, synthetic_root, tmp_path,
                                                              monkeypatch, capsys):
    real_write, calls = utils.visualize.atomic_write, []

    def fills_up(path, write):  # the third picture meets a full disk halfway through
        calls.append(1)
        if len(calls) != 3:
            return real_write(path, write)

        def half_then_full(f):
            f.write(b"\x89PNG")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, half_then_full)

    monkeypatch.setattr(utils.visualize, "atomic_write", fills_up)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"):
        shutil.copy(synthetic_root / "Img" / "img_align_celeba" / name, photos)
    out = tmp_path / "detect"
    rc = detect.main(["--checkpoint", str(trained_run), str(photos), "--out", str(out), "--batch-size", "1",
                      "--quiet"])
    assert_one_line_error(rc, capsys, f"{out / '000003_landmarks.png'}: cannot write ({os.strerror(errno.ENOSPC)})",
                          f"{out / 'landmarks.csv'} keeps the rows of the images done before")
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == ["000001_landmarks.png",
                                                                             "000002_landmarks.png"]  # no half PNG
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    lines = (out / "landmarks.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 10 and lines[-1].startswith(f"{photos / '000002.jpg'},0,")
    assert lines[-1].split(",")[6] == "9"  # image,face,x0,y0,x1,y1,landmark,x,y


# --- 6. an empty config ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "{}\n"])
def test_an_empty_config_file_is_refused_naming_it(tmp_path, capsys, text):
    config = tmp_path / "mine.yaml"
    config.write_text(text)
    rc = train.main(["--config", str(config), f"log.out_dir={tmp_path / 'runs'}"])
    assert_one_line_error(rc, capsys, f"{config}: the config file is empty")
    assert not (tmp_path / "runs").exists()


def test_a_config_that_only_names_its_base_is_valid(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text(f"base: {REPO / 'configs' / 'synthetic.yaml'}\n")
    assert train.main(["--config", str(config), "--print-config"]) == 0
    assert 'dataset: "synthetic"' in capsys.readouterr().out


# --- 7. smaller ones ----------------------------------------------------------------------------------


def test_a_folder_data_set_with_validation_on_is_refused_at_start(synthetic_root, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = CONFIG + tiny_train_overrides(synthetic_root / "Img", out, 2) + ["data.dataset=folder"]
    assert_one_line_error(train.main(argv), capsys, "data.dataset=folder has no annotated split to validate on",
                          "no best.pt", "validation.enabled=false", "validation.fit_split=")
    assert not out.exists()
    for fix in ({"enabled": False}, {"fit_split": "mafl-train"}):  # either fix passes the check
        check_config(RunConfig(data=DataConfig(dataset="folder", root="x"), validation=ValidationConfig(**fix)))


def test_detections_far_off_the_image_are_left_out_of_the_pictures_and_the_tables_are_written(tmp_path, capsys):
    train_npz, _ = write_pair(tmp_path, preview=0)
    names = [f"test{i}.jpg" for i in range(10)]
    test = load_detections(write_detections(tmp_path / "mafl-test.npz", names, "mafl-test", 2, preview=4))
    detected = test.detected_xy_px.copy()
    detected[0, 0] = 1e30  # a diverged detector
    test_npz = save_detections(tmp_path / "mafl-test.npz", detected_xy_px=detected,
                               annotated_xy_px=test.annotated_xy_px, names=names, split="mafl-test",
                               checkpoint=test.checkpoint, settings=test.settings, preview_images=test.preview_images)
    assert eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz), "--no-fewshot"]) == 0
    out = tmp_path / "eval"
    assert {"results.md", "results.json", "results.csv", "test_points.png", "test_faces.png"} <= {
        p.name for p in out.iterdir()}
    image = np.zeros((64, 64, 3), np.uint8)
    drawn = utils.visualize.draw_points(image, np.array([[1e30, 5.0], [-1e30, 5.0], [np.nan, 3.0], [70.0, 5.0]]),
                                        [(255, 0, 0)] * 4, radius=2)
    assert not drawn.any()  # none of them would show
    assert utils.visualize.draw_points(image, np.array([[65.0, 5.0]]), [(255, 0, 0)], radius=2).any()  # its rim does


def test_one_training_face_evaluates_without_a_solver_warning(tmp_path, capsys):
    train_npz = write_detections(tmp_path / "mafl-train.npz", ["only.jpg"], "mafl-train", 1)
    _, test_npz = write_pair(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz), "--repeats", "2"]) == 0
    assert [str(w.message) for w in caught] == []
    assert "Singular" not in capsys.readouterr().err
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert report["solver_check"]["max_abs_point_diff_px"] < 1e-6  # sklearn's fit is the closed form's


def test_a_truncated_last_pt_names_the_newest_step_file_that_reads(run_copy, capsys):
    with open(run_copy / "last.pt", "r+b") as f:  # a torn last.pt (in the copy, no longer step 4's other name)
        f.truncate(1000)
    rc = train.main(["--resume", str(run_copy)])
    assert_one_line_error(rc, capsys, f"{run_copy / 'last.pt'}: cannot read checkpoint",
                          f"{run_copy / 'step_00000004.pt'} beside it reads",
                          f"python train.py --resume {run_copy / 'step_00000004.pt'}")
    with open(run_copy / "step_00000004.pt", "r+b") as f:
        f.truncate(1000)
    rc = extract_data.main(["--checkpoint", str(run_copy), "--data-root", "unused", "--quiet"])
    assert_one_line_error(rc, capsys, f"{run_copy / 'step_00000002.pt'} beside it reads")


# --- the GPU settings, on the CPU ----------------------------------------------------------------------


@pytest.mark.parametrize("setting", [  # torch.compile builds C++ kernels with gcc: minutes on a small CPU the first time
    "runtime.amp=bf16", "runtime.channels_last=true",
    pytest.param("runtime.compile=true", id="compile", marks=pytest.mark.slow)])
def test_gpu_settings_train_and_resume_on_the_cpu(setting, synthetic_root, tmp_path, monkeypatch, capsys):
    seen = {"dtypes": set(), "channels_last": set(), "compiled": 0}
    original_loss, original_compile = losses.ReconstructionLoss.forward, torch.compile

    def watching(self, outputs, targets):
        seen["dtypes"].add(outputs[-1].dtype)
        seen["channels_last"].add(targets[0].is_contiguous(memory_format=torch.channels_last))
        return original_loss(self, outputs, targets)

    def compiling(model, *args, **kwargs):
        seen["compiled"] += 1
        return original_compile(model, *args, **kwargs)

    monkeypatch.setattr(losses.ReconstructionLoss, "forward", watching)
    monkeypatch.setattr(torch, "compile", compiling)
    run_dir = tmp_path / "run"
    assert train.main(tiny_run_args(synthetic_root, tmp_path, 2, run_dir, setting)) == 0
    out = capsys.readouterr().out
    assert ("mixed precision: bf16 autocast on cpu" if "amp" in setting else "mixed precision: none") in out
    assert train.main(["--resume", str(run_dir), "train.max_steps=4"]) == 0
    log = records(run_dir)
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["total"]) for r in log)
    ckpt = read_checkpoint(run_dir)
    assert ckpt["step"] == 4 and all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    if "amp" in setting:
        assert seen["dtypes"] == {torch.bfloat16}
    if "channels_last" in setting:
        assert seen["channels_last"] == {True}
    if "compile" in setting:
        assert seen["compiled"] == 2  # the first run and the resumed one


def test_channels_last_computes_the_same_step_as_the_default_layout(synthetic_root):
    """runtime.channels_last (a speed-up of the CPU recipes) changes the memory layout, not the arithmetic: one
    train_step from the same weights and batch gives the same losses and gradients up to float rounding (an
    NCHW/NHWC mix-up or a transposed input would differ by far more). Learning rates 0 keep the weights put."""
    cfg = load_config(RunConfig, CONFIG[1], [f"data.root={synthetic_root}", "train.batch_size=4",
                                             "train.lr_fan=0", "train.lr_gen=0"])
    pairs = build_training_pairs(cfg.data, 0)
    batch = torch.utils.data.default_collate([pairs[i] for i in range(4)])
    aux = torch.tensor([1, 2, 3, 0])
    steps = {}
    for layout in (False, True):
        run_cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, channels_last=layout))
        torch.manual_seed(0)
        model, loss_fn, optimizers = profile_step.build_step(run_cfg)  # as train.prepare, in run_cfg's layout
        terms, _ = train.train_step(model, loss_fn, optimizers, batch, aux, run_cfg, torch.device("cpu"))
        steps[layout] = terms, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    (terms_a, grads_a), (terms_b, grads_b) = steps[False], steps[True]
    assert terms_b == pytest.approx(terms_a, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    flat_a, flat_b = (torch.cat([g[name].flatten() for name in grads_a]) for g in (grads_a, grads_b))
    assert (flat_b - flat_a).norm() <= 1e-2 * flat_a.norm()
    for name, grad in grads_a.items():
        # measured: up to 1 % of the norm (the first conv, behind the soft-argmax; it varies with the machine's
        # threads); a layout bug gives ~1. Biases before a norm layer have ~1e-7 of pure rounding.
        assert (grads_b[name] - grad).norm() <= 0.1 * grad.norm() + 1e-5, name
