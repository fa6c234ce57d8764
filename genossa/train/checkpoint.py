"""Training checkpoints: complete-or-absent, keep-last-N, resumable, loaded without unpickling code.

Layout under `<run>/checkpoints/`:

    step_00000100/            one DeepSpeed tag (model, optimizer, scheduler states)
        genossa_rank0.pt      per-rank resume state: step, data position, RNG states
        COMPLETE              written last: a tag without it is a half-written checkpoint
    latest                    the newest complete tag, replaced atomically (os.replace)

A run killed at any moment therefore resumes from `latest`, which only ever names a tag whose
files were all written. Every file is read with torch.load(weights_only=True): tensors and
plain containers only, never arbitrary pickled objects.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from genossa.errors import GenossaError

CHECKPOINT_DIRNAME = "checkpoints"
_TAG = re.compile(r"^step_(\d{8})$")


def tag_of(step: int) -> str:
    return f"step_{step:08d}"


@dataclass
class ResumeState:
    step: int
    """Optimizer steps completed."""
    data: dict
    """The training dataset's state_dict (exact window position)."""
    extra: dict
    """Counters the loop carries on (tokens seen, ...)."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class CheckpointManager:
    def __init__(self, run_dir: str | Path, *, rank: int, keep_last: int):
        self.root = Path(run_dir) / CHECKPOINT_DIRNAME
        self.rank = rank
        self.keep_last = keep_last

    def latest_tag(self) -> str | None:
        path = self.root / "latest"
        if not path.exists():
            return None
        tag = path.read_text().strip()
        if not (self.root / tag / "COMPLETE").exists():
            raise GenossaError(f"{path}: names checkpoint {tag!r}, which is incomplete or missing")
        return tag

    def save(self, engine, state: ResumeState) -> Path:
        """Write a checkpoint collectively (every rank calls this); returns its folder."""
        import torch.distributed as dist

        tag = tag_of(state.step)
        folder = self.root / tag
        if self.rank == 0 and folder.exists():  # a half-written attempt at this step
            shutil.rmtree(folder)
        _barrier()
        engine.save_checkpoint(str(self.root), tag=tag, save_latest=False)
        sidecar = {"step": state.step, "data": state.data, "extra": state.extra, "rng": rng_state()}
        _atomic_torch_save(sidecar, folder / f"genossa_rank{self.rank}.pt")
        _barrier()
        if self.rank == 0:
            (folder / "COMPLETE").write_text(f"{state.step}\n")
            _atomic_write(self.root / "latest", tag + "\n")
            self._prune(keep=tag)
        if dist.is_initialized():
            dist.barrier()
        return folder

    def load(self, engine, tag: str) -> ResumeState:
        """Restore engine (model, optimizer, scheduler) and this rank's RNG; return the rest."""
        folder = self.root / tag
        sidecar_path = folder / f"genossa_rank{self.rank}.pt"
        if not sidecar_path.exists():
            raise GenossaError(
                f"{folder}: no resume state for rank {self.rank}; was the run saved with a different number of processes?"
            )
        try:
            load_path, _ = engine.load_checkpoint(
                str(self.root), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
            )
            sidecar = torch.load(sidecar_path, weights_only=True)
        except pickle.UnpicklingError as err:
            lines = str(err).strip().splitlines()
            reason = next((line.strip() for line in lines if "GLOBAL" in line), lines[0]).split(" was not")[0]
            raise GenossaError(f"{folder}: refused to load a checkpoint holding more than tensors and plain data ({reason})") from None
        if load_path is None:
            raise GenossaError(f"{folder}: DeepSpeed could not load this checkpoint")
        set_rng_state(sidecar["rng"])
        return ResumeState(step=int(sidecar["step"]), data=sidecar["data"], extra=sidecar["extra"])

    def _prune(self, keep: str) -> None:
        """Delete checkpoints beyond the newest `keep_last`, and half-written ones."""
        tags = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _TAG.match(p.name))
        complete = [t for t in tags if (self.root / t / "COMPLETE").exists()]
        doomed = set(complete[: max(0, len(complete) - self.keep_last)])
        doomed |= {t for t in tags if t not in complete and t != keep}
        for tag in doomed:
            shutil.rmtree(self.root / tag, ignore_errors=True)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
