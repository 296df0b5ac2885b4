"""The demos' statistics and claims (text4vis_demo.statistics, text4vis_demo.paper) on hand-made
numbers: no training, milliseconds."""

from __future__ import annotations

import math

import pytest

from text4vis_demo.metrics import DemoTables, Regimes, Table6Row, Table7, Table8, Table8Row
from text4vis_demo.paper import PAPER, PAPER_TABLE9, TABLE9_CLAIMS, TABLE_CLAIMS
from text4vis_demo.settings import INITS
from text4vis_demo.statistics import (
    Claim,
    Estimate,
    accuracy_stats,
    binomial_se,
    judge_claim,
    judge_claims,
    mean_and_std,
    ranking,
)


def _stats(values: list[float], num_videos: int) -> dict:
    """An accuracy summary as metrics.json holds it."""
    return accuracy_stats(values, num_videos).to_dict()


def _compare(claim: str, table: str, better: dict, worse: dict, names: tuple[str, str]) -> dict:
    """The claim "better beats worse", judged on two summaries, as metrics.json holds it."""
    judged = judge_claim(
        Claim(table, claim, "a", "b", *names),
        Estimate(better["mean"], better["std"], better["se"]),
        Estimate(worse["mean"], worse["std"], worse["se"]),
    )
    return judged.to_dict()


def test_statistics_and_verdicts():
    stats = _stats([0.5, 0.7], 100)
    assert stats["mean"] == pytest.approx(60.0) and stats["std"] == pytest.approx(14.1421, 1e-4)
    # binomial standard error of a 60% accuracy over 2 x 100 videos
    assert stats["se"] == pytest.approx(100 * math.sqrt(0.6 * 0.4 / 200))
    one = _stats([0.25], 100)
    assert one["std"] is None and one["se"] == pytest.approx(100 * math.sqrt(0.25 * 0.75 / 100))
    better, worse = _stats([0.8, 0.82], 100), _stats([0.5, 0.52], 100)
    verdict = _compare("x", "6", better, worse, ("a", "b"))
    assert verdict["verdict"] == "agrees" and "beyond the seed spread" in verdict["confidence"]
    close = _compare("x", "6", _stats([0.5, 0.56], 100), _stats([0.52, 0.6], 100), ("a", "b"))
    assert close["verdict"] == "disagrees" and "seed spread: not conclusive" in close["confidence"]
    # One seed: the evaluation's standard errors decide whether a gap means anything.
    small = _compare("x", "6", _stats([0.55], 100), _stats([0.5], 100), ("a", "b"))
    assert "2 standard errors of the evaluation" in small["confidence"]
    large = _compare("x", "6", _stats([0.8], 100), _stats([0.5], 100), ("a", "b"))
    assert large["confidence"] == "gap beyond 2 standard errors (one seed)"


CLAIM = Claim("6", "a beats b at epoch {epoch}", "qa", "qb", "A", "B")


def test_a_claim_is_judged_agree_disagree_or_not_conclusive():
    # Agree, beyond the noise: 80 vs 50 with standard errors of 2 (noise 2 * sqrt(8) = 5.66).
    judged = judge_claim(CLAIM, Estimate(80.0, se=2.0), Estimate(50.0, se=2.0), epoch=3)
    assert judged.verdict == "agrees" and judged.conclusive
    assert judged.difference == 30.0 and judged.noise_2se == pytest.approx(2 * math.sqrt(8))
    assert judged.text == "a beats b at epoch 3"  # the text's fields are filled
    # The reverse ordering disagrees, just as firmly.
    judged = judge_claim(CLAIM, Estimate(50.0, se=2.0), Estimate(80.0, se=2.0), epoch=3)
    assert judged.verdict == "disagrees" and judged.conclusive
    # A gap of 5 < 5.66: the sign agrees but the gap is within the noise.
    judged = judge_claim(CLAIM, Estimate(55.0, se=2.0), Estimate(50.0, se=2.0), epoch=3)
    assert judged.verdict == "agrees" and not judged.conclusive
    assert judged.confidence == "gap within 2 standard errors of the evaluation: not conclusive"
    # A gap of 6 > 5.66 but within the seed spread (3 + 4): not conclusive either.
    judged = judge_claim(CLAIM, Estimate(56.0, 3.0, 2.0), Estimate(50.0, 4.0, 2.0), epoch=3)
    assert judged.spread == 7.0 and not judged.conclusive
    assert judged.confidence == "gap within the seed spread: not conclusive"
    # Equal values tie; no standard error: never conclusive.
    judged = judge_claim(CLAIM, Estimate(50.0), Estimate(50.0), epoch=3)
    assert judged.verdict == "tie" and judged.noise_2se is None and not judged.conclusive
    assert judged.confidence == "difference of means"
    # Equal accuracies that went through float32 are equal: a tie, not a gap of 2e-6 points
    # (measured: LDA and random both 52.67% over 3 seeds, from 54/49/55 and 53/51/54 clips).
    lda = sum([54.00000214576721, 49.000000953674316, 55.000001192092896]) / 3
    rnd = sum([52.99999713897705, 50.999999046325684, 54.00000214576721]) / 3
    assert lda != rnd
    judged = judge_claim(CLAIM, Estimate(lda, se=2.9), Estimate(rnd, se=2.9), epoch=3)
    assert judged.verdict == "tie" and judged.difference == 0.0
    # One clip in 1000 is still a gap.
    assert judge_claim(CLAIM, Estimate(50.1), Estimate(50.0), epoch=3).verdict == "agrees"


