#!/usr/bin/env bash
# One call of the `device` tool (GPU machine, no registry): install the carried wheels (.whl/) and
# this checkout into /tmp/site, then run one stage; logs and results go under $OUT.
#
#   bash benchmarks/device_session.sh pretrain   # throughput probe, then the bundled model's training
#   bash benchmarks/device_session.sh bench      # kernel tests, training steps (small/base), embed, score
#   bash benchmarks/device_session.sh layer      # whole-layer benchmark (carry .peers), step profiles, score
#   bash benchmarks/device_session.sh study      # conv kernel check, step profile, score, the GPU model study
#   bash benchmarks/device_session.sh tune       # train-loop profile, partial checkpointing (base), base inference profile
#   bash benchmarks/device_session.sh tune2      # grouped score batches, fewer recomputed base blocks, bf16 weights
#   bash benchmarks/device_session.sh tune3      # score by split reach (+ GPU profile), base at its preset checkpointing
#   bash benchmarks/device_session.sh zero       # small preset step under ZeRO 0/1/2 (profiles)
#   bash benchmarks/device_session.sh scan       # kernel tests, SSD beside mamba_ssm (sweep, profile), whole layer (carry .peers)
#   bash benchmarks/device_session.sh scan2      # SSD forward variants (sweep, forward profile), score's GPU profile
#   bash benchmarks/device_session.sh scan3      # SSD tests and timing, score and base embed, whole layer (carry .peers)
#   bash benchmarks/device_session.sh s7score    # score's GPU profile, split reach x batch size, sparse VCF
#   bash benchmarks/device_session.sh s7score2   # score after the one batching, its profile, embed small
#   bash benchmarks/device_session.sh s7attn     # sparse attention beside Flex/SDPA (profiled at 1M), whole layer (carry .peers)
#   bash benchmarks/device_session.sh s7prec     # --precision bf16-weights beside bf16 (embed, score), its GPU test
#   bash benchmarks/device_session.sh s7bias     # key biases by head: attention GPU tests, attention and layer timing
#   bash benchmarks/device_session.sh s8attn     # attention kernel variants swept (registers, spills) and timed
#   bash benchmarks/device_session.sh s8ssd      # score fast path GPU test, SSD backward sweep, whole layer (carry .peers)
#   bash benchmarks/device_session.sh s8group    # SSD backward with dB / dC per group: tests, sweep, timing, layer (carry .peers)
#   bash benchmarks/device_session.sh s8train    # GPU tests of the SSD and model kernels, training steps small and base
#   bash benchmarks/device_session.sh s8fwd      # all SSD tests on the GPU, SSD timing
#   bash benchmarks/device_session.sh s9ssd      # SSD with factored decays, bf16 scan copies: GPU tests, sweep, timing, layer
#   bash benchmarks/device_session.sh s9sel      # selection over runs of blocks, compaction by scatter: GPU tests, timing, layer
#   bash benchmarks/device_session.sh s9attn     # selected keys' dk, dv transposed: attention tests, sweep, timing, layer, step
#   bash benchmarks/device_session.sh s9final    # every GPU test, SSD timing at the kept defaults, attention without emission
#   bash benchmarks/device_session.sh s10prof    # Nsight Compute counters of the attention kernels; attention GPU tests; layer
#   bash benchmarks/device_session.sh s10caps    # attention launch settings with register caps: sweep (each checked), timing
#   bash benchmarks/device_session.sh s10src     # Nsight Compute stall samples per SASS instruction: attention forward and dq kernels
#   bash benchmarks/device_session.sh s10rows    # row indices prefetched a tile ahead: attention GPU tests, sweep, timing, layer
#   bash benchmarks/device_session.sh s10final   # attention GPU tests; timing and layer with and without the dq kernel's index prefetch
#   bash benchmarks/device_session.sh s11sweep   # attention sweep (forward rows ahead, dq dv first), timing, layer (carry .peers)
#   bash benchmarks/device_session.sh s11rows    # GPU tests, attention and layer with one-pass selection rows, layer profile, step
#   bash benchmarks/device_session.sh s11ab      # attention and layer at 1M: selected sums on listed rows vs whole fp32 dk, dv
#   bash benchmarks/device_session.sh s12base    # the committed tree timed (layer, attention), layer profiles at 128k and 1M, SSD bwd block_l 64
#   bash benchmarks/device_session.sh s12sel     # selection pools by merging sorted lists: GPU tests, selection timing, layer
#   bash benchmarks/device_session.sh s12ssd     # SSD backward without its torch tail: SSD tests, SSD timing, layer and profile
#   bash benchmarks/device_session.sh s12rot     # dq kernel's selected tiles rotated per chunk vs in list order: attention, layer
#   bash benchmarks/device_session.sh s12final   # every GPU test, the layer and the small preset's step at the session's final tree
#   bash benchmarks/device_session.sh s13pair    # two chunks per program (at 01cf57d): GPU tests, attention (prefix pattern) and layer, paired or not
#   bash benchmarks/device_session.sh s13split   # SSD chunk scan as two launches (at 44ea2d8): SSD tests, sweep, timing, layer
#   bash benchmarks/device_session.sh s13flex    # the attention beside FlexAttention and dense SDPA on the prefix pattern (16k-1M)
#   bash benchmarks/device_session.sh s10step    # small preset's training step; dq kernel counters with the index prefetch
#   bash benchmarks/device_session.sh s9base     # the base preset's training step at 131k (6 blocks recomputed)
#   bash benchmarks/device_session.sh infer      # embed (base profiled, small), score at 8,192, training steps
#   bash benchmarks/device_session.sh score      # score throughput, 8,192 and 131,072 bases, dense and sparse
#   bash benchmarks/device_session.sh jobs       # embed and score throughput (smaller runs)
#   bash benchmarks/device_session.sh multi      # 2+ GPUs: NCCL tests, data-parallel scaling (ZeRO 1/2/3)
#   bash benchmarks/device_session.sh long       # 2+ GPUs: the longest windows with sequence parallelism
#
# carry: .whl (wheels from ../shared/tools/device-wheels.sh), data (pipelines/pretrain_data.py),
# .peers (mamba_ssm source, for the layer benchmark); multi/long also need data/bench
# (benchmarks/long_window_data.py: the whole E. coli chromosome for 2-4 Mb windows).
set -uo pipefail
stage=${1:?stage: pretrain, bench, jobs, multi, long or multi+long}
started=$SECONDS
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/logs"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
command -v genossa || exit 1
export RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511
# the lent multi-GPU machines keep NVLink multicast off (it can take a shared host's GPUs down)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "setup done at $((SECONDS - started)) s"

