"""The evaluation report as markdown, for the Dagster UI and the eval_reports table.

:func:`render_models` is the overview: the gate's decision with its reason first and why each
other candidate lost, then an under-trained model flagged, the candidates side by side
(:func:`board_section`: quality with intervals, latency, cost per call, verdict), the models (a
readable label, the id once for lookup, how each trained against its plan and on which data),
every model's rates with their n and 95% intervals, latency and cost, the judge's alignment, and
what each figure means; :func:`render` compares a candidate with one reference on the same
examples: each metric's difference with its interval and McNemar test, rates per report slice
when the task has slices (the summaries' ``slices``), failure modes, and examples shown by their
``text`` (what the task says a person reads first of an input).

Models are named by their label (``labels``: "base", "few-shot k=3", "fine-tuned", "promoted",
"incumbent", from :attr:`pipeline.engine.evaluate.candidates.Candidates.roles`); a model without
one by its id.

Exact match is shown by reference, each with its count: "exact match, verified references" (a
person wrote or approved the reference) and "agreement with production, unverified references"
(the reference is a production output that passed the assertions, so matching it measures
agreement with the production model); "exact match, all references", what the gate reads, is
shown when the test set holds both kinds (otherwise it equals the one non-empty row).

The helpers that turn figures into text (:func:`rate_text`, :func:`count_text`,
:func:`definitions`, ...) are shared with the HTML report.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from pipeline.engine.evaluate.gate import usd
from pipeline.engine.evaluate.scoring import (JUDGE_METRIC, LABELS, UNVERIFIED_METRIC, VERIFIED_METRIC,
                                              proportion_ci)
from pipeline.engine.train.registry import Training, under_trained


def _one_line(text: str) -> str:
    """Text with every markdown line ending (LF, CRLF and a lone CR) folded into a space."""
    return re.sub(r"\r\n|\r|\n", " ", text)


def _code(text: str | None) -> str:
    """Untrusted text as an inline code span that cannot break out of it or the table."""
    return "`" + _one_line(str(text)).replace("`", "'").replace("|", "\\|") + "`"


def _text(text: str) -> str:
    """Untrusted text escaped for markdown (no HTML, links or emphasis from trace content)."""
    out = _one_line(str(text))
    for ch in "\\`*_{}[]<>()#+-!|":
        out = out.replace(ch, "\\" + ch)
    return out


def _prose(text: str) -> str:
    """Text in a sentence escaped for markdown: only what could start markup (links, emphasis,
    code, HTML, table cells), so "(-4.1 pts, p=0.012)" stays as written."""
    out = _one_line(str(text))
    for ch in "\\`*_[]<>|":
        out = out.replace(ch, "\\" + ch)
    return out


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal ("42.2%"); "n/a" when not measured."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def interval_text(low: float | None, high: float | None) -> str:
    """An interval of shares as percentages ("38.1 to 46.4%"); "n/a" when there is none."""
    return "n/a" if low is None or high is None else f"{100 * low:.1f} to {100 * high:.1f}%"


def rate_text(value: float | None, interval: list[float] | tuple[float, float] | None) -> str:
    """A rate with its 95% interval: "42.2% (38.1 to 46.4%)"; the rate alone without one."""
    if value is None or not interval:
        return pct(value)
    return f"{pct(value)} ({interval_text(*interval)})"


def count_text(rate: float | None, n: int) -> str:
    """A rate over ``n`` examples with its Wilson interval (the count is ``rate * n``)."""
    if rate is None or not n:
        return "n/a"
    return rate_text(rate, proportion_ci(round(rate * n), n))


def points(value: float) -> str:
    """A difference of shares in points: "+3.4 pts"."""
    return f"{100 * value:+.1f} pts"


def p_text(p: float) -> str:
    """A p-value to two significant digits."""
    return f"{p:.2g}"


def label(labels: dict[str, str], model_id: str) -> str:
    """The model's readable label, else its id."""
    return labels.get(model_id, model_id)


def _label(labels: dict[str, str], model_id: str) -> str:
    """The label in markdown (an id, untrusted, as code)."""
    return labels[model_id].replace("|", "\\|") if model_id in labels else _code(model_id)


def _named(labels: dict[str, str], model_id: str) -> str:
    """The label with the id for lookup ("fine-tuned (`ft-1`)"); the id alone without a label."""
    return f"{_label(labels, model_id)} ({_code(model_id)})" if model_id in labels else _code(model_id)


