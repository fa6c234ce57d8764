"""`genossa embed` through the installed console script: a run killed with SIGKILL and rerun
gives the same store as an uninterrupted run; bad input is a one-line error that leaves
nothing behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from genossa.io.zarr_store import PROGRESS_FILE, partial_path
from genossa.models import GenossaLM, tiny

# one thread in every process, so that all runs compute with the same reduction order
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _exe() -> str:
    beside = Path(sys.executable).parent / "genossa"
    exe = str(beside) if beside.exists() else shutil.which("genossa")
    assert exe, "the genossa console script is not installed"
    return exe


def _genossa(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([_exe(), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return GenossaLM(tiny()).save_pretrained(tmp_path_factory.mktemp("model") / "model")


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_kill_mid_run_then_rerun_equals_an_uninterrupted_run(checkpoint, ecoli_fasta, tmp_path):
    options = ["--checkpoint", checkpoint, "--fasta", ecoli_fasta, "--window", 1024, "--stride", 12288,
               "--chunk", 256, "--batch-size", 4, "--device", "cpu", "--per-base", "--quiet"]
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    ref, out = tmp_path / "ref" / "store.zarr", tmp_path / "killed" / "store.zarr"
    done = _genossa("embed", *options, "--out", ref, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    # the same job through the Python API, durable after every batch, killed once some rows are on disk
    code = (
        "from genossa.embed import embed_genome; "
        f"embed_genome({str(checkpoint)!r}, {str(ecoli_fasta)!r}, {str(out)!r}, window=1024, stride=12288, "
        "chunk=256, batch_size=4, device='cpu', per_base=True, progress=False, flush_seconds=0)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, cwd=tmp_path)
    progress = partial_path(out) / PROGRESS_FILE
    windows_done, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.exists():
            windows_done = json.loads(progress.read_text())["windows_done"]
            if windows_done >= 8:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    total = zarr.open_group(str(ref), mode="r")["start"].shape[0]
    assert 8 <= windows_done < total
    assert not out.exists() and partial_path(out).exists()  # nothing under the final name yet

    other = _genossa("embed", *options, "--pool", "max", "--out", out, cwd=tmp_path)
    assert other.returncode == 1 and "an interrupted run with other settings (pool)" in other.stderr
    again = _genossa("embed", *options, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resumed after" in again.stdout
    assert not partial_path(out).exists()

    a, b = zarr.open_group(str(ref), mode="r"), zarr.open_group(str(out), mode="r")
    assert sorted(a.array_keys()) == sorted(b.array_keys())
    for name in a.array_keys():
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
    attrs_a["genossa"].pop("command"), attrs_b["genossa"].pop("command")
    assert attrs_a == attrs_b and attrs_b["complete"] is True
    # byte for byte: every chunk and shard file, the arrays' metadata and the bedGraph
    tree_a, tree_b = _tree(ref), _tree(out)
    tree_a.pop("zarr.json"), tree_b.pop("zarr.json")  # the root holds the command line
    assert tree_a.keys() == tree_b.keys() and tree_a == tree_b
    assert (tmp_path / "ref" / "store.importance.bedgraph").read_bytes() == \
        (tmp_path / "killed" / "store.importance.bedgraph").read_bytes()


def _bad_checkpoint(tmp: Path) -> Path:
    d = tmp / "bad_model"
    d.mkdir()
    (d / "config.json").write_text("{\"d_model\": 128}")
    (d / "model.safetensors").write_bytes(b"not safetensors")
    return d


@pytest.mark.parametrize("case, expected", [
    ("missing checkpoint", "not an exported genossa model (no config.json)"),
    ("bad checkpoint", "cannot load the model"),
    ("missing fasta", "nope.fa: FASTA file not found"),
    ("bed contig absent", "line 1: unknown contig 'chrZ'"),
    ("existing output", "is already there; pass --overwrite to replace it"),
    ("unwritable path", "cannot write the store"),
])
def test_bad_input_is_one_line_and_leaves_nothing(case, expected, checkpoint, ecoli_fasta, tmp_path):
    ckpt, fasta, out = checkpoint, ecoli_fasta, tmp_path / "out.zarr"
    extra = []
    if case == "missing checkpoint":
        ckpt = tmp_path / "no_model"
    elif case == "bad checkpoint":
        ckpt = _bad_checkpoint(tmp_path)
    elif case == "missing fasta":
        fasta = tmp_path / "nope.fa"
    elif case == "bed contig absent":
        (tmp_path / "r.bed").write_text("chrZ\t0\t100\n")
        extra = ["--regions", tmp_path / "r.bed"]
    elif case == "existing output":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "unwritable path":
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "out.zarr"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _genossa("embed", "--checkpoint", ckpt, "--fasta", fasta, *extra, "--window", 512,
                      "--device", "cpu", "--quiet", "--out", out, cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genossa: error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no .partial, no bedGraph
    if case == "existing output":
        assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
