"""genossa.embed on the bundled genome: windowing, Matryoshka prefixes, the store's layout
(xarray), per-base arrays and importance, reverse-complement averaging, bedGraph."""
import json

import numpy as np
import pytest
import torch
import zarr

from genossa.embed import embed_genome
from genossa.errors import GenossaError
from genossa.io.bedgraph import read_bedgraph
from genossa.io.fasta import FastaGenome
from genossa.io.zarr_store import open_store, partial_path
from genossa.models import GenossaLM, tiny
from genossa.ops.sparse_attention import combine_scales
from genossa.sequence.intervals import tile_starts
from genossa.sequence.tokenize import reverse_complement, tokenize

WINDOW = 1024


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return GenossaLM(tiny()).save_pretrained(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def whole(checkpoint, ecoli_fasta, tmp_path_factory):
    """The whole bundled genome, windows every 8 kb (gaps between them), pooled only."""
    out = tmp_path_factory.mktemp("whole") / "ecoli.zarr"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test one-thread fixture
    try:
        embed_genome(checkpoint, ecoli_fasta, out, window=WINDOW, stride=8192, batch_size=8, device="cpu",
                     progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def test_rows_and_coordinates_match_the_windowing(whole, ecoli_fasta):
    g = open_store(whole)
    lengths = FastaGenome([ecoli_fasta]).lengths
    contigs, starts, ends = [], [], []
    for name, n in lengths.items():
        s, e = tile_starts(n, WINDOW, 8192, "pad")
        contigs += [name] * s.size
        starts.append(s)
        ends.append(e)
    starts, ends = np.concatenate(starts), np.concatenate(ends)
    assert g["embedding"].shape == (starts.size, 128)  # tiny: d_model 128, prefixes 64 and 128
    assert list(g["contig"][:]) == contigs
    np.testing.assert_array_equal(g["start"][:], starts)
    np.testing.assert_array_equal(g["end"][:], ends)
    assert set(g["strand"][:]) == {"+"}
    assert not np.isnan(g["embedding"][:]).any()  # every row written (NaN is the fill value)
    # the [base] arrays: each window owns its bases, in order
    lens = ends - starts
    np.testing.assert_array_equal(g["base_offset"][:], np.concatenate([[0], np.cumsum(lens)[:-1]]))
    assert g["importance"].shape == (lens.sum(),) and not np.isnan(g["importance"][:]).any()
    np.testing.assert_array_equal(g["position"][:], np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]))
    attrs = g.attrs["genossa"]
    assert attrs["matryoshka_dims"] == [64, 128] and attrs["window"] == WINDOW and attrs["stride"] == 8192
    assert attrs["pool"] == "mean" and g.attrs["complete"] is True
    assert attrs["model"]["weights_sha256"] and attrs["model"]["config_hash"] and attrs["version"]
    assert attrs["command"].startswith("genossa embed --checkpoint ")


def test_xarray_opens_the_store_with_named_dimensions(whole):
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(whole, consolidated=False)
    assert ds["embedding"].dims == ("window", "channel")
    assert ds["importance"].dims == ("base",)
    for name in ("contig", "start", "end", "strand"):
        assert name in ds["embedding"].coords
    e64 = ds["embedding"][:, :64]
    np.testing.assert_array_equal(e64.values, zarr.open_group(str(whole), mode="r")["embedding"][:, :64])
    assert ds.attrs["genossa"]["matryoshka_dims"] == [64, 128]
    # chunks: 64 channels wide, so the 64-dim prefix is one chunk column
    assert zarr.open_group(str(whole), mode="r")["embedding"].chunks[1] == 64