def judge_cells(judge: dict[str, Any] | None) -> tuple[str, str]:
    """(observed pass rate with n and its interval, corrected pass rate with its bootstrap interval)."""
    if not judge or judge.get("observed") is None:
        return "n/a", "n/a"
    corrected = ("n/a" if judge.get("corrected") is None else
                 rate_text(judge["corrected"], (judge["ci_low"], judge["ci_high"])
                           if judge.get("ci_low") is not None else None))
    return f"{count_text(judge['observed'], judge['n'])}, n={judge['n']}", corrected


def latency_text(summary: dict[str, Any]) -> str:
    """Latency per call: the median with the 95th percentile ("12.3 ms (p95 20.1)"), else the
    mean of a summary made before they were kept; "n/a" when not measured."""
    median, p95 = summary.get("latency_ms_p50"), summary.get("latency_ms_p95")
    if median is not None:
        return f"{median:.1f} ms (p95 {p95:.1f})"
    mean = summary.get("latency_ms_per_call")
    return "n/a" if mean is None else f"{mean:.1f} ms"


def call_cells(summary: dict[str, Any]) -> tuple[str, str]:
    """(latency per call, mean cost per call) as people read them."""
    cost = summary.get("cost_usd_per_call")
    return latency_text(summary), "n/a (price unknown)" if cost is None else usd(cost)


#: The side-by-side table's columns after the model: (board key, header).
BOARD_RATES = (("passed_checks", "passes all assertions"), ("exact_match", "exact match"))


def board_header(board: list[dict[str, Any]]) -> list[str]:
    """The side-by-side table's headers: candidate, model id, the rates with their n, the judge's
    corrected rate when measured, latency, cost per call, verdict."""
    n = board[0]["n"] if board else 0
    judged = any(row.get("judge_corrected") is not None for row in board)
    return ["candidate", "model id", *(f"{name} (n={n})" for _, name in BOARD_RATES),
            *(["judge pass (corrected)"] * judged), "latency per call (median, p95)", "cost per call", "verdict"]


def board_cells(row: dict[str, Any], judged: bool) -> list[str]:
    """One model's cells in the side-by-side table (the label and id, as plain text)."""
    rates = [rate_text(row.get(key), row.get(f"{key}_ci")) for key, _ in BOARD_RATES]
    interval = row.get("judge_ci")
    judge = [rate_text(row.get("judge_corrected"), interval if interval and None not in interval else None)]
    return [row["label"], row["model_id"], *rates, *judge * judged, *call_cells(row), row["verdict"]]


def board_section(board: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: the candidates side by side on the same test examples."""
    if not board:
        return []
    judged = any(row.get("judge_corrected") is not None for row in board)
    header = board_header(board)
    lines = ["## Candidates side by side", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board:
        label, model_id, *figures, verdict = board_cells(row, judged)
        lines.append("| " + " | ".join([_prose(label), _code(model_id), *figures, _prose(verdict)]) + " |")
    return lines


def reference_counts(summaries: dict[str, dict[str, Any]]) -> tuple[int, int, int]:
    """(test examples, verified references, unverified references) of the summaries' test set."""
    first = next(iter(summaries.values()), {})
    n = first.get("n_examples", 0)
    return n, first.get("n_verified", 0), first.get("n_unverified", n - first.get("n_verified", 0))


def reference_rows(summaries: dict[str, dict[str, Any]], all_references: bool = True) -> list[tuple[str, str]]:
    """(metric, label with its count) of the exact-match rows: verified references, unverified
    ones, and (``all_references``) all references when the test set holds both kinds."""
    n, verified, unverified = reference_counts(summaries)
    rows = [(VERIFIED_METRIC, f"{LABELS[VERIFIED_METRIC]} (n={verified})"),
            (UNVERIFIED_METRIC, f"{LABELS[UNVERIFIED_METRIC]} (n={unverified})")]
    both = all_references and bool(verified and unverified)
    return rows + [("exact_match", f"exact match, all references (n={n})")] * both


def rate_columns(summaries: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(metric, column header with its n) of the overview's rate columns: passes all assertions and
    exact match by reference."""
    n = reference_counts(summaries)[0]
    return [("passed_checks", f"{LABELS['passed_checks']} (n={n})"), *reference_rows(summaries, all_references=False)]


def model_rates(summary: dict[str, Any], columns: list[tuple[str, str]]) -> list[str]:
    """One model's rates in ``columns`` order, each with its 95% interval."""
    return [rate_text(summary.get(metric), summary.get(f"{metric}_ci")) for metric, _ in columns]


def comparison_rows(summaries: dict[str, dict[str, Any]],
                    comparison: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any] | None]]:
    """(label, change) of the comparison table's rows in order: passes all assertions, exact match
    by reference (change None where there is no such reference), all references when there are
    both kinds, the judge's pass rate when compared."""
    rows = [("passed_checks", LABELS["passed_checks"]), *reference_rows(summaries),
            (JUDGE_METRIC, "judge pass (observed)")]
    return [(label, comparison.get(metric)) for metric, label in rows
            if metric in comparison or metric in (VERIFIED_METRIC, UNVERIFIED_METRIC)]


