"""Judge alignment with people and pass rates corrected for judge error."""

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from pipeline.engine.label.alignment import alignment, corrected_pass_rate
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA

T0 = datetime(2026, 10, 20, tzinfo=timezone.utc)


def people(labels):
    return pl.DataFrame([{"annotation_id": f"a{t}", "trace_id": t, "label": label, "failure_mode": None,
                          "correction": None, "critique": None, "annotator": "x", "annotated_at": T0, "source": "t"}
                         for t, label in labels.items()], schema=ANNOTATION_SCHEMA)


def judged(outcomes):
    return pl.DataFrame({"trace_id": list(outcomes), "outcome": list(outcomes.values())}, schema={
        "trace_id": pl.String, "outcome": pl.String})


def test_agreement_tpr_tnr_from_a_confusion_matrix():
    # people: 10 good, 10 bad; judge: 8 of the good called good, 6 of the bad called bad
    labels = {f"g{n}": "good" for n in range(10)} | {f"b{n}": "bad" for n in range(10)}
    outcomes = {f"g{n}": "good" if n < 8 else "bad" for n in range(10)} | {f"b{n}": "bad" if n < 6 else "good" for n in range(10)}
    outcomes["unlabelled"] = "good"
    result = alignment(judged(outcomes), people(labels), min_agreement=0.8)
    assert (result["n_labelled"], result["n_human_good"], result["n_human_bad"]) == (20, 10, 10)
    assert result["tpr"] == pytest.approx(0.8) and result["tnr"] == pytest.approx(0.6)
    assert result["agreement"] == pytest.approx(0.7)
    assert result["flagged"] and "70.0%" in result["flag_reason"]
    assert not alignment(judged(outcomes), people(labels), min_agreement=0.6)["flagged"]


def test_few_shot_traces_and_failed_judgements_do_not_count():
    labels = {"a": "good", "b": "bad", "c": "good"}
    outcomes = {"a": "good", "b": "bad", "c": None}
    result = alignment(judged(outcomes), people(labels), exclude={"a"})
    assert result["n_labelled"] == 1 and result["tpr"] is None and result["flagged"]


def test_a_judge_no_better_than_chance_is_flagged():
    labels = {"g": "good", "b": "bad"}
    result = alignment(judged({"g": "bad", "b": "good"}), people(labels), min_agreement=0.0)
    assert result["flagged"] and "chance" in result["flag_reason"]
    assert corrected_pass_rate(5, 10, result)["corrected"] is None


def test_correction_recovers_the_true_rate_of_a_simulated_judge():
    rng = np.random.default_rng(1)
    tpr, tnr, true_rate, n = 0.9, 0.7, 0.4, 4000
    truth = rng.random(n) < true_rate
    says_good = np.where(truth, rng.random(n) < tpr, rng.random(n) >= tnr)
    align = {"tpr": tpr, "tnr": tnr, "n_human_good": 400, "n_human_bad": 400}
    result = corrected_pass_rate(int(says_good.sum()), n, align, seed=3)
    assert abs(result["observed"] - true_rate) > 0.1          # the raw judge rate is biased
    assert result["corrected"] == pytest.approx(true_rate, abs=0.03)
    assert result["ci_low"] < true_rate < result["ci_high"]
    assert result["ci_high"] - result["ci_low"] < 0.15


def test_interval_narrows_with_more_labels():
    wide = corrected_pass_rate(60, 100, {"tpr": 0.9, "tnr": 0.8, "n_human_good": 20, "n_human_bad": 20})
    narrow = corrected_pass_rate(60, 100, {"tpr": 0.9, "tnr": 0.8, "n_human_good": 2000, "n_human_bad": 2000})
    assert narrow["ci_high"] - narrow["ci_low"] < wide["ci_high"] - wide["ci_low"]
    assert narrow["corrected"] == pytest.approx((0.6 + 0.8 - 1) / (0.9 + 0.8 - 1))


def test_nothing_judged():
    assert corrected_pass_rate(0, 0, {"tpr": 0.9, "tnr": 0.9, "n_human_good": 5, "n_human_bad": 5})["observed"] is None
