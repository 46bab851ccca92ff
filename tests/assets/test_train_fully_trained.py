"""The fully_trained check: a base model whose max_steps ends training before one epoch of the
data is registered (succeeded, complete false) and the check warns with the reason."""

import dagster as dg
import duckdb

from assets.train import base_model
from tests.assets.tiny import materialize, tiny_resources


def test_max_steps_below_one_epoch_warns_and_is_recorded(tmp_path, tiny_demo):
    # the tiny configuration: 8 steps of 16 examples, on a corpus of 300 examples (19 steps an epoch)
    result, events = materialize([base_model], tiny_resources(tmp_path, tiny_demo))
    assert result.success
    check, = result.get_asset_check_evaluations()
    reason = check.description
    assert (check.check_name, check.passed, check.severity) == ("fully_trained", False, dg.AssetCheckSeverity.WARN)
    assert reason.startswith("under one epoch of the data: max_steps ends it at step 8 of 8 (0.42 of ")
    figures = {k: v.value for k, v in check.metadata.items()}
    assert figures["steps"] == figures["planned_steps"] == 8 and figures["epochs"] < 1 < figures["planned_epochs"]
    assert figures["tokens"] > 0 and figures["processes"] == 1 and figures["stopped_early"] is False
    metadata = events["base_model"].metadata
    assert metadata["steps"].value == 8 and metadata["planned_steps"].value == 8
    with duckdb.connect(str(tmp_path / "flywheel.duckdb"), read_only=True) as conn:
        row = conn.execute("SELECT status, complete, incomplete_reason, trained_steps, planned_steps "
                           "FROM fine_tuned_models").fetchone()
    assert row == ("succeeded", False, reason, 8, 8)
