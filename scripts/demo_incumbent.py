"""``make demo-incumbent``: "Leaving hosted fine-tuning" rehearsed offline on a finished demo.

The demo's production logs were written by ``prod-assistant-v2`` and ``prod-assistant-v3``, a
fine-tuned gpt-4o-mini in the story. The demo's model in use stands in for ``prod-assistant-v3``:
it is served on 127.0.0.1 through the OpenAI-compatible API
(:class:`pipeline.demo.incumbent_server.IncumbentServer`), registered as the incumbent
(FLYWHEEL_INCUMBENT_*, priced at a fine-tuned gpt-4o-mini's list price) and its answers are
captured (``incumbent_outputs``). A local model is then distilled from the incumbent
(FLYWHEEL_DISTILL_FROM: train and validation keep only ``prod-assistant-v3``'s outputs, beside
people's corrections), and the evaluation runs again. The eval report lists the base, the few-shot
candidate, the distilled model, the promoted model and the incumbent side by side with quality,
latency and cost, and the gate says which is the cheapest non-inferior one and why the others
lost. The server is stopped at the end; the captured answers stay.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from pipeline.demo.incumbent_server import IncumbentServer
from pipeline.engine.evaluate.gate import current_promoted
from pipeline.engine.evaluate.pricing import list_price
from pipeline.engine.tasks import load_task

#: The production model the stand-in plays (as the demo's traces name it) and what it is billed as.
STAND_IN = "prod-assistant-v3"
BILLED_AS = "ft:gpt-4o-mini-2024-07-18"
#: What the rehearsal materializes: capture, distil (curate, export, fine-tune), evaluate, promote.
SELECTION = "incumbent_outputs,training_examples,training_files,fine_tuned_model,eval_report,promoted_model"


def model_in_use(database: str) -> str:
    """The id of the model the demo promoted; exits with a message when there is none."""
    if not Path(database).exists():
        sys.exit(f"no database at {database}: run `make demo` first")
    with duckdb.connect(database, read_only=True) as conn:
        promoted = current_promoted(conn)
    if promoted is None:
        sys.exit(f"{database} has no promoted model yet: run `make demo` first")
    return promoted.model_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=os.environ.get("FLYWHEEL_DUCKDB") or "data/flywheel.duckdb")
    parser.add_argument("--models", default="data/models", help="the folder of the demo's models")
    parser.add_argument("--max-traces", type=int, default=200, help="recent traces to capture besides the test split")
    args = parser.parse_args(argv)

    task_name = os.environ.get("FLYWHEEL_TASK") or "nl2query"
    model_id = model_in_use(args.database)
    price = list_price(BILLED_AS)
    print(f"serving {model_id} as the stand-in for {STAND_IN} (billed as {BILLED_AS}: "
          f"${price.input_per_1m}/${price.output_per_1m} per 1M tokens)", flush=True)
    with IncumbentServer(Path(args.models) / model_id, load_task(task_name), served_model_name=STAND_IN) as server:
        env = {**os.environ, "FLYWHEEL_DUCKDB": args.database,
               "FLYWHEEL_INCUMBENT_MODEL": STAND_IN, "FLYWHEEL_INCUMBENT_PROVIDER": "openai_compatible",
               "FLYWHEEL_INCUMBENT_BASE_URL": server.base_url,
               # the stand-in takes any key; a real one stays in its own variable, read at run time
               "FLYWHEEL_INCUMBENT_API_KEY_ENV": "STAND_IN_KEY", "STAND_IN_KEY": "local",
               "FLYWHEEL_INCUMBENT_PRICE_INPUT_PER_1M": str(price.input_per_1m),
               "FLYWHEEL_INCUMBENT_PRICE_OUTPUT_PER_1M": str(price.output_per_1m),
               "FLYWHEEL_INCUMBENT_MAX_TRACES": str(args.max_traces),
               "FLYWHEEL_DISTILL_FROM": STAND_IN}
        dagster = Path(sys.executable).with_name("dagster")
        subprocess.run([str(dagster), "asset", "materialize", "-m", "pipeline.definitions", "--select", SELECTION],
                       env=env, check=True)
    subprocess.run([sys.executable, "-m", "pipeline.summary", args.database], check=True)


if __name__ == "__main__":
    main()
