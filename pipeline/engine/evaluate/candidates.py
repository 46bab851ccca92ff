"""What an evaluation runs on the test split (real traces never seen in training): the candidates
that compete and the references they are held to, and their results.

The candidates: the few-shot candidate (the base as prompted today with k examples from the train
split, :mod:`pipeline.engine.evaluate.fewshot`), the fine-tuned models trained on the newest data
(the newest one first: the candidate the report is named after), and the promoted model (the
model in use). The references: each one's base as prompted today, the promoted model, and the
incumbent when one is registered (the model in production, from its captured outputs:
:func:`pipeline.engine.evaluate.incumbent.incumbent_results`, never asked now).

A model's results are reused when eval_results holds them for this test set version (a few-shot
candidate's: for the same examples too); otherwise they are generated with the database closed
(``connect`` is a context-manager factory, e.g. the DuckDB resource's ``get_connection``) and
stored beside its results on other test sets, with each item's generation time (and tokens, from
a chat model): a chat model's per call, a local model's its batch's time shared by the batch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.evaluate.fewshot import FewShot, few_shot_candidate, parse_few_shot_id
from pipeline.engine.evaluate.gate import current_promoted
from pipeline.engine.evaluate.incumbent import IncumbentNotCaptured, incumbent_results
from pipeline.engine.evaluate.pricing import Pricing, pricing_for
from pipeline.engine.evaluate.scoring import score, test_set_version
from pipeline.engine.providers.models import ModelProvider
from pipeline.engine.tasks import Task
from pipeline.engine.train.registry import Training, trainings

#: What a model's stored results on a test set are replaced by (results on other test sets stay).
RESULTS_KEY = ["model_id", "test_set_version"]
#: The incumbent's id in the report: its model name after this prefix (it may share a name with a model here).
INCUMBENT_PREFIX = "incumbent:"


class NothingToEvaluate(ValueError):
    """A model or test example the evaluation needs is not there yet; the message says which."""


@dataclass(frozen=True)
class Candidates:
    """The models of one evaluation: the newest fine-tuned model (``candidate_id``) and its base,
    the promoted model, the registered models to run (``models``: model id -> (backend, artifact
    path)), the test split and its version, each model's stored results for it, how each
    registered model trained, every fine-tuned candidate newest first (``fine_tuned``), each
    candidate's base (``bases``), the few-shot candidates (``few_shot``: the one on the base,
    and the promoted model when it is one) and the incumbent's id."""

    candidate_id: str
    base_id: str
    promoted_id: str | None
    models: dict[str, tuple[str, str | None]]
    test: pl.DataFrame
    version: str
    stored: dict[str, pl.DataFrame]
    training: dict[str, Training] = field(default_factory=dict)
    fine_tuned: tuple[str, ...] = ()
    bases: dict[str, str] = field(default_factory=dict)
    few_shot: dict[str, FewShot] = field(default_factory=dict)
    incumbent_id: str | None = None

    @property
    def order(self) -> list[str]:
        """Every model with results, in the report's order: bases, few-shot, fine-tuned (newest
        first), the promoted model, the incumbent."""
        bases = [self.base_id, *self.bases.values()]
        return list(dict.fromkeys([*bases, *self.few_shot, *self.fine_tuned,
                                   *(m for m in (self.promoted_id, self.incumbent_id) if m)]))

    @property
    def contenders(self) -> list[str]:
        """The models that compete for promotion, in the order ties are broken: few-shot,
        fine-tuned newest first, the promoted model."""
        listed = [m for m in dict.fromkeys([*self.few_shot, *self.fine_tuned]) if m != self.promoted_id]
        return listed + ([self.promoted_id] if self.promoted_id else [])

    def references(self, model_id: str) -> list[str]:
        """What ``model_id`` is compared with: its base, the promoted model, the incumbent (not itself)."""
        wanted = (self.bases.get(model_id), self.promoted_id, self.incumbent_id)
        return list(dict.fromkeys(m for m in wanted if m and m != model_id))

    @property
    def baselines(self) -> list[str]:
        """The models the newest fine-tuned model is compared with."""
        return self.references(self.candidate_id)

    @property
    def roles(self) -> dict[str, str]:
        """Each model's label in the report: "base", "few-shot k=3", "fine-tuned" (then
        "fine-tuned 2", ...), "promoted" (the model in use), "incumbent"; a model in two roles has
        both ("base, promoted")."""
        roles: dict[str, str] = {}

        def add(model_id: str, role: str) -> None:
            roles[model_id] = f"{roles[model_id]}, {role}" if model_id in roles else role

        add(self.base_id, "base")
        for n, base in enumerate(dict.fromkeys(b for b in self.bases.values() if b != self.base_id), 2):
            add(base, f"base {n}")
        for model_id, few in self.few_shot.items():
            add(model_id, f"few-shot k={few.k}" + (f" on {roles[few.base_id]}" if few.base_id != self.base_id else ""))
        for n, model_id in enumerate(self.fine_tuned, 1):
            add(model_id, "fine-tuned" if n == 1 else f"fine-tuned {n}")
        if self.promoted_id:
            add(self.promoted_id, "promoted")
        if self.incumbent_id:
            add(self.incumbent_id, "incumbent")
        return roles

    def backend(self, model_id: str) -> str | None:
        """Where ``model_id`` runs ('local', 'openai', ...): a few-shot candidate where its base
        does; None for the incumbent."""
        few = self.few_shot.get(model_id)
        entry = self.models.get(few.base_id if few else model_id)
        return entry[0] if entry else None

    def pricing(self, local_per_hour: float | None) -> dict[str, Pricing | None]:
        """How each model's calls are priced: a local model at ``local_per_hour`` (USD per hour of
        the machine) times its seconds per call, a hosted one at its list price per token
        (:func:`pipeline.engine.evaluate.pricing.pricing_for`; a few-shot candidate as its base);
        None for the incumbent (its captured calls carry their cost) and where no price is known."""
        out: dict[str, Pricing | None] = {}
        for model_id in self.order:
            backend = self.backend(model_id)
            few = self.few_shot.get(model_id)
            if backend == "local":
                out[model_id] = (Pricing(per_hour=local_per_hour, source="configured per hour of the local machine")
                                 if local_per_hour is not None else None)
            else:
                out[model_id] = pricing_for(few.base_id if few else model_id) if backend else None
        return out


