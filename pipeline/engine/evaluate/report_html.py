"""The eval report as one self-contained HTML file (tables and an embedded PNG chart).

The same figures as the markdown report (:mod:`pipeline.engine.evaluate.report`, whose helpers
turn them into text): the gate's decision with its reason at the top and why each other candidate
lost, the candidates side by side (quality, latency, cost per call, verdict), the models by their label
with their id and training, every rate with its n and 95% interval, each comparison, the rates
per report slice, failure modes, the judge, the definitions, and the examples each model wins
and loses, shown by their ``text`` (what the task says a person reads first of an input; see
:func:`pipeline.engine.evaluate.scoring.examples_won_and_lost`). Every piece of trace or model
text is HTML-escaped; the chart is drawn with matplotlib's non-interactive Agg backend and
inlined as base64, so the file opens anywhere offline.
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

from pipeline.engine.evaluate.report import (  # noqa: E402
    board_cells, board_header, call_cells, change_cells, comparison_rows, definitions, failure_rows, judge_cells, label,
    model_rates, pct, rate_columns, reference_counts, reference_note, slice_rows,
)
from pipeline.engine.evaluate.scoring import UNVERIFIED_METRIC, VERIFIED_METRIC  # noqa: E402
from pipeline.engine.train.registry import Training, under_trained  # noqa: E402

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f4f4f4}code{background:#f6f6f6;padding:0 .2em;word-break:break-all}dt{font-weight:bold}
.bad{color:#a00;font-weight:bold}.ok{color:#070;font-weight:bold}img{max-width:100%}"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _named(labels: dict[str, str], model_id: str) -> str:
    """The label with the id for lookup; the id alone without a label."""
    return (f"{_e(labels[model_id])} " if model_id in labels else "") + f"<code>{_e(model_id)}</code>"


def _row(cells: list[str], header: bool = False) -> str:
    """A table row of escaped cells."""
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{_e(c)}</{tag}>" for c in cells) + "</tr>"


def chart_png(summaries: dict[str, dict[str, Any]], labels: dict[str, str] | None = None) -> bytes:
    """Grouped bars: each model's headline rates with 95% intervals (judge: corrected rate); exact
    match on verified references and agreement on unverified ones apart; each group says its n,
    the legend names each model by its label."""
    n, verified, unverified = reference_counts(summaries)
    metrics = [("passed_checks", f"passes all\nassertions\n(n={n})"),
               (VERIFIED_METRIC, f"exact match,\nverified refs\n(n={verified})"),
               (UNVERIFIED_METRIC, f"agreement,\nunverified refs\n(n={unverified})")]
    if any((s.get("judge") or {}).get("corrected") is not None for s in summaries.values()):
        judged = next(s["judge"]["n"] for s in summaries.values() if (s.get("judge") or {}).get("corrected") is not None)
        metrics.append(("judge", f"judge pass\n(corrected)\n(n={judged})"))
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    width = 0.8 / max(1, len(summaries))
    for k, (model_id, summary) in enumerate(summaries.items()):
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
        positions = [m + (k - (len(summaries) - 1) / 2) * width for m in range(len(metrics))]
        ax.bar(positions, values, width, yerr=[lows, highs], capsize=3, label=label(labels or {}, model_id)[:40])
    ax.set_xticks(range(len(metrics)), [text for _, text in metrics], fontsize=8)
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


def _examples(frame: pl.DataFrame, names: tuple[str, str]) -> str:
    """The examples as a list: the text, the reference, the candidate's and the baseline's output
    (``names``: the baseline's and the candidate's labels)."""
    if frame.is_empty():
        return "<p>none</p>"
    items = []
    for row in frame.iter_rows(named=True):
        kind = "verified" if row["reference_verified"] else "unverified"
        items.append(f"<li><b>{_e(row['text'])}</b><br>reference ({kind}): <code>{_e(row['reference'])}</code><br>"
                     f"{_e(names[1])}: <code>{_e(row['output'])}</code><br>"
                     f"{_e(names[0])}: <code>{_e(row['output_baseline'])}</code></li>")
    return "<ul>" + "".join(items) + "</ul>"


def _models(summaries: dict[str, dict[str, Any]], labels: dict[str, str], training: dict[str, Training]) -> list[str]:
    """The models table: each model's label, its id (for lookup), and how it trained, trained of planned."""
    rows = []
    for m in summaries:
        t = training.get(m, Training())
        rows.append(f"<tr><td>{_e(label(labels, m))}</td><td><code>{_e(m)}</code></td>"
                    f"<td>{f'<code>{_e(t.data_version)}</code>' if t.data_version else 'n/a'}</td>"
                    f"<td>{_e(t.steps_text)}</td><td>{_e(t.epochs_text)}</td><td>{_e(t.tokens_text)}</td>"
                    f"<td{' class=bad' if t.complete is False else ''}>{_e(t.state)}</td></tr>")
    return ["<h2>Models</h2><table>" + _row(["model", "model id", "data version", "steps (trained of planned)",
                                              "epochs (trained of planned)", "tokens", "training"], header=True),
            *rows, "</table>"]


