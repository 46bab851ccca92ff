"""How far to trust the judge: agreement with people, and pass rates corrected for its errors.

"Positive" is a good output. On traces people labelled: the true positive rate (TPR) is the
share of people's "good" the judge also calls good, the true negative rate (TNR) the share of
people's "bad" it also calls bad. A judge pass rate p is corrected as
``(p + TNR - 1) / (TPR + TNR - 1)`` (Rogan-Gladen), with a bootstrap interval that resamples
both the judged outputs and the labelled traces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipeline.engine.label.agreement import decided_labels


def alignment(judgements: pl.DataFrame, annotations: pl.DataFrame, exclude: set[str] | None = None,
              min_agreement: float = 0.8) -> dict[str, Any]:
    """Agreement, TPR and TNR of judge outcomes against people's decided labels.

    People's label per trace is :func:`pipeline.engine.label.agreement.decided_labels`: the
    adjudication, else the annotators' agreed decision; a trace whose annotators disagree and
    that is not adjudicated yet is not measured on.

    ``judgements`` has trace_id and outcome (null outcomes are ignored); ``exclude`` holds trace
    ids the judge saw as few-shot examples (agreeing with them proves nothing). ``flagged`` is
    set, with ``flag_reason``, when agreement is below ``min_agreement``, the judge is no better
    than chance (TPR + TNR <= 1), or there is no labelled trace to measure on.
    """
    people = decided_labels(annotations).filter(pl.col("label").is_in(["good", "bad"]))
    paired = (judgements.filter(pl.col("outcome").is_not_null()).select("trace_id", "outcome")
              .unique("trace_id", keep="last")
              .join(people.select("trace_id", "label"), on="trace_id"))
    if exclude:
        paired = paired.filter(~pl.col("trace_id").is_in(sorted(exclude)))
    n_good = paired.filter(pl.col("label") == "good").height
    n_bad = paired.height - n_good
    tp = paired.filter((pl.col("label") == "good") & (pl.col("outcome") == "good")).height
    tn = paired.filter((pl.col("label") == "bad") & (pl.col("outcome") == "bad")).height
    result: dict[str, Any] = {
        "n_labelled": paired.height, "n_human_good": n_good, "n_human_bad": n_bad,
        "agreement": (tp + tn) / paired.height if paired.height else None,
        "tpr": tp / n_good if n_good else None, "tnr": tn / n_bad if n_bad else None,
        "min_agreement": min_agreement,
    }
    if not paired.height or result["tpr"] is None or result["tnr"] is None:
        reason = "no traces labelled both good and bad by people to measure the judge on"
    elif result["tpr"] + result["tnr"] <= 1:
        reason = f"judge is no better than chance (TPR {result['tpr']:.2f} + TNR {result['tnr']:.2f} <= 1)"
    elif result["agreement"] < min_agreement:
        reason = f"agreement with people {result['agreement']:.1%} is below {min_agreement:.0%}"
    else:
        reason = None
    return {**result, "flagged": reason is not None, "flag_reason": reason}


def _correct(p: np.ndarray, tpr: np.ndarray, tnr: np.ndarray) -> np.ndarray:
    youden = tpr + tnr - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(youden > 0, (p + tnr - 1) / youden, np.nan)
    return np.clip(theta, 0.0, 1.0)


def corrected_pass_rate(passed: int, n: int, align: dict[str, Any], n_boot: int = 2000,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The judge's pass rate ``passed / n``, corrected for its TPR/TNR, with a bootstrap interval.

    Without usable alignment (no labels, or a judge no better than chance) only the observed
    rate is given and ``corrected`` is None.
    """
    observed = passed / n if n else None
    out: dict[str, Any] = {"n": n, "observed": observed, "corrected": None, "ci_low": None, "ci_high": None}
    tpr, tnr, n_good, n_bad = align.get("tpr"), align.get("tnr"), align.get("n_human_good", 0), align.get("n_human_bad", 0)
    if not n or tpr is None or tnr is None or tpr + tnr <= 1:
        return out
    rng = np.random.default_rng(seed)
    p_star = rng.binomial(n, observed, n_boot) / n
    tpr_star = rng.binomial(n_good, tpr, n_boot) / n_good
    tnr_star = rng.binomial(n_bad, tnr, n_boot) / n_bad
    draws = _correct(p_star, tpr_star, tnr_star)
    draws = draws[~np.isnan(draws)]
    tail = (1 - confidence) / 2
    out["corrected"] = float(_correct(np.array(observed), np.array(tpr), np.array(tnr)))
    if draws.size:
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(draws, [tail, 1 - tail]))
    return out