def change_cells(c: dict[str, Any] | None) -> list[str]:
    """A comparison row's cells: n, baseline, candidate (each with its Wilson interval), the
    difference, its paired bootstrap interval, wins / losses, McNemar p ("n/a" throughout without one)."""
    if c is None:
        return ["n/a"] * 7
    n = c.get("n", 0)
    return [str(n), count_text(c["baseline"], n), count_text(c["candidate"], n), points(c["difference"]),
            f"{points(c['ci_low'])} to {points(c['ci_high'])}", f"{c['wins']} / {c['losses']}", p_text(c["p_value"])]


def slice_rows(summaries: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, list[str]]]]:
    """(slice name, rows) of the models' rates per report slice: each slice with n, then each
    model's share passing all assertions and exact match with their intervals, in ``summaries``
    order; (None, []) when the summaries have no slices."""
    sliced = [s.get("slices") or {} for s in summaries]
    name = next((s["name"] for s in sliced if s.get("name")), None)
    values = [s.get("values", {}) for s in sliced]
    rows = []
    for key in sorted({k for v in values for k in v}):
        n = next((v[key]["n"] for v in values if key in v), 0)
        rows.append((key, [str(n), *(count_text(v.get(key, {}).get(metric), n) for v in values
                                     for metric in ("passed_checks", "exact_match"))]))
    return (name, rows) if name and rows else (None, [])


def failure_rows(summaries: dict[str, dict[str, Any]], order: list[str]) -> list[tuple[str, list[str]]]:
    """(failure mode, each model's share of test examples failing it, with its interval, in ``order``)."""
    modes = sorted({m for model in order for m in summaries[model]["failure_rates"]})
    return [(mode, [count_text(summaries[m]["failure_rates"].get(mode, 0.0), summaries[m]["n_examples"])
                    for m in order]) for mode in modes]


def board_markdown(board: list[dict[str, Any]]) -> str:
    """The side-by-side table alone, as markdown (the asset's ``candidates`` metadata)."""
    return "\n".join(board_section(board)) + "\n"


def definitions(alpha: float | None = None, min_regression: float | None = None,
                margin: float | None = None) -> list[tuple[str, str]]:
    """(term, definition) of every figure in the report; the significance rule with the gate's
    thresholds and the non-inferiority ``margin`` when given."""
    significant = ("McNemar p below alpha" if alpha is None else
                   f"McNemar p below {alpha:g} and a change of at least {100 * (min_regression or 0):.1f} pts")
    within = "the margin" if margin is None else f"{100 * margin:g} pts"
    return [
        ("n", "the test examples a figure is measured on: real traces never seen in training"),
        (LABELS["passed_checks"], "share of outputs passing every assertion of the task"),
        ("exact match", "share of outputs equal to the reference once both are in the task's canonical form"),
        (LABELS[VERIFIED_METRIC], "exact match where a person wrote or approved the reference: correctness"),
        (LABELS[UNVERIFIED_METRIC], "exact match where the reference is a production output that passed the "
                                    "assertions: agreement with the production model, not correctness"),
        ("judge pass (observed)", "share of outputs the LLM judge calls good"),
        ("judge pass (corrected)", "the observed rate corrected for the judge's error rates on people's labels: "
                                   "(p + TNR - 1) / (TPR + TNR - 1)"),
        ("95% interval", "Wilson score interval for a rate; bootstrap for the corrected judge rate"),
        ("difference", "candidate minus baseline on the same examples, in percentage points, with a paired "
                       "bootstrap 95% interval"),
        ("wins / losses", "examples only the candidate gets right / only the baseline gets right"),
        ("McNemar p", "exact two-sided McNemar test on the paired outcomes (two significant digits)"),
        ("significant", significant + "; the gate reads passes all assertions, exact match over all references "
                                      "and the judge when it is aligned with people"),
        ("non-inferior", f"the lower bound of the one-sided 95% paired bootstrap interval of candidate minus "
                         f"reference is above -{within}, on every gated metric; the incumbent and the promoted model "
                         "are the references"),
        ("promotion", "the cheapest candidate that is significantly better than its base and non-inferior to each "
                      "reference wins; costs within 10% tie, a tie goes to the higher mean gated rate, then to the "
                      "candidate listed first (few-shot, fine-tuned newest first, the promoted model)"),
        ("latency per call", "median and 95th percentile of each test example's generation time: a chat model's "
                             "call, a local model's batch time over the batch's size"),
        ("cost per call", "mean over the test examples: a local model at the configured price per hour times its "
                          "time per example, a hosted model at its list price per token, the incumbent as captured; "
                          "n/a when no price is known"),
    ]