def _gate(decision: str | None, lost: list[str]) -> list[str]:
    """The gate's decision with its reason (or, without one, whether it blocks), and why each
    other candidate lost."""
    blocked = not decision.startswith("Promoted") if decision is not None else bool(lost)
    said = decision or ("blocked" if lost else "no decision")
    parts = [f"<p class='{'bad' if blocked else 'ok'}'>Promotion gate: {_e(said)}.</p>"]
    if lost:
        parts.append("<p>Why the other candidates lost:</p><ul>" + "".join(f"<li>{_e(r)}</li>" for r in lost) + "</ul>")
    return parts


def _board(board: list[dict[str, Any]]) -> list[str]:
    """The candidates side by side: quality with intervals, latency, cost per call, verdict."""
    if not board:
        return []
    judged = any(row.get("judge_corrected") is not None for row in board)
    rows = []
    for row in board:
        label_text, model_id, *figures, verdict = board_cells(row, judged)
        kind = "ok" if verdict.startswith("won") else "bad" if verdict.startswith("lost") else None
        rows.append(f"<tr><td>{_e(label_text)}</td><td><code>{_e(model_id)}</code></td>"
                    + "".join(f"<td>{_e(f)}</td>" for f in figures)
                    + (f"<td class={kind}>" if kind else "<td>") + f"{_e(verdict)}</td></tr>")
    return ["<h2>Candidates side by side</h2><table>" + _row(board_header(board), header=True), *rows, "</table>"]


