"""One Dagster run in its own process, for the DuckLake concurrency tests:

    python -m tests.lake.run_assets DEMO FOLDER DATABASE DATA_PATH FILE_BATCH FILE_BATCHES ASSET [ASSET ...]

materializes the named assets with the tiny resources (tests/assets/tiny.py) over DEMO's files,
on DATABASE, ingesting file batch FILE_BATCH of FILE_BATCHES; exits 1 when the run failed."""

import sys
from pathlib import Path

from assets import ingest, label
from pipeline.resources import FlywheelDuckDB
from tests.assets.tiny import materialize, tiny_resources

ASSETS = {"raw_traces": ingest.raw_traces, "annotations": ingest.annotations,
          "trace_evaluations": label.trace_evaluations}


def main(argv: list[str]) -> int:
    demo, folder, database, data_path, batch, batches, *names = argv
    resources = tiny_resources(Path(folder), Path(demo))
    resources["duckdb"] = FlywheelDuckDB(database=database, data_path=data_path)
    config = {"ops": {"raw_traces": {"config": {"file_batch": int(batch), "file_batches": int(batches)}}}}
    result, _ = materialize([ASSETS[name] for name in names], resources, config if "raw_traces" in names else None)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
