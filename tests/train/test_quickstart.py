"""The README's main job: `genossa quickstart` trains the tiny preset on the bundled genome on the
CPU, beats a uniform model (2 bits per base) on the held-out contig, then embeds and scores."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genossa.train.metrics import read_metrics


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 2-core machine: ~285 s alone on two threads, ~520 s on one beside a test worker
def test_quickstart_trains_embeds_and_scores(tmp_path):
    exe = Path(sys.executable).parent / "genossa"
    exe = str(exe) if exe.exists() else shutil.which("genossa")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    if "PYTEST_XDIST_WORKER" in env:  # beside other test workers: one thread (two oversubscribed the cores, 3x slower)
        env["OMP_NUM_THREADS"] = "1"
    started = time.perf_counter()
    result = subprocess.run([exe, "quickstart", "--out", str(tmp_path / "qs")], capture_output=True, text=True,
                            env=env, timeout=1100)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"quickstart took {seconds:.0f} s")
    held_out = [r["bits_per_base"] for r in read_metrics(tmp_path / "qs") if r["split"] == "eval"]
    assert held_out and held_out[-1] < 2.0
    assert f"held-out bits/base {held_out[-1]:.4f}" in result.stdout
    out = tmp_path / "qs"
    assert "inference model: " in result.stdout and (out / "model" / "model.safetensors").exists()
    # then embedding and scoring ran on the trained model
    assert (out / "embeddings.zarr").is_dir() and (out / "embeddings.importance.bedgraph").exists()
    assert (out / "variants.scored.vcf.gz").exists() and (out / "variants.scored.vcf.gz.tbi").exists()
    assert "scored 50 of 52 ALT alleles" in result.stdout
