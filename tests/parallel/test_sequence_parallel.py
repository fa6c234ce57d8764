"""Sequence parallelism on the CPU: 2 and 3 gloo processes split one window; the logits, the
loss, bits per base and every parameter gradient equal the single-process `compute_loss` pass.

Tolerances: the model runs in fp64, but RMSNorm statistics, A = -exp(A_log) and the
cross-entropy are fp32 by design, so results that sum over positions (the loss, the gradients of
norm weights and A_log) differ by fp32 reassociation (~1e-7 relative) between one pass and the
split one; everything else agrees to ~1e-12.
"""
import socket

import pytest
import torch
import torch.multiprocessing as mp

import sp_worker
from genossa.modules.scan_attention import ScanSparseAttention
from genossa.ops.sparse_attention import combine_scales, select_causal
from genossa.parallel import sequence_parallel_loss, shard_bounds

LOGITS_ATOL = 1e-9
LOSS_RTOL = 1e-6
GRAD_RTOL = 1e-5  # ||g_split - g|| / ||g|| per parameter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference(**overrides) -> dict:
    model = sp_worker.build_model(**overrides)
    tokens, weights = sp_worker.build_batch()
    out = model.compute_loss(tokens, loss_weights=weights)
    out.loss.backward()
    return dict(model=model, tokens=tokens, loss=out.loss.detach(), bits=out.bits_per_base,
                logits=out.output.logits.detach(), grads=sp_worker.grads(model))


@pytest.fixture(scope="module")
def reference():
    return _reference()


def _spawn(world: int, tmp_path, variants: tuple[str, ...] = ("plain",)) -> list[dict]:
    mp.spawn(sp_worker.run, args=(world, _free_port(), str(tmp_path), variants), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _check_equal(ranks: list[dict], ref: dict) -> dict[str, float]:
    """Compare the split pass (one dict per rank) with the reference; return the measured errors."""
    n = ref["tokens"].shape[1]
    assert [r["bounds"] for r in ranks] == shard_bounds(n, len(ranks), 8)
    logits = torch.cat([r["logits"] for r in ranks], 1)
    assert logits.shape == ref["logits"].shape
    err = {"logits_max_abs": (logits - ref["logits"]).abs().max().item()}
    assert err["logits_max_abs"] <= LOGITS_ATOL

    total = sum(r["loss"] for r in ranks)
    err["loss_rel"] = abs(total.item() / ref["loss"].item() - 1)
    assert err["loss_rel"] <= LOSS_RTOL
    for r in ranks:  # every rank reports the window's loss and bits per base
        assert r["value"].item() == pytest.approx(ref["loss"].item(), rel=LOSS_RTOL)
        assert r["bits"].item() == pytest.approx(ref["bits"].item(), rel=LOSS_RTOL)

    names = set(ref["grads"])
    assert all(set(r["grads"]) == names for r in ranks), "a rank left parameters without gradient"
    worst = 0.0
    for name, g in ref["grads"].items():
        assert g.abs().max() > 0, name
        split = sum(r["grads"][name] for r in ranks)
        rel = _relative(split, g)
        assert rel <= GRAD_RTOL, f"{name}: relative error {rel:.2e}"
        worst = max(worst, rel)
    err["grad_rel_max"] = worst
    return err


def test_two_ranks_equal_one_process(reference, tmp_path):
    mamba_only = sp_worker.mamba_only_supported()
    ranks = _spawn(2, tmp_path, ("plain", "checkpointed") + (("mamba_only",) if mamba_only else ()))
    err = _check_equal([r["plain"] for r in ranks], reference)
    print("2 ranks:", err)
    # activation checkpointing recomputes each block (its relayed state is an input): same numbers
    err = _check_equal([r["checkpointed"] for r in ranks], reference)
    print("2 ranks, checkpointed:", err)
    if mamba_only:  # blocks without attention relay the mixer state only
        err = _check_equal([r["mamba_only"] for r in ranks], _reference(attention=False))
        print("2 ranks, Mamba2-only:", err)


def test_three_ranks_equal_one_process(reference, tmp_path):
    err = _check_equal([r["plain"] for r in _spawn(3, tmp_path)], reference)
    print("3 ranks:", err)


def test_later_ranks_select_keys_from_earlier_slices(reference):
    """The selection budget pulls keys from the relayed pool (before the relayed recent keys),
    so the equality above covers the pool's forward and its gradient."""
    model, tokens = reference["model"], reference["tokens"]
    attention: ScanSparseAttention = model.blocks[0].attention
    seen = {}
    hook = attention.register_forward_pre_hook(lambda module, args: seen.update(args=args))
    with torch.no_grad():
        model(tokens)
    hook.remove()
    _, _, norm, change = seen["args"]
    importance, complexity = combine_scales(norm, change)
    sel, _ = select_causal(importance, complexity, q_start=0, n_queries=tokens.shape[1], chunk_size=attention.chunk_size,
                           window=attention.window, base=attention.topk_base, alpha=attention.topk_alpha,
                           cap=attention.topk_cap)
    for world in (2, 3):
        from_pool = 0
        for start, _ in shard_bounds(tokens.shape[1], world, attention.chunk_size)[1:]:
            chunks = slice(start // attention.chunk_size, None)
            valid, pos = sel.valid[:, chunks], sel.pos[:, chunks]
            assert (valid & (pos < start)).sum() > 0, (world, start)  # keys of an earlier rank's slice
            from_pool += (valid & (pos < start - attention.recent)).sum().item()
        assert from_pool >= 5, world


def test_one_process_without_a_group_is_compute_loss(reference):
    model = sp_worker.build_model()
    tokens, weights = sp_worker.build_batch()
    out = sequence_parallel_loss(model, tokens, weights)
    assert out.bounds == (0, tokens.shape[1])
    torch.testing.assert_close(out.loss.detach(), reference["loss"], rtol=0, atol=0)
    torch.testing.assert_close(out.output.logits.detach(), reference["logits"], rtol=0, atol=0)


def test_shard_bounds():
    assert shard_bounds(100, 2, 8) == [(0, 56), (56, 100)]
    assert shard_bounds(100, 3, 8) == [(0, 40), (40, 72), (72, 100)]
    assert shard_bounds(64, 4, 16) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    with pytest.raises(ValueError, match="too few"):
        shard_bounds(40, 4, 16)


def test_bidirectional_model_is_rejected():
    from genossa.models import GenossaLM, tiny

    model = GenossaLM(tiny(causal=False, n_layers=1))
    with pytest.raises(ValueError, match="causal"):
        sequence_parallel_loss(model, torch.zeros(1, 32, dtype=torch.long))