PRETRAIN=configs/pretrain/mini-prokaryotes.yaml
HELD_OUT="[ecoli_k12_heldout,mruminantium_heldout,cdiphtheriae_heldout]"
CORPUS="[data/pretrain/prokaryotes.fa.gz]"

# median tokens/s (and MFU, peak memory) over the logged steps after the first two
step_stats() {
    python3 - "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
rows = rows[2:] or rows  # the first steps compile kernels
tps = statistics.median(r["tokens_per_s"] for r in rows)
print(f"{tps:.0f} {statistics.median(r['mfu'] for r in rows):.4f} {max(r['peak_memory_mib'] for r in rows):.0f}")
EOF
}

# the sparse attention (indexed) and the whole layer timed at 128k and 1M, logged as attention_LABEL.log
# and layer_LABEL.log (the layer benchmark needs .peers carried)
time_attention_layer() {  # label
    timeout 100 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention_$1.log" 2>&1
    echo "   exit $?"; grep -E "^\| [0-9]+ \| ours" "$OUT/logs/attention_$1.log"
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer_$1.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer_$1.log"; tail -n 6 "$OUT/logs/layer_$1.log"
}

run_train() {  # name, timeout, genossa train arguments...
    local name=$1 limit=$2
    shift 2
    echo "== $name: genossa train $*"
    rm -rf "/tmp/runs/$name"  # a warm machine keeps the last call's runs
    timeout "$limit" genossa train --quiet --out "/tmp/runs/$name" "$@" > "$OUT/logs/$name.log" 2>&1
    echo "   exit $?; $(tail -n 3 "$OUT/logs/$name.log" | tr '\n' ' ')"
    [ -f "/tmp/runs/$name/metrics.jsonl" ] && echo "   $name tokens/s, MFU, peak MiB: $(step_stats /tmp/runs/$name/metrics.jsonl)"
    mkdir -p "$OUT/metrics" && cp "/tmp/runs/$name/metrics.jsonl" "$OUT/metrics/$name.jsonl" 2>/dev/null
}

# as run_train, under a launcher: name, timeout, launcher words (up to `--`), genossa train arguments
run_launched() {
    local name=$1 limit=$2
    shift 2
    local launcher=()
    while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
    shift
    echo "== $name: ${launcher[*]} genossa train $*"
    rm -rf "/tmp/runs/$name"
    timeout "$limit" env -u RANK -u LOCAL_RANK -u WORLD_SIZE -u MASTER_ADDR -u MASTER_PORT \
        "${launcher[@]}" "$(command -v genossa)" train --quiet --out "/tmp/runs/$name" "$@" > "$OUT/logs/$name.log" 2>&1
    echo "   exit $?; $(grep -v '^\[' "$OUT/logs/$name.log" | tail -n 3 | tr '\n' ' ' | cut -c1-600)"
    [ -f "/tmp/runs/$name/metrics.jsonl" ] && echo "   $name tokens/s, MFU, peak MiB: $(step_stats /tmp/runs/$name/metrics.jsonl)"
    mkdir -p "$OUT/metrics" && cp "/tmp/runs/$name/metrics.jsonl" "$OUT/metrics/$name.jsonl" 2>/dev/null
}

# throughput settings: no held-out evaluation, no checkpoint, every step logged
fast=(--set train.seq_len_warmup_steps=0 --set train.eval_every=1000 --set train.log_every=1
      --set train.checkpoint_every=1000 --set train.device=cuda)
LONG="[data/bench/ecoli_k12_whole.fa.gz]"
# one-GPU throughput runs on the corpus: every step logged, held-out contigs kept out, ZeRO 0 (a later --set wins)
common=(--set train.grad_accum=1 --set train.seq_len_warmup_steps=0 --set train.eval_every=1000
        --set train.log_every=1 --set train.checkpoint_every=1000 --set "data.fasta=$CORPUS"
        --set "data.held_out_contigs=$HELD_OUT" --set train.zero_stage=0 --set train.device=cuda)

case $stage in
multi+long)  # both in one call (the machine stays warm for 30 s only)
    bash "$0" multi && bash "$0" long
    ;;
multi)
    nvidia-smi topo -m
    python3 -c "import torch; print('GPUs:', torch.cuda.device_count())"
    # PYTHONSAFEPATH: spawned ranks must import the installed genossa (with genossa.kernels), not ./genossa
    PYTHONSAFEPATH=1 timeout 240 python3 -m pytest -q -s -p no:cacheprovider -m gpu tests/parallel 2>&1 \
        | grep -E "NCCL|passed|failed|Error" | tail -n 8
    dp=("${fast[@]}" --set "data.fasta=$CORPUS" --set "data.held_out_contigs=[]" --set train.grad_accum=1
            --set train.activation_checkpointing=false --set train.steps=${DP_STEPS:-10})
    run_train dp1-warm 60 --config small "${dp[@]}" --set train.steps=3  # compiles the Triton kernels once
    run_train dp1-zero1 110 --config small "${dp[@]}" --set train.zero_stage=1
    # the `deepspeed` launcher (its script: pip --target keeps one bin/, genossa's)
    run_launched dp2-zero1 110 python3 -m deepspeed.launcher.runner --num_gpus 2 -- --config small "${dp[@]}" \
        --set train.zero_stage=1
    run_launched dp2-zero2 110 torchrun --standalone --nproc_per_node 2 -- --config small "${dp[@]}" --set train.zero_stage=2
    run_launched dp2-zero3 120 torchrun --standalone --nproc_per_node 2 -- --config small "${dp[@]}" --set train.zero_stage=3
    run_train dp1-zero1-again 110 --config small "${dp[@]}" --set train.zero_stage=1  # the first run's GPU, warm
    ;;
long)
    sp=("${fast[@]}" --set "data.fasta=$LONG" --set "data.held_out_contigs=[]" --set train.grad_accum=1
        --set train.activation_checkpointing=true --set train.steps=4)
    # entries preset (or config path):window:ranks
    for w in ${LONG_WINDOWS:-small:1048576:1 small:2097152:2 small:4194304:2}; do
        IFS=: read -r preset n p <<< "$w"
        name=$(basename "$preset" .yaml)
        if [ "$p" = 1 ]; then
            run_train $name-$n-sp1 150 --config $preset "${sp[@]}" --set data.window=$n --set data.stride=$n
        else
            run_launched $name-$n-sp$p 200 torchrun --standalone --nproc_per_node $p -- --config $preset "${sp[@]}" --set data.window=$n \
                --set data.stride=$n --set train.sequence_parallel=$p --set train.zero_stage=1
        fi
    done
    ;;