def _registered(conn, model_ids: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
    """model id -> (backend, artifact path, base model) of those of ``model_ids`` in the registry."""
    return {m: (backend, path, base) for m, backend, path, base in conn.execute(
        "SELECT model_id, backend, artifact_path, base_model FROM fine_tuned_models WHERE list_contains(?, model_id)",
        [[m for m in model_ids if m]]).fetchall()}


def select_candidates(conn, task: Task | None = None, few_shot_k: int = 0, incumbent: str | None = None) -> Candidates:
    """The newest succeeded fine-tuned model with a base and the others trained on the same data,
    their bases, the registered promoted model (a few-shot one too), the few-shot candidate with
    ``few_shot_k`` examples on the newest model's base (none at 0 or without ``task``), the
    ``incumbent`` (its model name; its captured outputs scored with ``task``) and the test split;
    raises :class:`NothingToEvaluate` when one is missing."""
    newest = conn.execute("""SELECT model_id, base_model, training_data_version FROM fine_tuned_models
        WHERE status = 'succeeded' AND base_model IS NOT NULL ORDER BY finished_at DESC LIMIT 1""").fetchone()
    if newest is None:
        raise NothingToEvaluate("no fine-tuned model has finished yet; materialize fine_tuned_model first")
    candidate_id, base_id, data_version = newest
    fine_tuned = [candidate_id, *(m for (m,) in conn.execute(
        """SELECT model_id FROM fine_tuned_models WHERE status = 'succeeded' AND base_model IS NOT NULL
           AND training_data_version = ? AND model_id <> ? ORDER BY finished_at DESC, model_id""",
        [data_version, candidate_id]).fetchall())]
    promoted = current_promoted(conn)
    promoted_name = promoted.model_id if promoted else None
    promoted_few = parse_few_shot_id(promoted_name)
    first = _registered(conn, [*fine_tuned, promoted_name])
    bases = {m: first[m][2] for m in [*fine_tuned, promoted_name] if m in first and first[m][2]}
    registered = _registered(conn, [*fine_tuned, *bases.values(), promoted_name,
                                    promoted_few[0] if promoted_few else None])
    if base_id not in registered:
        raise NothingToEvaluate(f"base model {base_id} of {candidate_id} is not registered; "
                                "materialize base_model first")
    bases = {m: base for m, base in bases.items() if base in registered}
    fine_tuned = [m for m in fine_tuned if m in bases]
    test = store.read(conn, "SELECT example_id, input::VARCHAR AS input, output FROM training_examples "
                            "WHERE split = 'test' ORDER BY example_id")
    if test.is_empty():
        raise NothingToEvaluate("the test split is empty: there is nothing to evaluate on")
    few_shot = {}
    wanted = [(base_id, few_shot_k)] + ([promoted_few] if promoted_few and promoted_few[0] in registered else [])
    for on, k in dict.fromkeys(wanted) if task is not None else []:
        few = few_shot_candidate(conn, task, on, test, k)
        if few is not None:
            few_shot[few.model_id] = few
            bases[few.model_id] = on
    promoted_id = promoted_name if promoted_name in registered or promoted_name in few_shot else None
    models = {m: registered[m][:2] for m in dict.fromkeys([base_id, *bases.values(), *fine_tuned, promoted_id])
              if m in registered}
    version = test_set_version(test)
    stored = {m: store.read(conn, "SELECT * EXCLUDE (metrics), metrics::VARCHAR AS metrics FROM eval_results "
                                  "WHERE model_id = ? AND test_set_version = ?", [m, version])
              for m in [*models, *few_shot]}
    for m, few in few_shot.items():
        stored[m] = stored[m].filter(pl.col("metrics").str.json_path_match("$.shots_version") == few.version)
    incumbent_id = None
    if incumbent:
        incumbent_id = INCUMBENT_PREFIX + incumbent
        stored[incumbent_id] = _incumbent(conn, incumbent, incumbent_id, test, task)
    return Candidates(candidate_id, base_id, promoted_id, models, test, version, stored, trainings(conn, list(models)),
                      tuple(fine_tuned), bases, few_shot, incumbent_id)


def _incumbent(conn, model: str, incumbent_id: str, test: pl.DataFrame, task: Task | None) -> pl.DataFrame:
    """The incumbent's results on ``test`` from its captured outputs, under ``incumbent_id``."""
    if task is None:
        raise ValueError("scoring the incumbent's captured outputs needs the task")
    try:
        results = incumbent_results(conn, model, test, task)
    except IncumbentNotCaptured as exc:
        raise NothingToEvaluate(str(exc)) from None
    return results.with_columns(model_id=pl.lit(incumbent_id))


def _median_p95(values: list[float]) -> tuple[float, float]:
    series = pl.Series(values, dtype=pl.Float64)
    return float(series.quantile(0.5, "linear")), float(series.quantile(0.95, "linear"))


def generate(provider: ModelProvider, model_id: str, test: pl.DataFrame, task: Task,
             log: Callable[[str], None], few_shot: FewShot | None = None) -> pl.DataFrame:
    """eval_results of a model on the test set, generated now (with ``few_shot``'s examples before
    each request), each item with its generation time (``latency_ms``), its tokens when the
    provider reports them, and with ``few_shot`` how many examples fitted and their version."""
    inputs = [json.loads(i) for i in test["input"]]
    shots = [list(s) for s in few_shot.shots] if few_shot else None
    if shots and callable(getattr(provider, "fit_shots", None)):
        shots = provider.fit_shots(inputs, shots)
    per_call = callable(getattr(provider, "completions", None))
    outputs, figures = (_per_call if per_call else _per_batch)(provider, inputs, shots)
    results = score(test, outputs, task, model_id, latencies_ms=[f["latency_ms"] for f in figures])
    if shots is not None:
        figures = [{**f, "shots": len(s), "shots_version": few_shot.version} for f, s in zip(figures, shots)]
    median, p95 = _median_p95([f["latency_ms"] for f in figures])
    used = f", {sum(map(len, shots)) / len(shots):.1f} of {few_shot.k} examples per prompt" if shots is not None else ""
    log(f"{model_id}: generated {test.height} outputs, {median:.1f} ms per item (median; p95 {p95:.1f}){used}")
    return results.with_columns(pl.Series("metrics", [json.dumps({**json.loads(m), **{k: v for k, v in f.items()
                                                                                     if v is not None}})
                                                      for m, f in zip(results["metrics"], figures)]))


def _per_call(provider: Any, inputs: list[dict[str, Any]], shots: list | None) -> tuple[list[str], list[dict]]:
    """Outputs and per-call figures of a chat model: each call's latency and tokens."""
    started = time.perf_counter()
    calls = provider.completions(inputs, shots) if shots is not None else provider.completions(inputs)
    mean = 1000 * (time.perf_counter() - started) / max(1, len(inputs))
    return [c.text for c in calls], [{"latency_ms": c.latency_ms if c.latency_ms is not None else mean,
                                      "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}
                                     for c in calls]


def _per_batch(provider: Any, inputs: list[dict[str, Any]], shots: list | None) -> tuple[list[str], list[dict]]:
    """Outputs and per-item figures of a batched model: items of similar length batched together
    (the provider's ``batch_size`` at a time), each item timed at its batch's time over its size."""
    size = max(1, getattr(provider, "batch_size", 0) or len(inputs))
    length = [len(json.dumps([i, s], default=str)) for i, s in zip(inputs, shots or [[]] * len(inputs))]
    order = sorted(range(len(inputs)), key=lambda n: length[n])
    outputs: list[str] = [""] * len(inputs)
    figures: list[dict] = [{}] * len(inputs)
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        began = time.perf_counter()
        batch = [inputs[n] for n in chunk]
        out = provider.complete(batch, [shots[n] for n in chunk]) if shots is not None else provider.complete(batch)
        each = 1000 * (time.perf_counter() - began) / len(chunk)
        for n, text in zip(chunk, out, strict=True):
            outputs[n], figures[n] = text, {"latency_ms": each}
    return outputs, figures


def model_results(connect: Callable[[], ContextManager], candidates: Candidates, task: Task,
                  serve: Callable[[str, str, str | None], ModelProvider],
                  log: Callable[[str], None]) -> dict[str, pl.DataFrame]:
    """Each model's eval_results (see the module docstring): the stored ones when complete, else
    generated now through ``serve(backend, model_id, artifact_path)`` (the database closed
    meanwhile; a base's provider answers its few-shot candidate too) and stored."""
    results, served = {}, {}
    for m in candidates.order:
        stored = candidates.stored.get(m)
        if stored is not None and stored.height == candidates.test.height:
            what = "captured outputs of the incumbent" if m == candidates.incumbent_id else "stored results"
            log(f"{m}: reusing {stored.height} {what} for test set {candidates.version}")
            results[m] = stored
            continue
        few = candidates.few_shot.get(m)
        on = few.base_id if few else m
        if on not in served:
            backend, path = candidates.models[on]
            served = {on: serve(backend, on, path)}  # one model loaded at a time
        results[m] = generate(served[on], m, candidates.test, task, log, few)
        with connect() as conn:
            store.upsert(conn, "eval_results", results[m], RESULTS_KEY)
    return results
