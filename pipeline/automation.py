"""Keeping the graph fresh: who owns each asset, when it runs by itself, and the nightly retraining.

One policy for the whole graph, applied in :mod:`pipeline.definitions` (asset decorators stay
free of it):

- The trace files and people's decisions are observed on a cron (``FLYWHEEL_OBSERVE_CRON``,
  every 5 minutes); their data versions change only when new data arrived.
- The cheap chain (ingest, assertions, curation, training files) is eager: it runs when an
  upstream updated, never while an upstream is missing, running or failing a blocking check.
- fine_tuned_model runs only when the training files' data version changed (training_files
  reports the curated data's content hash), or with ``FLYWHEEL_TRAIN_ON=nightly`` only from the
  nightly schedule; eval_report follows a new fine-tuned model, and
  promoted_model needs eval_report's blocking no_regression check to pass.
- The nightly schedule (``FLYWHEEL_NIGHTLY_CRON``, 02:00 UTC) runs the retraining path when the
  training data changed and at least ``FLYWHEEL_MIN_NEW_EXAMPLES`` examples are new since the last
  fine-tuned model; otherwise it skips and says why.
"""

import os

import dagster as dg

from pipeline.engine.curate.examples import training_data_version
from pipeline.engine.train import registry
from pipeline.resources import FlywheelDuckDB

AC = dg.AutomationCondition

OBSERVE_CRON = os.environ.get("FLYWHEEL_OBSERVE_CRON", "*/5 * * * *")
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


def eager() -> dg.AutomationCondition:
    """Run after any upstream update, once nothing upstream is missing, running or blocked."""
    return (AC.eager().replace("any_deps_missing", AC.any_deps_missing().ignore(LANGSMITH))
            & AC.all_deps_blocking_checks_passed()).with_label("eager")


def on_new_training_data() -> dg.AutomationCondition:
    """Train only when the training files' data version (their content hash) really changed."""
    changed = AC.any_deps_match(AC.data_version_changed()).allow(dg.AssetSelection.assets("training_files"))
    return (changed.since_last_handled().with_label("training_data_version_changed")
            & ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
            & AC.all_deps_blocking_checks_passed()).with_label("on_new_training_data")


def after_new_model() -> dg.AutomationCondition:
    """Evaluate when a new model was trained (not on every curation run: inference costs)."""
    return eager().replace("any_deps_updated",
                           AC.any_deps_updated().allow(dg.AssetSelection.assets("fine_tuned_model")))


def condition_for(key: str) -> dg.AutomationCondition | None:
    """The automation condition of the asset ``key`` (None: only jobs and schedules run it)."""
    if key in SOURCES:
        return AC.cron_tick_passed(OBSERVE_CRON).with_label(f"observe on {OBSERVE_CRON}")
    if key == "langsmith_traces" or key == "base_model":  # their own schedule; trained once, reused
        return None
    if key == "fine_tuned_model":
        return on_new_training_data() if TRAIN_ON == "data_change" else None
    if key == "eval_report":
        return after_new_model()
    return eager()


def apply_policy(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with the owners of their group and their automation condition."""
    def policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        key = spec.key.to_user_string()
        return spec.replace_attributes(owners=OWNERS.get(spec.group_name, []),
                                       automation_condition=condition_for(key))

    return list(dg.map_asset_specs(policy, assets))


automation_sensor = dg.AutomationConditionSensorDefinition(
    "flywheel_automation",
    target=dg.AssetSelection.all() | dg.AssetSelection.assets(*SOURCES),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Observes the trace files and people's decisions and runs what their new data affects.",
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