pretrain)
    timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_selection.py 2>&1 | tail -n 3
    run_train probe 150 --config $PRETRAIN --set train.steps=10 --set train.seq_len_warmup_steps=0 \
        --set train.eval_every=1000 --set train.log_every=1
    read -r tps _ <<< "$(step_stats /tmp/runs/probe/metrics.jsonl)"
    left=$((565 - (SECONDS - started)))
    # the training's own time: what is left, less ~75 s of start, evaluations and export
    steps=$(python3 -c "print(max(20, int(($left - 75) * $tps / (2 * 2 * 131072))))")
    echo "== pretraining: $steps steps (probe $tps tokens/s, $left s left)"
    run_train mini-prokaryotes $((left - 5)) --config $PRETRAIN --set train.steps=$steps \
        --set train.warmup_steps=$((steps / 10)) --set train.seq_len_warmup_steps=$((steps * 15 / 100)) \
        --set train.eval_every=$((steps / 4)) --time-limit $(python3 -c "print(($left - 45) / 60)")
    run=/tmp/runs/mini-prokaryotes
    tar czf "$OUT/run.tar.gz" -C $run config.yaml metrics.jsonl loss_curves.png model/config.json \
        -C "$OUT" logs
    split -b 15M $run/model/model.safetensors "$OUT/model.safetensors.part-"
    ls -la "$OUT"
    ;;
bench)  # one GPU, ~9 min: kernel tests, training throughput, embed, score
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        tests/ops/test_rms_norm_triton.py tests/ops/test_causal_conv1d_triton.py tests/ops/test_selection.py \
        tests/ops/test_fused_elementwise_triton.py tests/ops/test_ssd_triton.py tests/models/test_model_kernels.py \
        2>&1 | tail -n 3
    run_train small-131k 90 --config small "${common[@]}" --set train.steps=8 --set train.activation_checkpointing=false
    run_train base-131k 100 --config base "${common[@]}" --set train.steps=6
    echo "== small step profile"
    timeout 60 python3 benchmarks/model_step.py --preset small --lengths 131072 --profile 2>&1 | tail -n 36
    echo "== embed"
    timeout 80 python3 benchmarks/embed_bench.py --preset small --genome-mb 2 --batch-size 8 --chunk 131072 --bare 2>&1 | tail -n 4
    timeout 100 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 4 --chunk 131072 --bare --profile \
        2>&1 | tail -n 40
    echo "== score"
    timeout 80 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 512 2>&1 | tail -n 3
    ;;
tune)  # one GPU, ~8 min: where genossa train's step goes beyond the bare model (profile.txt), partial
    # activation checkpointing for base at 131k, base inference profile
    run_train small-131k 90 --config small "${common[@]}" --set train.steps=8 --set train.activation_checkpointing=false \
        --set train.profile_step=6
    head -n 45 /tmp/runs/small-131k/profile.txt; grep -A 25 "own CPU time" /tmp/runs/small-131k/profile.txt
    echo "== base step, recomputing K of 16 blocks"
    for k in ${BASE_CKPT:-16 12 10 8}; do
        timeout 60 python3 benchmarks/model_step.py --preset base --lengths 131072 --checkpointing $k 2>&1 | tail -n 1
    done
    run_train base-131k 100 --config base "${common[@]}" --set train.steps=6 \
        --set train.activation_checkpointing=${BASE_TRAIN_CKPT:-10} --set train.profile_step=5
    head -n 40 /tmp/runs/base-131k/profile.txt
    echo "== embed base (profiled at batch 2)"
    timeout 100 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 2 --chunk 131072 --profile \
        2>&1 | tail -n 40
    ;;
tune2)  # one GPU, ~7 min: score with grouped split points, base at 131k recomputing fewer blocks, the train
    # loop's profile (small), base inference with bf16 weights
    echo "== score"
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 256 1024 2>&1 | tail -n 3
    for k in ${BASE_CKPT:-6 4 2}; do
        run_train base-131k-ckpt$k 80 --config base "${common[@]}" --set train.steps=5 --set train.activation_checkpointing=$k
    done
    run_train small-131k 90 --config small "${common[@]}" --set train.steps=8 --set train.activation_checkpointing=false \
        --set train.profile_step=6
    cp /tmp/runs/small-131k/profile.txt "$OUT/logs/small-131k-profile.txt"
    echo "== embed base: bf16 weights"
    timeout 120 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 4 --chunk 131072 --bare \
        --bf16-weights 2>&1 | tail -n 3
    ;;
tune3)  # one GPU, ~6 min: score by split reach (and its GPU profile), the base preset's own checkpointing
    echo "== score by split reach"
    timeout 150 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 --split-reach 0.125 0.25 0.5 1.0 2>&1 | grep '^{'
    timeout 90 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 --split-reach 0.25 --profile-gpu 2>&1 | tail -n 28
    run_train base-131k 100 --config base "${common[@]}" --set train.steps=8
    ;;
zero)  # one GPU, ~3 min: the small preset's step under ZeRO 0/1/2 (DeepSpeed's optimizer paths differ in host syncs)
    for z in 0 1 2; do
        run_train small-131k-zero$z 80 --config small "${common[@]}" --set train.activation_checkpointing=false \
            --set train.steps=8 --set train.zero_stage=$z --set train.profile_step=6
        cp /tmp/runs/small-131k-zero$z/profile.txt "$OUT/logs/small-131k-zero$z-profile.txt"
        grep -E "^step|cudaStreamSynchronize" /tmp/runs/small-131k-zero$z/profile.txt | cut -c1-150
    done
    ;;
scan)  # one GPU, ~8 min: kernel tests, the SSD scan beside mamba_ssm (launch sweep, per-kernel profile), whole layer
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py \
        tests/ops/test_fused_elementwise_triton.py tests/ops/test_sparse_attention_triton.py tests/models/test_model_kernels.py \
        2>&1 | tail -n 3
    echo "== ssd"
    timeout 270 python3 benchmarks/ssd_bench.py --check-lengths 4096 65536 2>&1 | tail -n 75
    echo "== layer"
    timeout 150 python3 benchmarks/layer_bench.py 2>&1 | tail -n 16
    ;;
