"""The Zarr v3 store of `genossa embed`: layout, resumable writing, completion, reading.

Layout (one Zarr group; dimension names in every array's metadata, so `xarray.open_zarr`
gives a Dataset with named dimensions and the window coordinates attached):

    embedding      float  [window, channel]  pooled embedding of each window (NaN = not written)
    contig         str    [window]           record of the window
    start, end     int64  [window]           bases [start, end) of the window, 0-based half-open
    strand         str    [window]           "+" (as in the FASTA) or "." (both strands averaged)
    n_fraction     float32 [window]          share of N bases in the window
    base_offset    int64  [window]           first row of the window in the [base] arrays
    channel        int32  [channel]          0 .. width-1 (Matryoshka prefix d = channels [:d])
    importance     float32 [base]            per-base scan importance (see genossa.embed)
    position       int64  [base]             0-based position of the base on its contig
    per_base_embedding float [base, channel] per-base embeddings (only with per_base)

Window i owns rows base_offset[i] .. base_offset[i] + end[i] - start[i] of the [base] arrays
(overlapping windows each have their own rows). Embeddings are chunked (rows x 64 channels)
inside shards of whole rows, so a reader of the 64-dim prefix reads only the first chunk
column and a reader of some rows reads only their shards. Root attrs describe the run
(`attrs["genossa"]`: format, version, model identity, settings, inputs, command) and
`attrs["complete"]`.

Safety: a store is built under `<out>.partial` and renamed to `<out>` only when complete, so
a store at its final name is always whole. Inside the partial store, `progress.json` (written
atomically) holds the number of windows whose every output is on disk; every chunk or shard
file is itself written atomically by zarr. A rerun of the same command (same settings, same
inputs, same model) resumes after that window; anything written past it by the killed run
is rewritten with the same values.

No torch here: numpy and zarr only.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from genossa.errors import GenossaError

FORMAT = "genossa.embeddings"
FORMAT_VERSION = 1
PROGRESS_FILE = "progress.json"
PARTIAL_SUFFIX = ".partial"

WINDOW_ROWS = 4096
"""Windows per chunk (and per shard) of the [window, ...] arrays."""
BASE_ROWS = 16384
"""Bases per chunk (and per shard) of per_base_embedding."""
TRACK_ROWS = 262144
"""Bases per chunk of the 1-D [base] arrays (importance, position)."""
CHANNEL_CHUNK = 64
"""Channels per chunk: the smallest Matryoshka prefix reads one chunk column."""


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


@dataclass
class StoreLayout:
    """Sizes and types of a store (everything needed to create its arrays)."""

    n_windows: int
    n_bases: int
    width: int
    dtype: str
    per_base: bool


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_attrs(path: Path) -> dict | None:
    """Root attributes of a Zarr v3 group at `path`, or None if it is not one."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    return meta.get("attributes", {})


def is_genossa_store(path: str | Path) -> bool:
    attrs = _read_attrs(Path(path))
    return attrs is not None and attrs.get("genossa", {}).get("format") == FORMAT


