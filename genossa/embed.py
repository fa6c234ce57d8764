"""`genossa embed`: Matryoshka embeddings of a genome (or BED regions) into a Zarr store.

The job, in order: tile the genome or the BED intervals into windows (the planning of
genossa.data.windows: `--window`, `--stride`, `--last` tail policy; each BED line is tiled on
its own, so a region shorter than the window gives one window of exactly that region), run
the model over batches of windows (a causal model: any lengths, shorter ones right-padded;
a bidirectional one: equal lengths only), and write per window

- the pooled embedding (`pool`: mean | max | last over the window's bases) of the widest
  requested Matryoshka prefix: a reader takes `embedding[:, :64]` for the 64-dim scale;
- the per-base scan importance (always) and, with `per_base`, the per-base embeddings.

Each window is embedded on its own (no context from its neighbours). A causal model runs
each window with the streaming, state-carrying inference (models/streaming.py) in pieces of
`chunk` bases, so memory is set by batch x chunk, never by the window or the genome; the
writer keeps at most ~`flush_bytes` of finished windows before writing them. A bidirectional
model sees each window in one pass.

Importance: the mean over the model's blocks of the hierarchical importance that the sparse
attention selects keys by (`combine_scales` of the mixer's per-scale ||h_t|| and
||h_t - h_{t-1}||: sum over scales of log(norm + change)). It is read from the mixers' outputs
with forward hooks, so the model and its numerics are untouched.

rc_average: each window is also embedded as its reverse complement; the two strands are
pooled separately and the pooled vectors averaged, and per-base values (embeddings,
importance) are averaged base by base. The result is the same for a sequence and its reverse
complement (strand "." in the store).

Output: see genossa.io.zarr_store for the layout, and genossa.io.bedgraph for the bedGraph of
the importance track. The store is resumable (rerun the same command after an interruption)
and only appears under its name once complete.
"""
from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genossa import __version__
from genossa.config import EmbedConfig, config_hash
from genossa.data.windows import encode_window, plan_windows
from genossa.errors import GenossaError
from genossa.io import zarr_store
from genossa.io.bed import read_bed
from genossa.io.bedgraph import write_importance_bedgraph
from genossa.inference import autocast as inference_autocast
from genossa.inference import for_precision, resolve_precision
from genossa.io.fasta import FastaGenome
from genossa.sequence import alphabet
from genossa.sequence.intervals import Interval

DEFAULT_CHUNK = 16384
"""Bases per streaming step of a causal model (rounded to its attn_chunk)."""


@dataclass
class EmbedSummary:
    path: Path
    bedgraph: Path | None
    windows: int
    bases: int
    resumed_at: int
    """Windows already done by an interrupted run (0 for a fresh run)."""
    seconds: float
    bases_per_second: float
    """Bases embedded by this call per second (model and writing, both strands counted once)."""


class _Sequences:
    """Window text from a FastaGenome: random access for indexed files, a forward-only
    record stream for plain gzip (windows come in contig order, so one pass suffices)."""

    def __init__(self, genome: FastaGenome):
        self.genome = genome
        self._streams: dict[int, object] = {}
        self._current: dict[int, tuple[str, str]] = {}

    def fetch(self, contig: str, start: int, end: int) -> str:
        info = self.genome.contigs[contig]
        if self.genome.indexed(info.file):
            return self.genome.fetch(contig, start, end)
        if self._current.get(info.file, ("",))[0] != contig:
            stream = self._streams.setdefault(info.file, self.genome.stream(info.file))
            for name, seq in stream:  # type: ignore[attr-defined]
                if name == contig:
                    self._current[info.file] = (name, seq)
                    break
            else:
                raise GenossaError(f"{self.genome.paths[info.file]}: record {contig!r} not found while streaming")
        return self._current[info.file][1][start:end]


def _file_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size}


def _parse_dims(dims: Sequence[int] | str | None) -> tuple[int, ...]:
    if dims is None or dims == "" or dims == ():
        return ()
    if isinstance(dims, str):
        try:
            dims = [int(d) for d in dims.replace(" ", "").split(",") if d]
        except ValueError:
            raise GenossaError(f"--dims {dims!r}: expected comma-separated integers, e.g. 64,256") from None
    return tuple(sorted(set(int(d) for d in dims)))