scan2)  # one GPU, ~8 min: the SSD forward's variants (sweep), its per-kernel profile, the score job's GPU profile
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    timeout 280 python3 benchmarks/ssd_bench.py --lengths 131072 1048576 --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    grep -v "^T=" "$OUT/logs/ssd.log" | tail -n 75
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 --profile-gpu 2>&1 | tail -n 30
    ;;
scan3)  # one GPU, ~7 min: the SSD forward as kept (tests, sweep, timing, profile), score, base embed, whole layer
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    timeout 200 python3 benchmarks/ssd_bench.py --lengths 131072 1048576 --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    grep -v "^T=" "$OUT/logs/ssd.log" | grep -v "^---\|Self CPU\|^$" | tail -n 48
    timeout 80 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 2>&1 | grep '^{'
    timeout 70 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 4 --chunk 131072 2>&1 | tail -n 2
    timeout 100 python3 benchmarks/layer_bench.py --lengths 131072 1048576 2>&1 | tail -n 10
    ;;
s7score)  # one GPU, ~6 min: score's GPU profile, split reach x batch size, the sparse VCF's batched prefixes
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 --profile-gpu > "$OUT/logs/score-profile.log" 2>&1
    grep -v "^---\|^$" "$OUT/logs/score-profile.log" | tail -n 26
    timeout 200 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 512 1024 2048 --split-reach 0.0625 0.5 2>&1 | grep '^{'
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --sparse-variants 192 --vcfs sparse \
        --batch-size 1024 2>&1 | grep '^{'
    ;;
s7score2)  # one GPU, ~7 min: score after the one batching (dense, sparse, 8,192 and 131,072), its GPU profile, embed small
    PYTHONSAFEPATH=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/models 2>&1 | tail -n 2
    timeout 200 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --sparse-variants 192 \
        --batch-size ${SCORE_BATCHES:-512 1024 2048} 2>&1 | grep '^{'
    timeout 200 python3 benchmarks/score_bench.py --preset small --window 131072 --dense-positions 1024 --sparse-variants 64 \
        --batch-size 1024 > "$OUT/logs/score-131k.log" 2>&1
    echo "   exit $?"; grep '^{' "$OUT/logs/score-131k.log"; grep -v '^{' "$OUT/logs/score-131k.log" | tail -n 4
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 --profile-gpu > "$OUT/logs/score-profile.log" 2>&1
    grep -v "^---\|^$" "$OUT/logs/score-profile.log" | cut -c1-60,100-200 | tail -n 26
    timeout 80 python3 benchmarks/embed_bench.py --preset small --genome-mb 2 --batch-size 8 --chunk 131072 --bare 2>&1 | tail -n 3
    ;;
s7attn)  # one GPU, ~8 min: the sparse attention beside Flex and SDPA on an H200 (its kernels profiled at 1M), whole layer
    timeout 330 python3 benchmarks/attention_bench.py --profile 1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; sed -n '/^## correctness/,$p' "$OUT/logs/attention.log" | cut -c1-160
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 12 "$OUT/logs/layer.log"
    ;;
s7prec)  # one GPU, ~6 min: --precision bf16-weights beside bf16 autocast (embed base and small, score), its GPU test
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider tests/models/test_precision.py 2>&1 | tail -n 2
    timeout 200 python3 benchmarks/embed_bench.py --preset base small --genome-mb 1 --batch-size 4 --chunk 131072 \
        --precision bf16 bf16-weights 2>&1 | grep '^{'
    for p in bf16 bf16-weights; do
        timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
            --batch-size 1024 --precision $p 2>&1 | grep '^{'
    done
    timeout 120 python3 benchmarks/bf16_weights_check.py --positions 1024 --windows 32 2>&1 | tail -n 6
    ;;
s7bias)  # one GPU, ~4 min: key biases laid out by head: attention GPU tests, attention and whole layer timing (carry .peers)
    PYTHONSAFEPATH=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        tests/ops/test_fused_elementwise_triton.py 2>&1 | tail -n 2
    PYTHONSAFEPATH=1 timeout 80 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 100 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 2>&1 | sed -n '/^## timing/,$p' | cut -c1-170
    timeout 130 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 9 "$OUT/logs/layer.log"
    ;;
s8attn)  # one GPU, ~3 min: dq kernel variants swept (each checked in bf16; registers and spills), then timed at 128k and 1M
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 2
    timeout 300 python3 benchmarks/attention_bench.py --no-check --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 --profile 1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; sed -n '/^2. launch sweep/,/^3. timing/p' "$OUT/logs/attention.log" | cut -c1-200
    sed -n '/^## timing/,$p' "$OUT/logs/attention.log" | cut -c1-170
    ;;
s8ssd)  # one GPU, ~6 min: score's fast path on the kernels (GPU test), the SSD backward's launch sweep, whole layer (carry .peers)
    PYTHONSAFEPATH=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/score/test_score_fastpath.py \
        tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    timeout 240 python3 benchmarks/ssd_bench.py --no-sweep --bwd-sweep --no-profile --lengths 131072 1048576 \
        --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; sed -n '/^== backward launch/,/chosen/p' "$OUT/logs/ssd.log" | cut -c1-200
    sed -n '/^== summary/,$p' "$OUT/logs/ssd.log" | cut -c1-200
    timeout 130 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 9 "$OUT/logs/layer.log"
    ;;
s8group)  # one GPU, ~9 min: dB / dC per group in the SSD backward: GPU tests, launch sweep, timing and profile, whole layer (carry .peers)
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 330 python3 benchmarks/ssd_bench.py --no-sweep --bwd-sweep --lengths 131072 1048576 \
        --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; sed -n '/^== backward launch/,/chosen/p' "$OUT/logs/ssd.log" | grep -v "^T=" | cut -c1-200
    sed -n '/^== summary/,$p' "$OUT/logs/ssd.log" | cut -c1-200
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 8 "$OUT/logs/layer.log"
    ;;
s8train)  # one GPU, ~5 min: the SSD backward's kept launch setting in the GPU tests, training steps (small, base)
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 90 python3 benchmarks/model_step.py --preset small --lengths 131072 2>&1 | tail -n 2
    timeout 120 python3 benchmarks/model_step.py --preset base --lengths 131072 --checkpointing 6 2>&1 | tail -n 2
    ;;
s8fwd)  # one GPU, ~4 min: SSD tests on the GPU (all, not only -m gpu), SSD timing (carry .peers)
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    timeout 200 python3 benchmarks/ssd_bench.py --no-sweep --no-profile --lengths 131072 1048576 \
        --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; sed -n '/^== summary/,$p' "$OUT/logs/ssd.log" | cut -c1-200
    ;;
