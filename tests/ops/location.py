"""A code location for the run-monitoring test: an eager asset whose run works until it is killed."""

import time

import dagster as dg


@dg.asset
def upstream() -> None:
    """Materialized by the test to give ``working`` new data."""


@dg.asset(deps=[upstream], automation_condition=dg.AutomationCondition.eager())
def working() -> None:
    """A long run (the test kills it long before it ends)."""
    time.sleep(600)


defs = dg.Definitions(
    assets=[upstream, working],
    jobs=[dg.define_asset_job("working_job", selection=[working], executor_def=dg.in_process_executor)],
    # automation is evaluated by the test itself: the daemon must not start runs of its own
    sensors=[dg.AutomationConditionSensorDefinition("automation", target=dg.AssetSelection.all(),
                                                    default_status=dg.DefaultSensorStatus.STOPPED)],
)
