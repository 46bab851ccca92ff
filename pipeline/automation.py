"""Keeping the graph fresh: who owns each asset, when it runs by itself, and the nightly retraining.

One policy for the whole graph, applied in :mod:`pipeline.definitions` (asset decorators stay
free of it). Automation follows data versions, not materializations:

- Every asset reports a data version derived from what it stored (:func:`table_version`, the
  training files' content hash, the model id), so a run that changed nothing reports the version
  it had and requests nothing downstream.
- The trace files and people's decisions are observed by the ``observe_sources`` sensor
  (:mod:`assets.sources`), which records an observation only when their version changed: no
  runs. The ``flywheel`` job observes them too, so a finished run leaves nothing to catch up on.
- raw_traces and annotations run by themselves when the trace files or decisions changed; the
  rest of the cheap chain (assertions, judge, curation, training files) follows a dependency whose
  data version changed, in one run, never while an upstream is missing, running or failing a
  blocking check.
- fine_tuned_model runs only when the training files' data version (the curated data's content
  hash) or the base model changed, or with ``FLYWHEEL_TRAIN_ON=nightly`` only from the nightly
  schedule; eval_report follows a new fine-tuned model, and promoted_model a new eval report whose
  blocking no_regression check passed.
- The nightly schedule (``FLYWHEEL_NIGHTLY_CRON``, 02:00 UTC) runs the retraining path when the
  training data changed and at least ``FLYWHEEL_MIN_NEW_EXAMPLES`` examples are new since the last
  fine-tuned model; otherwise it skips and says why.
"""

import hashlib
import os

import dagster as dg

from pipeline.engine.curate.examples import training_data_version
from pipeline.engine.train import registry
from pipeline.resources import FlywheelDuckDB

AC = dg.AutomationCondition

NIGHTLY_CRON = os.environ.get("FLYWHEEL_NIGHTLY_CRON", "0 2 * * *")
MIN_NEW_EXAMPLES = int(os.environ.get("FLYWHEEL_MIN_NEW_EXAMPLES", "50"))
#: When fine-tuning runs by itself: "data_change" (automation, when the training data version
#: changed) or "nightly" (only the nightly schedule, with its minimum of new examples: for
#: hosted backends, where every job is paid for).
TRAIN_ON = os.environ.get("FLYWHEEL_TRAIN_ON", "data_change")
if TRAIN_ON not in ("data_change", "nightly"):
    raise ValueError(f"FLYWHEEL_TRAIN_ON must be 'data_change' or 'nightly', not {TRAIN_ON!r}")

#: Owners by group: a team (``team:<name>``) or a person's e-mail address.
OWNERS = {"ingest": ["team:data-platform"], "label": ["team:ml-data"], "curate": ["team:ml-data"],
          "train": ["team:ml-training"], "evaluate": ["team:ml-training"]}

SOURCES = ("trace_files_source", "annotations_source")
TRAINING_PATH = ("base_model", "fine_tuned_model", "eval_report", "promoted_model")
#: Partitions of the LangSmith pulls run on their own schedule: one never pulled holds nothing back.
LANGSMITH = dg.AssetSelection.assets("langsmith_traces")
#: The ingesting assets run on their own: what reads them follows only once their data changed, so
#: an ingestion that found nothing new stops there.
INGEST = dg.AssetSelection.assets("raw_traces", "annotations")


def table_version(conn, *tables: str) -> dg.DataVersion:
    """The data version of an asset that stores ``tables``: a hash of their rows (in any order).
    A run that wrote nothing new reports the version it had; an added, changed or removed row
    gives a new one."""
    digest = hashlib.sha256()
    for table in tables:
        rows, total = conn.execute(f"SELECT count(*), coalesce(sum(hash(t)), 0)::VARCHAR FROM {table} AS t").fetchone()
        digest.update(f"{table}\x1f{rows}\x1f{total}\x1e".encode())
    return dg.DataVersion(digest.hexdigest()[:16])


def new_data(deps: dg.AssetSelection | None = None, same_run: bool = True) -> dg.AutomationCondition:
    """A dependency (of ``deps``, else any) has a new data version since the last tick (not from a
    run that also ran this asset), or, with ``same_run``, is requested on this tick (ingesting
    assets excepted: what reads them waits for their new data)."""
    changed = AC.any_deps_match((AC.data_version_changed() & ~AC.executed_with_root_target())
                                .with_label("data_version_changed"))
    planned = AC.any_deps_match(AC.will_be_requested()).ignore(INGEST)
    if deps is not None:
        changed, planned = changed.allow(deps), planned.allow(deps)
    return ((changed | planned) if same_run else changed).with_label("new_data")


def when(trigger: dg.AutomationCondition, label: str) -> dg.AutomationCondition:
    """Run when ``trigger`` became true (or the asset went missing) since the asset last ran or was
    requested, once nothing upstream is missing, running or failing a blocking check."""
    return ((AC.newly_missing() | trigger).since_last_handled()
            & ~AC.any_deps_missing().ignore(LANGSMITH) & ~AC.any_deps_in_progress() & ~AC.in_progress()
            & AC.all_deps_blocking_checks_passed()).with_label(label)