s9ssd)  # one GPU, ~9 min: SSD decays factored past the diagonal blocks, bf16 copies for the forward scan: GPU tests,
    # forward sweep, timing and profiles, whole layer (carry .peers)
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 290 python3 benchmarks/ssd_bench.py --lengths 131072 1048576 --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; sed -n '/^== forward launch/,/chosen/p' "$OUT/logs/ssd.log" | cut -c1-200
    grep -A 14 "^== per-kernel" "$OUT/logs/ssd.log" | grep -v "^-" | cut -c1-120
    sed -n '/^== summary/,$p' "$OUT/logs/ssd.log" | cut -c1-200
    timeout 140 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 8 "$OUT/logs/layer.log"
    ;;
s9sel)  # one GPU, ~8 min: selection's scan over runs of blocks, compaction without a sort, the SSD forward at 64 / 4:
    # GPU tests, selection / attention / SSD timing, whole layer (carry .peers)
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_selection.py \
        tests/ops/test_sparse_attention_triton.py tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 60 python3 benchmarks/selection_bench.py --lengths 131072 1048576 > "$OUT/logs/selection.log" 2>&1
    echo "   exit $?"; grep -A 14 "Name" "$OUT/logs/selection.log" | grep -v "^-" | cut -c1-60,150-210; sed -n '/^| n/,$p' "$OUT/logs/selection.log"
    timeout 120 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; tail -n 8 "$OUT/logs/attention.log"
    timeout 120 python3 benchmarks/ssd_bench.py --no-sweep --no-profile --lengths 131072 1048576 --check-lengths 4096 \
        > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; sed -n '/^== summary/,$p' "$OUT/logs/ssd.log" | cut -c1-200
    timeout 140 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 8 "$OUT/logs/layer.log"
    ;;
s9attn)  # one GPU, ~7 min: the fused dq kernel's selected-key dk, dv as Q^T dS, dO^T P: GPU tests, backward sweep
    # (each candidate checked), timing, whole layer, a small training step (carry .peers)
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 2
    timeout 200 python3 benchmarks/attention_bench.py --no-check --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; grep -E "fwd\+bwd \{|failed|kept|registers|^\| [0-9]+ \| ours" "$OUT/logs/attention.log" | cut -c1-160
    timeout 140 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 7 "$OUT/logs/layer.log"
    timeout 90 python3 benchmarks/model_step.py --preset small --lengths 131072 2>&1 | tail -n 2
    ;;
s9final)  # one GPU, ~8 min: every GPU-marked test and the model kernels' tests, SSD timing at the kept defaults,
    # then the attention timed without the fused selected keys' atomic dk, dv, db (benchmarks/no_emit_experiment.py:
    # wrong gradients, timing only; it edited this throwaway copy of the tree; removed in session 11, when its
    # patterns no longer matched the kernels: the step is skipped without it)
    PYTHONSAFEPATH=1 timeout 250 python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tail -n 3
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 80 python3 benchmarks/ssd_bench.py --no-sweep --no-profile --lengths 131072 --check-lengths 4096 \
        > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; sed -n '/^== summary/,$p' "$OUT/logs/ssd.log" | cut -c1-200
    if [ -f benchmarks/no_emit_experiment.py ]; then
        python3 benchmarks/no_emit_experiment.py --on-a-copy  # the bench imports the kernels from this checkout
        timeout 90 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
            --sizes 131072,1048576 > "$OUT/logs/attention_no_emit.log" 2>&1
        echo "   exit $?"; grep -E "^\| [0-9]+ \| ours" "$OUT/logs/attention_no_emit.log"
    fi
    ;;
s10prof)  # one GPU, ~6 min: Nsight Compute (full set) on the attention's forward, dq and local dk/dv kernels at
    # 128k (raw counters as CSV under $OUT), the attention GPU tests, the whole layer (carry .peers)
    KERNELS='regex:_sparse_attn_fwd_kernel|_dq_kernel|_dkv_local_kernel'
    timeout 240 ncu --clock-control none --set full --launch-skip 3 --launch-count 3 --kernel-name "$KERNELS" \
        -o /tmp/attn -f python3 benchmarks/attention_ncu.py --n 131072 > "$OUT/logs/ncu_run.log" 2>&1
    echo "   ncu exit $?"; tail -n 3 "$OUT/logs/ncu_run.log"
    ncu --import /tmp/attn.ncu-rep --page raw --csv > "$OUT/logs/ncu_raw.csv" 2>&1
    ncu --import /tmp/attn.ncu-rep --page details > "$OUT/logs/ncu_details.txt" 2>&1
    grep -E "^  [a-z_]+kernel|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|Compute \(SM\) Thr|No Eligible" \
        "$OUT/logs/ncu_details.txt" | cut -c1-110
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 7 "$OUT/logs/layer.log"
    ;;
s10caps)  # one GPU, ~6 min: the attention's launch settings with register caps (more programs per multiprocessor):
    # sweep at 128k (each backward setting checked against the reference first), timing at 128k and 1M
    timeout 450 python3 benchmarks/attention_bench.py --no-check --cap-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention_caps.log" 2>&1
    echo "   exit $?"; grep -E "^  fwd|failed|kept|registers|^\| [0-9]+ \| ours" "$OUT/logs/attention_caps.log" | cut -c1-170
    ;;
s10src)  # one GPU, ~3 min: where the attention's forward and dq kernels stall, per SASS instruction (128k;
    # CSV under $OUT/logs), and the dkv launch setting kept by s10caps timed again
    timeout 200 ncu --clock-control none --launch-skip 2 --launch-count 2 \
        --kernel-name 'regex:_sparse_attn_fwd_kernel|_dq_kernel' --section SourceCounters --section WarpStateStats \
        --import-source no -o /tmp/src -f python3 benchmarks/attention_ncu.py --n 131072 > "$OUT/logs/ncu_src_run.log" 2>&1
    echo "   ncu exit $?"; tail -n 2 "$OUT/logs/ncu_src_run.log"
    ncu --import /tmp/src.ncu-rep --page source --csv --print-source sass > "$OUT/logs/ncu_source.csv" 2>&1
    echo "   source page exit $? ($(wc -l < "$OUT/logs/ncu_source.csv") lines)"
    timeout 120 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; grep -E "^\| [0-9]+ \| ours|kernel config" "$OUT/logs/attention.log"
    ;;