def reference_note(summaries: dict[str, dict[str, Any]]) -> str:
    """One sentence: how many test references a person verified, and what matching the others measures."""
    n, verified, unverified = reference_counts(summaries)
    return (f"{verified} of {n} test references were verified by a person (a correction, or an output a person "
            f"marked good); the other {unverified} are production outputs that passed the assertions, so "
            "matching them measures agreement with the production model, not correctness.")


def judge_status(judge: dict[str, Any]) -> list[str]:
    """Markdown lines saying whether the judge ran, and how far it agrees with people."""
    if judge.get("status") != "on":
        return [f"_The judge was off: {_text(judge.get('reason', 'no judge model configured'))}._"]
    align = judge["alignment"]
    lines = [f"Judge `{_one_line(judge['version'])}`: agreement with people "
             f"{pct(align['agreement'])} on {align['n_labelled']} labelled traces "
             f"(true positive rate {pct(align['tpr'])}, true negative rate {pct(align['tnr'])}; "
             f"few-shot traces excluded). Corrected pass rates use these rates."]
    if align["flagged"]:
        lines += ["", f"**Warning: the judge is not aligned with people: {_text(align['flag_reason'])}. "
                      "Its figures are shown but do not gate promotion.**"]
    return lines


def models_section(summaries: dict[str, dict[str, Any]], labels: dict[str, str],
                   training: dict[str, Training]) -> list[str]:
    """Markdown lines: each model's label and id, and how it trained (planned vs actual, its data)."""
    lines = ["## Models", "", "| model | model id | data version | steps (trained of planned) | "
             "epochs (trained of planned) | tokens | training |", "|---|---|---|---|---|---|---|"]
    for m in summaries:
        t = training.get(m, Training())
        lines.append(f"| {_label(labels, m)} | {_code(m)} | {_code(t.data_version) if t.data_version else 'n/a'} | "
                     f"{t.steps_text} | {t.epochs_text} | {t.tokens_text} | {_text(t.state)} |")
    return lines


def render_models(summaries: dict[str, dict[str, Any]], labels: dict[str, str], judge: dict[str, Any],
                  test_set_version: str, training: dict[str, Training] | None = None, decision: str | None = None,
                  lost: list[str] | None = None, alpha: float | None = None, min_regression: float | None = None,
                  board: list[dict[str, Any]] | None = None, margin: float | None = None) -> str:
    """Markdown overview: the gate's ``decision`` and why each other candidate ``lost`` (one
    sentence each) first, an under-trained model flagged, the candidates side by side (``board``:
    :func:`pipeline.engine.evaluate.comparison.board_rows`), the models with their training
    (``training``: model id -> planned vs actual), one row of rates per model on the test set,
    the judge's status and the definitions (with the gate's ``alpha``, ``min_regression`` and ``margin``)."""
    n = reference_counts(summaries)[0]
    training = training or {}
    flags = [f"**Under-trained: {_named(labels, m)}: {_text(reason)}.**"
             for m, reason in under_trained(training).items() if m in summaries]
    columns = rate_columns(summaries)
    lines = [f"# Eval report, test set `{test_set_version}` (n={n} real examples never seen in training)", ""]
    if decision:
        lines += [f"**{_prose(decision)}.**", ""]
    if lost:
        lines += ["Why the other candidates lost:", *(f"- {_prose(r)}" for r in lost), ""]
    lines += [*flags, *([""] if flags else [])]
    lines += [*board_section(board or []), *([""] if board else [])]
    lines += models_section(summaries, labels, training)
    lines += ["", "## Rates (95% intervals)", "",
              "| model | " + " | ".join(header for _, header in columns) +
              " | judge pass (observed) | judge pass (corrected) | latency per call | cost per call |",
              "|---|" + "---|" * (len(columns) + 4)]
    for model_id, summary in summaries.items():
        observed, corrected = judge_cells(summary.get("judge"))
        latency, cost = call_cells(summary)
        lines.append(f"| {_label(labels, model_id)} | " + " | ".join(model_rates(summary, columns)) +
                     f" | {observed} | {corrected} | {latency} | {cost} |")
    lines += ["", reference_note(summaries), "", "## Judge", "", *judge_status(judge), "", "## Definitions", ""]
    lines += [f"- **{term}**: {meaning}" for term, meaning in definitions(alpha, min_regression, margin)]
    return "\n".join(lines) + "\n"


