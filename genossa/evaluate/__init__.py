"""`genossa eval`: user-facing evaluation tools.

bpb       held-out bits per base of a causal checkpoint on a FASTA (optionally BED regions)
longrange a generator of long-range recall sequences (FASTA + TSV labels)
"""