s10rows)  # one GPU, ~7 min: the selected-key loops with their row indices a tile ahead (gathers pipelined 3 deep):
    # attention and model-kernel GPU tests, the default launch sweep (each backward setting checked), timing, layer
    PYTHONSAFEPATH=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 220 python3 benchmarks/attention_bench.py --no-check --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; grep -E "^  fwd|failed|kept|registers|^\| [0-9]+ \| ours" "$OUT/logs/attention.log" | cut -c1-170
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 7 "$OUT/logs/layer.log"
    ;;
s10final)  # one GPU, ~9 min: attention and model-kernel GPU tests, then attention timing and the whole layer with the
    # dq kernel's row indices a tile ahead (as committed) and, on this throwaway copy of the tree, without (carry .peers)
    PYTHONSAFEPATH=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    for variant in prefetch in-iteration; do
        if [ "$variant" = in-iteration ]; then
            python3 - <<'EOF2' || break
import re
p = "kernels/sparse_attention_bwd.py"
s = open(p).read()
s, n = re.subn(r"    # the row indices come one tile ahead.*?\n    rows_next = tl.load\(row_base \+ offs_n, mask=offs_n < cnt, other=0\)\n", "", s, flags=re.S)
s = s.replace("        rows = rows_next\n        rows_next = tl.load(row_base + n + BLOCK_N, mask=n + BLOCK_N < cnt, other=0)\n",
              "        rows = tl.load(row_base + n, mask=n_ok, other=0)\n")
assert n == 1 and "rows_next" not in s
open(p, "w").write(s)
EOF2
        fi
        echo "== dq row indices: $variant"
        time_attention_layer "$variant"
    done
    ;;
s11sweep)  # one GPU, ~7 min: attention and model-kernel GPU tests; the attention's launch sweep (forward tiles with
    # their row indices a tile ahead, dq kernels with the selected keys' dv emitted first), timing at the sweep's
    # best; the whole layer at the committed launch settings (carry .peers)
    PYTHONSAFEPATH=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 240 python3 benchmarks/attention_bench.py --no-check --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention_sweep.log" 2>&1
    echo "   exit $?"; grep -E "^  (fwd|bwd|fwd\+bwd|kept)|^\| [0-9]+ \| ours|registers" "$OUT/logs/attention_sweep.log"
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; tail -n 8 "$OUT/logs/layer.log"
    ;;
s11rows)  # one GPU, ~8 min: GPU tests (selection rows, attention, model kernels); attention timing and the whole layer
    # with distinct lists compacted by one kernel; the layer's kernels profiled at 1M; the small preset's training step
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_selection_rows.py \
        tests/ops/test_sparse_attention_triton.py 2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 100 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; grep -E "^\| [0-9]+ \| ours" "$OUT/logs/attention.log"
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 6 "$OUT/logs/layer.log"
    timeout 90 python3 benchmarks/layer_bench.py --profile 1048576 > "$OUT/logs/layer_profile.log" 2>&1
    echo "   exit $?"; tail -n 36 "$OUT/logs/layer_profile.log" | cut -c1-160
    timeout 150 python3 benchmarks/model_step.py --preset small --lengths 131072 --repeats 5 2>&1 | tail -n 2
    ;;
s11ab)  # one GPU, ~7 min: attention GPU tests; attention and layer timing at 1M with the selected keys' sums read
    # by the local kernel on the listed rows only (as committed) and, on this throwaway copy of the tree, with the
    # backward before (benchmarks/s11_variant_bwd.txt, an uncommitted copy of b987dcb's sparse_attention_bwd.py)
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 1
    for variant in listed-rows whole-fp32; do
        [ "$variant" = whole-fp32 ] && { cp benchmarks/s11_variant_bwd.txt kernels/sparse_attention_bwd.py || break; }
        echo "== backward: $variant"
        timeout 80 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
            --sizes 1048576 > "$OUT/logs/attention_$variant.log" 2>&1
        echo "   exit $?"; grep -E "^\| [0-9]+ \| ours" "$OUT/logs/attention_$variant.log"
        timeout 120 python3 benchmarks/layer_bench.py --lengths 1048576 > "$OUT/logs/layer_$variant.log" 2>&1
        echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer_$variant.log"; tail -n 3 "$OUT/logs/layer_$variant.log"
    done
    ;;
s12base)  # one GPU, ~9 min: the committed tree timed (whole layer, attention; 128k and 1M), the layer's kernels
    # profiled at 128k and 1M, and the SSD backward's per-head chunk kernels at 64 positions per tile (sweep at 1M)
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 6 "$OUT/logs/layer.log"
    timeout 100 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
        --sizes 131072,1048576 > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; grep -E "^\| [0-9]+ \| ours" "$OUT/logs/attention.log"
    for n in 131072 1048576; do
        timeout 90 python3 benchmarks/layer_bench.py --profile $n > "$OUT/logs/layer_profile_$n.log" 2>&1
        echo "   exit $?"; tail -n 36 "$OUT/logs/layer_profile_$n.log" | cut -c1-160
    done
    timeout 200 python3 benchmarks/ssd_bench.py --no-sweep --no-profile --bwd-sweep --sweep-length 1048576 \
        --lengths 1048576 --check-lengths 4096 > "$OUT/logs/ssd_bwd_sweep.log" 2>&1
    echo "   exit $?"; grep -E "^  \{|chosen|^\| 1024k|correctness" "$OUT/logs/ssd_bwd_sweep.log"
    ;;
s12sel)  # one GPU, ~6 min: the selection's pools by merging sorted lists (Triton): GPU tests, selection timing
    # (torch rule vs Triton, profiled at 1M), the whole layer (carry .peers)
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_selection.py \
        tests/ops/test_selection_pools.py tests/ops/test_selection_rows.py 2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 90 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 120 python3 benchmarks/selection_bench.py --lengths 131072 1048576 > "$OUT/logs/selection.log" 2>&1
    echo "   exit $?"; grep -A 20 "^| n | what" "$OUT/logs/selection.log"
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 6 "$OUT/logs/layer.log"
    ;;
s12ssd)  # one GPU, ~7 min: the SSD backward without its torch tail (dB, dC in bf16 from their kernels, the decay's
    # gradient by a kernel): SSD and model-kernel GPU tests, SSD timing beside mamba_ssm, the whole layer and its profile
    PYTHONSAFEPATH=1 timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 1
    PYTHONSAFEPATH=1 timeout 90 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 150 python3 benchmarks/ssd_bench.py --no-sweep --no-profile --lengths 131072 1048576 --check-lengths 4096 \
        > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; grep -E "^\| 1(28|024)k|^correctness" "$OUT/logs/ssd.log"
    timeout 150 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 6 "$OUT/logs/layer.log"
    timeout 90 python3 benchmarks/layer_bench.py --profile 1048576 > "$OUT/logs/layer_profile.log" 2>&1
    echo "   exit $?"
    ;;