def slice_section(cand: dict[str, Any], base: dict[str, Any], names: tuple[str, str] = ("baseline", "candidate")) -> list[str]:
    """Markdown lines: both models' rates per report slice ("By <slice name>"), with n and
    intervals; none when the summaries have no slices. ``names``: (baseline, candidate) labels."""
    name, rows = slice_rows([base, cand])
    if name is None:
        return []
    headers = [f"{who}: {what}" for who in names for what in ("passes all assertions", "exact match")]
    lines = ["", f"## By {_text(name)}", "", f"| {_text(name)} | n | " + " | ".join(headers) + " |",
             "|---|---|" + "---|" * len(headers)]
    return lines + [f"| {_text(s)} | " + " | ".join(cells) + " |" for s, cells in rows]


def render(candidate_id: str, baseline_id: str, summaries: dict[str, dict[str, Any]],
           comparison: dict[str, dict[str, Any]], verdict: str, examples: dict[str, pl.DataFrame],
           test_set_version: str, labels: dict[str, str] | None = None) -> str:
    """Markdown comparing ``candidate_id`` with ``baseline_id`` on one test set."""
    labels = labels or {}
    cand, base = summaries[candidate_id], summaries[baseline_id]
    names = (_label(labels, baseline_id), _label(labels, candidate_id))
    lines = [
        f"# Eval report: {names[1]} vs {names[0]}: {verdict.replace('_', ' ')}",
        "",
        "".join(f"{labels[m]} {_code(m)}; " for m in (candidate_id, baseline_id) if m in labels)
        + f"test set `{test_set_version}`, n={cand['n_examples']} real examples never seen in training. "
        f"**Verdict: {verdict.replace('_', ' ')}.**",
        "",
        f"| metric | n | {names[0]} | {names[1]} | difference | 95% CI (paired bootstrap) | wins / losses | McNemar p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {metric} | " + " | ".join(change_cells(c)) + " |" for metric, c in comparison_rows(summaries, comparison)]
    lines += ["", reference_note(summaries) + " The promotion gate reads passes all assertions and exact match over "
              "all references (and the judge's pass rate when the judge is aligned with people and allowed to gate)."]
    lines += slice_section(cand, base, names)
    failures = failure_rows(summaries, [baseline_id, candidate_id])
    if failures:
        lines += ["", f"## Failure modes (share of test examples, n={cand['n_examples']})", "",
                  f"| failure mode | {names[0]} | {names[1]} |", "|---|---|---|"]
        lines += [f"| {_text(mode)} | " + " | ".join(cells) + " |" for mode, cells in failures]
    for kind, title in (("won", f"Examples {names[1]} wins"), ("lost", f"Examples {names[1]} loses")):
        frame = examples[kind]
        lines += ["", f"## {title} ({frame.height} shown)"]
        for row in frame.iter_rows(named=True):
            verified = "verified" if row["reference_verified"] else "unverified"
            lines += ["", f"- **{_text(row['text'])}**", f"  - reference ({verified}): {_code(row['reference'])}",
                      f"  - {names[1]}: {_code(row['output'])}", f"  - {names[0]}: {_code(row['output_baseline'])}"]
    return "\n".join(lines) + "\n"
