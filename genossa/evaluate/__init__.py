"""`genossa eval`: user-facing evaluation tools.

bpb       held-out bits per base of a causal checkpoint on a FASTA (optionally BED regions)
longrange a generator of long-range recall sequences (FASTA + TSV labels), and their
          scoring (`genossa eval recall`)
variants  Pearson/Spearman/AUROC of a scored VCF's INFO field against measured effects
probe     a cross-validated linear probe (scikit-learn) of mean-pooled embeddings on labelled
          sequences at every Matryoshka dimension: accuracy and AUROC, table and plot
"""