def render_html(candidate_id: str, summaries: dict[str, dict[str, Any]], labels: dict[str, str],
                judge: dict[str, Any], comparisons: dict[str, dict[str, Any]], lost: list[str],
                test_set_version: str, training: dict[str, Training] | None = None, decision: str | None = None,
                alpha: float | None = None, min_regression: float | None = None,
                board: list[dict[str, Any]] | None = None,
                competition: dict[str, dict[str, dict[str, Any]]] | None = None, margin: float | None = None) -> str:
    """The whole report as an HTML document. ``labels`` names the models (model id -> label; the
    id where none); ``comparisons`` maps each baseline id of ``candidate_id`` to ``{"comparison",
    "verdict", "examples"}``, ``competition`` (when given, instead) each candidate to its
    references' comparisons; ``decision`` is the gate's decision in one sentence and ``lost``
    says why each other candidate lost; ``board`` is the side-by-side table; ``training`` (model
    id -> planned vs actual) flags an under-trained model near the top; ``alpha``,
    ``min_regression`` and ``margin`` go into the definitions."""
    training = training or {}
    pairs = [(m, r, item) for m, refs in (competition or {candidate_id: comparisons}).items()
             for r, item in refs.items()]
    n = reference_counts(summaries)[0]
    columns = rate_columns(summaries)
    chart = base64.b64encode(chart_png(summaries, labels)).decode()
    cand_name = label(labels, candidate_id)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Eval report {_e(candidate_id)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Eval report: {_e(cand_name)} <code>{_e(candidate_id)}</code></h1>",
             f"<p>Test set <code>{_e(test_set_version)}</code>: n={n} real examples never seen in training.</p>",
             *_gate(decision, lost),
             *(f"<p class='bad'>Under-trained: {_named(labels, m)}: {_e(reason)}.</p>"
               for m, reason in under_trained(training).items() if m in summaries),
             *_board(board or []),
             *_models(summaries, labels, training),
             f"<img alt='headline rates per model with 95% intervals' src='data:image/png;base64,{chart}'>",
             "<h2>Rates (95% intervals)</h2><table>"
             + _row(["model", *(header for _, header in columns), "judge pass (observed)", "judge pass (corrected)",
                     "latency per call", "cost per call"], header=True)]
    for model_id, s in summaries.items():
        parts.append(_row([label(labels, model_id), *model_rates(s, columns), *judge_cells(s.get("judge")),
                           *call_cells(s)]))
    parts += ["</table>", f"<p>{_e(reference_note(summaries))}</p>"]
    for model_id, baseline_id, item in pairs:
        names = (label(labels, baseline_id), label(labels, model_id))
        parts.append(f"<h2>{_e(names[1])} vs {_e(names[0])}: {_e(item['verdict'].replace('_', ' '))}</h2>"
                     f"<p>{_e(names[0])} is <code>{_e(baseline_id)}</code>.</p><table>"
                     + _row(["metric", "n", names[0], names[1], "difference", "95% CI (paired bootstrap)",
                             "wins / losses", "McNemar p"], header=True))
        parts += [_row([metric, *change_cells(c)]) for metric, c in comparison_rows(summaries, item["comparison"])]
        parts.append("</table>")
    name, rows = slice_rows(list(summaries.values()))
    if name is not None:
        parts.append(f"<h2>By {_e(name)}</h2><table>" + _row(
            [name, "n", *(f"{label(labels, m)}: {what}" for m in summaries
                          for what in ("passes all assertions", "exact match"))], header=True))
        parts += [_row([s, *cells]) for s, cells in rows] + ["</table>"]
    failures = failure_rows(summaries, list(summaries))
    if failures:
        parts.append(f"<h2>Failure modes (share of test examples, n={n})</h2><table>"
                     + _row(["failure mode", *(label(labels, m) for m in summaries)], header=True))
        parts += [_row([mode, *cells]) for mode, cells in failures] + ["</table>"]
    parts.append("<h2>Judge</h2>")
    if judge.get("status") != "on":
        parts.append(f"<p>The judge was off: {_e(judge.get('reason', 'no judge model configured'))}.</p>")
    else:
        a = judge["alignment"]
        parts.append(f"<p>Judge <code>{_e(judge['version'])}</code>: agreement with people {pct(a['agreement'])} "
                     f"on {a['n_labelled']} labelled traces (TPR {pct(a['tpr'])}, TNR {pct(a['tnr'])}).</p>")
        if a["flagged"]:
            parts.append(f"<p class='bad'>The judge is not aligned with people: {_e(a['flag_reason'])}. "
                         "Its figures do not gate promotion.</p>")
    parts.append("<h2>Definitions</h2><dl>" + "".join(f"<dt>{_e(term)}</dt><dd>{_e(meaning)}</dd>"
                                                     for term, meaning in definitions(alpha, min_regression, margin))
                 + "</dl>")
    for model_id, baseline_id, item in pairs:
        names = (label(labels, baseline_id), label(labels, model_id))
        parts.append(f"<h2>Examples: {_e(names[1])} vs {_e(names[0])}</h2>"
                     f"<h3>Examples {_e(names[1])} wins</h3>{_examples(item['examples']['won'], names)}"
                     f"<h3>Examples {_e(names[1])} loses</h3>{_examples(item['examples']['lost'], names)}")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: Path, document: str) -> Path:
    """Write ``document`` to ``path`` atomically (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(document, encoding="utf-8")
    partial.replace(path)
    return path
