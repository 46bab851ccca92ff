"""The incumbent (group evaluate): the production model's answers, captured while its provider
still serves it, so that the eval report can compare it with the models trained here."""

import dagster as dg

from assets.curate import training_examples
from assets.ingest import raw_traces
from pipeline.automation import table_version
from pipeline.engine.evaluate.incumbent import INCUMBENT_OFF, capture_incumbent
from pipeline.engine.providers import ProviderAuthError
from pipeline.resources import FlywheelDuckDB, TaskResource
from pipeline.resources.incumbent import IncumbentResource


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb", "openai"},
    deps=[raw_traces, training_examples],
    description="The incumbent (the model in production today: an OpenAI or Azure fine-tuned model, or any "
                "OpenAI-compatible endpoint; FLYWHEEL_INCUMBENT_MODEL) asked the task's prompt on the test split "
                "and on the recent traces, PII scrubbed before anything is sent. Answers, errors, latency, "
                "tokens and cost per call in incumbent_outputs; an item captured for the same input is never "
                "sent again, answers are written in small batches (a killed run continues where it stopped) "
                "and failed items are retried on later runs up to a limit. Nothing is sent while no "
                "incumbent is registered.",
)
def incumbent_outputs(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                      incumbent: IncumbentResource) -> dg.MaterializeResult:
    settings = incumbent.settings()
    metadata = {"incumbent": "none", "status": INCUMBENT_OFF}
    if settings.enabled:
        try:
            summary = capture_incumbent(duckdb.get_connection, settings, task.load(), context.log.info)
        except ProviderAuthError as exc:
            raise dg.Failure(str(exc)) from None
        metadata = {**summary.metadata(), "scopes": dg.MetadataValue.json(summary.scopes)}
        (context.log.warning if summary.total("failed") else context.log.info)(
            f"incumbent {summary.model}: {metadata['captured_now']} captured now, {metadata['cached']} cached, "
            f"{metadata['failed']} failing; ${metadata['cost_usd_so_far']} so far ({summary.pricing})")
    else:
        context.log.info(INCUMBENT_OFF)
    with duckdb.get_connection() as conn:
        version = table_version(conn, "incumbent_outputs")
    return dg.MaterializeResult(data_version=version, metadata=metadata)
