"""The evaluation report as markdown, for the Dagster UI and the eval_reports table.

:func:`render_models` is the overview (an under-trained model flagged first, every model's rates,
latency and cost, how each trained against its plan, the judge's alignment); :func:`render`
compares a candidate with one baseline on the same examples: rates per report slice when the task
has slices (the summaries' ``slices``), and examples shown by their ``text`` (what the task says a
person reads first of an input).

Exact match is shown by reference, each with its count: "exact match, verified references" (a
person wrote or approved the reference) and "agreement with production, unverified references"
(the reference is a production output that passed the assertions, so matching it measures
agreement with the production model); "exact match, all references", what the gate reads, is
shown when the test set holds both kinds (otherwise it equals the one non-empty row).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from pipeline.engine.evaluate.scoring import JUDGE_METRIC, LABELS, UNVERIFIED_METRIC, VERIFIED_METRIC
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _interval(low: float | None, high: float | None) -> str:
    return "n/a" if low is None or high is None else f"{100 * low:.1f} to {100 * high:.1f}%"


def _judge_cell(judge: dict[str, Any] | None) -> tuple[str, str]:
    if not judge or judge.get("observed") is None:
        return "n/a", "n/a"
    corrected = ("n/a" if judge.get("corrected") is None else
                 f"{_pct(judge['corrected'])} ({_interval(judge['ci_low'], judge['ci_high'])})")
    return f"{_pct(judge['observed'])} (n={judge['n']})", corrected


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


def comparison_rows(summaries: dict[str, dict[str, Any]],
                    comparison: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any] | None]]:
    """(label, change) of the comparison table's rows in order: passes all assertions, exact match
    by reference (change None where there is no such reference), all references when there are
    both kinds, the judge's pass rate when compared."""
    rows = [("passed_checks", LABELS["passed_checks"]), *reference_rows(summaries),
            (JUDGE_METRIC, "judge pass (observed)")]
    return [(label, comparison.get(metric)) for metric, label in rows
            if metric in comparison or metric in (VERIFIED_METRIC, UNVERIFIED_METRIC)]


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
             f"{_pct(align['agreement'])} on {align['n_labelled']} labelled traces "
             f"(true positive rate {_pct(align['tpr'])}, true negative rate {_pct(align['tnr'])}; "
             f"few-shot traces excluded). Corrected pass rates use these rates."]
    if align["flagged"]:
        lines += ["", f"**Warning: the judge is not aligned with people: {_text(align['flag_reason'])}. "
                      "Its figures are shown but do not gate promotion.**"]
    return lines


def training_section(summaries: dict[str, dict[str, Any]], training: dict[str, Training]) -> list[str]:
    """Markdown lines: how each registered model trained, planned vs actual (none when none is)."""
    known = [m for m in summaries if m in training]
    if not known:
        return []
    lines = ["", "## Training (trained of planned)", "",
             "| model | data version | steps | epochs | tokens | training |", "|---|---|---|---|---|---|"]
    for m in known:
        t = training[m]
        lines.append(f"| {_code(m)} | {_code(t.data_version)} | {t.steps_text} | {t.epochs_text} | {t.tokens_text} | "
                     f"{_text(t.state)} |")
    return lines