def after_new_data(deps: list[str]) -> dg.AutomationCondition:
    """Run after one of ``deps`` (the asset's dependencies) stored new data."""
    names = ", ".join(deps[:-1]) + " or " + deps[-1] if len(deps) > 1 else deps[0]
    return when(new_data(), f"after new data in {names}")


def on_new_training_data() -> dg.AutomationCondition:
    """Train only when the training files' data version (their content hash) or the base model
    changed: not with a curation run, whose training data may come out the same."""
    return when(new_data(dg.AssetSelection.assets("training_files", "base_model"), same_run=False),
                "after new training data (training_files' content hash) or a new base_model")


def after_new_model() -> dg.AutomationCondition:
    """Evaluate when a new model was trained (not on every curation run: inference costs)."""
    return when(new_data(dg.AssetSelection.assets("fine_tuned_model")), "after a new fine_tuned_model")


def condition_for(key: str, deps: list[str]) -> dg.AutomationCondition | None:
    """The automation condition of the asset ``key`` reading ``deps`` (None: only jobs, schedules
    and sensors run it)."""
    if key in SOURCES or key == "langsmith_traces" or key == "base_model":  # observed; own schedule; reused
        return None
    if key == "raw_traces":
        return when(new_data(), "when the trace files change")
    if key == "annotations":
        return when(new_data(), "when people's decisions or the ingested traces change")
    if key == "fine_tuned_model":
        return on_new_training_data() if TRAIN_ON == "data_change" else None
    if key == "eval_report":
        return after_new_model()
    if key == "promoted_model":
        return when(new_data(), "after a new eval_report (its blocking no_regression check passed)")
    return after_new_data(deps)


def apply_policy(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with the owners of their group and their automation condition."""
    def policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        deps = [dep.asset_key.to_user_string() for dep in spec.deps]
        return spec.replace_attributes(owners=OWNERS.get(spec.group_name, []),
                                       automation_condition=condition_for(spec.key.to_user_string(), deps))

    return list(dg.map_asset_specs(policy, assets))


automation_sensor = dg.AutomationConditionSensorDefinition(
    "flywheel_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Runs what new data affects: an asset runs when the data version of what it reads changed "
                "(each asset's automation condition says which).",
)

retraining_job = dg.define_asset_job(
    "retraining",
    selection=dg.AssetSelection.assets(*TRAINING_PATH),
    description="The retraining path: base model (reused), fine-tuning on the curated data, the eval "
                "report and its blocking no_regression gate, promotion.",
    executor_def=dg.in_process_executor,
)


def training_backlog(conn) -> dict:
    """The stored training data's version, the last fine-tuned model, and how many train and
    validation examples were added or changed since it was trained."""
    examples, version = training_data_version(conn)
    last = registry.latest_fine_tuned(conn)
    since = "WHERE split IN ('train', 'validation')" + (" AND created_at > ?" if last else "")
    new = conn.execute(f"SELECT count(*) FROM training_examples {since}", [last[2]] if last else []).fetchone()[0]
    return {"examples": examples.height, "version": version if examples.height else None,
            "last_model": last[0] if last else None, "last_version": last[1] if last else None, "new": new}


def nightly_decision(backlog: dict, min_new_examples: int) -> dg.RunRequest | dg.SkipReason:
    """Retrain when the training data changed and enough of it is new; else say why not."""
    if not backlog["examples"]:
        return dg.SkipReason("no training examples yet: run the flywheel job (or let automation curate) first")
    if backlog["version"] == backlog["last_version"]:
        return dg.SkipReason(f"training data unchanged (version {backlog['version']}) since "
                             f"{backlog['last_model']} was trained")
    if backlog["last_model"] and backlog["new"] < min_new_examples:
        return dg.SkipReason(f"only {backlog['new']} new training examples since {backlog['last_model']} "
                             f"(version {backlog['last_version']}); retraining needs {min_new_examples} "
                             "(FLYWHEEL_MIN_NEW_EXAMPLES)")
    return dg.RunRequest(tags={"flywheel/training_data_version": backlog["version"],
                               "flywheel/new_examples": str(backlog["new"])})


def nightly_schedule(cron: str = NIGHTLY_CRON, min_new_examples: int = MIN_NEW_EXAMPLES) -> dg.ScheduleDefinition:
    """The nightly retraining schedule (running by default); reads the database read-only."""

    @dg.schedule(name="nightly_retraining", job=retraining_job, cron_schedule=cron, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Retrains when the training data changed and at least {min_new_examples} "
                             "examples are new since the last fine-tuned model; otherwise skips and says why.")
    def nightly_retraining(context: dg.ScheduleEvaluationContext, duckdb: FlywheelDuckDB):
        try:
            with duckdb.read_connection(wait_seconds=10.0) as conn:
                backlog = training_backlog(conn)
        except FileNotFoundError:
            return dg.SkipReason(f"no database at {duckdb.database} yet: run the flywheel job first")
        decision = nightly_decision(backlog, min_new_examples)
        context.log.info(getattr(decision, "skip_message", None) or f"retraining on {backlog}")
        return decision

    return nightly_retraining
