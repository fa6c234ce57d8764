"""The Snakemake workflow, installed as package data (genossa.workflows).

    snakemake -s "$(python -c 'import genossa.workflows as w; print(w.SNAKEFILE)')" \
        --configfile my.yaml --cores 8

SNAKEFILE and CONFIG (the documented default config.yaml, to copy and edit) are paths inside
the installed package; PROFILES holds example profiles (local GPU machine, SLURM).
"""
from pathlib import Path

WORKFLOW_DIR = Path(__file__).parent
SNAKEFILE = WORKFLOW_DIR / "Snakefile"
CONFIG = WORKFLOW_DIR / "config.yaml"
PROFILES = WORKFLOW_DIR / "profiles"