def test_prefix_store_equals_leading_columns_and_the_model(whole, checkpoint, ecoli_fasta, tmp_path):
    out = tmp_path / "d64.zarr"
    embed_genome(checkpoint, ecoli_fasta, out, window=WINDOW, stride=8192, dims=[64], batch_size=8,
                 device="cpu", progress=False, bedgraph=False)
    full, d64 = open_store(whole), open_store(out)
    assert d64["embedding"].shape[1] == 64 and d64.attrs["genossa"]["matryoshka_dims"] == [64]
    np.testing.assert_allclose(d64["embedding"][:], full["embedding"][:, :64], rtol=0, atol=1e-6)
    # a row is the model's own mean-pooled prefix embedding of that window
    model = GenossaLM.from_pretrained(checkpoint).eval()
    genome = FastaGenome([ecoli_fasta])
    i = 3
    seq = genome.fetch(str(full["contig"][i]), int(full["start"][i]), int(full["end"][i]))
    tokens = torch.from_numpy(tokenize(seq).astype(np.int64))[None]
    with torch.no_grad():
        want = model.embed(tokens, dim=64, pool="mean")[0].numpy()
    np.testing.assert_allclose(full["embedding"][i, :64], want, rtol=1e-4, atol=1e-5)


def test_per_base_regions_importance_and_bedgraph(checkpoint, ecoli_fasta, regions_bed, tmp_path, fasta_writer):
    # three short regions of the bundled genome; each BED line is tiled on its own
    bed = tmp_path / "r.bed"
    bed.write_text("NC_007779.1\t10000\t12500\tA\nNC_007779.1\t12000\t12600\tB\nNC_007779.1_2000000_2100000\t5\t900\tC\n")
    out = tmp_path / "pb.zarr"
    summary = embed_genome(checkpoint, ecoli_fasta, out, regions=bed, window=WINDOW, per_base=True, chunk=256,
                           batch_size=4, device="cpu", progress=False)
    g = open_store(out)
    np.testing.assert_array_equal(g["start"][:], [10000, 11024, 12048, 12000, 5])
    np.testing.assert_array_equal(g["end"][:], [11024, 12048, 12500, 12600, 900])
    pb = g["per_base_embedding"]
    assert pb.shape == (summary.bases, 128) and summary.bases == 2500 + 600 + 895
    for i in range(5):
        lo, n = int(g["base_offset"][i]), int(g["end"][i] - g["start"][i])
        # the pooled mean is the mean of the window's per-base rows
        np.testing.assert_allclose(g["embedding"][i], pb[lo:lo + n].mean(0), rtol=1e-5, atol=1e-6)
    # importance is the model's own: mean over blocks of combine_scales of the mixer's norms
    model = GenossaLM.from_pretrained(checkpoint).eval()
    seq = FastaGenome([ecoli_fasta]).fetch("NC_007779.1", 12000, 12600)
    tokens = torch.from_numpy(tokenize(seq).astype(np.int64))[None]
    seen = []
    hooks = [b.mixer.register_forward_hook(lambda m, i, o: seen.append(combine_scales(o.norm, o.change)[0]))
             for b in model.blocks]
    with torch.no_grad():
        emb = model(tokens).embeddings[0]
    for h in hooks:
        h.remove()
    lo = int(g["base_offset"][3])
    np.testing.assert_allclose(g["importance"][lo:lo + 600], torch.stack(seen).mean(0)[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pb[lo:lo + 600], emb.numpy(), rtol=1e-4, atol=1e-5)
    # bedGraph: sorted, non-overlapping, each base from the first window covering it
    rows = read_bedgraph(summary.bedgraph)
    assert summary.bedgraph == tmp_path / "pb.importance.bedgraph"
    covered = {c: sum(e - s for cc, s, e, _ in rows if cc == c) for c in ("NC_007779.1", "NC_007779.1_2000000_2100000")}
    assert covered == {"NC_007779.1": 2600, "NC_007779.1_2000000_2100000": 895}
    for (c1, _, e1, _), (c2, s2, _, _) in zip(rows, rows[1:]):
        assert c1 != c2 or e1 <= s2
    first = next(v for c, s, e, v in rows if c == "NC_007779.1" and s <= 12499 < e)
    assert first == pytest.approx(float(g["importance"][int(g["base_offset"][2]) + 12499 - 12048]), rel=1e-4)


def test_rc_average_same_for_a_sequence_and_its_reverse_complement(checkpoint, ecoli_fasta, fasta_writer, tmp_path):
    seq = FastaGenome([ecoli_fasta]).fetch("NC_007779.1", 50000, 50000 + 3 * WINDOW)
    fa = fasta_writer({"fwd": seq, "rev": reverse_complement(seq)})
    out = tmp_path / "rc.zarr"
    embed_genome(checkpoint, fa, out, window=WINDOW, pool="last", per_base=True, rc_average=True,
                 batch_size=8, device="cpu", progress=False, bedgraph=False)
    g = open_store(out)
    assert list(g["contig"][:]) == ["fwd"] * 3 + ["rev"] * 3 and set(g["strand"][:]) == {"."}
    emb, pb, imp = g["embedding"][:], g["per_base_embedding"][:], g["importance"][:]
    for k in range(3):  # window k of fwd is the reverse complement of window 2 - k of rev
        np.testing.assert_allclose(emb[k], emb[3 + 2 - k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pb[: 3 * WINDOW], pb[3 * WINDOW:][::-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(imp[: 3 * WINDOW], imp[3 * WINDOW:][::-1], rtol=1e-5, atol=1e-5)
    # and not trivially: the strands differ without averaging
    out2 = tmp_path / "norc.zarr"
    embed_genome(checkpoint, fa, out2, window=WINDOW, pool="last", batch_size=8, device="cpu", progress=False,
                 bedgraph=False)
    e2 = open_store(out2)["embedding"][:]
    assert not np.allclose(e2[0], e2[5], atol=1e-3)


def test_refuses_to_overwrite_and_replaces_when_asked(whole, checkpoint, ecoli_fasta, tmp_path):
    before = json.dumps(dict(open_store(whole).attrs))
    with pytest.raises(GenossaError, match="already there; pass --overwrite"):
        embed_genome(checkpoint, ecoli_fasta, whole, window=WINDOW, device="cpu", progress=False)
    assert json.dumps(dict(open_store(whole).attrs)) == before
    out = tmp_path / "o.zarr"
    bed = tmp_path / "one.bed"
    bed.write_text("NC_007779.1\t0\t700\n")
    for pool in ("max", "mean"):
        embed_genome(checkpoint, ecoli_fasta, out, regions=bed, window=WINDOW, pool=pool, device="cpu",
                     progress=False, overwrite=True)
        assert open_store(out).attrs["genossa"]["pool"] == pool
    assert sorted(q.name for q in tmp_path.iterdir()) == ["o.importance.bedgraph", "o.zarr", "one.bed"]
    # --overwrite never replaces something genossa did not write
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(GenossaError, match="not a genossa embedding store, so --overwrite will not replace it"):
        embed_genome(checkpoint, ecoli_fasta, mine, regions=bed, window=WINDOW, device="cpu", progress=False,
                     overwrite=True, bedgraph=False)
    assert [q.name for q in mine.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("pool", ["mean", "max", "last"])
def test_windows_of_different_lengths_batch_together_without_changing_results(checkpoint, ecoli_fasta,
                                                                               fasta_writer, tmp_path, pool):
    """A causal model's batch holds windows of any lengths (right-padded): every row, per-base
    value and importance equals the one-window-at-a-time run."""
    genome = FastaGenome([ecoli_fasta])
    # record tails of 300, 1000 and 77 bases, and a record shorter than a window
    records = {f"r{i}": genome.fetch("NC_007779.1", 20000 * i, 20000 * i + n)
               for i, n in enumerate((2 * WINDOW + 300, WINDOW + 1000, 77, 3 * WINDOW + 77))}
    fa = fasta_writer(records)
    stores = []
    for batch in (1, 8):
        out = tmp_path / f"b{batch}.zarr"
        embed_genome(checkpoint, fa, out, window=WINDOW, pool=pool, per_base=True, rc_average=pool == "mean",
                     chunk=256, batch_size=batch, device="cpu", progress=False, bedgraph=False)
        stores.append(open_store(out))
    one, batched = stores
    assert batched["embedding"].shape[0] == 10
    for name in ("embedding", "per_base_embedding", "importance"):
        np.testing.assert_allclose(batched[name][:], one[name][:], rtol=1e-5, atol=1e-5, err_msg=name)
