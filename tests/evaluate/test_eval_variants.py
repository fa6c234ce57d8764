"""genossa eval variants: the statistics (scipy, scikit-learn) against hand-computed values, VCF/TSV matching, CLI."""
import math

import numpy as np
import pytest
from click.testing import CliRunner

from genossa.cli import cli
from genossa.evaluate.variants import auroc, evaluate_variants, pearson, spearman


def test_correlations_by_hand():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(11.5 / math.sqrt(5 * 26.75))
    # sum d^2 = 2: 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # tied x ranks [1, 2.5, 2.5, 4]: 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4])) and math.isnan(pearson([1], [2]))


def test_auroc_by_hand():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # 3 of 4 pairs
    assert auroc([1, 1, 2], [0, 1, 1]) == pytest.approx(0.75)  # one tie (1/2) and one win
    assert math.isnan(auroc([1, 2], [1, 1]))


def _scored_vcf(path):
    path.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=c,length=1000>\n"
        '##INFO=<ID=GENOSSA_LLR,Number=A,Type=Float,Description="llr">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "c\t10\t.\tA\tG,T\t.\t.\tGENOSSA_LLR=-2.0,-0.5\n"
        "c\t20\t.\tC\tA\t.\t.\tGENOSSA_LLR=-0.1\n"
        "c\t30\t.\tG\tC\t.\t.\tGENOSSA_LLR=-3.0\n"
        "c\t40\t.\tT\tA\t.\t.\t.\n"
        "c\t50\t.\tT\tG\t.\t.\tGENOSSA_LLR=1.0\n"
    )
    return path


def _truth(path, values):
    rows = [("c", 10, "A", "G"), ("c", 10, "A", "T"), ("c", 20, "C", "A"), ("c", 30, "G", "C"), ("c", 40, "T", "A")]
    path.write_text("contig\tpos\tref\talt\teffect\n" + "".join(
        f"{c}\t{p}\t{r}\t{a}\t{v}\n" for (c, p, r, a), v in zip(rows, values)))
    return path


def test_matching_and_binary_labels(tmp_path):
    vcf = _scored_vcf(tmp_path / "s.vcf")
    result = evaluate_variants(vcf, _truth(tmp_path / "t.tsv", [1, 0, 0, 1, 1]), negate=True)
    # matched alleles: scores (negated) 2.0, 0.5, 0.1, 3.0 vs labels 1, 0, 0, 1
    assert (result.matched, result.unscored, result.no_truth) == (4, 1, 1)
    assert result.auroc == pytest.approx(1.0)
    # ranks [3, 2, 1, 4] vs tied labels [3.5, 1.5, 1.5, 3.5]: 4 / sqrt(5 * 4)
    assert result.spearman == pytest.approx(4 / math.sqrt(20))
    continuous = evaluate_variants(vcf, _truth(tmp_path / "u.tsv", [-1.5, -0.2, 0.3, -2.5, 9]))
    assert continuous.auroc is None
    assert continuous.pearson == pytest.approx(np.corrcoef([-2.0, -0.5, -0.1, -3.0], [-1.5, -0.2, 0.3, -2.5])[0, 1])


def test_cli(tmp_path):
    vcf = _scored_vcf(tmp_path / "s.vcf")
    truth = _truth(tmp_path / "t.tsv", [1, 0, 0, 1, 1])
    result = CliRunner().invoke(cli, ["eval", "variants", "--scores", str(vcf), "--truth", str(truth), "--negate"])
    assert result.exit_code == 0, result.output
    assert "auroc     1.0000" in result.output and "4 alleles matched" in result.output
    bad = CliRunner().invoke(cli, ["eval", "variants", "--scores", str(vcf), "--truth", str(truth), "--field", "X"])
    assert bad.exit_code == 1 and "no INFO field 'X'" in bad.output
