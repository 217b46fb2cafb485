"""Nothing overwritten, nothing ignored (issue 26), each case through a script's real `main()`: the output rule
(no tool writes over a training checkpoint, an existing output or its own input without --overwrite), resume
overrides applied or refused, branches and finished runs, regressors fitted on too few faces, --attach-to under
the run lock on the bytes it checked, duplicate keys and non-UTF-8 configs, detections from two data roots, a
full disk inside torch.save, hand-edited checkpoints and Ctrl-C. Each ends in the right result or one line."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import eval_regressor
import export_model
import extract_data
import import_reference
import train
import utils.files
from model import build_model
from helpers import assert_one_line_error, tiny_run_args, write_detections, write_pair
from utils.checkpoint import FORMAT, atomic_torch_save, file_sha256, is_training_checkpoint
from utils.evaluation.detections import load_detections
from utils.run_config import ModelConfig
from utils.training.run_lock import lock_run_folder

REPO = Path(__file__).resolve().parents[1]


def digests(folder: Path) -> dict[str, str]:
    """{name: sha256} of every file in `folder` (recursively), to show that nothing in it changed."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(synthetic_root, tmp_path_factory) -> Path:
    """A tiny run of 3 steps, finished: step_00000001.pt to step_00000003.pt, last.pt (= step 3), log.jsonl."""
    run_dir = tmp_path_factory.mktemp("rules_run") / "run"
    assert train.main(tiny_run_args(synthetic_root, run_dir.parent, 3, run_dir, "log.checkpoint_every=1",
                                    "log.keep_checkpoints=5", "train.step_size=1000")) == 0
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def small_checkpoint(path: Path, k: int = 4, **changes) -> Path:
    """An untrained small model saved with this repository's format tag; `changes` replace or (None) drop keys."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_points=k, fan_init="scratch", fan_features=16, hourglass_depth=2, gen_conv_dim=8,
                      gen_res_blocks=1)
    model, _ = build_model(cfg)
    ckpt = {"format": FORMAT, "config": {"model": dataclasses.asdict(cfg), "data": {"image_size": 32, "tight": 30}},
            "model": model.state_dict(), "step": 0}
    for key, value in changes.items():
        if value is None:
            del ckpt[key]
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


# --- 1, 3. the output rule ---------------------------------------------------------------------------------


def test_a_training_checkpoint_is_recognised_by_its_optimiser_state(finished_run, tmp_path):
    assert is_training_checkpoint(finished_run / "last.pt") and is_training_checkpoint(finished_run / "step_00000001.pt")
    assert not is_training_checkpoint(small_checkpoint(tmp_path / "model.pt"))
    (tmp_path / "x.json").write_text("{}")
    assert not is_training_checkpoint(tmp_path / "x.json") and not is_training_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize("tool", ["export", "import", "save_regressor"])
def test_no_tool_writes_over_a_training_checkpoint_even_with_overwrite(run_copy, synthetic_root, tmp_path, capsys,
                                                                       tool):
    before = digests(run_copy)
    target = run_copy / "last.pt"
    train_npz, test_npz = write_pair(tmp_path, n_train=60)
    argv = {"export": lambda: export_model.main(["--checkpoint", str(run_copy / "step_00000002.pt"), "--data-root",
                                                 str(synthetic_root), "--split", "mafl-train", "--out", str(target),
                                                 "--overwrite"]),
            "import": lambda: import_reference.main(["--fan", str(tmp_path / "a.fan.pth"), "--gen",
                                                     str(tmp_path / "a.gen.pth"), "--out", str(target), "--overwrite"]),
            "save_regressor": lambda: eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz),
                                                           "--no-fewshot", "--out", str(tmp_path / "eval"),
                                                           "--save-regressor", str(target), "--overwrite"])}[tool]
    flag = "--save-regressor" if tool == "save_regressor" else "--out"
    assert_one_line_error(argv(), capsys, f"{flag} {target}: a training checkpoint (it holds optimiser state)")
    assert digests(run_copy) == before and not (tmp_path / "eval").exists()


def test_extract_refuses_to_replace_its_detections_without_overwrite(finished_run, synthetic_root, tmp_path, capsys):
    out = tmp_path / "det"
    argv = ["--checkpoint", str(finished_run), "--data-root", str(synthetic_root), "--out", str(out), "--splits",
            "mafl-test", "--limit", "4", "--workers", "0", "--quiet"]
    assert extract_data.main(argv) == 0
    first = file_sha256(out / "mafl-test.npz")
    capsys.readouterr()
    assert_one_line_error(extract_data.main(argv), capsys, f"--out {out / 'mafl-test.npz'} already exists",
                          "--overwrite")
    assert file_sha256(out / "mafl-test.npz") == first
    assert extract_data.main(argv + ["--overwrite"]) == 0 and load_detections(out / "mafl-test.npz").n == 4


def test_eval_refuses_to_replace_its_results_without_overwrite(tmp_path, capsys):
    train_npz, test_npz = write_pair(tmp_path)
    argv = ["--train", str(train_npz), "--test", str(test_npz), "--no-fewshot", "--out", str(tmp_path / "eval")]
    assert eval_regressor.main(argv) == 0
    results = (tmp_path / "eval" / "results.json").read_bytes()
    capsys.readouterr()
    assert_one_line_error(eval_regressor.main(argv + ["--reg", "0.1"]), capsys, "results.md already exists")
    assert (tmp_path / "eval" / "results.json").read_bytes() == results
    assert eval_regressor.main(argv + ["--reg", "0.1", "--overwrite"]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["settings"]["reg"] == 0.1


def test_an_output_that_is_also_an_input_needs_overwrite(tmp_path, capsys):
    fan = tmp_path / "model.fan.pth"
    fan.write_bytes(b"a reference file")
    rc = import_reference.main(["--fan", str(fan), "--gen", str(tmp_path / "g.pth"), "--out", str(fan)])
    assert_one_line_error(rc, capsys, f"--out {fan} is also this command's input (--fan {fan})", "--overwrite")
    assert fan.read_bytes() == b"a reference file"


def test_every_tool_states_the_output_rule_in_its_help(capsys):
    for main in (export_model.main, import_reference.main, eval_regressor.main, extract_data.main):
        with pytest.raises(SystemExit):
            main(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--overwrite" in text and "no file that exists is replaced unless --overwrite" in text
        assert "a training checkpoint (a file with optimiser state) never" in text


# --- 2, 4, 5. resume -----------------------------------------------------------------------------------------


def test_resume_from_an_older_step_file_refuses_to_overwrite_the_newer_ones(finished_run, capsys):
    before = digests(finished_run)
    rc = train.main(["--resume", str(finished_run / "step_00000001.pt"), "train.max_steps=5"])
    assert_one_line_error(rc, capsys, f"{finished_run / 'step_00000001.pt'} is step 1",
                          "step_00000002.pt, step_00000003.pt", "log.run_dir=", "--overwrite")
    assert digests(finished_run) == before


def test_a_finished_run_is_already_done_and_writes_nothing(finished_run, capsys):
    before = digests(finished_run)
    assert train.main(["--resume", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "already done at step 3 of 3" in out and "train.epochs" in out
    assert digests(finished_run) == before


@pytest.mark.parametrize("override", ["log.out_dir=elsewhere", "log.name=other", "train.init_from=x.pt"])
def test_resume_refuses_an_override_it_would_ignore(finished_run, capsys, override):
    before = digests(finished_run)
    rc = train.main(["--resume", str(finished_run), "train.max_steps=5", override])
    assert_one_line_error(rc, capsys, f"{override}: not applied when resuming")
    assert digests(finished_run) == before


@pytest.mark.slow
def test_resume_branches_into_a_new_folder_applying_the_learning_rate_and_schedule(finished_run, tmp_path, capsys):
    """A finished run, extended (train.max_steps=5) from its step 2 into NEW with a new learning rate and
    schedule: NEW holds steps 3 to 5 under them, the old folder is untouched."""
    before, new = digests(finished_run), tmp_path / "branch"
    assert train.main(["--resume", str(finished_run / "step_00000002.pt"), f"log.run_dir={new}", "train.max_steps=5",
                       "train.lr_fan=5e-4", "train.step_size=7", "train.gamma=0.5"]) == 0
    out = capsys.readouterr().out
    assert "resume: applied train.lr_fan=0.0005, train.step_size=7, train.gamma=0.5" in out
    assert digests(finished_run) == before
    ckpt = torch.load(new / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 5 and ckpt["config"]["log"]["run_dir"] == str(new)
    assert ckpt["optim_fan"]["param_groups"][0]["lr"] == pytest.approx(5e-4)
    assert ckpt["optim_gen"]["param_groups"][0]["lr"] == pytest.approx(1e-3)  # the default, not overridden
    assert (ckpt["sched_fan"]["step_size"], ckpt["sched_fan"]["gamma"]) == (7, 0.5)
    assert sorted(p.name for p in new.glob("step_*.pt")) == [f"step_0000000{s}.pt" for s in (3, 4, 5)]
    steps = [json.loads(line)["step"] for line in (new / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # the old records up to step 2, then the branch's


def test_a_learning_rate_override_keeps_the_decays_taken():
    from utils.config import build, to_dict
    from utils.run_config import RunConfig
    from utils.training.resume import apply_optimiser_overrides

    net = torch.nn.Linear(2, 2)
    saved = to_dict(build(RunConfig, {"train": {"lr_fan": 1e-3, "lr_gen": 1e-3, "gamma": 0.1, "step_size": 2}}))
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3) for _ in range(2)]
    schedulers = [torch.optim.lr_scheduler.StepLR(opt, 2, 0.1) for opt in optimizers]
    for _ in range(4):  # two decays: 1e-3 -> 1e-5
        for optimizer, scheduler in zip(optimizers, schedulers):
            optimizer.step()
            scheduler.step()
    cfg = build(RunConfig, {"train": {**saved["train"], "lr_fan": 4e-3, "gamma": 0.5}})
    applied = apply_optimiser_overrides(cfg, saved["train"], optimizers, schedulers)
    assert applied == ["train.lr_fan=0.004", "train.gamma=0.5"]
    assert optimizers[0].param_groups[0]["lr"] == pytest.approx(4e-3 * 0.5 ** 2)
    assert optimizers[1].param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 ** 2)
    for _ in range(2):  # the next decay, with the new gamma
        optimizers[0].step()
        schedulers[0].step()
    assert optimizers[0].param_groups[0]["lr"] == pytest.approx(4e-3 * 0.5 ** 3)


# --- 6. regressors fitted on too few faces -------------------------------------------------------------------


def test_export_refuses_too_few_faces_per_regressor_input(finished_run, synthetic_root, tmp_path, capsys):
    out = tmp_path / "m.pt"
    rc = export_model.main(["--checkpoint", str(finished_run), "--data-root", str(synthetic_root), "--split",
                            "mafl-train", "--limit", "12", "--workers", "0", "--device", "cpu", "--out", str(out)])
    assert_one_line_error(rc, capsys, "faces found: too few", "need 100 for the 20 inputs of K=10 points",
                          "500 for the 100 of 5 looks", "--force")
    assert not out.exists()


def test_a_kept_regressor_needs_five_faces_per_input_unless_forced(tmp_path, capsys):
    train_npz, test_npz = write_pair(tmp_path, n_train=39)  # K=4: 8 inputs need 40 faces
    argv = ["--train", str(train_npz), "--test", str(test_npz), "--no-fewshot", "--out", str(tmp_path / "eval"),
            "--save-regressor", str(tmp_path / "reg.json")]
    assert_one_line_error(eval_regressor.main(argv), capsys, "--save-regressor", "has 39 faces",
                          "need at least 40 (5 per input)", "--force")
    assert not (tmp_path / "reg.json").exists() and not (tmp_path / "eval").exists()
    assert eval_regressor.main(argv + ["--force"]) == 0 and json.loads((tmp_path / "reg.json").read_text())["images"] == 39


# --- 7. --attach-to ------------------------------------------------------------------------------------------


def attach_detections(folder: Path, checkpoint: Path, n_train: int = 60) -> list[str]:
    """mafl-train/-test detections (K=4) that say they were made with `checkpoint`; the eval arguments."""
    settings = {"tight": 30, "image_size": 32, "bn_mode": "eval", "checkpoint_sha256": file_sha256(checkpoint)}
    write_detections(folder / "mafl-train.npz", [f"tr{i}.jpg" for i in range(n_train)], "mafl-train", 1,
                     settings=settings)
    write_detections(folder / "mafl-test.npz", [f"te{i}.jpg" for i in range(10)], "mafl-test", 2, settings=settings)
    return ["--train", str(folder / "mafl-train.npz"), "--test", str(folder / "mafl-test.npz"), "--no-fewshot",
            "--out", str(folder / "eval")]


def test_attach_to_a_run_folder_in_use_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = small_checkpoint(run_dir / "last.pt")
    argv = attach_detections(tmp_path, ckpt)
    before = ckpt.read_bytes()
    with lock_run_folder(run_dir):  # a training run holds the folder
        rc = eval_regressor.main(argv + ["--attach-to", str(ckpt)])
    assert_one_line_error(rc, capsys, f"{run_dir}: another training run (pid {os.getpid()})")
    assert ckpt.read_bytes() == before
    assert eval_regressor.main(argv + ["--attach-to", str(ckpt)]) == 0  # free again: attached
    assert "named_points" in torch.load(ckpt, map_location="cpu", weights_only=True)
    lock_run_folder(run_dir).release()  # and the lock was given back


def test_attach_to_writes_the_bytes_it_checked(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").touch()
    ckpt = small_checkpoint(run_dir / "last.pt")
    checked = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    argv = attach_detections(tmp_path, ckpt)
    real_evaluate = eval_regressor.evaluate

    def newer_file_meanwhile(*args, **kwargs):  # the file changes on disk while the evaluation runs
        torch.manual_seed(1)
        changed = torch.load(ckpt, map_location="cpu", weights_only=True)
        changed["model"] = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in changed["model"].items()}
        torch.save(changed, ckpt)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(eval_regressor, "evaluate", newer_file_meanwhile)
    assert eval_regressor.main(argv + ["--attach-to", str(ckpt)]) == 0
    written = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert "named_points" in written
    assert all(torch.equal(written["model"][k], v) for k, v in checked.items())


# --- 8, 11. configs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, key", [
    ("model:\n  num_points: 4\ntrain:\n  lr_fan: 0.1\ntrain:\n  lr_gen: 0.2\n", 5, "train"),
    ("model:\n  num_points: 4\n  hourglass_depth: 2\n  num_points: 6\n", 4, "num_points"),
])
def test_a_key_given_twice_in_a_config_is_refused_naming_the_line(tmp_path, capsys, text, line, key):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    assert_one_line_error(train.main(["--config", str(path), "--print-config"]), capsys,
                          f"{path}:{line}:", f"key '{key}' is given twice")


def test_a_utf16_config_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "utf16.yaml"
    path.write_bytes("model:\n  num_points: 4\n".encode("utf-16"))
    assert_one_line_error(train.main(["--config", str(path), "--print-config"]), capsys, f"{path}: not UTF-8 text")


# --- 9. detections of two data roots -------------------------------------------------------------------------


def test_eval_refuses_train_and_test_detections_from_different_roots(tmp_path, capsys):
    settings = {"tight": 70, "image_size": 128, "bn_mode": "eval", "checkpoint_sha256": "ab12" * 16}
    train_npz = write_detections(tmp_path / "mafl-train.npz", [f"a{i}.jpg" for i in range(30)], "mafl-train", 1,
                                 settings={**settings, "data_root": "/data/celeba"})
    test_npz = write_detections(tmp_path / "mafl-test.npz", [f"b{i}.jpg" for i in range(10)], "mafl-test", 2,
                                settings={**settings, "data_root": "/data/celeba-copy"})
    argv = ["--train", str(train_npz), "--test", str(test_npz), "--no-fewshot", "--out", str(tmp_path / "eval")]
    assert_one_line_error(eval_regressor.main(argv), capsys, "data root /data/celeba but", "from /data/celeba-copy",
                          "--allow-different-roots")
    assert not (tmp_path / "eval").exists()
    assert eval_regressor.main(argv + ["--allow-different-roots"]) == 0


# --- 10. a full disk inside torch.save -----------------------------------------------------------------------


class FillsUp(io.FileIO):
    """A file that takes 100 bytes, then fails as a full disk does."""

    def write(self, data) -> int:
        if self.tell() + len(data) > 100:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_inside_torch_save_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    ckpt = small_checkpoint(tmp_path / "model.pt")
    before = ckpt.read_bytes()
    argv = attach_detections(tmp_path, ckpt)
    def opener(path, mode):  # checkpoint writes fill the disk up, the report's do not
        return FillsUp(path, mode.replace("b", "")) if ".pt." in Path(path).name else io.open(path, mode)

    monkeypatch.setattr(utils.files, "open", opener, raising=False)
    with pytest.raises(OSError, match="No space left on device") as caught:  # torch.save's RuntimeError, unwrapped
        atomic_torch_save({"x": torch.zeros(1000)}, tmp_path / "x.pt")
    assert caught.value.filename == str(tmp_path / "x.pt")
    rc = eval_regressor.main(argv + ["--attach-to", str(ckpt)])
    assert_one_line_error(rc, capsys, f"{ckpt}: cannot write (No space left on device)")
    assert ckpt.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


# --- 12. hand-edited checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"config": None}, "no model config in this checkpoint"),
    ({"model": {}}, "its weights do not fit its config (model.num_points=4): missing detector."),
    ({"config": {"model": {**dataclasses.asdict(ModelConfig(num_points=7, fan_init="scratch", fan_features=16,
                                                            hourglass_depth=2, gen_conv_dim=8, gen_res_blocks=1))},
                 "data": {"image_size": 32, "tight": 30}}}, "model.num_points=7): shape of"),
])
def test_a_hand_edited_checkpoint_is_one_line(synthetic_root, tmp_path, capsys, changes, message):
    ckpt = small_checkpoint(tmp_path / "edited.pt", **changes)
    rc = extract_data.main(["--checkpoint", str(ckpt), "--data-root", str(synthetic_root), "--out", str(tmp_path / "d"),
                            "--workers", "0", "--quiet"])
    assert_one_line_error(rc, capsys, f"{ckpt}: ", message)


# --- Ctrl-C --------------------------------------------------------------------------------------------------


def test_ctrl_c_in_extraction_keeps_the_splits_written_before(finished_run, synthetic_root, tmp_path, monkeypatch,
                                                              capsys):
    real_extract, calls = extract_data.extract_points, []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(extract_data, "extract_points", interrupted_second)
    out = tmp_path / "det"
    rc = extract_data.main(["--checkpoint", str(finished_run), "--data-root", str(synthetic_root), "--out", str(out),
                            "--splits", "mafl-train,mafl-test", "--limit", "4", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"interrupted (Ctrl-C); written before it, whole: {out / 'mafl-train.npz'}"]
    assert sorted(p.name for p in out.iterdir()) == ["mafl-train.npz"]


@pytest.mark.parametrize("script", ["eval", "export"])
def test_ctrl_c_ends_eval_and_export_in_one_line(finished_run, synthetic_root, tmp_path, monkeypatch, capsys, script):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if script == "eval":
        monkeypatch.setattr(eval_regressor, "evaluate", interrupt)
        train_npz, test_npz = write_pair(tmp_path)
        rc = eval_regressor.main(["--train", str(train_npz), "--test", str(test_npz), "--out", str(tmp_path / "e")])
    else:
        monkeypatch.setattr(export_model, "load_model", interrupt)
        rc = export_model.main(["--checkpoint", str(finished_run), "--data-root", str(synthetic_root), "--split",
                                "mafl-train", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 130 and "Traceback" not in err and len(lines) == 1 and lines[0].startswith("interrupted (Ctrl-C)")
    assert not (tmp_path / "m.pt").exists()