def test_a_claim_of_no_difference_agrees_unless_the_gap_is_conclusive():
    same = Claim("9", "a costs the same as b", "qa", "qb", "A", "B", direction="same")
    assert judge_claim(same, Estimate(3.0, se=0.1), Estimate(3.1, se=0.1)).verdict == "agrees"
    far = judge_claim(same, Estimate(3.0, se=0.1), Estimate(5.0, se=0.1))
    assert far.verdict == "disagrees" and far.conclusive
    with pytest.raises(ValueError, match="direction 'lower'"):
        Claim("9", "x", "qa", "qb", "A", "B", direction="lower")  # type: ignore[arg-type]


def test_judge_claims_names_a_quantity_that_was_not_measured():
    with pytest.raises(KeyError, match="'qb', which was not measured; measured: \\['qa'\\]"):
        judge_claims([CLAIM], {"qa": Estimate(1.0)}, epoch=1)


def test_mean_std_standard_error_and_ranking():
    assert mean_and_std([2.0]) == (2.0, None)
    mean, std = mean_and_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    with pytest.raises(ValueError, match="at least one value"):
        mean_and_std([])
    assert binomial_se(0.5, 100) == pytest.approx(0.05) and binomial_se(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="num_videos must be at least 1"):
        accuracy_stats([0.5], 0)
    assert ranking({"a": 1.0, "b": 3.0, "c": 1.0}) == "b > a = c"


def _tables(top1: dict[str, float]) -> DemoTables:
    """Tables whose every figure is one seed's accuracy taken from ``top1`` (100 videos)."""

    def s(key: str) -> object:
        return accuracy_stats([top1[key]], 100)

    table6 = {
        init: Table6Row(
            s(init),
            s(init),
            s(init),
            PAPER["table6"][init],
            two_shot_top1=s(init + "_2") if init + "_2" in top1 else None,
        )
        for init in INITS
    }
    table7 = Table7(
        Regimes(s("vt0"), s("vt2"), s("vtf")),
        Regimes(s("vo0"), s("vo2"), s("vof")),
        chance_seen=5.0,
        chance_unseen=10.0,
    )
    row = {
        t: Table8Row(s(t), s(t + "_dir"), s(t), s(t), PAPER["table8"][t])
        for t in ("mean", "transformer")
    }
    return DemoTables(table6, table7, Table8(row["mean"], row["transformer"], 32, 8))


def test_every_declared_claim_of_tables_6_to_8_is_measured_and_follows_the_numbers():
    paper_like = {
        "text": 0.9,
        "lda": 0.8,
        "random": 0.3,
        "orthogonal": 0.3,
        "learnable": 0.5,
        "text_2": 0.7,
        "random_2": 0.2,
        "orthogonal_2": 0.25,
        "vt0": 0.6,
        "vt2": 0.7,
        "vtf": 0.9,
        "vo0": 0.1,
        "vo2": 0.3,
        "vof": 0.8,
        "mean": 0.5,
        "transformer": 0.9,
        "mean_dir": 0.3,
        "transformer_dir": 0.9,
    }
    judged = judge_claims(TABLE_CLAIMS, _tables(paper_like).quantities(), early_epoch=2)
    assert len(judged) == 14 and all(j.verdict == "agrees" for j in judged), judged
    assert "at epoch 2" in judged[2].text
    # The 2-shot claims read table 6's 2-shot rows (50 and 45 points apart here).
    two_shot = [j for j in judged if j.claim.a == "table6.text.two_shot_top1"]
    assert [round(j.value_a - j.value_b) for j in two_shot] == [50, 45]
    # An initialiser without 2-shot runs (LDA) has no such quantity to name.
    assert "table6.lda.two_shot_top1" not in _tables(paper_like).quantities()
    # The few-shot gain claim compares differences of means (40 vs 10 points here).
    (gain,) = [j for j in judged if j.claim.a == "table7.gain.two_shot"]
    assert gain.value_a == pytest.approx(40.0) and gain.value_b == pytest.approx(10.0)
    assert gain.to_dict()["confidence"] == "difference of means"
    # Turn the temporal transformer below mean pooling: both table-8 claims now disagree.
    worse = dict(paper_like, transformer=0.4, transformer_dir=0.2)
    judged = judge_claims(TABLE_CLAIMS, _tables(worse).quantities(), early_epoch=2)
    assert [j.verdict for j in judged if j.claim.table == "8"] == ["disagrees", "disagrees"]
    assert all(j.verdict == "agrees" for j in judged if j.claim.table != "8")


def test_table9_claims_state_the_papers_direction():
    # Each declared direction is the one of the paper's own numbers.
    for claim in TABLE9_CLAIMS:
        measure = "top1" if claim.measure == "top-1" else "v100_days"
        a, b = PAPER_TABLE9[claim.a_label][measure], PAPER_TABLE9[claim.b_label][measure]
        assert claim.direction == ("same" if a == b else "higher") and a >= b, claim
    assert {c.measure for c in TABLE9_CLAIMS} == {"top-1", "time per epoch"}


def test_eta_is_the_mean_time_of_the_runs_so_far_times_the_runs_left():
    from text4vis_demo.runs import eta_seconds

    assert math.isnan(eta_seconds(0.0, 1, 8))
    # Runs 1-3 took 30 s (10 s each); runs 4 to 8 are still to do: 5 x 10 s.
    assert eta_seconds(30.0, 4, 8) == pytest.approx(50.0)
