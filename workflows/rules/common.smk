# Shared settings and helpers: the shard plan (read from the FASTA when the workflow is
# parsed), option strings of the genossa commands, and the model directory.

import os
import re
import shlex

from genossa.pretrained import resolve_checkpoint
from genossa.shards import genome_shards

OUT = config["outdir"].rstrip("/")
FASTA = [config["fasta"]] if isinstance(config["fasta"], str) else list(config["fasta"])
VCFS = dict(config.get("vcfs") or {})
SHARDS = genome_shards(FASTA, int(config.get("shard_bases", 0)))
SHARD_IDS = [s.id for s in SHARDS]
GENOSSA = config.get("genossa", "genossa")
FASTA_ARGS = " ".join(f"--fasta {shlex.quote(f)}" for f in FASTA)
GPUS = int(config.get("gpus_per_job", 0))
LOCAL_GPUS = [int(g) for g in (config.get("local_gpus") or [])]


wildcard_constraints:
    shard="|".join(map(re.escape, SHARD_IDS)),
    vcf="|".join(map(re.escape, VCFS)) if VCFS else "(?!)",


def shard_device(wildcards):
    """--device of a shard's embed/score job: config `device`, or with `local_gpus` the shard's
    own GPU (round robin over the shards in reference order)."""
    if not LOCAL_GPUS:
        return config["device"]
    return f"cuda:{LOCAL_GPUS[SHARD_IDS.index(wildcards.shard) % len(LOCAL_GPUS)]}"


def shard_gpu_resources():
    """Resources of a shard's job on its GPU: gpu_<N> = 1 for its GPU N, 0 for the others, so
    `--resources gpu_0=1 gpu_1=1 ...` runs one job per GPU at a time."""
    return {
        f"gpu_{g}": (lambda wildcards, g=g: int(shard_device(wildcards) == f"cuda:{g}")) for g in LOCAL_GPUS
    }


def model_dir():
    """The exported model: config `checkpoint` (a directory, or a bundled model's name), or the
    model the train rule makes."""
    if config.get("checkpoint"):
        return str(resolve_checkpoint(config["checkpoint"])[0])
    return f"{OUT}/train/run/model"


def shard_output(path):
    """A per-shard output: kept (config keep_shards), or removed once the merge has used it."""
    return path if config.get("keep_shards", True) else temp(path)


def model_path(wildcards, input):
    """The model directory, from the job's model input (no hardcoded prefix)."""
    first = input.model[0]
    return os.path.dirname(first) if config.get("checkpoint") else f"{first}/model"


def model_inputs():
    """What jobs using the model depend on: its two files, or the training run."""
    if config.get("checkpoint"):
        return [f"{model_dir()}/config.json", f"{model_dir()}/model.safetensors"]
    return [f"{OUT}/train/run"]


def _options(section, flags):
    """`--name value` for each key of config[section] that is set (keys that are null, empty
    or false are left out, so the command's default applies)."""
    args = []
    for key, value in (config.get(section) or {}).items():
        if key == "extra" or value is None or value == "" or value is False:
            continue
        option = f"--{key.replace('_', '-')}"
        if value is True:
            if key not in flags:
                raise ValueError(f"config {section}.{key}: true is only for {', '.join(flags)}")
            args.append(option)
        else:
            value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            args += [option, shlex.quote(value)]
    extra = (config.get(section) or {}).get("extra") or ""
    if extra:
        args.append(extra)
    return " ".join(args)


def embed_options():
    return _options("embed", ("per_base", "rc_average"))


def score_options():
    return _options("score", ("rc_average", "strict"))


def final_outputs():
    outs = [f"{OUT}/embeddings.zarr"]
    if config.get("keep_shards", True):
        # kept shard outputs are targets too: delete one and only it (and the merge) is redone
        outs += expand(f"{OUT}/shards/{{shard}}/embeddings.zarr", shard=SHARD_IDS)
        outs += expand(f"{OUT}/shards/{{shard}}/{{vcf}}.scored.vcf.gz", shard=SHARD_IDS, vcf=list(VCFS))
    if config.get("bedgraph", True):
        outs.append(f"{OUT}/embeddings.importance.bedgraph")
    outs += [f"{OUT}/scores/{name}.scored.vcf.gz" for name in VCFS]
    return outs
