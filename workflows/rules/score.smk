# Variant scores: each VCF split by shard, one `genossa score` per (VCF, shard), then one
# bgzipped, tabix-indexed VCF per input VCF.


rule split_vcf:
    input:
        vcf=lambda wc: VCFS[wc.vcf],
        regions=f"{OUT}/shards/{{shard}}/regions.bed",
    output:
        vcf=f"{OUT}/shards/{{shard}}/{{vcf}}.vcf.gz",
        tbi=f"{OUT}/shards/{{shard}}/{{vcf}}.vcf.gz.tbi",
    log:
        f"{OUT}/logs/split_vcf/{{vcf}}/{{shard}}.log",
    params:
        genossa=GENOSSA,
    conda:
        "../envs/genossa.yaml"
    shell:
        "{params.genossa} shards split-vcf --vcf {input.vcf} --regions {input.regions} --out {output.vcf} "
        "> {log} 2>&1"


rule score_shard:
    input:
        fasta=FASTA,
        vcf=f"{OUT}/shards/{{shard}}/{{vcf}}.vcf.gz",
        model=model_inputs(),
    output:
        vcf=shard_output(f"{OUT}/shards/{{shard}}/{{vcf}}.scored.vcf.gz"),
        tbi=shard_output(f"{OUT}/shards/{{shard}}/{{vcf}}.scored.vcf.gz.tbi"),
    log:
        f"{OUT}/logs/score/{{vcf}}/{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/score/{{vcf}}/{{shard}}.tsv"
    params:
        genossa=GENOSSA,
        fasta=FASTA_ARGS,
        model=model_path,
        device=shard_device,
        options=score_options(),
    threads: config["threads"]["score"]
    resources:
        gpu=GPUS,
        **shard_gpu_resources(),
        mem_mb=config["mem_mb"]["score"],
    conda:
        "../envs/genossa.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.genossa} score --checkpoint {params.model} {params.fasta} "
        "--vcf {input.vcf} --device {params.device} {params.options} --quiet --out {output.vcf} > {log} 2>&1"


rule merge_vcf:
    input:
        fasta=FASTA,
        source=lambda wc: VCFS[wc.vcf],
        shards=lambda wc: expand(f"{OUT}/shards/{{shard}}/{wc.vcf}.scored.vcf.gz", shard=SHARD_IDS),
    output:
        vcf=f"{OUT}/scores/{{vcf}}.scored.vcf.gz",
        tbi=f"{OUT}/scores/{{vcf}}.scored.vcf.gz.tbi",
    log:
        f"{OUT}/logs/merge_vcf/{{vcf}}.log",
    params:
        genossa=GENOSSA,
        fasta=FASTA_ARGS,
    conda:
        "../envs/genossa.yaml"
    shell:
        "{params.genossa} shards merge-vcf {input.shards} {params.fasta} --source {input.source} "
        "--out {output.vcf} > {log} 2>&1"
