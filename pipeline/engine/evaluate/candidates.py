"""What an evaluation runs: the newest fine-tuned model (the candidate), its base and the
promoted model, on the test split (real traces never seen in training), and their results.

A model's results are reused when eval_results holds them for this test set version; otherwise
they are generated with the database closed (``connect`` is a context-manager factory, e.g. the
DuckDB resource's ``get_connection``) and stored beside its results on other test sets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.evaluate.gate import current_promoted
from pipeline.engine.evaluate.scoring import score, test_set_version
from pipeline.engine.providers.models import ModelProvider
from pipeline.engine.tasks import Task
from pipeline.engine.train.registry import Training, trainings


#: What a model's stored results on a test set are replaced by (results on other test sets stay).
RESULTS_KEY = ["model_id", "test_set_version"]


class NothingToEvaluate(ValueError):
    """A model or test example the evaluation needs is not there yet; the message says which."""


@dataclass(frozen=True)
class Candidates:
    """The models to evaluate (candidate, base, promoted, in that order: model id -> (backend,
    artifact path)), the test split and its version, each model's stored results for it, and how
    each registered model trained (planned vs actual)."""

    candidate_id: str
    base_id: str
    promoted_id: str | None
    models: dict[str, tuple[str, str | None]]
    test: pl.DataFrame
    version: str
    stored: dict[str, pl.DataFrame]
    training: dict[str, Training] = field(default_factory=dict)

    @property
    def baselines(self) -> list[str]:
        """The models the candidate is compared with."""
        return [m for m in self.models if m != self.candidate_id]

    @property
    def roles(self) -> dict[str, str]:
        """Each model's label in the report: "fine-tuned" (the candidate), "base", "promoted" (the
        model in use); a model in two roles has both ("base, promoted")."""
        roles = {self.candidate_id: "fine-tuned", self.base_id: "base"}
        if self.promoted_id in roles:
            roles[self.promoted_id] += ", promoted"
        elif self.promoted_id:
            roles[self.promoted_id] = "promoted"
        return roles


def select_candidates(conn) -> Candidates:
    """The newest succeeded fine-tuned model with a base, its base and the registered promoted
    model, with the test split; raises :class:`NothingToEvaluate` when one is missing."""
    candidate = conn.execute("""SELECT model_id, base_model FROM fine_tuned_models
        WHERE status = 'succeeded' AND base_model IS NOT NULL ORDER BY finished_at DESC LIMIT 1""").fetchone()
    if candidate is None:
        raise NothingToEvaluate("no fine-tuned model has finished yet; materialize fine_tuned_model first")
    candidate_id, base_id = candidate
    promoted = current_promoted(conn)
    wanted = list(dict.fromkeys([candidate_id, base_id, *([promoted.model_id] if promoted else [])]))
    registered = {m: (backend, path) for m, backend, path in conn.execute(
        "SELECT model_id, backend, artifact_path FROM fine_tuned_models WHERE list_contains(?, model_id)",
        [wanted]).fetchall()}
    if base_id not in registered:
        raise NothingToEvaluate(f"base model {base_id} of {candidate_id} is not registered; materialize base_model first")
    test = store.read(conn, "SELECT example_id, input::VARCHAR AS input, output FROM training_examples "
                            "WHERE split = 'test' ORDER BY example_id")
    if test.is_empty():
        raise NothingToEvaluate("the test split is empty: there is nothing to evaluate on")
    models = {m: registered[m] for m in wanted if m in registered}
    version = test_set_version(test)
    stored = {m: store.read(conn, "SELECT * EXCLUDE (metrics), metrics::VARCHAR AS metrics FROM eval_results "
                                  "WHERE model_id = ? AND test_set_version = ?", [m, version]) for m in models}
    promoted_id = promoted.model_id if promoted and promoted.model_id in registered else None
    return Candidates(candidate_id, base_id, promoted_id, models, test, version, stored, trainings(conn, list(models)))


def generate(provider: ModelProvider, model_id: str, test: pl.DataFrame, task: Task,
             log: Callable[[str], None]) -> pl.DataFrame:
    """eval_results of a model on the test set, generated now, with the mean latency per example."""
    started = time.perf_counter()
    outputs = provider.complete([json.loads(i) for i in test["input"]])
    per_call = 1000 * (time.perf_counter() - started) / max(1, test.height)
    log(f"{model_id}: generated {test.height} outputs, {per_call:.1f} ms per example")
    return score(test, outputs, task, model_id, latencies_ms=[per_call] * test.height)


def model_results(connect: Callable[[], ContextManager], candidates: Candidates, task: Task,
                  serve: Callable[[str, str, str | None], ModelProvider],
                  log: Callable[[str], None]) -> dict[str, pl.DataFrame]:
    """Each model's eval_results: the stored ones when complete, else generated now through
    ``serve(backend, model_id, artifact_path)`` (the database closed meanwhile) and stored."""
    results = {}
    for m, (backend, path) in candidates.models.items():
        stored = candidates.stored[m]
        if stored.height == candidates.test.height:
            log(f"{m}: reusing {stored.height} stored results for test set {candidates.version}")
            results[m] = stored
            continue
        results[m] = generate(serve(backend, m, path), m, candidates.test, task, log)
        with connect() as conn:
            store.upsert(conn, "eval_results", results[m], RESULTS_KEY)
    return results
