"""WindowDataset: exact coverage, identical windows across compressions, disjoint complete shards,
exact resume, seeded order and reverse-complement augmentation, N filter, padding, BAM windows."""
import copy

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from genome_helpers import random_genome, write_fasta
from genossa.data import DataConfig, WindowDataset
from genossa.errors import ConfigError, InputFormatError
from genossa.io.fasta import FastaGenome
from genossa.resources import HELD_OUT_CONTIG
from genossa.resources.make_resources import REGIONS, simulate_reads
from genossa.sequence import alphabet
from genossa.sequence.tokenize import reverse_complement_tokens, soft_mask, tokenize

ECOLI = {"NC_007779.1": 300_000, HELD_OUT_CONTIG: 100_000}


def n_windows(size, length, stride, last):
    """Independent window count of an interval (arithmetic only)."""
    full = 0 if size < length else (size - length) // stride + 1
    reached = (full - 1) * stride + length if full else 0
    if reached >= size:
        return full
    if last == "pad":
        return full + (full * stride < size)
    if last == "end_aligned":
        return full + (size >= length)
    return full


def key(item):
    return (item["source"], item["contig"], item["start"], item["end"])


def unbatch(batch):
    """Items of a collated batch (tensors per item, strings and ints as lists/tensors)."""
    n = len(batch["contig"])
    out = []
    for i in range(n):
        out.append({k: (v[i].item() if isinstance(v, torch.Tensor) and v.dim() == 1 else v[i]) for k, v in batch.items()})
    return out


@pytest.mark.parametrize("last", ["drop", "pad", "end_aligned"])
@pytest.mark.parametrize("length, stride", [(7000, 5000), (40_000, 40_000), (150_000, 100_000)])
def test_coverage_of_bundled_contigs(ecoli_fasta, length, stride, last):
    cfg = DataConfig(window=length, stride=stride, last_window=last, shuffle=False, rc_prob=0.0)
    items = list(WindowDataset(cfg, split="all"))
    for contig, size in ECOLI.items():
        mine = [(it["start"], it["end"]) for it in items if it["contig"] == contig]
        assert len(mine) == n_windows(size, length, stride, last)
        full = [s for s, e in mine if e - s == length]
        assert full == [k * stride for k in range(len(full))] or last == "end_aligned"
        if mine and last != "drop" and stride <= length:
            assert mine[-1][1] == size  # the tail is covered
    for it in items:
        n = it["end"] - it["start"]
        assert it["tokens"].shape == (length,) and it["tokens"].dtype == torch.int64
        assert it["valid"].sum().item() == n and it["soft_mask"].dtype == torch.bool
        assert (it["tokens"][n:] == alphabet.PAD).all()


def test_tokens_match_the_genome(ecoli_fasta):
    genome = FastaGenome([ecoli_fasta])
    cfg = DataConfig(window=30_000, stride=25_000, shuffle=True, rc_prob=0.0, seed=3)
    for it in WindowDataset(cfg, split="all"):
        seq = genome.fetch(it["contig"], it["start"], it["end"])
        n = len(seq)
        assert np.array_equal(it["tokens"][:n].numpy(), tokenize(seq).astype(np.int64))


def test_coverage_with_bed_include_and_exclude(tmp_path, regions_bed):
    exclude = tmp_path / "exclude.bed"
    exclude.write_text("NC_007779.1\t40000\t45000\nNC_007779.1\t255000\t300000\nNC_007779.1_2000000_2100000\t0\t21000\n")
    # REGIONS minus the exclusions, worked out by hand
    expected_intervals = [
        ("NC_007779.1", 10_000, 40_000), ("NC_007779.1", 45_000, 60_000),
        ("NC_007779.1", 150_000, 255_000), (HELD_OUT_CONTIG, 21_000, 45_000),
    ]
    assert [r[:3] for r in REGIONS] == [("NC_007779.1", 10_000, 60_000), ("NC_007779.1", 150_000, 270_000),
                                        (HELD_OUT_CONTIG, 20_000, 45_000)]
    length, stride = 8000, 6000
    for last in ("drop", "pad", "end_aligned"):
        cfg = DataConfig(regions=str(regions_bed), exclude=str(exclude), window=length, stride=stride,
                         last_window=last, shuffle=False, rc_prob=0.0)
        items = list(WindowDataset(cfg, split="all"))
        assert len(items) == sum(n_windows(e - s, length, stride, last) for _, s, e in expected_intervals)
        for it in items:
            assert any(c == it["contig"] and s <= it["start"] and it["end"] <= e for c, s, e in expected_intervals)
        starts = {(c, s) for c, s, _ in expected_intervals}
        assert starts <= {(it["contig"], it["start"]) for it in items}


