"""The evaluation report as markdown, for the Dagster UI and the eval_reports table."""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl


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
        "| metric | baseline | candidate | difference | wins / losses | McNemar p |",
        "|---|---|---|---|---|---|",
    ]
    for metric, label in (("passed_checks", "passes all assertions"), ("exact_match", "exact match (normalised)")):
        c = comparison[metric]
        lines.append(f"| {label} | {_pct(c['baseline'])} | {_pct(c['candidate'])} | "
                     f"{100 * c['difference']:+.1f} pts | {c['wins']} / {c['losses']} | {c['p_value']:.2g} |")
    slices = sorted(set(cand.get("by_dataset", {})) | set(base.get("by_dataset", {})))
    if slices:
        lines += ["", "## By dataset", "", "| dataset | n | baseline pass / exact | candidate pass / exact |",
                  "|---|---|---|---|"]
        for s in slices:
            b, c = base["by_dataset"].get(s, {}), cand["by_dataset"].get(s, {})
            lines.append(f"| {_text(s)} | {c.get('n', b.get('n', 0))} | {_pct(b.get('passed_checks'))} / "
                         f"{_pct(b.get('exact_match'))} | {_pct(c.get('passed_checks'))} / {_pct(c.get('exact_match'))} |")
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
            question = json.loads(row["input"]).get("question", row["input"])
            lines += ["", f"- **{_text(question)}**", f"  - reference: {_code(row['reference'])}",
                      f"  - candidate: {_code(row['output'])}", f"  - baseline: {_code(row['output_baseline'])}"]
    return "\n".join(lines) + "\n"
