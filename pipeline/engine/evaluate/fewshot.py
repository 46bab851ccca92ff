"""The prompting-first candidate: the base model as prompted today with k worked examples from
the train split before each test request, the cheapest way to improve (try it before
fine-tuning).

Examples are retrieved per test example by the similarity of what a person reads first of each
input (:func:`pipeline.engine.tasks.hooks.display_text`): BM25 over lower-cased words, an
example whose reference a person verified scoring :data:`VERIFIED_BOOST` more; equal scores go to
the smaller example id, so retrieval is deterministic. Only train examples are retrieved, none
that shares a group or an input with a test example (:func:`read_pool`): the test split never
reaches a prompt. Each prompt holds at most k examples: fewer when fewer share a word with the
request.

Shots are in prompt order, the most similar last (next to the request), so a model that must
drop some to fit its source length drops the least similar first
(:meth:`pipeline.engine.train.local.inference.LocalModelProvider.fit_shots`). A shot's output is
the task's normalised form of its reference (what the local models learn). How the shots reach a
model is the provider's business (:func:`pipeline.engine.providers.models.few_shot_messages`).

The candidate's id names its base and k (``<base id>+3-shot``); :attr:`FewShot.version` hashes
every prompt's examples, so stored results are reused only for the same examples.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.core.versions import config_hash
from pipeline.engine.providers.models import Shot
from pipeline.engine.tasks import Task, hooks

#: How much more an example whose reference a person verified scores (0.5: half as much again).
VERIFIED_BOOST = 0.5
#: BM25's term-frequency saturation and length normalisation.
K1, B = 1.2, 0.75
_ID = re.compile(r"^(?P<base>.+)\+(?P<k>[0-9]+)-shot$")


def few_shot_id(base_id: str, k: int) -> str:
    """The few-shot candidate's id: its base and k (``local-base-1+3-shot``)."""
    return f"{base_id}+{k}-shot"


def parse_few_shot_id(model_id: str | None) -> tuple[str, int] | None:
    """(base id, k) of a few-shot candidate's id; None for any other id."""
    match = _ID.match(model_id or "")
    return (match["base"], int(match["k"])) if match else None


@dataclass(frozen=True)
class FewShot:
    """A few-shot candidate on a test split: ``shots`` and their ``example_ids`` per test example
    (in the test frame's order, each in prompt order), the ``version`` that hashes them, the
    train examples retrieved from (``pool_size``) and those left out for sharing a group or an
    input with the test split (``left_out``)."""

    model_id: str
    base_id: str
    k: int
    shots: tuple[tuple[Shot, ...], ...]
    example_ids: tuple[tuple[str, ...], ...]
    version: str
    pool_size: int
    left_out: int


def read_pool(conn) -> tuple[pl.DataFrame, int]:
    """The train examples shots may come from (example_id, input, output, reference_verified),
    ordered by id, and how many were left out for sharing a group or an input with a test example."""
    pool = store.read(conn, """
        WITH test AS (SELECT group_id, input::VARCHAR AS input FROM training_examples WHERE split = 'test')
        SELECT example_id, input::VARCHAR AS input, output, coalesce(reference_verified, false) AS reference_verified,
               group_id IN (SELECT group_id FROM test) OR input::VARCHAR IN (SELECT input FROM test) AS leaks
        FROM training_examples WHERE split = 'train' ORDER BY example_id""")
    leaks = int(pool["leaks"].sum()) if pool.height else 0
    return pool.filter(~pl.col("leaks")).drop("leaks"), leaks


def bm25_top_k(queries: list[str], documents: list[str], k: int, boosts: list[float] | None = None) -> list[list[int]]:
    """For each query, the indices of the (at most) ``k`` documents most similar to it by BM25
    over lower-cased words, times the document's boost, most similar first; equal scores go to
    the smaller index; a document sharing no word with the query is never returned."""
    if k < 1 or not documents:
        return [[] for _ in queries]
    words = pl.col("text").str.to_lowercase().str.extract_all(r"\w+").alias("term")
    docs = pl.DataFrame({"text": documents, "boost": [float(b) for b in boosts or [1.0] * len(documents)]},
                        schema={"text": pl.String, "boost": pl.Float64}).with_row_index("doc")
    docs = docs.with_columns(words).with_columns(length=pl.col("term").list.len())
    average = max(float(docs["length"].mean() or 0.0), 1.0)
    tf = docs.select("doc", "term").explode("term").drop_nulls().group_by("doc", "term").agg(tf=pl.len())
    n = len(documents)
    idf = tf.group_by("term").agg(df=pl.len()).with_columns(
        idf=(1 + (n - pl.col("df") + 0.5) / (pl.col("df") + 0.5)).log())
    asked = (pl.DataFrame({"text": queries}, schema={"text": pl.String}).with_row_index("query").with_columns(words)
             .select("query", "term").explode("term").drop_nulls().unique())
    weight = pl.col("tf") * (K1 + 1) / (pl.col("tf") + K1 * (1 - B + B * pl.col("length") / average))
    scored = (asked.join(tf, on="term").join(idf, on="term").join(docs.select("doc", "length", "boost"), on="doc")
              .group_by("query", "doc").agg((pl.col("idf") * weight).sum().alias("score"), pl.col("boost").first())
              .with_columns((pl.col("score") * pl.col("boost")).round(9).alias("score"))
              .sort(["query", "score", "doc"], descending=[False, True, False])
              .group_by("query", maintain_order=True).head(k))
    top = {q: list(d) for q, d in scored.group_by("query", maintain_order=True).agg("doc").iter_rows()}
    return [top.get(q, []) for q in range(len(queries))]


def few_shot_candidate(conn, task: Task, base_id: str, test: pl.DataFrame, k: int) -> FewShot | None:
    """The few-shot candidate on ``base_id`` for ``test`` (example_id, input): up to ``k`` train
    examples per test example; None when ``k`` is 0 or there is no train example to retrieve."""
    if k < 1:
        return None
    pool, left_out = read_pool(conn)
    if pool.is_empty():
        return None
    inputs = [json.loads(i) for i in pool["input"]]
    top = bm25_top_k([hooks.display_text(task, json.loads(i)) for i in test["input"]],
                     [hooks.display_text(task, i) for i in inputs], k,
                     [1 + VERIFIED_BOOST * v for v in pool["reference_verified"]])
    ids = pool["example_id"].to_list()
    outputs = {j: hooks.normalise(task, pool["output"][j], inputs[j]) or pool["output"][j] for row in top for j in row}
    in_order = [list(reversed(row)) for row in top]
    shots = tuple(tuple((inputs[j], outputs[j]) for j in row) for row in in_order)
    example_ids = tuple(tuple(ids[j] for j in row) for row in in_order)
    version = config_hash(k, [[(ids[j], pool["input"][j], outputs[j]) for j in row] for row in in_order])
    return FewShot(few_shot_id(base_id, k), base_id, k, shots, example_ids, version, pool.height, left_out)
