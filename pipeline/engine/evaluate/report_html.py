"""The eval report as one self-contained HTML file (tables and an embedded PNG chart).

Examples are shown by their ``text`` (what the task says a person reads first of an input; see
:func:`pipeline.engine.evaluate.scoring.examples_won_and_lost`). Every piece of trace or model
text is HTML-escaped; the chart is drawn with matplotlib's
non-interactive Agg backend and inlined as base64, so the file opens anywhere offline.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from pipeline.engine.evaluate.report import comparison_rows, reference_note, reference_rows  # noqa: E402
from pipeline.engine.evaluate.scoring import UNVERIFIED_METRIC, VERIFIED_METRIC  # noqa: E402
from pipeline.engine.train.registry import Training, under_trained  # noqa: E402

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f4f4f4}code{background:#f6f6f6;padding:0 .2em;word-break:break-all}
.bad{color:#a00;font-weight:bold}.ok{color:#070;font-weight:bold}img{max-width:100%}"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def chart_png(summaries: dict[str, dict[str, Any]]) -> bytes:
    """Grouped bars: each model's headline rates with 95% intervals (judge: corrected rate); exact
    match on verified references and agreement on unverified ones apart."""
    metrics = [("passed_checks", "passes all\nassertions"), (VERIFIED_METRIC, "exact match,\nverified refs"),
               (UNVERIFIED_METRIC, "agreement,\nunverified refs")]
    if any((s.get("judge") or {}).get("corrected") is not None for s in summaries.values()):
        metrics.append(("judge", "judge pass\n(corrected)"))
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    width = 0.8 / max(1, len(summaries))
    for n, (model_id, summary) in enumerate(summaries.items()):
        values, lows, highs = [], [], []
        for key, _ in metrics:
            if key == "judge":
                judge = summary.get("judge") or {}
                value, interval = judge.get("corrected"), (judge.get("ci_low"), judge.get("ci_high"))
            else:
                value, interval = summary.get(key), summary.get(f"{key}_ci") or (None, None)
            if value is None:  # not measured: no bar rather than a bar at zero
                values.append(float("nan"))
                lows.append(0.0)
                highs.append(0.0)
                continue
            low, high = (value, value) if None in interval else interval
            values.append(100 * value)
            lows.append(100 * max(0.0, value - low))
            highs.append(100 * max(0.0, high - value))
        positions = [m + (n - (len(summaries) - 1) / 2) * width for m in range(len(metrics))]
        ax.bar(positions, values, width, yerr=[lows, highs], capsize=3, label=model_id[:40])
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of test examples")
    ax.set_title("95% intervals: Wilson (assertions, exact match), bootstrap (judge)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _examples(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "<p>none</p>"
    items = []
    for row in frame.iter_rows(named=True):
        kind = "verified" if row["reference_verified"] else "unverified"
        items.append(f"<li><b>{_e(row['text'])}</b><br>reference ({kind}): <code>{_e(row['reference'])}</code><br>"
                     f"candidate: <code>{_e(row['output'])}</code><br>baseline: <code>{_e(row['output_baseline'])}</code></li>")
    return "<ul>" + "".join(items) + "</ul>"


def _training(summaries: dict[str, dict[str, Any]], training: dict[str, Training]) -> list[str]:
    """The training table: each registered model's steps, epochs and tokens, trained of planned."""
    known = {m: training[m] for m in summaries if m in training}
    if not known:
        return []
    rows = [f"<tr><td><code>{_e(m)}</code></td><td><code>{_e(t.data_version)}</code></td><td>{_e(t.steps_text)}</td>"
            f"<td>{_e(t.epochs_text)}</td><td>{_e(t.tokens_text)}</td>"
            f"<td{' class=bad' if t.complete is False else ''}>{_e(t.state)}</td></tr>" for m, t in known.items()]
    return ["<h2>Training (trained of planned)</h2><table><tr><th>model</th><th>data version</th><th>steps</th>"
            "<th>epochs</th><th>tokens</th><th>training</th></tr>", *rows, "</table>"]