s12rot)  # one GPU, ~9 min: attention GPU tests; SSD timing at 1M; attention and layer timing with the dq kernel's selected tiles
    # started at the chunk's own tile (as committed) and, on this throwaway copy of the tree, in list order
    # (benchmarks/s12_variant_bwd.txt, an uncommitted copy of the backward before) (carry .peers)
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        2>&1 | tail -n 1
    timeout 110 python3 benchmarks/ssd_bench.py --no-sweep --no-profile --lengths 1048576 --check-lengths 4096 \
        > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; grep -E "^\| 1024k|^correctness" "$OUT/logs/ssd.log"
    for variant in rotated in-order; do
        [ "$variant" = in-order ] && { cp benchmarks/s12_variant_bwd.txt kernels/sparse_attention_bwd.py || break; }
        echo "== dq selected tiles: $variant"
        time_attention_layer "$variant"
    done
    ;;
s12final)  # one GPU, ~7 min: every GPU-marked test and the model kernels' tests at the session's final tree; the
    # whole layer; the small preset's training step (carry .peers)
    PYTHONSAFEPATH=1 timeout 250 python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tail -n 3
    PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider tests/models/test_model_kernels.py 2>&1 | tail -n 1
    timeout 130 python3 benchmarks/layer_bench.py --lengths 131072 1048576 > "$OUT/logs/layer.log" 2>&1
    echo "   exit $?"; grep "genossa layer:" "$OUT/logs/layer.log"; tail -n 6 "$OUT/logs/layer.log"
    timeout 100 python3 benchmarks/model_step.py --preset small --lengths 131072 --repeats 5 2>&1 | tail -n 2
    ;;
s13pair)  # one GPU, ~3 min: paired chunks (two query chunks per program over their merged list): the attention and
    # pair-list GPU tests; the attention at 128k and 1M on the model's kind of lists (--pattern prefix) unpaired and
    # paired at two launch settings; the layer (its real selection) unpaired and paired (carry .peers). Ran at
    # 01cf57d; the paired mode, slower everywhere, was removed after (benchmarks/RESULTS.md, session 13): on a later
    # tree the "pairs" settings are ignored and the tests it names are gone
    PYTHONSAFEPATH=1 timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_sparse_attention_triton.py \
        tests/ops/test_pair_rows.py 2>&1 | tail -n 3
    for variant in unpaired '{"pairs": true, "fwd": [128, 64, 8, 3], "dq": [128, 32, 8, 3]}' \
                   '{"pairs": true, "fwd": [128, 32, 8, 3], "dq": [128, 16, 8, 3]}'; do
        [ "$variant" = unpaired ] && variant='{}'
        echo "== attention, prefix pattern: $variant"
        timeout 100 python3 benchmarks/attention_bench.py --no-check --no-sweep --no-flex --dense-max 0 --gathered-max 0 \
            --sizes 131072,1048576 --pattern prefix --config "$variant" > "$OUT/logs/attention.log" 2>&1
        echo "   exit $?"; grep -E "^\| [0-9]+ \| ours \(indexed|keys per query" "$OUT/logs/attention.log"
        cat "$OUT/logs/attention.log" >> "$OUT/logs/attention_all.log"
    done
    for variant in '{}' '{"pairs": true, "fwd": [128, 64, 8, 3], "dq": [128, 32, 8, 3]}'; do
        echo "== layer: $variant"
        timeout 100 python3 benchmarks/layer_bench.py --ours-only --lengths 131072 1048576 --attn-config "$variant" \
            > "$OUT/logs/layer.log" 2>&1
        echo "   exit $?"; grep "genossa layer" "$OUT/logs/layer.log"
        cat "$OUT/logs/layer.log" >> "$OUT/logs/layer_all.log"
    done
    ;;
s13split)  # one GPU, ~8 min: the SSD forward's chunk scan in one launch or two (y, then the importance's terms:
    # split_importance): SSD GPU tests; ssd_bench's forward sweep at 128k (both ways) and timing at 128k and 1M beside
    # mamba_ssm, per-kernel profile at 128k; the layer with either (carry .peers). Ran at 44ea2d8; two launches
    # were no faster and the option was removed after (benchmarks/RESULTS.md, session 13)
    PYTHONSAFEPATH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_ssd_triton.py 2>&1 | tail -n 2
    timeout 260 python3 benchmarks/ssd_bench.py --lengths 131072 1048576 --check-lengths 4096 > "$OUT/logs/ssd.log" 2>&1
    echo "   exit $?"; grep -E "^  \{|chosen|^correctness" "$OUT/logs/ssd.log"; tail -n 8 "$OUT/logs/ssd.log"
    for variant in '{"split_importance": false}' '{"split_importance": true}'; do
        echo "== layer: SSD forward $variant"
        timeout 100 python3 benchmarks/layer_bench.py --ours-only --lengths 131072 1048576 --ssd-fwd-config "$variant" \
            > "$OUT/logs/layer.log" 2>&1
        echo "   exit $?"; grep "genossa layer" "$OUT/logs/layer.log"
        cat "$OUT/logs/layer.log" >> "$OUT/logs/layer_all.log"
    done
    ;;
s13flex)  # one GPU, ~7 min: the attention (checks against the fp32 reference, then timing) beside FlexAttention and
    # dense SDPA at 16k, 128k and 1M on --pattern prefix (the model's kind of lists), at the committed settings
    timeout 480 python3 benchmarks/attention_bench.py --no-sweep --pattern prefix --sizes 16384,131072,1048576 \
        > "$OUT/logs/attention.log" 2>&1
    echo "   exit $?"; grep -E "keys per query|Flex vs ours" "$OUT/logs/attention.log"; tail -n 24 "$OUT/logs/attention.log"
    ;;