@pytest.mark.parametrize("shuffle", [False, True])
def test_plain_gzip_bgzip_give_identical_windows(tmp_path, small_genome, shuffle):
    runs = {}
    for kind in ("plain", "gzip", "bgzip"):
        path = write_fasta(tmp_path / f"g_{kind}.fa", small_genome, kind)
        cfg = DataConfig(fasta=(str(path),), window=500, stride=300, max_n_fraction=1.0, rc_prob=0.5, shuffle=shuffle, seed=7)
        runs[kind] = [(key(it), it["strand"], it["tokens"].numpy().tobytes(), it["soft_mask"].numpy().tobytes(),
                       it["valid"].numpy().tobytes()) for it in WindowDataset(cfg)]
    assert runs["plain"] == runs["bgzip"]
    if shuffle:  # streamed gzip keeps record order (permuted within records): same windows, other order
        assert sorted(runs["gzip"]) == sorted(runs["plain"]) and len(runs["gzip"]) == len(runs["plain"])
    else:
        assert runs["gzip"] == runs["plain"]


def test_rc_augmentation_and_soft_mask(tmp_path, small_genome):
    path = write_fasta(tmp_path / "g.fa", small_genome)
    genome = FastaGenome([path])
    for rc_prob, strand in ((0.0, "+"), (1.0, "-")):
        cfg = DataConfig(fasta=(str(path),), window=400, stride=400, max_n_fraction=1.0, rc_prob=rc_prob)
        for it in WindowDataset(cfg):
            seq = genome.fetch(it["contig"], it["start"], it["end"])
            toks, mask = tokenize(seq).astype(np.int64), soft_mask(seq)
            n = len(seq)
            assert it["strand"] == strand
            if strand == "-":
                toks, mask = reverse_complement_tokens(toks), mask[::-1]
            assert np.array_equal(it["tokens"][:n].numpy(), toks)
            assert np.array_equal(it["soft_mask"][:n].numpy(), mask) and not it["soft_mask"][n:].any()
    # about half reversed at 0.5, and the draw is deterministic
    cfg = DataConfig(window=2000, rc_prob=0.5, seed=1)
    strands = [it["strand"] for it in WindowDataset(cfg)]
    assert 0.3 < strands.count("-") / len(strands) < 0.7
    assert strands == [it["strand"] for it in WindowDataset(cfg)]


def test_seeded_order(ecoli_fasta):
    def run(seed, epoch=0):
        ds = WindowDataset(DataConfig(window=10_000, seed=seed))
        ds.set_epoch(epoch)
        return [(key(it), it["strand"]) for it in ds]

    assert run(1) == run(1)
    assert run(1) != run(2) and sorted(run(1))[0][0] == sorted(run(2))[0][0]
    assert [k for k, _ in run(1, 0)] != [k for k, _ in run(1, 1)]
    assert sorted(k for k, _ in run(1, 0)) == sorted(k for k, _ in run(1, 1))


def test_n_filter(tmp_path):
    records = random_genome(seed=5, lengths=(4000, 3000))
    path = write_fasta(tmp_path / "g.fa", records)
    cfg = DataConfig(fasta=(str(path),), window=100, stride=50, max_n_fraction=0.1, rc_prob=0.0, shuffle=False)
    got = [key(it)[1:] for it in WindowDataset(cfg)]
    expected = []
    for name, seq in records.items():
        for s in range(0, len(seq) - 100 + 1, 50):
            window = seq[s : s + 100].upper()
            if window.count("N") <= 0.1 * 100:
                expected.append((name, s, s + 100))
    assert got == expected and len(got) < sum(n_windows(len(s), 100, 50, "pad") for s in records.values())


def test_held_out_split(ecoli_fasta):
    cfg = DataConfig(window=50_000, held_out_contigs=(HELD_OUT_CONTIG,))
    train = {it["contig"] for it in WindowDataset(cfg, split="train")}
    evaluate = {it["contig"] for it in WindowDataset(cfg, split="eval")}
    assert train == {"NC_007779.1"} and evaluate == {HELD_OUT_CONTIG}
    with pytest.raises(ConfigError, match="held_out_contigs"):
        WindowDataset(DataConfig(held_out_contigs=("chrZ",)))


def test_illegal_character_names_file_record_position(tmp_path):
    seq = "ACGT" * 100
    path = write_fasta(tmp_path / "bad.fa", {"ok": seq, "broken": seq[:250] + "X" + seq[251:]})
    with pytest.raises(InputFormatError) as err:
        list(WindowDataset(DataConfig(fasta=(str(path),), window=100, shuffle=False)))
    msg = str(err.value)
    assert str(path) in msg and "'broken'" in msg and "position 251" in msg and "'X'" in msg