def check_writable(out: Path) -> None:
    """Error unless the folder that will hold `out` exists and can be written."""
    parent = out.absolute().parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise GenossaError(f"{out}: cannot write the store: {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GenossaError(f"{out}: cannot write the store: {parent} is not writable")


def check_target(out: Path, *, overwrite: bool) -> None:
    """Error unless a store can be written at `out`: its folder is writable, and nothing is
    there, or (with `overwrite`) a genossa store is."""
    check_writable(out)
    if out.exists() and not overwrite:
        what = "a complete embedding store" if is_genossa_store(out) else "a file or folder"
        raise GenossaError(f"{out}: {what} is already there; pass --overwrite to replace it")
    if (out.exists() or out.is_symlink()) and not is_genossa_store(out):
        # --overwrite replaces what genossa wrote, never a folder that happens to have the name
        raise GenossaError(f"{out}: not a genossa embedding store, so --overwrite will not replace it; remove it yourself")


def prepare(out: str | Path, settings: dict, *, overwrite: bool) -> tuple[Path, int | None]:
    """Decide where to write and from which window: (partial store path, windows done or None).

    None means a fresh store must be created at the partial path (cleared here). An
    interrupted run of the same settings resumes: its windows-done count is returned. Errors
    (nothing is touched): `out` exists without `overwrite`; an interrupted run of different
    settings; a `.partial` folder that is not a genossa store.
    """
    out = Path(out)
    partial = partial_path(out)
    check_target(out, overwrite=overwrite)
    if partial.exists():
        attrs = _read_attrs(partial)
        if attrs is None or attrs.get("genossa", {}).get("format") != FORMAT:
            if partial.is_dir() and not any(partial.iterdir()):
                partial.rmdir()
                return partial, None
            raise GenossaError(f"{partial}: in the way of the store being written, and not a genossa store; remove it")
        progress = partial / PROGRESS_FILE
        if not progress.is_file():  # killed while creating the store: nothing to keep
            shutil.rmtree(partial)
            return partial, None
        if overwrite:
            shutil.rmtree(partial)
            return partial, None
        previous = attrs["genossa"].get("settings")
        if previous != json.loads(json.dumps(settings)):
            diff = sorted(k for k in set(previous or {}) | set(settings)
                          if (previous or {}).get(k) != json.loads(json.dumps(settings)).get(k))
            raise GenossaError(
                f"{partial}: an interrupted run with other settings ({', '.join(diff)}) is there; "
                f"rerun it with its own options to resume, or pass --overwrite to start again"
            )
        return partial, read_progress(partial)
    return partial, None


def read_progress(partial: Path) -> int:
    return int(json.loads((partial / PROGRESS_FILE).read_text())["windows_done"])


def write_progress(partial: Path, windows_done: int) -> None:
    _atomic_write_text(partial / PROGRESS_FILE, json.dumps({"windows_done": int(windows_done)}) + "\n")


def create(partial: Path, layout: StoreLayout, attrs: dict, coords: dict[str, np.ndarray]) -> zarr.Group:
    """Create every array of a fresh store at `partial` and write the window coordinates.

    coords: contig (str), start, end, base_offset (int64), strand (str), all [n_windows].
    Ends with progress 0, the sign that the store exists whole.
    """
    n, nb, width = layout.n_windows, layout.n_bases, layout.width
    group = zarr.open_group(str(partial), mode="w", zarr_format=3,
                            attributes={"genossa": attrs, "complete": False})
    wr = max(1, min(WINDOW_ROWS, n))
    cc = min(CHANNEL_CHUNK, width)
    kw = dict(compressors=_compressor())
    group.create_array(
        "embedding", shape=(n, width), dtype=layout.dtype, chunks=(wr, cc), shards=(wr, _ceil(width, cc)),
        fill_value=np.nan, dimension_names=["window", "channel"],
        attributes={"coordinates": "contig start end strand", "long_name": "pooled Matryoshka embedding"}, **kw,
    )
    for name, dtype, fill in (("start", "int64", -1), ("end", "int64", -1), ("base_offset", "int64", -1),
                              ("n_fraction", "float32", np.nan)):
        group.create_array(name, shape=(n,), dtype=dtype, chunks=(wr,), fill_value=fill,
                           dimension_names=["window"], **kw)
    for name in ("contig", "strand"):
        group.create_array(name, shape=(n,), dtype=str, chunks=(wr,), dimension_names=["window"])
    channel = group.create_array("channel", shape=(width,), dtype="int32", chunks=(width,),
                                 dimension_names=["channel"], **kw)
    channel[:] = np.arange(width, dtype=np.int32)
    tr = max(1, min(TRACK_ROWS, nb))
    group.create_array("importance", shape=(nb,), dtype="float32", chunks=(tr,), fill_value=np.nan,
                       dimension_names=["base"], attributes={"coordinates": "position"}, **kw)
    group.create_array("position", shape=(nb,), dtype="int64", chunks=(tr,), fill_value=-1,
                       dimension_names=["base"], **kw)
    if layout.per_base:
        br = max(1, min(BASE_ROWS, nb))
        group.create_array(
            "per_base_embedding", shape=(nb, width), dtype=layout.dtype, chunks=(br, cc),
            shards=(br, _ceil(width, cc)), fill_value=np.nan, dimension_names=["base", "channel"],
            attributes={"coordinates": "position", "long_name": "per-base Matryoshka embedding"}, **kw,
        )
    for lo in range(0, n, WINDOW_ROWS):  # coordinates are known up front: write them once
        hi = min(n, lo + WINDOW_ROWS)
        for name in ("start", "end", "base_offset", "contig", "strand"):
            group[name][lo:hi] = coords[name][lo:hi]
    write_progress(partial, 0)
    return group


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


class StoreWriter:
    """Appends finished windows (in plan order) to a partial store; `flush` makes them durable."""

    def __init__(self, partial: Path, windows_done: int):
        self.partial = partial
        self.group = zarr.open_group(str(partial), mode="r+")
        self.base_offset = self.group["base_offset"]
        self.start = self.group["start"]
        self.per_base = "per_base_embedding" in self.group
        self.done = windows_done
        self._rows: list[np.ndarray] = []
        self._nfrac: list[float] = []
        self._imp: list[np.ndarray] = []
        self._pos: list[np.ndarray] = []
        self._pb: list[np.ndarray] = []
        self.buffered_bytes = 0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, embedding: np.ndarray, n_fraction: float, importance: np.ndarray, start: int,
            per_base: np.ndarray | None = None) -> None:
        """One window: pooled embedding [width], importance [L], its start, per-base [L, width]."""
        self._rows.append(embedding)
        self._nfrac.append(n_fraction)
        self._imp.append(importance.astype(np.float32, copy=False))
        self._pos.append(np.arange(start, start + importance.shape[0], dtype=np.int64))
        self.buffered_bytes += embedding.nbytes + importance.nbytes * 3
        if self.per_base:
            self._pb.append(per_base)
            self.buffered_bytes += per_base.nbytes

    def flush(self) -> None:
        """Write the buffered windows, then record them as done (after their data is on disk)."""
        if not self._rows:
            return
        lo, hi = self.done, self.done + len(self._rows)
        g = self.group
        g["embedding"][lo:hi] = np.stack(self._rows)
        g["n_fraction"][lo:hi] = np.asarray(self._nfrac, dtype=np.float32)
        b0 = int(self.base_offset[lo])
        imp = np.concatenate(self._imp)
        b1 = b0 + imp.shape[0]
        g["importance"][b0:b1] = imp
        g["position"][b0:b1] = np.concatenate(self._pos)
        if self.per_base:
            g["per_base_embedding"][b0:b1] = np.concatenate(self._pb)
        write_progress(self.partial, hi)
        self.done = hi
        self._rows, self._nfrac, self._imp, self._pos, self._pb = [], [], [], [], []
        self.buffered_bytes = 0