def _equivalent_command(checkpoint, fasta, out, regions, cfg: EmbedConfig, device, bedgraph, bedgraph_bin) -> str:
    """The `genossa embed` command line that does what an API call did."""
    args = ["genossa", "embed", "--checkpoint", str(checkpoint)]
    for f in fasta:
        args += ["--fasta", str(f)]
    if regions:
        args += ["--regions", str(regions)]
    args += ["--window", str(cfg.window), "--stride", str(cfg.step), "--last", cfg.last, "--pool", cfg.pool,
             "--batch-size", str(cfg.batch_size), "--device", str(device), "--precision", cfg.precision,
             "--dtype", cfg.dtype]
    if cfg.dims:
        args += ["--dims", ",".join(map(str, cfg.dims))]
    if cfg.chunk:
        args += ["--chunk", str(cfg.chunk)]
    if cfg.per_base:
        args.append("--per-base")
    if cfg.rc_average:
        args.append("--rc-average")
    if bedgraph is None:
        args.append("--no-bedgraph")
    else:
        args += ["--bedgraph", str(bedgraph), "--bedgraph-bin", str(bedgraph_bin)]
    args += ["--out", str(out)]
    return shlex.join(args)


def default_bedgraph_path(out: Path) -> Path:
    stem = out.name[: -len(".zarr")] if out.name.endswith(".zarr") else out.name
    return out.with_name(stem + ".importance.bedgraph")


