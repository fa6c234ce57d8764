# Embeddings: one `genossa embed` per shard, then one merged Zarr store.


rule shard_regions:
    input:
        FASTA,
    output:
        f"{OUT}/shards/{{shard}}/regions.bed",
    log:
        f"{OUT}/logs/shard_regions/{{shard}}.log",
    params:
        genossa=GENOSSA,
        fasta=FASTA_ARGS,
        shard_bases=config.get("shard_bases", 0),
    conda:
        "../envs/genossa.yaml"
    shell:
        "{params.genossa} shards regions {params.fasta} --shard-bases {params.shard_bases} "
        "--shard {wildcards.shard} --out {output} > {log} 2>&1"


rule embed_shard:
    input:
        fasta=FASTA,
        regions=f"{OUT}/shards/{{shard}}/regions.bed",
        model=model_inputs(),
    output:
        store=shard_output(directory(f"{OUT}/shards/{{shard}}/embeddings.zarr")),
    log:
        f"{OUT}/logs/embed/{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/embed/{{shard}}.tsv"
    params:
        genossa=GENOSSA,
        fasta=FASTA_ARGS,
        model=model_path,
        device=shard_device,
        options=embed_options(),
    threads: config["threads"]["embed"]
    resources:
        gpu=GPUS,
        **shard_gpu_resources(),
        mem_mb=config["mem_mb"]["embed"],
    conda:
        "../envs/genossa.yaml"
    shell:
        # an interrupted job leaves <store>.partial behind: the rerun resumes it
        "OMP_NUM_THREADS={threads} {params.genossa} embed --checkpoint {params.model} {params.fasta} "
        "--regions {input.regions} --device {params.device} {params.options} --no-bedgraph --quiet "
        "--out {output.store} > {log} 2>&1"


rule merge_embeddings:
    input:
        fasta=FASTA,
        shards=expand(f"{OUT}/shards/{{shard}}/embeddings.zarr", shard=SHARD_IDS),
    output:
        store=directory(f"{OUT}/embeddings.zarr"),
        bedgraph=f"{OUT}/embeddings.importance.bedgraph" if config.get("bedgraph", True) else [],
    log:
        f"{OUT}/logs/merge_embeddings.log",
    benchmark:
        f"{OUT}/benchmarks/merge_embeddings.tsv"
    params:
        genossa=GENOSSA,
        fasta=FASTA_ARGS,
        bedgraph=(f"--bedgraph {OUT}/embeddings.importance.bedgraph --bedgraph-bin {config.get('bedgraph_bin', 1)}"
                  if config.get("bedgraph", True) else ""),
    resources:
        mem_mb=config["mem_mb"]["merge"],
    conda:
        "../envs/genossa.yaml"
    shell:
        "{params.genossa} shards merge-embeddings {input.shards} {params.fasta} {params.bedgraph} "
        "--out {output.store} > {log} 2>&1"
