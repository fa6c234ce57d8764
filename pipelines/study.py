"""The model study (issue 9): does the scan pick the positions worth attending to?

Trains each variant with the same data, seed, steps and token count, then evaluates it:

    scan     the full hybrid (selection ranked by the scan's importance)
    random   the hybrid, selection ranked by a fixed hash of the position (same budget rule)
    strided  the hybrid, selection = the most recent positions on a stride of attn_window
    dense    the hybrid with attn_window = the training window: every earlier key is in the local
             span, nothing is selected (full causal attention, the quality ceiling)
    mamba    Mamba2 only (attention and fusion gate off); the parameters removed are given back
             to the mixer as extra SSD heads (the same number per memory scale), the head count
             whose total parameter count is closest to the hybrid's (the table shows both). Its
             mixer still runs the importance pass (no gradient, unused here): its time is included

Every variant is trained by `genossa.train.loop.train` in its own process (so its peak memory
is its own), into OUT/runs/<variant>_s<seed>/; the exported model is then scored with
`genossa.evaluate`: held-out bits per base on the held-out contig (`evaluate_bpb`, training-
length windows) and long-range recall (`score_recall`) on a benchmark written by
`write_benchmark`, sized to the run: records no longer than the training window, the two key
copies `distance` = window / 2 apart, beyond the local span of every sparse variant.

Outputs in OUT: study.tsv (one row per variant and seed), study.md (the table, the margins of
scan over random/strided, the command), study.png, benchmark files, the runs. A second call
with the same arguments reuses finished runs (a run is finished when its result.json exists;
an interrupted one resumes from its last checkpoint); a finished run of another configuration
(other steps, seed, ...) under the same name is an error, never reused.

    python -m genossa.pipelines.study --out study --preset tiny --steps 200 --window 1024 --device cpu
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import torch

from genossa.config import GenossaConfig, config_to_dict, load_config, parse_override, save_config
from genossa.errors import GenossaError
from genossa.models.config import ModelConfig

VARIANTS = ("scan", "random", "strided", "dense", "mamba")
TSV_NAME, MD_NAME, PNG_NAME = "study.tsv", "study.md", "study.png"
RESULT_NAME = "result.json"
COLUMNS = (
    "variant", "seed", "description", "params", "attention", "selection", "attn_window", "ssm_heads", "steps",
    "tokens", "train_seconds", "wall_seconds", "tokens_per_s", "peak_memory_mib", "load_avg", "final_train_bpb",
    "heldout_bpb", "heldout_targets", "recall_bpb", "recall_background_bpb", "recall_accuracy", "recall_targets",
    "recall_key_hit_rate",
)
# environment of a launcher or of an earlier process group: each training child makes its own
_PROCESS_GROUP_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class StudyConfig:
    """One study: the base run every variant shares and how the variants are evaluated."""

    out_dir: str
    preset: str = "tiny"
    """Preset name or YAML file of the shared base run."""
    overrides: dict = field(default_factory=dict)
    """Dotted overrides of the base run (`--set`), applied before the study's own."""
    steps: int | None = None
    """Optimizer steps of every variant; None = the preset's."""
    window: int | None = None
    """Training window (data.window; stride = window / 2); None = the preset's."""
    micro_batch_size: int | None = None
    device: str = "auto"
    seeds: tuple[int, ...] = (0,)
    """Each seed sets train.seed and data.seed (initial weights and data order)."""
    variants: tuple[str, ...] = VARIANTS
    eval_windows: int | None = 64
    """Held-out windows scored for bits/base (evenly spaced); None = the whole contig."""
    recall_records: int = 32
    recall_distance: int | None = None
    """Distance between the key copies; None = window / 2."""
    recall_key_length: int = 32
    train_recall_records: int = 0
    """Recall records (another seed than the evaluation's) added to every variant's training
    FASTA, so that attention has something to find; 0 = the genome alone."""
    progress: bool = True


