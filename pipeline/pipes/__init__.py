"""The local training step on other compute, through Dagster Pipes.

- :mod:`.training`: the Dagster side, ``run_training_step`` (in this process, a torchrun
  subprocess, or Kubernetes pods, as the ``TrainingCompute`` resource says)
- :mod:`.k8s`: the training pods (GPUs, the data volume, nodes 1.. of a multi-node run)
- :mod:`.train_step`: the process that trains (``python -m pipeline.pipes.train_step job.json``,
  under torchrun for several): it opens Dagster Pipes and reports the training result

This package sits above the engine (which never imports dagster) and beside the assets: the
training step's own process imports only dagster_pipes and the engine.
"""
