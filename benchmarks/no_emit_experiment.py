"""EXPERIMENT, not a feature: drop the fused selected-key dk, dv, db emission (atomic adds) of
_dq_kernel, keeping their products alive through a reduced sink, to time the kernel without its
atomics (its gradients are then wrong). It edits kernels/sparse_attention_bwd.py IN PLACE, so it
runs only with --on-a-copy: on the device tool's copy of the tree (`device_session.sh s9final`).

    python3 benchmarks/no_emit_experiment.py --on-a-copy
"""
import sys
from pathlib import Path

if "--on-a-copy" not in sys.argv:
    sys.exit("no_emit_experiment.py edits the kernels in place: run it only on a throwaway copy, with --on-a-copy")

p = Path("kernels/sparse_attention_bwd.py")
s = p.read_text()
reps = [
    ("""            dq, dkT, dvT, db = _sel_grads_step(dq, q, do, lse2, delta, kt, vt, bias, qk_scale, DOT_PREC)
            _emit_sel_grads(dkT * scale, dvT, db, rows, n_ok, dsk_base, dsv_base, dsb_base, stride_dskr,
                            stride_dsvr, stride_dsbr, offs_dk, offs_dv, INDEXED, DK, DV, BLOCK_DK, BLOCK_DV, True)""",
     """            dq, dkT, dvT, db = _sel_grads_step(dq, q, do, lse2, delta, kt, vt, bias, qk_scale, DOT_PREC)
            sink += tl.sum(tl.sum(dkT, 0) + tl.sum(dvT, 0) + db, 0)"""),
    ("""    for n0 in range(0, cnt, BLOCK_N):
        n = n0 + offs_n
        n_ok = n < cnt
        rows = tl.load(row_base + n, mask=n_ok, other=0)
        kt = _load_rows(sk_base, rows, stride_skr, offs_dk, n_ok, DK, BLOCK_DK, True)""",
     """    sink = 0.0
    for n0 in range(0, cnt, BLOCK_N):
        n = n0 + offs_n
        n_ok = n < cnt
        rows = tl.load(row_base + n, mask=n_ok, other=0)
        kt = _load_rows(sk_base, rows, stride_skr, offs_dk, n_ok, DK, BLOCK_DK, True)"""),
    ("""    _store_rows(dq_ptr + b64 * stride_dqb + h * stride_dqh, qi, stride_dqt, offs_dk, row_ok, dq * scale, DK, BLOCK_DK)""",
     """    _store_rows(dq_ptr + b64 * stride_dqb + h * stride_dqh, qi, stride_dqt, offs_dk, row_ok, dq * scale, DK, BLOCK_DK)
    if FUSED_SEL:
        tl.store(dsb_base, sink)"""),
]
for a, b in reps:
    assert s.count(a) == 1, a[:60]
    s = s.replace(a, b)
p.write_text(s)
print("no-emission experiment applied")
