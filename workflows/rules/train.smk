# Optional: train a model first, when config `checkpoint` is empty.


rule train:
    output:
        model=directory(f"{OUT}/train/run"),
    log:
        f"{OUT}/logs/train.log",
    benchmark:
        f"{OUT}/benchmarks/train.tsv"
    params:
        genossa=GENOSSA,
        preset=config["train"]["config"],
        overrides=" ".join(f"--set {shlex.quote(s)}" for s in config["train"].get("set") or []),
    threads: config["threads"]["train"]
    resources:
        gpu=GPUS,
    conda:
        "../envs/genossa.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.genossa} train --config {params.preset} {params.overrides} "
        "--out {output.model} --quiet > {log} 2>&1"

