"""Readers of genome files (FASTA, BAM/CRAM, BED) with pysam; no torch here."""
