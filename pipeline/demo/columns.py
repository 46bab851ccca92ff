"""The column lists production sends: each dataset's queried columns among the many others its
events carry, 5 to 89 names per request (median about 54), as real query-assistant logs hold.

A dataset's schema is its own columns (:mod:`pipeline.demo.datasets`, the only ones a gold
query uses) mixed, in a fixed order per dataset, with columns every event carries
(OpenTelemetry's, the tracing backend's, a team's ad-hoc fields). Some names are odd the way
real ones are: spaces, emoji, a tab, over 100 characters. A request lists all of its dataset's
own columns and a sample of the others (a short list holds only some of the own columns); about
one request in thirty lists an empty name, which the trace's input then leaves out.
"""

from __future__ import annotations

import random
from dataclasses import replace
from functools import lru_cache

from pipeline.demo.datasets import DATASETS, ID, STRING, Dataset

#: Columns beside a dataset's own: OpenTelemetry semantic conventions, the tracing backend's,
#: and a team's ad-hoc fields. No name holds a comma (the production prompts join names with one).
COMMON_COLUMNS: tuple[str, ...] = (
    "name", "trace.trace_id", "trace.span_id", "trace.parent_id", "span.kind", "span.num_events",
    "span.num_links", "status_code", "status_message", "meta.signal_type", "meta.annotation_type",
    "meta.refinery.reason", "meta.refinery.sample_key", "meta.span_count", "library.name",
    "library.version", "telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version",
    "service.version", "service.namespace", "service.instance.id", "deployment.environment",
    "host.name", "host.arch", "host.type", "os.type", "os.description", "process.pid",
    "process.runtime.name", "process.runtime.version", "process.executable.name",
    "process.command_args", "cloud.provider", "cloud.region", "cloud.availability_zone",
    "cloud.account.id", "container.id", "container.image.name", "k8s.pod.uid", "k8s.deployment.name",
    "k8s.replicaset.name", "net.peer.name", "net.peer.port", "net.host.name", "net.transport",
    "http.flavor", "http.scheme", "http.target", "http.user_agent", "http.request_content_length",
    "http.response_content_length", "http.client_ip", "thread.id", "thread.name", "code.function",
    "code.namespace", "code.filepath", "code.lineno", "exception.type", "exception.message",
    "exception.stacktrace", "exception.escaped", "db.system", "db.name", "db.user", "db.operation",
    "db.sql.table", "rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
    "messaging.system", "messaging.destination", "messaging.operation", "feature_flag.key",
    "feature_flag.variant", "user_agent.original", "client.address", "server.address", "server.port",
    "url.full", "url.scheme", "error.type", "SampleRate", "build.commit_sha", "build.id",
    "release.channel", "team", "owner", "request.retry_count",
)
#: Odd names real datasets hold.
ODD_COLUMNS: tuple[str, ...] = (
    "Customer Name", "account plan", "app.🚀.rollout_stage", "🔥 hot path", "legacy\tfield",
    "duration (s)", "Request Body Size (bytes)", "[old] latency", "$meta.dirty", "résumé.score",
    "app.debug.attribute_logged_once_from_a_feature_branch_and_never_removed_from_the_instrumentation_"
    "library_v2_final",
)
SHORTEST, LONGEST, MODE = 5, 89, 62
EMPTY_NAME_SHARE = 1 / 30


#: Every dataset's own column names: the common and odd columns never repeat one.
_OWN_NAMES = frozenset(c.name for d in DATASETS for c in d.columns)


@lru_cache(maxsize=None)
def schema(dataset: Dataset) -> tuple[str, ...]:
    """Every column of ``dataset``'s events in the fixed order production lists them: its own
    columns mixed with the common and odd ones (at least LONGEST names)."""
    rng = random.Random(f"schema:{dataset.name}")
    others = [c for c in COMMON_COLUMNS + ODD_COLUMNS if c not in _OWN_NAMES]
    names = [c.name for c in dataset.columns] + others
    rng.shuffle(names)
    return tuple(names)


def _usable(columns) -> bool:
    """Whether questions can be asked over ``columns``: a measure, a label to group by, and
    something to count distinct values of."""
    return (any(c.is_measure for c in columns) and any(c.groupable for c in columns)
            and any(c.kind in (ID, STRING) for c in columns))


def list_length(rng: random.Random) -> int:
    """How many names one request lists: SHORTEST to LONGEST, median about 54."""
    return round(rng.triangular(SHORTEST, LONGEST, MODE))


def request_view(dataset: Dataset, rng: random.Random, empty_names: bool = True) -> Dataset:
    """``dataset`` as one request sees it: the own columns it lists (what questions are asked
    over) and ``listed``, every name it sends in order (with an occasional empty one)."""
    n = list_length(rng)
    own = list(dataset.columns)
    if n < len(own):
        while True:
            chosen = rng.sample(own, n)
            if _usable(chosen):
                break
        own = [c for c in dataset.columns if c in chosen]
    own_names = {c.name for c in own}
    order = schema(dataset)
    others = [c for c in order if c not in _OWN_NAMES]
    picked = set(rng.sample(others, max(0, n - len(own))))
    listed = [c for c in order if c in own_names or c in picked]
    if empty_names and rng.random() < EMPTY_NAME_SHARE:
        listed.insert(rng.randrange(len(listed) + 1), "")
    return replace(dataset, columns=tuple(own), listed=tuple(listed))
