"""Bundled real data (a slice of E. coli K-12) used by defaults and tests; see README.md."""
from pathlib import Path

RESOURCES = Path(__file__).parent
ECOLI_FASTA = RESOURCES / "ecoli_k12.fa.gz"
"""bgzip FASTA (+ .fai, .gzi): records NC_007779.1 (300,000 bp) and NC_007779.1_2000000_2100000."""
ECOLI_READS_BAM = RESOURCES / "ecoli_reads.bam"
"""Simulated reads from ECOLI_FASTA, coordinate-sorted, with .bai (see make_resources.py)."""
ECOLI_REGIONS_BED = RESOURCES / "ecoli_regions.bed"
"""A few regions of ECOLI_FASTA (BED4)."""
ECOLI_VARIANTS_VCF = RESOURCES / "ecoli_variants.vcf.gz"
"""~50 variants whose REF matches ECOLI_FASTA (bgzip, with .tbi)."""
HELD_OUT_CONTIG = "NC_007779.1_2000000_2100000"
"""The bundled record meant for evaluation."""