def render_models(summaries: dict[str, dict[str, Any]], roles: dict[str, str], judge: dict[str, Any],
                  test_set_version: str, training: dict[str, Training] | None = None) -> str:
    """Markdown overview: an under-trained model flagged first, one row per model on the test set,
    each registered model's training (``training``: model id -> planned vs actual), and the judge's status."""
    n = next(iter(summaries.values()))["n_examples"] if summaries else 0
    training = training or {}
    flags = [f"**Under-trained: {_code(m)}: {_text(reason)}.**" for m, reason in under_trained(training).items()
             if m in summaries]
    exact = reference_rows(summaries, all_references=False)
    lines = [f"# Eval report, test set `{test_set_version}` ({n} real examples never seen in training)", "",
             *flags, *([""] if flags else []),
             "| model | role | passes all assertions | " + " | ".join(label for _, label in exact) +
             " | judge pass (observed) | judge pass (corrected, 95% CI) | latency per call | cost per call |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model_id, summary in summaries.items():
        observed, corrected = _judge_cell(summary.get("judge"))
        latency = summary.get("latency_ms_per_call")
        cost = summary.get("cost_usd_per_call")
        lines.append(
            f"| {_code(model_id)} | {roles.get(model_id, '')} | {_pct(summary['passed_checks'])} | "
            + "".join(f"{_pct(summary.get(metric))} | " for metric, _ in exact) + f"{observed} | {corrected} | "
            f"{'n/a' if latency is None else f'{latency:.1f} ms'} | "
            f"{'n/a (local model)' if cost is None else f'${cost:.5f}'} |")
    lines += ["", reference_note(summaries)]
    lines += training_section(summaries, training) + ["", "## Judge", ""] + judge_status(judge)
    return "\n".join(lines) + "\n"


def slice_section(cand: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Markdown lines: both models' rates per report slice ("By <slice name>"); none when the
    summaries have no slices."""
    name = (cand.get("slices") or base.get("slices") or {}).get("name")
    by_c, by_b = (cand.get("slices") or {}).get("values", {}), (base.get("slices") or {}).get("values", {})
    slices = sorted(set(by_c) | set(by_b))
    if not name or not slices:
        return []
    lines = ["", f"## By {_text(name)}", "", f"| {_text(name)} | n | baseline pass / exact | candidate pass / exact |",
             "|---|---|---|---|"]
    for s in slices:
        b, c = by_b.get(s, {}), by_c.get(s, {})
        lines.append(f"| {_text(s)} | {c.get('n', b.get('n', 0))} | {_pct(b.get('passed_checks'))} / "
                     f"{_pct(b.get('exact_match'))} | {_pct(c.get('passed_checks'))} / {_pct(c.get('exact_match'))} |")
    return lines


def render(candidate_id: str, baseline_id: str, summaries: dict[str, dict[str, Any]],
           comparison: dict[str, dict[str, Any]], verdict: str, examples: dict[str, pl.DataFrame],
           test_set_version: str) -> str:
    """Markdown comparing ``candidate_id`` with ``baseline_id`` on one test set."""
    cand, base = summaries[candidate_id], summaries[baseline_id]
    lines = [
        f"# Eval report: `{candidate_id}` vs `{baseline_id}`",
        "",
        f"Test set `{test_set_version}`, {cand['n_examples']} real examples never seen in training. "
        f"**Verdict: {verdict.replace('_', ' ')}.**",
        "",
        "| metric | baseline | candidate | difference | 95% CI (paired bootstrap) | wins / losses | McNemar p |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, c in comparison_rows(summaries, comparison):
        if c is None:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        lines.append(f"| {label} | {_pct(c['baseline'])} | {_pct(c['candidate'])} | "
                     f"{100 * c['difference']:+.1f} pts | {100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f} pts | "
                     f"{c['wins']} / {c['losses']} | {c['p_value']:.2g} |")
    lines += ["", reference_note(summaries) + " The promotion gate reads passes all assertions and exact match over "
              "all references (and the judge's pass rate when the judge is aligned with people and allowed to gate)."]
    lines += slice_section(cand, base)
    modes = sorted(set(cand["failure_rates"]) | set(base["failure_rates"]))
    if modes:
        lines += ["", "## Failure modes (share of test examples)", "", "| failure mode | baseline | candidate |",
                  "|---|---|---|"]
        lines += [f"| {m} | {_pct(base['failure_rates'].get(m, 0.0))} | {_pct(cand['failure_rates'].get(m, 0.0))} |"
                  for m in modes]
    for kind, title in (("won", "Examples the candidate wins"), ("lost", "Examples the candidate loses")):
        frame = examples[kind]
        lines += ["", f"## {title} ({frame.height} shown)"]
        for row in frame.iter_rows(named=True):
            kind = "verified" if row["reference_verified"] else "unverified"
            lines += ["", f"- **{_text(row['text'])}**", f"  - reference ({kind}): {_code(row['reference'])}",
                      f"  - candidate: {_code(row['output'])}", f"  - baseline: {_code(row['output_baseline'])}"]
    return "\n".join(lines) + "\n"
