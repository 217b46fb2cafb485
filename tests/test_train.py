"""train.py end to end on tiny synthetic data: learning, resume after SIGKILL, DDP, NaN stop, Ctrl-C."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import losses
import train
import utils.training.runtime
from helpers import tiny_train_overrides
from model import load_model
from utils.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = ["--config", str(REPO / "configs" / "synthetic.yaml")]


def run_dir_of(out_dir: Path) -> Path:
    (run_dir,) = [p for p in Path(out_dir).iterdir() if p.is_dir()]
    return run_dir


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read()[-2000:]}")
        if time.time() > end:
            proc.kill()
            raise AssertionError("timed out waiting for training")
        time.sleep(0.1)


def last_is_at_least(out_dir: Path, step: int, steps: int) -> bool:
    """Whether a run under out_dir has last.pt linked to its step file `step` or a later one."""
    for last in Path(out_dir).glob("*/last.pt"):
        later = [last.with_name(f"step_{s:08d}.pt") for s in range(step, steps + 1)]
        if any(f.exists() and os.path.samefile(f, last) for f in later):
            return True
    return False


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []


@pytest.mark.slow
def test_short_run_learns_and_writes_its_run_folder(synthetic_root, tmp_path, capsys):
    rc = train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 40) +
                    ["log.log_every=1", "log.image_every=20", "validation.every=20"])
    assert rc == 0
    run_dir = run_dir_of(tmp_path)
    log = records(run_dir)
    losses_ = [r["total"] for r in log if "total" in r]
    assert len(losses_) == 40
    assert sum(losses_[-5:]) / 5 < 0.8 * sum(losses_[:5]) / 5  # the reconstruction loss goes down
    vals = [r for r in log if "val_nme" in r]
    assert [r["step"] for r in vals] == [20, 40] and all(0 < r["val_nme"] < 100 for r in vals)
    assert all({"val_spread", "val_closest_pair", "val_distinct", "val_part_lock"} <= r.keys() for r in vals)
    assert all(r["separation"] > 0 and r["equivariance"] >= 0 for r in log if "total" in r)  # the config's terms
    for name in ("config.yaml", "last.pt", "best.pt", "step_00000040.pt", "train_00000020.png"):
        assert (run_dir / name).exists(), name
    model, cfg, ckpt = load_model(run_dir)
    assert ckpt["step"] == 40 and cfg.num_points == 10 and not model.training
    out = capsys.readouterr().out
    assert "run folder" in out and "objective all, 40 steps" in out
    assert "step 40: validation NME" in out and "distinct, closest" in out and "part lock" in out
    # an explicit run folder that already holds a run is refused, pointing at --resume
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 1) + [f"log.run_dir={run_dir}"]) == 2
    assert f"continue it with --resume {run_dir}" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_sigkill_ends_with_the_same_weights(synthetic_root, tmp_path):
    steps = 16
    common = tiny_train_overrides(synthetic_root, tmp_path / "straight", steps) + [
        "log.checkpoint_every=2", "validation.enabled=false", "log.keep_checkpoints=20"]
    assert train.main(CONFIG + common) == 0
    straight = read_checkpoint(run_dir_of(tmp_path / "straight"))

    killed_out = tmp_path / "killed"
    args = CONFIG + [a.replace(str(tmp_path / "straight"), str(killed_out)) for a in common]
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    # last.pt becomes a second name of a step file just after that file is written: wait for the name
    wait_for(lambda: last_is_at_least(killed_out, 6, steps), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = run_dir_of(killed_out)
    interrupted_at = read_checkpoint(run_dir)["step"]
    assert 6 <= interrupted_at < steps
    assert train.main(["--resume", str(run_dir)]) == 0
    resumed = read_checkpoint(run_dir)
    assert resumed["step"] == steps
    assert_same_weights(resumed["model"], straight["model"])
    assert resumed["optim_fan"]["state"].keys() == straight["optim_fan"]["state"].keys()


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch, capsys):
    original = losses.ReconstructionLoss.forward
    calls = {"n": 0}

    def poisoned(self, outputs, targets):
        calls["n"] += 1
        terms = original(self, outputs, targets)
        if calls["n"] == 3:
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(losses.ReconstructionLoss, "forward", poisoned)
    rc = train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 10) +
                    ["log.checkpoint_every=1", "validation.enabled=false"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 3" in err and "last.pt" in err
    ckpt = read_checkpoint(run_dir_of(tmp_path))
    assert ckpt["step"] == 2
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint(synthetic_root, tmp_path):
    args = CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 100000) + [
        "log.checkpoint_every=100000", "validation.enabled=false", "log.log_every=1"]
    # A shell's background job ignores SIGINT, and so would its children: give the run the default handling.
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: tmp_path.exists() and any(p.stat().st_size > 0 for p in tmp_path.glob("*/log.jsonl")), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err
    ckpt = read_checkpoint(run_dir_of(tmp_path))
    assert ckpt["step"] >= 1


@pytest.mark.slow
def test_max_minutes_validates_saves_and_stops_early(synthetic_root, tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 7))  # each reading of the clock is 7 s after the previous one
    monkeypatch.setattr(utils.training.runtime, "monotonic", lambda: float(next(clock)))
    rc = train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 1000) + [
        "train.max_minutes=0.5", "log.log_every=2", "validation.every=1000", "log.checkpoint_every=1000"])
    assert rc == 0
    run_dir = run_dir_of(tmp_path)
    # the deadline is read at 0 s (30 s budget); checks at steps 2, 4, 6, ... read 7, 14, 21, 28, 35 s
    assert read_checkpoint(run_dir)["step"] == 10
    assert [r["step"] for r in records(run_dir) if "val_nme" in r] == [10]


@pytest.mark.slow
def test_decay_at_budget_brings_the_first_decay_forward_once(synthetic_root, tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 7))  # each reading of the clock is 7 s after the previous one
    monkeypatch.setattr(utils.training.runtime, "monotonic", lambda: float(next(clock)))
    rc = train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 1000) + [
        "train.max_minutes=1", "train.decay_at_budget=0.25", "log.log_every=2", "validation.every=1000",
        "log.checkpoint_every=1000"])
    assert rc == 0
    run_dir = run_dir_of(tmp_path)
    # start read at 0 s (decay at 15 s, stop at 60 s); step 2 reads 7 (stop?) and 14 (decay?), step 4 reads
    # 21 and 28: decay; then only the stop check reads: 35, 42, 49, 56, 63 at steps 6 to 14
    log = records(run_dir)
    assert [r for r in log if r.get("event") == "decay_at_budget"] == [
        {"step": 4, "event": "decay_at_budget", "lr_fan": pytest.approx(1e-4)}]
    lr_by_step = {r["step"]: r["lr_fan"] for r in log if "lr_fan" in r and "event" not in r}
    assert lr_by_step[2] == pytest.approx(1e-3) and lr_by_step[14] == pytest.approx(1e-4)
    ckpt = read_checkpoint(run_dir)
    assert ckpt["step"] == 14 and ckpt["sched_fan"]["last_epoch"] == 3  # synthetic.yaml's step_size
    assert ckpt["optim_gen"]["param_groups"][0]["lr"] == pytest.approx(1e-4)


@pytest.mark.slow
def test_decay_at_budget_without_a_budget_leaves_the_step_schedule_alone(synthetic_root, tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 7))
    monkeypatch.setattr(utils.training.runtime, "monotonic", lambda: float(next(clock)))
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 6) + [
        "train.decay_at_budget=0.5", "log.log_every=2", "validation.enabled=false"]) == 0
    log = records(run_dir_of(tmp_path))
    assert not [r for r in log if "event" in r]
    assert [r["lr_fan"] for r in log if "lr_fan" in r] == [pytest.approx(1e-3)] * 3


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical(synthetic_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 4) + ["validation.enabled=false"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es), batch 8 per process = 16 per step" in proc.stdout
    log = records(run_dir_of(tmp_path))
    assert log[-1] == {"step": 4, "ranks_in_sync": True, "world_size": 2}


def test_user_mistakes_are_one_line(tmp_path, capsys):
    assert train.main(CONFIG + [f"data.root={tmp_path / 'nowhere'}", f"log.out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nowhere" in err and len(err.splitlines()) == 1
    assert train.main(CONFIG + ["train.lr=1"]) == 2
    assert "unknown config key 'train.lr'" in capsys.readouterr().err
    assert train.main(["--resume", str(tmp_path / "missing-run")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert train.main(CONFIG + [f"data.root={tmp_path}", "train.max_minutes=-5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'train.max_minutes': expected >= 0, got -5.0" in err and len(err.splitlines()) == 1
    for override, message in (("loss.separation_weight=-0.1", "'loss.separation_weight': expected >= 0, got -0.1"),
                              ("loss.equivariance_weight=-1", "'loss.equivariance_weight': expected >= 0, got -1"),
                              ("loss.separation_bandwidth=0", "'loss.separation_bandwidth': expected > 0, got 0"),
                              ("loss.separaton_weight=1", "did you mean 'loss.separation_weight'"),
                              ("train.decay_at_budget=1", "'train.decay_at_budget': expected >= 0 and < 1, got 1")):
        assert train.main(CONFIG + [f"data.root={tmp_path}", f"log.out_dir={tmp_path}", override]) == 2, override
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_training_loss_never_reads_annotated_points(synthetic_root):
    """Same images and augmentation, annotated points replaced by NaN: the same loss, term by term."""
    from datasets import build_train_dataset
    from model import build_model
    from utils.run_config import LossConfig, ModelConfig, PerceptualConfig

    loss_cfg = LossConfig(separation_weight=0.05, equivariance_weight=3.2, concentration_weight=0.1,
                          perceptual=PerceptualConfig(enabled=False))
    dataset = build_train_dataset("synthetic", str(synthetic_root), image_size=32, angle=15.0, tight=20,
                                  tight_jitter=4.0, flip=True, skip_bad_images=False, seed=0)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(6)])
    assert torch.isfinite(batch["points_x"]).all()
    unannotated = dict(batch, points_x=torch.full_like(batch["points_x"], float("nan")),
                       points_x_prime=torch.full_like(batch["points_x_prime"], float("nan")))
    torch.manual_seed(0)
    model, _ = build_model(ModelConfig(num_points=10, fan_init="scratch", fan_features=16, hourglass_depth=2,
                                       gen_conv_dim=8, gen_res_blocks=1, temperature=1.0, heatmap_s=2.0))
    loss_fn = losses.build_reconstruction_loss(perceptual=False)
    aux_index = torch.tensor([1, 2, 3, 4, 5, 0])
    values = []
    for b in (batch, unannotated):
        rec = model(b["x"], b["x_prime"], aux_index)
        terms = losses.add_landmark_terms(loss_fn(rec.outputs, rec.targets), rec, b["x_to_x_prime"], 32, loss_cfg)
        values.append({k: v.item() for k, v in terms.items()})
    assert values[0].keys() == {"pixel", "separation", "equivariance", "concentration", "total"}
    assert values[0] == values[1] and all(map(math.isfinite, values[0].values()))


@pytest.mark.slow
def test_loader_workers_survive_passes_and_validations(synthetic_root, tmp_path):
    """Workers are fork()ed anew each pass after validation ran OpenCV in the main process: no deadlock."""
    args = CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 30) + [
        "data.num_workers=2", "validation.every=7"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_checkpoint(run_dir_of(tmp_path))["data_pass"] >= 2


@pytest.mark.slow
def test_celeba_scratch_config_runs_a_few_steps_at_128_px(synthetic_root, tmp_path):
    """The GPU user's scratch config: paper networks at 128 px, no fan_109.pth, the landmark terms on."""
    overrides = [f"data.root={synthetic_root}", "data.dataset=synthetic", f"log.out_dir={tmp_path}",
                 "train.max_steps=2", "train.batch_size=2", "data.num_workers=0", "log.progress=false",
                 "runtime.threads=1", "validation.enabled=false", "loss.perceptual.weights=random"]
    assert train.main(["--config", str(REPO / "configs" / "celeba_scratch.yaml"), *overrides]) == 0
    run_dir = run_dir_of(tmp_path)
    log = [r for r in records(run_dir) if "total" in r]
    assert log[-1]["step"] == 2 and log[-1]["separation"] > 0 and "equivariance" in log[-1]
    ckpt = read_checkpoint(run_dir)
    assert ckpt["config"]["model"]["fan_init"] == "scratch" and ckpt["config"]["data"]["image_size"] == 128