class _ImportanceHooks:
    """Collects each block's importance [B, T] from its mixer's output during forward calls."""

    def __init__(self, model):
        from genossa.ops.sparse_attention import combine_scales

        self._combine = combine_scales
        self.values: list[torch.Tensor] = []
        self.handles = [block.mixer.register_forward_hook(self._hook) for block in model.blocks]

    def _hook(self, module, inputs, output) -> None:
        self.values.append(self._combine(output.norm, output.change)[0])

    def take(self) -> torch.Tensor:
        """[B, T] mean over blocks of the importances of the last forward call."""
        out = torch.stack(self.values).mean(0)
        self.values = []
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def _run_windows(model, tokens: torch.Tensor, lengths: torch.Tensor, *, width: int, pool: str, chunk: int | None,
                 per_base: bool, hooks: _ImportanceHooks, autocast
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """tokens [B, L] (window b holds lengths[b] <= L bases, then PAD) -> pooled [B, width] fp32
    over each window's own bases, per-base [B, L, width] fp32 (CPU) or None, importance [B, L] fp32
    (on the device). Streaming in pieces of `chunk` bases when chunk < L."""
    from genossa.models.streaming import iter_stream

    L = tokens.shape[1]
    lengths = lengths.to(tokens.device)
    with autocast():
        if chunk is None or chunk >= L:
            outs = iter([model(tokens)])
        else:
            outs = iter_stream(model, tokens.split(chunk, dim=1))
        acc = None
        pieces, imps = [], []
        offset = 0
        for out in outs:
            emb = out.embeddings[..., :width].float()  # [B, l, width]
            imps.append(hooks.take().float())  # stays on the device: one copy per batch, no sync per chunk
            if per_base:
                pieces.append(emb.cpu())
            pos = offset + torch.arange(emb.shape[1], device=emb.device)
            valid = (pos < lengths[:, None])[..., None]  # [B, l, 1]: the window's bases, not its padding
            if pool == "mean":
                s = (emb * valid).sum(1, dtype=torch.float64)
                acc = s if acc is None else acc + s
            elif pool == "max":
                m = emb.masked_fill(~valid, -torch.inf).amax(1)
                acc = m if acc is None else torch.maximum(acc, m)
            elif pool == "last":
                last = (lengths - 1 - offset).clamp(0, emb.shape[1] - 1)  # [B]
                here = emb[torch.arange(emb.shape[0], device=emb.device), last]
                ends_here = ((lengths - 1 >= offset) & (lengths - 1 < offset + emb.shape[1]))[:, None]
                acc = here if acc is None else torch.where(ends_here, here, acc)
            else:
                raise ValueError(f"unknown pool {pool!r}")
            offset += emb.shape[1]
    pooled = (acc / lengths[:, None] if pool == "mean" else acc).float()
    return pooled, (torch.cat(pieces, 1) if per_base else None), torch.cat(imps, 1)


def _batches(lengths: np.ndarray, batch_size: int, *, pad: bool) -> list[tuple[int, int]]:
    """[lo, hi) runs of at most batch_size consecutive windows (a pure function of the plan, so a
    resumed run batches exactly as an uninterrupted one). pad: any lengths share a batch, shorter
    windows right-padded (a causal model's outputs at a position never see later positions);
    otherwise only windows of equal length do (a bidirectional model sees the padding)."""
    out = []
    lo, n = 0, lengths.size
    while lo < n:
        hi = lo + 1
        while hi < n and hi - lo < batch_size and (pad or lengths[hi] == lengths[lo]):
            hi += 1
        out.append((lo, hi))
        lo = hi
    return out


def embed_genome(
    checkpoint: str | Path,
    fasta: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    regions: str | Path | None = None,
    window: int = EmbedConfig.window,
    stride: int | None = None,
    last: str = "pad",
    dims: Sequence[int] | str | None = None,
    pool: str = "mean",
    per_base: bool = False,
    rc_average: bool = False,
    batch_size: int = EmbedConfig.batch_size,
    chunk: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    dtype: str = "float32",
    bedgraph: str | Path | bool = True,
    bedgraph_bin: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    flush_seconds: float = 30.0,
    flush_bytes: int = 256 << 20,
    command: str | None = None,
) -> EmbedSummary:
    """Embed `fasta` (one file or several forming one genome) with the model in `checkpoint`
    into the Zarr store `out`; the same job as `genossa embed` (see the module docstring).

    bedgraph: True writes the importance track beside the store (`<name>.importance.bedgraph`),
    a path writes it there, False writes none. flush_seconds / flush_bytes: how often finished
    windows are made durable (an interrupted run loses at most that much work).
    """
    t0 = time.monotonic()
    fasta_paths = [Path(fasta)] if isinstance(fasta, (str, Path)) else [Path(f) for f in fasta]
    try:
        cfg = EmbedConfig(window=window, stride=stride, last=last, dims=_parse_dims(dims), pool=pool,  # type: ignore[arg-type]
                          per_base=per_base, rc_average=rc_average, batch_size=batch_size, chunk=chunk,
                          precision=precision, dtype=dtype)  # type: ignore[arg-type]
    except ValueError as err:
        raise GenossaError(f"embed: {err}") from None
    if bedgraph_bin < 1:
        raise GenossaError(f"--bedgraph-bin must be >= 1, got {bedgraph_bin}")
    out = Path(out)
    bedgraph_path = (default_bedgraph_path(out) if bedgraph is True else None if bedgraph is False
                     else Path(bedgraph))
    zarr_store.check_target(out, overwrite=overwrite)
    if bedgraph_path is not None:
        if bedgraph_path.exists() and not overwrite:
            raise GenossaError(f"{bedgraph_path}: the bedGraph is already there; pass --overwrite to replace it")
        zarr_store.check_writable(bedgraph_path)

    from genossa.inference import load_model

    loaded = load_model(checkpoint, device)
    genome = FastaGenome(fasta_paths)
    lengths = genome.lengths
    if regions:
        intervals = read_bed(regions, lengths)
    else:
        intervals = [Interval(name, 0, n) for name, n in lengths.items()]
    plan = plan_windows(intervals, list(lengths), cfg.window, cfg.step, cfg.last)
    if len(plan) == 0:
        raise GenossaError(
            f"no windows to embed: every {'region' if regions else 'record'} is shorter than --window "
            f"{cfg.window:,} and --last is {cfg.last!r} (use --last pad)"
        )
    model, dev = loaded.model, loaded.device
    mcfg = model.config
    stored_dims = cfg.dims or mcfg.mrl_dims
    bad = [d for d in stored_dims if not 0 < d <= mcfg.d_model]
    if bad:
        raise GenossaError(f"--dims {bad[0]}: the model's embeddings have {mcfg.d_model} channels")
    width = max(stored_dims)
    prec = resolve_precision(cfg.precision, dev)
    model = for_precision(model, prec)
    if mcfg.causal:
        step = cfg.chunk or DEFAULT_CHUNK
        if step % mcfg.attn_chunk:
            if cfg.chunk:
                raise GenossaError(f"--chunk {cfg.chunk}: must be a multiple of the model's attn_chunk ({mcfg.attn_chunk})")
            step = max(mcfg.attn_chunk, step // mcfg.attn_chunk * mcfg.attn_chunk)
        stream_chunk: int | None = step
    else:
        stream_chunk = None  # a bidirectional model sees the whole window at once

    window_lengths = (plan.end - plan.start).astype(np.int64)
    base_offset = np.concatenate([[0], np.cumsum(window_lengths)[:-1]]).astype(np.int64)
    n_bases = int(window_lengths.sum())
    settings = {
        "window": cfg.window, "stride": cfg.step, "last": cfg.last, "pool": cfg.pool, "per_base": cfg.per_base,
        "rc_average": cfg.rc_average, "matryoshka_dims": list(stored_dims), "width": width,
        "batch_size": cfg.batch_size, "chunk": stream_chunk, "precision": prec, "dtype": cfg.dtype,
        "device_type": dev.type,
        "model_weights_sha256": loaded.weights_sha256, "model_config_hash": config_hash(mcfg),
        "fasta": [_file_fingerprint(p) for p in fasta_paths],
        "contig_lengths": lengths,
        "regions": None if not regions else {
            **_file_fingerprint(Path(regions)), "sha256": hashlib.sha256(Path(regions).read_bytes()).hexdigest()},
    }
    if command is None:
        command = _equivalent_command(checkpoint, fasta_paths, out, regions, cfg, device,
                                      bedgraph_path, bedgraph_bin)
    attrs = {
        "format": zarr_store.FORMAT, "format_version": zarr_store.FORMAT_VERSION, "version": __version__,
        "model": {**loaded.identity, "config_hash": config_hash(mcfg), "trained_matryoshka_dims": list(mcfg.mrl_dims)},
        "matryoshka_dims": list(stored_dims),
        "embedding_width": width,
        "pool": cfg.pool, "window": cfg.window, "stride": cfg.step, "last": cfg.last,
        "per_base": cfg.per_base, "rc_average": cfg.rc_average, "strand": "." if cfg.rc_average else "+",
        "windows": len(plan), "bases": n_bases,
        "importance": "mean over blocks of sum over scan scales of log(||h_t|| + ||h_t - h_{t-1}|| + 1e-6)"
                      + (", averaged over both strands" if cfg.rc_average else ""),
        "coordinates": "0-based half-open; window i owns rows base_offset[i] .. base_offset[i] + end[i] - start[i] "
                       "of the [base] arrays",
        "settings": settings,
        "command": command,
    }

    partial, done = zarr_store.prepare(out, settings, overwrite=overwrite)
    if done is None:
        strand = "." if cfg.rc_average else "+"
        zarr_store.create(
            partial,
            zarr_store.StoreLayout(len(plan), n_bases, width, cfg.dtype, cfg.per_base),
            attrs,
            {"contig": np.asarray(plan.contigs, dtype=object)[plan.contig].astype(str),
             "start": plan.start, "end": plan.end, "base_offset": base_offset,
             "strand": np.full(len(plan), strand)},
        )
        done = 0
    batches = _batches(window_lengths, cfg.batch_size, pad=mcfg.causal)
    if done and done not in {lo for lo, _ in batches} | {len(plan)}:
        raise GenossaError(f"{partial}: its progress ({done} windows) is not at a batch boundary; pass --overwrite")

    writer = zarr_store.StoreWriter(partial, done)
    seqs = _Sequences(genome)
    hooks = _ImportanceHooks(model)

    def autocast():
        return inference_autocast(dev, prec)

    np_dtype = np.dtype(cfg.dtype)
    bases_before = int(window_lengths[:done].sum())
    from tqdm.auto import tqdm

    bar = tqdm(total=n_bases, initial=bases_before, unit="b", unit_scale=True, desc="embed",
               disable=not progress, smoothing=0.05, dynamic_ncols=True)
    t_run = time.monotonic()
    last_flush = t_run
    def load(lo: int, hi: int) -> tuple[torch.Tensor, list[float]]:
        """Tokens [B or 2B, L] (forward strands, then reverse complements; right-padded with PAD
        to the batch's longest window) and N fractions."""
        fwd, rev, nfrac = [], [], []
        for i in range(lo, hi):
            contig = plan.contigs[plan.contig[i]]
            s, e = int(plan.start[i]), int(plan.end[i])
            raw = np.frombuffer(seqs.fetch(contig, s, e).encode("ascii", errors="replace"), dtype=np.uint8)
            file = str(genome.paths[genome.contigs[contig].file])
            tok, _ = encode_window(raw, file=file, record=contig, offset=s)
            fwd.append(tok)
            nfrac.append(float(np.count_nonzero(tok == alphabet.N)) / max(1, tok.size))
            if cfg.rc_average:
                rev.append(encode_window(raw, file=file, record=contig, offset=s, reverse=True)[0])
        longest = max(t.size for t in fwd)
        tokens = np.full((len(fwd) + len(rev), longest), alphabet.PAD, dtype=np.int64)
        for row, tok in enumerate(fwd + rev):
            tokens[row, :tok.size] = tok
        tokens = torch.from_numpy(tokens)
        return (tokens.pin_memory() if dev.type == "cuda" else tokens), nfrac

    todo = [(lo, hi) for lo, hi in batches if lo >= done]
    # one batch is read and encoded in a thread while the model runs on the one before
    reader = ThreadPoolExecutor(max_workers=1)
    ahead = reader.submit(load, *todo[0]) if todo else None
    try:
        for k, (lo, hi) in enumerate(todo):
            tokens, nfrac = ahead.result()
            ahead = reader.submit(load, *todo[k + 1]) if k + 1 < len(todo) else None
            tokens = tokens.to(dev, non_blocking=True)
            b = hi - lo
            n = window_lengths[lo:hi]
            lens = torch.from_numpy(np.concatenate([n, n] if cfg.rc_average else [n]))
            pooled, pb, imp = _run_windows(model, tokens, lens, width=width, pool=cfg.pool, chunk=stream_chunk,
                                           per_base=cfg.per_base, hooks=hooks, autocast=autocast)
            pooled_np = pooled.cpu().numpy()
            imp_np = imp.cpu().numpy()
            pb_np = pb.numpy() if pb is not None else None
            for j in range(b):
                m = int(n[j])  # the window's own bases; the rest of the row is padding
                emb, imp_j = pooled_np[j], imp_np[j, :m]
                pb_j = pb_np[j, :m] if pb_np is not None else None
                if cfg.rc_average:  # the reverse strand's base k is the forward strand's base m - 1 - k
                    emb = (emb + pooled_np[b + j]) / 2
                    imp_j = (imp_j + imp_np[b + j, :m][::-1]) / 2
                    if pb_j is not None:
                        pb_j = (pb_j + pb_np[b + j, :m][::-1]) / 2
                writer.add(emb.astype(np_dtype), nfrac[j], imp_j, int(plan.start[lo + j]),
                           pb_j.astype(np_dtype) if pb_j is not None else None)
            bar.update(int(window_lengths[lo:hi].sum()))
            now = time.monotonic()
            if now - last_flush >= flush_seconds or writer.buffered_bytes >= flush_bytes:
                writer.flush()
                last_flush = now
        writer.flush()
    except KeyboardInterrupt:
        writer.flush()  # the finished windows are kept: a rerun resumes after them
        raise
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        hooks.remove()
        bar.close()
    seconds_run = time.monotonic() - t_run

    extra = []
    if bedgraph_path is not None:
        tmp = bedgraph_path.with_name(bedgraph_path.name + ".partial")
        write_importance_bedgraph(writer.group, tmp, bin=bedgraph_bin,
                                  description=f"genossa {__version__} scan importance, {out.name}")
        extra.append((tmp, bedgraph_path))
    zarr_store.finish(partial, out, extra)
    embedded = n_bases - bases_before
    return EmbedSummary(out, bedgraph_path, len(plan), n_bases, done, time.monotonic() - t0,
                        embedded / seconds_run if seconds_run > 0 else 0.0)