def _expected_bam_windows(length, stride, last, min_length=1000):
    reads = [r for r in simulate_reads() if not r.flag & 0xF00 and r.sequence and len(r.sequence) >= min_length]
    return reads, sum(n_windows(len(r.sequence), length, stride, last) for r in reads)


@pytest.mark.parametrize("last", ["drop", "pad", "end_aligned"])
def test_bam_windows(reads_bam, last):
    cfg = DataConfig(fasta=(), bam=(str(reads_bam),), window=4000, stride=3000, last_window=last, rc_prob=0.0)
    items = list(WindowDataset(cfg))
    reads, count = _expected_bam_windows(4000, 3000, last)
    assert len(items) == count and all(it["source"] == "bam" for it in items)
    by_name = {r.name: r.sequence for r in reads}
    for it in items:
        seq = by_name[it["contig"]][it["start"] : it["end"]]
        assert np.array_equal(it["tokens"][: len(seq)].numpy(), tokenize(seq).astype(np.int64))


def _all_keys(cfg):
    return [(key(it), it["strand"]) for it in WindowDataset(cfg, rank=0, world_size=1)]


def test_rank_by_worker_shards_are_disjoint_and_complete(ecoli_fasta, reads_bam):
    cfg = DataConfig(window=20_000, stride=15_000, bam=(str(reads_bam),), fasta=(str(ecoli_fasta),), seed=11)
    full = _all_keys(cfg)
    per_shard = {}
    for rank in range(2):
        ds = WindowDataset(cfg, rank=rank, world_size=2)
        for batch in DataLoader(ds, batch_size=3, num_workers=2):
            for it in unbatch(batch):
                per_shard.setdefault(it["shard"], []).append((key(it), it["strand"]))
                assert it["num_shards"] == 4
    assert sorted(per_shard) == [0, 1, 2, 3] and all(per_shard.values())
    seen = [k for items in per_shard.values() for k in items]
    assert len(seen) == len(set(seen)) == len(full)  # disjoint
    assert set(seen) == set(full)  # complete, with the same reverse-complement draws


def test_resume_without_workers(ecoli_fasta, reads_bam):
    cfg = DataConfig(window=20_000, stride=15_000, bam=(str(reads_bam),), fasta=(str(ecoli_fasta),), seed=5)
    full = _all_keys(cfg)
    for stop in (0, 1, 7, len(full) - 3, len(full) - 1):  # inside the FASTA part and the BAM part
        ds = WindowDataset(cfg)
        it = iter(ds)
        first = [(key(next(it)), None) for _ in range(stop)]
        state = copy.deepcopy(ds.state_dict())
        resumed = WindowDataset(cfg)
        resumed.load_state_dict(state)
        rest = [(key(x), x["strand"]) for x in resumed]
        assert [k for k, _ in first] + [k for k, _ in rest] == [k for k, _ in full]
        assert rest == full[stop:]
    # a finished pass moves on to the next epoch by itself
    ds = WindowDataset(cfg)
    list(ds)
    assert ds.epoch == 1 and ds.state_dict()["positions"] == {}


def test_resume_with_workers(ecoli_fasta, reads_bam):
    cfg = DataConfig(window=20_000, stride=15_000, bam=(str(reads_bam),), fasta=(str(ecoli_fasta),), seed=5)
    full = _all_keys(cfg)
    ds = WindowDataset(cfg)
    consumed = []
    for i, batch in enumerate(DataLoader(ds, batch_size=2, num_workers=2)):
        ds.mark_consumed(batch)
        consumed += [(key(it), it["strand"]) for it in unbatch(batch)]
        if i == 4:
            break  # the workers have prefetched more than this: it must not count
    state = copy.deepcopy(ds.state_dict())
    resumed = WindowDataset(cfg)
    resumed.load_state_dict(state)
    rest = []
    for batch in DataLoader(resumed, batch_size=2, num_workers=2):
        rest += [(key(it), it["strand"]) for it in unbatch(batch)]
    assert len(consumed) == 10
    assert sorted(consumed + rest) == sorted(full) and not set(consumed) & set(rest)
    with pytest.raises(ValueError, match="num_workers"):
        other = WindowDataset(cfg)
        other.load_state_dict(state)
        list(other)  # 1 shard in this process, the state has 2


def test_pickled_dataset_has_no_open_handles(ecoli_fasta):
    import pickle

    ds = WindowDataset(DataConfig(window=50_000))
    next(iter(ds))
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.genome._handles == {}
    assert [key(x) for x in clone] != []
