"""The evaluation report as markdown, for the Dagster UI and the eval_reports table.

:func:`render_models` is the overview (an under-trained model flagged first, every model's rates,
latency and cost, how each trained against its plan, the judge's alignment); :func:`render`
compares a candidate with one baseline on the same examples: rates per report slice when the task
has slices (the summaries' ``slices``), and examples shown by their ``text`` (what the task says a
person reads first of an input).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

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
    lines = [f"# Eval report, test set `{test_set_version}` ({n} real examples never seen in training)", "",
             *flags, *([""] if flags else []),
             "| model | role | passes all assertions | exact match | judge pass (observed) | "
             "judge pass (corrected, 95% CI) | latency per call | cost per call |",
             "|---|---|---|---|---|---|---|---|"]
    for model_id, summary in summaries.items():
        observed, corrected = _judge_cell(summary.get("judge"))
        latency = summary.get("latency_ms_per_call")
        cost = summary.get("cost_usd_per_call")
        lines.append(
            f"| {_code(model_id)} | {roles.get(model_id, '')} | {_pct(summary['passed_checks'])} | "
            f"{_pct(summary['exact_match'])} | {observed} | {corrected} | "
            f"{'n/a' if latency is None else f'{latency:.1f} ms'} | "
            f"{'n/a (local model)' if cost is None else f'${cost:.5f}'} |")
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
    for metric, label in (("passed_checks", "passes all assertions"), ("exact_match", "exact match (normalised)"),
                          ("judge_pass", "judge pass (observed)")):
        if metric not in comparison:
            continue
        c = comparison[metric]
        lines.append(f"| {label} | {_pct(c['baseline'])} | {_pct(c['candidate'])} | "
                     f"{100 * c['difference']:+.1f} pts | {100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f} pts | "
                     f"{c['wins']} / {c['losses']} | {c['p_value']:.2g} |")
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
            lines += ["", f"- **{_text(row['text'])}**", f"  - reference: {_code(row['reference'])}",
                      f"  - candidate: {_code(row['output'])}", f"  - baseline: {_code(row['output_baseline'])}"]
    return "\n".join(lines) + "\n"
