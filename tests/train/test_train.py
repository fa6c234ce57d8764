"""`genossa train` on the CPU: ZeRO stages agree, kill-and-resume is exact, two processes train,
checkpoints hold only tensors and plain data, a NaN loss stops cleanly, the run directory is complete.

Runs go through the installed `genossa` script in subprocesses with one thread each, so an
uninterrupted run and a killed-then-resumed one compute with the same arithmetic.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genossa.config import load_config
from genossa.models.hybrid import GenossaLM
from genossa.train.checkpoint import CHECKPOINT_DIRNAME
from genossa.train.deepspeed_setup import _deepspeed_state_classes
from genossa.train.metrics import read_metrics

# a few-second run: tiny model, 256-base windows, 2 per micro-batch
SMALL = [
    "data.window=256", "data.stride=256", "train.micro_batch_size=2", "train.log_every=1",
    "train.eval_every=3", "train.eval_windows=2", "train.warmup_steps=2", "train.device=cpu",
]


def _genossa() -> str:
    beside = Path(sys.executable).parent / "genossa"
    return str(beside) if beside.exists() else shutil.which("genossa")


def _env(tmp_path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "torch_extensions")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _train_cmd(out, *settings, resume=False):
    cmd = [_genossa(), "train", "--config", "tiny", "--out", str(out), "--quiet"]
    for s in (*SMALL, *settings):
        cmd += ["--set", s]
    return cmd + (["--resume"] if resume else [])


def _run(cmd, tmp_path, timeout=300):
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _train_losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r["split"] == "train"}


@pytest.mark.slow
def test_zero_stages_give_the_same_losses(tmp_path):
    losses = {}
    for stage in (0, 1, 2, 3):
        out = tmp_path / f"zero{stage}"
        _run(_train_cmd(out, "train.steps=3", f"train.zero_stage={stage}", "train.checkpoint_every=3"), tmp_path)
        losses[stage] = _train_losses(out)
        assert sorted(losses[stage]) == [1, 2, 3]
    for stage in (1, 2, 3):
        for step, loss in losses[0].items():
            assert losses[stage][step] == pytest.approx(loss, rel=1e-5), (stage, step)


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    settings = ("train.steps=12", "train.checkpoint_every=4", "train.keep_last=2")
    straight = tmp_path / "straight"
    _run(_train_cmd(straight, *settings), tmp_path)
    expected = _train_losses(straight)
    assert sorted(expected) == list(range(1, 13))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, *settings), env=_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    latest = killed / CHECKPOINT_DIRNAME / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step_00000004":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = max(_train_losses(killed))
    assert stopped_at < 12

    _run(_train_cmd(killed, *settings, resume=True), tmp_path)
    resumed = _train_losses(killed)  # the metrics file keeps the killed run's lines too
    assert sorted(resumed) == list(range(1, 13))
    for step in range(1, 13):
        assert resumed[step] == expected[step], f"step {step}: {resumed[step]} != {expected[step]}"
    # keep-last-2 and no half-written checkpoint left behind
    tags = sorted(p.name for p in (killed / CHECKPOINT_DIRNAME).iterdir() if p.is_dir())
    assert tags == ["step_00000008", "step_00000012"]

    # a time limit stops after the first step past it, with a checkpoint off the regular schedule and
    # an export; --resume then continues to the same losses
    limited = tmp_path / "limited"
    first = _run(_train_cmd(limited, *settings) + ["--time-limit", "0"], tmp_path)
    assert "stopped by the time limit: trained 1 steps" in first.stdout
    assert (limited / CHECKPOINT_DIRNAME / "latest").read_text().strip() == "step_00000001"
    assert (limited / "model" / "model.safetensors").exists()
    _run(_train_cmd(limited, *settings, resume=True), tmp_path)
    assert _train_losses(limited) == expected


@pytest.mark.slow
def test_two_processes_train_and_checkpoint(tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", *_train_cmd(out, "train.steps=2", "train.checkpoint_every=2")]
    _run(cmd, tmp_path)
    folder = out / CHECKPOINT_DIRNAME / "step_00000002"
    assert (folder / "COMPLETE").exists()
    assert (folder / "genossa_rank0.pt").exists() and (folder / "genossa_rank1.pt").exists()
    records = [r for r in read_metrics(out) if r["split"] == "train"]
    assert [r["step"] for r in records] == [1, 2]
    # two ranks of 2 windows x 256 tokens each per step
    assert records[0]["tokens"] == 2 * 2 * 256
    GenossaLM.from_pretrained(out / "model")


@pytest.mark.slow
def test_deepspeed_launcher_trains_two_processes(tmp_path):
    """The README's `deepspeed --num_gpus N $(which genossa) train ...`: the launcher puts
    --local_rank=N before the subcommand (here 2 CPU processes over gloo)."""
    out = tmp_path / "ds"
    deepspeed = Path(sys.executable).parent / "deepspeed"
    env = dict(_env(tmp_path), DS_ACCELERATOR="cpu")
    cmd = [str(deepspeed), "--num_gpus", "2", _genossa(), *_train_cmd(out, "train.steps=2")[1:]]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    records = [r for r in read_metrics(out) if r["split"] == "train"]
    assert [r["tokens"] for r in records] == [2 * 2 * 256, 2 * 2 * 2 * 256]  # 2 ranks x 2 windows x 256
    GenossaLM.from_pretrained(out / "model")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("run")
    out = tmp_path / "run"
    # also exercises recomputing some blocks (tiny has 2) and the one-step profile
    _run(_train_cmd(out, "train.steps=3", "train.checkpoint_every=3", "train.activation_checkpointing=1",
                    "train.profile_step=2"), tmp_path)
    return out


def test_run_directory_is_complete(finished_run):
    out = finished_run
    for name in ("config.yaml", "metrics.jsonl", "loss_curves.png", "model/config.json", "model/model.safetensors"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(out / "config.yaml").train.steps == 3
    train = [r for r in read_metrics(out) if r["split"] == "train"]
    for key in ("loss", "bits_per_base", "tokens_per_s", "tokens_per_s_per_device", "mfu", "peak_memory_mib", "lr"):
        assert all(key in r and r[key] == r[key] for r in train), key
    assert 0 < train[-1]["mfu"] < 1
    assert [r["step"] for r in read_metrics(out) if r["split"] == "eval"] == [3]
    model = GenossaLM.from_pretrained(out / "model")
    assert model.config == load_config(out / "config.yaml").model
    profile = (out / "profile.txt").read_text()
    assert profile.startswith("step 2: ") and "aten::mm" in profile and "top ops by their own CPU time" in profile


def test_checkpoints_hold_only_tensors_and_plain_data(finished_run):
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in _deepspeed_state_classes()}
    files = list((finished_run / CHECKPOINT_DIRNAME).rglob("*.pt"))
    assert files
    for path in files:
        assert set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))) <= allowed, path
        with torch.serialization.safe_globals(_deepspeed_state_classes()):
            torch.load(path, weights_only=True)


def test_a_checkpoint_with_code_is_refused(finished_run, tmp_path):
    run = tmp_path / "tampered"
    shutil.copytree(finished_run, run)
    sidecar = run / CHECKPOINT_DIRNAME / "step_00000003" / "genossa_rank0.pt"
    state = torch.load(sidecar, weights_only=True)
    state["extra"]["payload"] = _Payload()
    torch.save(state, sidecar)
    result = subprocess.run(_train_cmd(run, "train.steps=4", "train.checkpoint_every=3", resume=True),
                            capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert result.returncode == 1
    assert "refused to load a checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pwned").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.getcwd()) / 'pwned'}",))


def test_existing_run_needs_resume(finished_run, tmp_path):
    result = subprocess.run(_train_cmd(finished_run, "train.steps=3"), capture_output=True, text=True,
                            env=_env(tmp_path), timeout=300)
    assert result.returncode == 1
    assert "already holds a training run; pass --resume" in result.stderr


def test_nan_loss_stops_naming_the_step(tmp_path, monkeypatch):
    from genossa.config import parse_override
    from genossa.errors import GenossaError
    from genossa.train import loop, objective

    calls = {"n": 0}
    real_forward = objective.TrainingObjective.forward

    def poisoned(self, tokens, weights):
        loss, bits, targets = real_forward(self, tokens, weights)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                loss = loss * float("nan")
        return loss, bits, targets

    monkeypatch.setattr(objective.TrainingObjective, "forward", poisoned)
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(29500 + os.getpid() % 1000)).items():
        monkeypatch.setenv(key, value)
    cfg = load_config("tiny", dict(parse_override(s) for s in (*SMALL, "train.steps=5", "train.checkpoint_every=2")))
    with pytest.raises(GenossaError, match=r"non-finite loss \(nan\) at step 3; stopped\. Last good checkpoint: .*step_00000002"):
        loop.train(cfg, tmp_path / "nan", progress=False)
    latest = (tmp_path / "nan" / CHECKPOINT_DIRNAME / "latest").read_text().strip()
    assert latest == "step_00000002"