def render_html(candidate_id: str, summaries: dict[str, dict[str, Any]], roles: dict[str, str],
                judge: dict[str, Any], comparisons: dict[str, dict[str, Any]], gate: list[str],
                test_set_version: str, training: dict[str, Training] | None = None) -> str:
    """The whole report as an HTML document. ``comparisons`` maps each baseline id to
    ``{"comparison", "verdict", "examples"}``; ``gate`` lists the regressions that block promotion;
    ``training`` (model id -> planned vs actual) flags an under-trained model near the top."""
    training = training or {}
    exact = reference_rows(summaries, all_references=False)
    chart = base64.b64encode(chart_png(summaries)).decode()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Eval report {_e(candidate_id)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Eval report: <code>{_e(candidate_id)}</code></h1>",
             f"<p>Test set <code>{_e(test_set_version)}</code>, real examples never seen in training.</p>",
             f"<p class='{'bad' if gate else 'ok'}'>Promotion gate: "
             + (_e("blocked: " + "; ".join(gate)) if gate else "no significant regression") + "</p>",
             *(f"<p class='bad'>Under-trained: <code>{_e(m)}</code>: {_e(reason)}.</p>"
               for m, reason in under_trained(training).items() if m in summaries),
             f"<img alt='headline rates per model with 95% intervals' src='data:image/png;base64,{chart}'>",
             f"<p>{_e(reference_note(summaries))}</p>",
             "<h2>Models</h2><table><tr><th>model</th><th>role</th><th>passes all assertions</th>"
             + "".join(f"<th>{_e(label)}</th>" for _, label in exact) +
             "<th>judge pass (observed)</th><th>judge pass (corrected, 95% CI)</th><th>latency per call</th>"
             "<th>cost per call</th></tr>"]
    for model_id, s in summaries.items():
        j = s.get("judge") or {}
        corrected = ("n/a" if j.get("corrected") is None
                     else f"{_pct(j['corrected'])} ({_pct(j['ci_low'])} to {_pct(j['ci_high'])})")
        latency, cost = s.get("latency_ms_per_call"), s.get("cost_usd_per_call")
        parts.append(f"<tr><td><code>{_e(model_id)}</code></td><td>{_e(roles.get(model_id, ''))}</td>"
                     f"<td>{_pct(s['passed_checks'])}</td>" + "".join(f"<td>{_pct(s.get(m))}</td>" for m, _ in exact) +
                     f"<td>{_pct(j.get('observed'))}</td><td>{corrected}</td>"
                     f"<td>{'n/a' if latency is None else f'{latency:.1f} ms'}</td>"
                     f"<td>{'n/a (local model)' if cost is None else f'${cost:.5f}'}</td></tr>")
    parts += ["</table>", *_training(summaries, training), "<h2>Judge</h2>"]
    if judge.get("status") != "on":
        parts.append(f"<p>The judge was off: {_e(judge.get('reason', 'no judge model configured'))}.</p>")
    else:
        a = judge["alignment"]
        parts.append(f"<p>Judge <code>{_e(judge['version'])}</code>: agreement with people {_pct(a['agreement'])} "
                     f"on {a['n_labelled']} labelled traces (TPR {_pct(a['tpr'])}, TNR {_pct(a['tnr'])}).</p>")
        if a["flagged"]:
            parts.append(f"<p class='bad'>The judge is not aligned with people: {_e(a['flag_reason'])}. "
                         "Its figures do not gate promotion.</p>")
    modes = sorted({m for s in summaries.values() for m in s["failure_rates"]})
    if modes:
        parts.append("<h2>Failure modes (share of test examples)</h2><table><tr><th>failure mode</th>"
                     + "".join(f"<th><code>{_e(m)}</code></th>" for m in summaries) + "</tr>")
        parts += [f"<tr><td>{_e(mode)}</td>" + "".join(f"<td>{_pct(s['failure_rates'].get(mode, 0.0))}</td>"
                                                     for s in summaries.values()) + "</tr>" for mode in modes]
        parts.append("</table>")
    for baseline_id, item in comparisons.items():
        parts.append(f"<h2>Candidate vs <code>{_e(baseline_id)}</code>: {_e(item['verdict'].replace('_', ' '))}</h2>"
                     "<table><tr><th>metric</th><th>baseline</th><th>candidate</th><th>difference</th>"
                     "<th>95% CI (paired bootstrap)</th><th>wins / losses</th><th>McNemar p</th></tr>")
        for label, c in comparison_rows(summaries, item["comparison"]):
            if c is None:
                parts.append(f"<tr><td>{_e(label)}</td>" + "<td>n/a</td>" * 6 + "</tr>")
                continue
            parts.append(f"<tr><td>{_e(label)}</td><td>{_pct(c['baseline'])}</td>"
                         f"<td>{_pct(c['candidate'])}</td><td>{100 * c['difference']:+.1f} pts</td>"
                         f"<td>{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f} pts</td>"
                         f"<td>{c['wins']} / {c['losses']}</td><td>{c['p_value']:.2g}</td></tr>")
        parts.append("</table>")
        parts.append(f"<h3>Examples the candidate wins</h3>{_examples(item['examples']['won'])}"
                     f"<h3>Examples the candidate loses</h3>{_examples(item['examples']['lost'])}")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: Path, document: str) -> Path:
    """Write ``document`` to ``path`` atomically (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(document, encoding="utf-8")
    partial.replace(path)
    return path
