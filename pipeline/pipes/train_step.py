"""The process that trains a job for a Dagster step on other compute:
``python -m pipeline.pipes.train_step job.json``, or under torchrun
(``python -m torch.distributed.run --nproc-per-node N -m pipeline.pipes.train_step job.json``).

Every process trains (:func:`pipeline.engine.train.local.launch.run`). Rank 0 of a process that
Dagster launched opens Dagster Pipes: its log lines stream into the run's log, and the
TrainResult comes back as the materialization's ``result`` metadata (its fields as JSON); the
model folder gets its ``flywheel.json`` (the result too) as with any local run. The other ranks,
and a job run by hand, train as ``python -m pipeline.engine.train.local.launch`` does.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

from pipeline.engine.train.local import launch
from pipeline.engine.train.local.trainer import is_main_process

#: The metadata key that holds the TrainResult's fields.
RESULT_KEY = "result"
MODULE = "pipeline.pipes.train_step"


def command(python: str, job_path: Path | str, processes: int, nnodes: int = 1, rendezvous: str | None = None,
            node_rank: int | None = 0) -> list[str]:
    """The command that trains the job at ``job_path`` in ``processes`` processes: plain ``python``
    for one, torchrun for more, spread over ``nnodes`` nodes that meet at ``rendezvous``
    (host:port of node 0, which holds rank 0) as node ``node_rank`` (None: PET_NODE_RANK says)."""
    step = ["-m", MODULE, str(job_path)]
    if processes == 1 and nnodes == 1:
        return [python, *step]
    if processes % nnodes:
        raise ValueError(f"{processes} processes do not split evenly over {nnodes} nodes")
    nodes = ["--standalone"] if nnodes == 1 else [
        f"--nnodes={nnodes}", "--rdzv-backend=static", f"--rdzv-endpoint={rendezvous}",
        *([f"--node-rank={node_rank}"] if node_rank is not None else [])]
    return [python, "-m", "torch.distributed.run", *nodes, f"--nproc-per-node={processes // nnodes}", *step]


def main(argv: list[str] | None = None) -> None:
    [path] = sys.argv[1:] if argv is None else argv
    if not (is_main_process() and PipesEnvVarParamsLoader().is_dagster_pipes_process()):
        launch.main([path])
        return
    with open_dagster_pipes() as pipes:
        result = launch.run(launch.Job.load(Path(path)), pipes.log.info)
        pipes.report_asset_materialization(metadata={RESULT_KEY: {"raw_value": asdict(result), "type": "json"}})


if __name__ == "__main__":
    main()