s10step)  # one GPU, ~4 min: the small preset's bare training step with session 10's kernels, then the dq kernel's
    # counters and per-instruction stall samples with its row indices a tile ahead (128k)
    timeout 120 python3 benchmarks/model_step.py --preset small --lengths 131072 2>&1 | tail -n 2
    timeout 150 ncu --clock-control none --launch-skip 1 --launch-count 1 --kernel-name regex:_dq_kernel \
        --section SpeedOfLight --section WarpStateStats --section SourceCounters --section LaunchStats \
        --section MemoryWorkloadAnalysis -o /tmp/dq -f python3 benchmarks/attention_ncu.py --n 131072 \
        > "$OUT/logs/ncu_dq_run.log" 2>&1
    echo "   ncu exit $?"
    ncu --import /tmp/dq.ncu-rep --page details > "$OUT/logs/ncu_dq_details.txt" 2>&1
    ncu --import /tmp/dq.ncu-rep --page source --csv --print-source sass > "$OUT/logs/ncu_dq_source.csv" 2>&1
    grep -E "Duration|Registers Per|Local Memory Spilling Requests |Warp Cycles Per Issued" "$OUT/logs/ncu_dq_details.txt"
    ;;
s9base)  # one GPU, ~3 min: the base preset's bare training step with session 9's kernels
    timeout 170 python3 benchmarks/model_step.py --preset base --lengths 131072 --checkpointing 6 2>&1 | tail -n 2
    ;;
infer)  # one GPU, ~9 min: SSD per-kernel profile, base inference (profiled, then the job and the bare model), small,
    # score, training steps
    timeout 100 python3 benchmarks/ssd_bench.py --no-sweep --lengths 131072 --check-lengths 2048 2>&1 | tail -n 42
    echo "== embed base (profiled at batch 2)"
    timeout 100 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 2 --chunk 131072 --profile \
        2>&1 | tail -n 40
    timeout 100 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 4 --chunk 131072 --bare 2>&1 | tail -n 3
    timeout 80 python3 benchmarks/embed_bench.py --preset small --genome-mb 2 --batch-size 8 --chunk 131072 --bare 2>&1 | tail -n 3
    echo "== score"
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 1024 2>&1 | grep '^{'
    echo "== training"
    timeout 60 python3 benchmarks/model_step.py --preset small --lengths 131072 2>&1 | tail -n 2
    run_train base-131k 100 --config base "${common[@]}" --set train.steps=8
    ;;
score)  # one GPU, ~4 min: `genossa score` throughput at 8,192 and 131,072 bases, dense and sparse VCFs
    timeout 280 python3 benchmarks/score_bench.py --preset small --window 8192 131072 --dense-positions 1024 \
        --sparse-variants 64 --batch-size 1024 2>&1 | grep '^{'
    ;;
layer)  # one GPU, ~8 min: the whole-layer benchmark beside mamba_ssm (carry .peers), where a training step's
    # GPU time goes (small, base at 131k), score throughput at 8,192 bases
    echo "== layer"
    timeout 200 python3 benchmarks/layer_bench.py 2>&1 | tail -n 16
    echo "== model step profiles"
    timeout 90 python3 benchmarks/model_step.py --preset small --lengths 131072 --profile 2>&1 | tail -n 40
    timeout 90 python3 benchmarks/model_step.py --preset base --lengths 131072 --checkpointing --profile 2>&1 | tail -n 40
    echo "== score"
    timeout 100 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
        --batch-size 64 256 2>&1 | tail -n 5
    ;;
study)  # one GPU, ~9 min: this session's conv kernel on the GPU, a step profile, score at batch 1024, then the
    # model study at GPU scale (issue 9) in the time left
    if [ -z "${STUDY_ONLY:-}" ]; then
        PYTHONSAFEPATH=1 timeout 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_causal_conv1d_triton.py \
            2>&1 | tail -n 2
        timeout 60 python3 benchmarks/model_step.py --preset small --lengths 131072 --profile 2>&1 | tail -n 36
        timeout 70 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 1024 --vcfs dense \
            --batch-size 1024 2>&1 | tail -n 2
    fi
    left=$((570 - (SECONDS - started)))
    echo "== study ($left s left)"
    rm -rf /tmp/study-gpu  # a warm machine keeps the last call's runs
    # PYTHONSAFEPATH: -m from the checkout root would import ./genossa (no genossa.pipelines there)
    PYTHONSAFEPATH=1 timeout $((left - 15)) python3 -m genossa.pipelines.study --out /tmp/study-gpu --preset small --device cuda \
        --window 8192 --micro-batch 8 --steps ${STUDY_STEPS:-150} --seeds ${STUDY_SEEDS:-0} --eval-windows 32 --recall-records 64 \
        --train-recall-records 1200 --variants ${STUDY_VARIANTS:-scan,change,random,mamba,dense} \
        --set "data.fasta=$CORPUS" --set "data.held_out_contigs=$HELD_OUT" --set train.grad_accum=1 \
        --set train.activation_checkpointing=false --set train.seq_len_warmup_steps=0 --set train.warmup_steps=15 \
        > "$OUT/logs/study.log" 2>&1
    echo "   study exit $?"; tail -n 25 "$OUT/logs/study.log"
    (cd /tmp/study-gpu && tar czf "$OUT/study-gpu.tar.gz" study.md study.tsv study.png runs/*/result.json runs/*/config.yaml \
        2>/dev/null); cat /tmp/study-gpu/study.md 2>/dev/null | head -n 40
    ;;
jobs)
    echo "== GPU tests of the streaming attention (pooled keys by row), on 1 or 2 GPUs"
    PYTHONSAFEPATH=1 timeout 100 python3 -m pytest -q -s -p no:cacheprovider tests/parallel/test_sequence_parallel_nccl.py \
        tests/models/test_model_kernels.py "tests/ops/test_sparse_attention_triton.py::test_indexed_with_a_pool_equals_gathered" \
        2>&1 | grep -E "NCCL|passed|failed|Error" | tail -n 6
    echo "== embed small (profiled)"
    timeout 130 python3 benchmarks/embed_bench.py --preset small --genome-mb 2 --batch-size 8 --chunk 131072 --bare --profile
    echo "== embed base"
    timeout 90 python3 benchmarks/embed_bench.py --preset base --genome-mb 1 --batch-size 4 --chunk 131072 --bare
    echo "== score 8192 (profiled)"
    timeout 150 python3 benchmarks/score_bench.py --preset small --window 8192 --dense-positions 512 --sparse-variants 48 --profile
    ;;
esac
# one archive of the logs and metrics (a call returns 8 files at most)
if [ "$stage" != multi+long ] && [ "$stage" != pretrain ]; then
    tar czf "$OUT/runs-$stage.tar.gz" -C "$OUT" logs $( [ -d "$OUT/metrics" ] && echo metrics ) && rm -rf "$OUT/logs" "$OUT/metrics"
fi
echo "stage $stage done in $((SECONDS - started)) s"