@dataclass
class Variant:
    name: str
    description: str
    model: ModelConfig


def base_config(study: StudyConfig, seed: int) -> GenossaConfig:
    """The run every variant starts from: the preset, the user's overrides, then the study's sizes."""
    over = dict(study.overrides)
    if study.steps is not None:
        over["train.steps"] = study.steps
    if study.window is not None:
        over["data.window"] = study.window
        over["data.stride"] = max(1, study.window // 2)
    if study.micro_batch_size is not None:
        over["train.micro_batch_size"] = study.micro_batch_size
    over["train.device"] = study.device
    over["train.seed"] = seed
    over["data.seed"] = seed
    cfg = load_config(study.preset, over)
    if not cfg.data.held_out_contigs:
        raise GenossaError(f"{study.preset}: the study needs data.held_out_contigs (held-out bits/base)")
    # one evaluation and one checkpoint, at the end: the study evaluates the exported model itself
    cfg.train = replace(cfg.train, eval_every=cfg.train.steps, checkpoint_every=cfg.train.steps, keep_last=1,
                        eval_windows=min(cfg.train.eval_windows, 4))
    return cfg


def count_parameters(model: ModelConfig) -> int:
    """Parameters of GenossaLM(model) (a tied head counts once), built on the meta device."""
    from genossa.models.hybrid import GenossaLM

    with torch.device("meta"):
        return GenossaLM(model).num_parameters()


def matched_mamba(model: ModelConfig) -> ModelConfig:
    """Attention off, the mixer widened by whole SSD heads per scale to the hybrid's parameter count.

    ssm_heads moves in steps of lcm(scales, groups), keeping the head dim (kernel-friendly) and the
    depth; of the head counts up to 8x, the one closest to the hybrid's total is taken.
    """
    target = count_parameters(model)
    step = math.lcm(len(model.ssm_scales), model.ssm_groups)
    best = None
    for heads in range(step, 8 * model.ssm_heads + step, step):
        cand = replace(model, attention=False, selection="scan", ssm_heads=heads)
        gap = abs(count_parameters(cand) - target)
        if best is None or gap < best[0]:
            best = (gap, cand)
    return best[1]


def make_variants(model: ModelConfig, window: int, names=VARIANTS) -> list[Variant]:
    base = replace(model, attention=True, selection="scan")
    every = {
        "scan": Variant("scan", "hybrid, scan-informed selection", base),
        "change": Variant("change", "hybrid, selection by the state change alone", replace(base, selection="change")),
        "random": Variant("random", "hybrid, random selection (position hash)", replace(base, selection="random")),
        "strided": Variant("strided", f"hybrid, strided selection (stride {base.attn_window})",
                           replace(base, selection="strided")),
        "dense": Variant("dense", f"hybrid, dense causal attention (window {window})",
                         replace(base, attn_window=max(window, base.attn_window))),
    }
    if "mamba" in names:
        m = matched_mamba(base)
        every["mamba"] = Variant("mamba", f"Mamba2 only ({m.ssm_heads} SSD heads vs {base.ssm_heads})", m)
    unknown = set(names) - set(every)
    if unknown:
        raise GenossaError(f"unknown variants {sorted(unknown)}; choose from {', '.join(every)}")
    return [every[n] for n in names]


# --- training, one child process per variant ------------------------------------------------


def _train_child(config_path: Path, run_dir: Path) -> None:
    """Entry of the training child: train (resuming an interrupted run), then write result.json."""
    from genossa.train.loop import train

    cfg = load_config(config_path)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = train(cfg, run_dir, resume=(run_dir / "config.yaml").exists(), progress=False)
    wall = time.perf_counter() - started
    if torch.cuda.is_available() and cfg.train.device != "cpu":
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak_kind = "process peak RSS"
    result = dict(
        steps=summary.steps, tokens=summary.tokens, train_seconds=summary.seconds, wall_seconds=wall,
        peak_memory_mib=peak, peak_memory_kind=peak_kind, final_train_bpb=summary.final_train_bits_per_base,
        # the machine's 1-min load average around the run: above the run's own threads, another
        # process shared the cores and the times above are inflated
        load_avg=max(load_before, os.getloadavg()[0]),
        export_dir=str(summary.export_dir),
    )
    tmp = run_dir / (RESULT_NAME + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(run_dir / RESULT_NAME)


def train_variant(cfg: GenossaConfig, run_dir: Path, *, progress: bool) -> dict:
    """Train in a fresh process unless run_dir already holds a finished run of this very
    configuration (another configuration there is an error, never silently reused); returns its result."""
    done = run_dir / RESULT_NAME
    config_path = run_dir.parent / f"{run_dir.name}.config.yaml"
    if done.exists():
        if not config_path.exists() or config_to_dict(load_config(config_path)) != config_to_dict(cfg):
            raise GenossaError(f"{run_dir}: a finished run of another configuration (steps, window, seed, ...); "
                               f"use another --out, or remove that run to retrain it")
    else:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir.parent)  # writes config.yaml: renamed at once so that runs never share it
        (run_dir.parent / "config.yaml").replace(config_path)
        env = {k: v for k, v in os.environ.items() if k not in _PROCESS_GROUP_ENV}
        # `-m` would put the working directory first on sys.path: run from a source checkout, its
        # genossa/ (which lacks the installed genossa.pipelines) would shadow the installed package
        env["PYTHONSAFEPATH"] = "1"
        cmd = [sys.executable, "-m", "genossa.pipelines.study", "--train-child", str(config_path), "--out", str(run_dir)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not done.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise GenossaError(f"training {run_dir.name} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(done.read_text())


# --- evaluation ------------------------------------------------------------------------------


def held_out_bed(cfg: GenossaConfig, out_dir: Path) -> tuple[list[str], Path]:
    """The FASTA files of the run and a BED of its held-out contigs (whole records)."""
    from genossa import resources
    from genossa.io.fasta import FastaGenome

    fasta = [str(p) for p in cfg.data.fasta] or [str(resources.ECOLI_FASTA)]
    lengths = FastaGenome(fasta).lengths
    bed = out_dir / "held_out.bed"
    bed.write_text("".join(f"{c}\t0\t{lengths[c]}\n" for c in cfg.data.held_out_contigs))
    return fasta, bed


def _recall_margin(window: int, distance: int, key: int) -> int:
    """Background around the copies so that a record (distance + key + 2 margins) fits one window."""
    return max(0, (window - distance - key) // 4)


def recall_benchmark(study: StudyConfig, window: int, out_dir: Path) -> tuple[Path, int]:
    """Write the benchmark sized to the run (each record fits in one training window)."""
    from genossa.evaluate.longrange import write_benchmark

    distance = study.recall_distance or window // 2
    key = study.recall_key_length
    prefix = out_dir / f"recall_d{distance}"
    if not Path(f"{prefix}.tsv").exists():
        write_benchmark(prefix, study.recall_records, distance=distance, key_length=key,
                        margin=_recall_margin(window, distance, key), seed=12345)
    return prefix, distance


TRAIN_RECALL_SEED = 777  # the evaluation benchmark uses 12345: no evaluation record is trained on


def with_recall_training(cfg: GenossaConfig, study: StudyConfig, distance: int, out_dir: Path) -> GenossaConfig:
    """cfg whose training FASTA also holds study.train_recall_records recall records of the
    evaluation's distance and key length (each record one padded window)."""
    from genossa import resources
    from genossa.evaluate.longrange import write_benchmark

    key = study.recall_key_length
    prefix = out_dir / f"recall_train_d{distance}"
    if not Path(f"{prefix}.tsv").exists():
        write_benchmark(prefix, study.train_recall_records, distance=distance, key_length=key,
                        margin=_recall_margin(cfg.data.window, distance, key), seed=TRAIN_RECALL_SEED)
    fasta = [str(f) for f in cfg.data.fasta] or [str(resources.ECOLI_FASTA)]
    return replace(cfg, data=replace(cfg.data, fasta=(*fasta, f"{prefix}.fa")))


def evaluate_variant(export_dir: Path, cfg: GenossaConfig, fasta: list[str], bed: Path, recall_prefix: Path,
                     eval_windows: int | None, device: str) -> dict:
    from genossa.evaluate.bpb import evaluate_bpb
    from genossa.evaluate.longrange import score_recall

    bpb = evaluate_bpb(export_dir, fasta, regions=bed, window=cfg.data.window, max_windows=eval_windows,
                       batch_size=8, device=device, precision="fp32")
    recall = score_recall(export_dir, recall_prefix, chunk=cfg.data.window, device=device)
    return dict(
        heldout_bpb=bpb.bits_per_base, heldout_targets=bpb.total.forward.targets,
        recall_bpb=recall.recall_bits_per_base, recall_background_bpb=recall.background_bits_per_base,
        recall_accuracy=recall.accuracy, recall_targets=sum(r.targets for r in recall.rows),
        recall_key_hit_rate=recall.key_hit_rate,
    )


# --- the study -------------------------------------------------------------------------------


def run_study(study: StudyConfig, command: str | None = None) -> list[dict]:
    """Train and evaluate every variant and seed; write study.tsv, study.md and study.png."""
    out = Path(study.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    recall_prefix = distance = None
    for seed in study.seeds:
        base = base_config(study, seed)
        variants = make_variants(base.model, base.data.window, study.variants)
        fasta, bed = held_out_bed(base, out)
        if recall_prefix is None:
            recall_prefix, distance = recall_benchmark(study, base.data.window, out)
        if study.train_recall_records:
            base = with_recall_training(base, study, distance, out)
        for v in variants:
            cfg = replace(base, model=v.model)
            name = f"{v.name}_s{seed}"
            run_dir = out / "runs" / name
            _say(study, f"[{name}] training {cfg.train.steps} steps ({count_parameters(v.model):,} parameters)")
            trained = train_variant(cfg, run_dir, progress=study.progress)
            _say(study, f"[{name}] trained in {trained['wall_seconds']:.0f} s; evaluating")
            scores = evaluate_variant(Path(trained["export_dir"]), cfg, fasta, bed, recall_prefix,
                                      study.eval_windows, study.device)
            rows.append(dict(
                variant=v.name, seed=seed, description=v.description, params=count_parameters(v.model),
                attention=v.model.attention, selection=v.model.selection if v.model.attention else "-",
                attn_window=v.model.attn_window if v.model.attention else 0, ssm_heads=v.model.ssm_heads,
                steps=trained["steps"], tokens=trained["tokens"], train_seconds=trained["train_seconds"],
                wall_seconds=trained["wall_seconds"], tokens_per_s=trained["tokens"] / trained["train_seconds"],
                peak_memory_mib=trained["peak_memory_mib"], load_avg=trained["load_avg"], final_train_bpb=trained["final_train_bpb"], **scores,
            ))
            _say(study, f"[{name}] held-out {scores['heldout_bpb']:.4f} bits/base, recall accuracy "
                        f"{scores['recall_accuracy']:.3f}")
    write_tsv(rows, out / TSV_NAME)
    peak_kind = json.loads((out / "runs" / _run_name(rows[0]) / RESULT_NAME).read_text())["peak_memory_kind"]
    write_markdown(rows, out / MD_NAME, study=study, base=base_config(study, study.seeds[0]), distance=distance,
                   command=command, peak_kind=peak_kind)
    plot_study(rows, out, out / PNG_NAME)
    return rows


def _run_name(row: dict) -> str:
    return f"{row['variant']}_s{row['seed']}"


def _say(study: StudyConfig, message: str) -> None:
    if study.progress:
        print(message, flush=True)


def write_tsv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})


def read_tsv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _mean(rows: list[dict], variant: str, key: str) -> float:
    vals = [float(r[key]) for r in rows if r["variant"] == variant]
    return sum(vals) / len(vals)


def margins(rows: list[dict]) -> list[str]:
    """Plain sentences: scan against each positional ablation, the ceiling and Mamba2 only."""
    names = {r["variant"] for r in rows}
    if "scan" not in names:
        return []
    lines = []
    s_bpb, s_acc = _mean(rows, "scan", "heldout_bpb"), _mean(rows, "scan", "recall_accuracy")
    for other in ("random", "strided", "dense", "mamba"):
        if other not in names:
            continue
        d_bpb = _mean(rows, other, "heldout_bpb") - s_bpb
        d_acc = s_acc - _mean(rows, other, "recall_accuracy")
        lines.append(
            f"scan vs {other}: held-out bits/base {'lower' if d_bpb > 0 else 'higher'} by {abs(d_bpb):.5f} "
            f"({other} {_mean(rows, other, 'heldout_bpb'):.5f}, scan {s_bpb:.5f}); recall accuracy "
            f"{'higher' if d_acc > 0 else 'lower'} by {abs(d_acc):.3f}"
        )
    return lines


def write_markdown(rows: list[dict], path: Path, *, study: StudyConfig, base: GenossaConfig, distance: int,
                   command: str | None, peak_kind: str) -> None:
    seeds = sorted({int(r["seed"]) for r in rows})
    lines = [
        "# genossa model study: does the scan pick the positions worth attending to?", "",
        f"- date: {date.today().isoformat()}; machine: {platform.machine()} {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() and study.device != "cpu" else ""),
        f"- base run: preset `{study.preset}`, {base.train.steps} steps x {base.train.micro_batch_size * base.train.grad_accum}"
        f" windows x {base.data.window:,} bases, seeds {seeds}, precision {base.train.precision}",
        f"- held-out bits/base: contig(s) {', '.join(base.data.held_out_contigs)}, "
        f"{'all' if study.eval_windows is None else study.eval_windows} windows of {base.data.window:,} bases",
        f"- long-range recall: {study.recall_records} records, key of {study.recall_key_length} bases repeated "
        f"{distance:,} bases later (local span of the sparse variants: {base.model.attn_window} + "
        f"{base.model.attn_chunk}); accuracy = argmax on the copy (chance 0.25)",
        f"- key hit rate: fraction of the recall copy's query chunks (over attention blocks) whose attention "
        f"(selected keys or local span) reaches a base of the key's first copy"
        + (f"; training FASTA: the genome + {study.train_recall_records} recall records of another seed"
           if study.train_recall_records else ""),
        f"- peak memory: {peak_kind} of the training process; load: the machine's 1-min load average "
        f"around each training run (higher than the run's own threads = shared cores, inflated times)",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines += ["", "| variant | params | steps | tokens | train s | tokens/s | peak MiB | load | held-out bits/base "
                  "| recall bits/base | recall accuracy | key hit rate |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = r["variant"] + (f" (seed {r['seed']})" if len(seeds) > 1 else "")
        lines.append(
            f"| {label}: {r['description']} | {int(r['params']):,} | {r['steps']} | {int(r['tokens']):,} "
            f"| {float(r['train_seconds']):.0f} | {float(r['tokens_per_s']):,.0f} | {float(r['peak_memory_mib']):,.0f} "
            f"| {float(r['load_avg']):.1f} "
            f"| {float(r['heldout_bpb']):.4f} | {float(r['recall_bpb']):.4f} | {float(r['recall_accuracy']):.3f} "
            f"| {float(r.get('recall_key_hit_rate', 'nan')):.3f} |"
        )
    found = margins(rows)
    if found:
        lines += ["", "## Margins (means over seeds)", ""] + [f"- {m}" for m in found]
    path.write_text("\n".join(lines) + "\n")


def plot_study(rows: list[dict], run_root: Path, path: Path) -> None:
    """Held-out bits/base, recall accuracy, training time and peak memory per variant, and the
    training curves (train bits/base against step) of every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genossa.train.metrics import read_metrics

    labels = [r["variant"] + (f"/s{r['seed']}" if len({x["seed"] for x in rows}) > 1 else "") for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), dpi=110)
    panels = [("heldout_bpb", "held-out bits/base (lower is better)"),
              ("recall_accuracy", "long-range recall accuracy (chance 0.25)"),
              ("recall_bpb", "recall bits/base (2 = no recall)"),
              ("train_seconds", "training time (s)"), ("peak_memory_mib", "peak memory (MiB)")]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, title) in zip(axes.flat, panels):
        vals = [float(r[key]) for r in rows]
        ax.bar(range(len(rows)), vals, color=[colors[i % len(colors)] for i in range(len(rows))])
        ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        if key == "heldout_bpb":
            lo, hi = min(vals), max(vals)
            pad = max(1e-3, (hi - lo) * 0.5)
            ax.set_ylim(lo - pad, hi + pad)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.5g}", (i, v), ha="center", va="bottom", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    ax = axes.flat[-1]
    for i, (r, label) in enumerate(zip(rows, labels)):
        run = run_root / "runs" / label.replace("/s", "_s")
        points = [(m["step"], m["bits_per_base"]) for m in read_metrics(run) if m["split"] == "train"]
        if points:
            ax.plot(*zip(*points), label=label, color=colors[i % len(colors)], linewidth=1)
    ax.set_title("train bits/base", fontsize=10)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m genossa.pipelines.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="Output folder (reused: finished runs are not retrained).")
    p.add_argument("--preset", default="tiny", help="Preset name or YAML file of the base run.")
    p.add_argument("--steps", type=int, help="Training steps of every variant [default: the preset's].")
    p.add_argument("--window", type=int, help="Training window in bases [default: the preset's].")
    p.add_argument("--micro-batch", type=int, help="Windows per step [default: the preset's].")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seeds", default="0", help="Comma-separated seeds (each: train.seed and data.seed).")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated subset of {','.join(VARIANTS)}.")
    p.add_argument("--eval-windows", type=int, default=64, help="Held-out windows scored (0 = all).")
    p.add_argument("--recall-records", type=int, default=32)
    p.add_argument("--recall-distance", type=int, help="Distance of the key copies [default: window / 2].")
    p.add_argument("--train-recall-records", type=int, default=0,
                   help="Recall records (another seed) added to the training FASTA of every variant.")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Override a key of the base run, e.g. train.lr=0.002 (repeatable).")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--train-child", help=argparse.SUPPRESS)  # internal: one training process
    args = p.parse_args(argv)
    if args.train_child:
        _train_child(Path(args.train_child), Path(args.out))
        return
    study = StudyConfig(
        out_dir=args.out, preset=args.preset, overrides=dict(parse_override(o) for o in args.overrides),
        steps=args.steps, window=args.window, micro_batch_size=args.micro_batch, device=args.device,
        seeds=tuple(int(s) for s in args.seeds.split(",")), variants=tuple(args.variants.split(",")),
        eval_windows=args.eval_windows or None, recall_records=args.recall_records,
        recall_distance=args.recall_distance, train_recall_records=args.train_recall_records,
        progress=not args.quiet,
    )
    command = shlex.join(["python", "-m", "genossa.pipelines.study", *(sys.argv[1:] if argv is None else argv)])
    run_study(study, command)
    if study.progress:
        print(Path(study.out_dir, MD_NAME).read_text())


if __name__ == "__main__":
    main()