def finish(partial: Path, out: Path, extra_files: list[tuple[Path, Path]] = ()) -> Path:
    """Mark the store complete and move it (and `extra_files`, (tmp, final) pairs) into place.

    An older store at `out` (the caller checked --overwrite) is moved aside first and removed
    last, so at every moment `out` is either the old complete store, absent, or the new one.
    """
    group = zarr.open_group(str(partial), mode="r+")
    group.attrs["complete"] = True
    (partial / PROGRESS_FILE).unlink()
    for tmp, final in extra_files:
        os.replace(tmp, final)
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(partial, out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    return out


def open_store(path: str | Path) -> zarr.Group:
    """Open a complete embedding store read-only (an error for partial or foreign stores)."""
    path = Path(path)
    attrs = _read_attrs(path)
    if attrs is None or attrs.get("genossa", {}).get("format") != FORMAT:
        raise GenossaError(f"{path}: not a genossa embedding store")
    if not attrs.get("complete"):
        raise GenossaError(f"{path}: the store is incomplete (an interrupted run); rerun its command to finish it")
    return zarr.open_group(str(path), mode="r")


def window_bases(group: zarr.Group, i: int, name: str = "importance") -> tuple[np.ndarray, np.ndarray]:
    """(positions [L], values [L, ...]) of window i in a [base] array."""
    lo = int(group["base_offset"][i])
    n = int(group["end"][i] - group["start"][i])
    return group["position"][lo:lo + n], group[name][lo:lo + n]
