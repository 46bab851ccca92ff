"""Training pods on Kubernetes: the ``kubernetes`` launcher (dagster-k8s, in the deployment image only).

Node 0 is a pod that ``dagster_k8s.PipesK8sClient`` starts and follows (the Pipes messages come
through its log). Every training pod runs ``image``, requests a GPU per process (unless
``gpu_per_process`` is off), mounts the data folder's claim, where the job and its examples are
staged beside the model folder, and has memory-backed /dev/shm for NCCL. With ``nnodes`` > 1,
nodes 1.. are an Indexed Job whose torchrun meets node 0 (static rendezvous: global rank 0 is
node 0's first process, the one that reports) at ``<model id>.<service>:<rendezvous_port>``,
node 0's name under the headless Service of deploy/k8s/training.yaml; the Job is deleted when
the step ends.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg

from pipeline.engine.train.local import launch
from pipeline.pipes import train_step
from pipeline.resources.models import TrainingCompute

#: The label the headless Service selects: node 0 of a training run.
NODE_LABEL = {"app.kubernetes.io/name": "flywheel-training"}
#: Sets a worker's node rank (1..) from its index in the Indexed Job, then runs the command.
WORKER_SHELL = 'PET_NODE_RANK=$((JOB_COMPLETION_INDEX + 1)) exec "$0" "$@"'


def run_on_kubernetes(context: dg.AssetExecutionContext, compute: TrainingCompute, job: launch.Job,
                      processes: int) -> dg.PipesClientCompletedInvocation:
    """Train ``job`` in ``processes`` processes on ``compute.nnodes`` training pods (node 0 through Pipes)."""
    try:
        import kubernetes
        from dagster_k8s import PipesK8sClient
    except ImportError as error:
        raise ImportError("the kubernetes training launcher needs dagster-k8s in the image that runs the step: "
                          "pip install dagster-k8s==0.29.27") from error
    if not compute.image:
        raise ValueError("TrainingCompute.image must name the training image (deploy/Dockerfile.gpu) on Kubernetes")
    if compute.nnodes > 1 and not compute.namespace:
        raise ValueError("TrainingCompute.namespace must be set for a run on several nodes (nnodes > 1)")
    model_dir = Path(job.model_dir)
    staging = model_dir.with_name(f".{model_dir.name}.job")
    try:
        job_path, name = stage_job(job, staging), dns_label(model_dir.name)
        node, workers = node_pod(compute, job_path, processes, name), None
        if compute.nnodes > 1:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                kubernetes.config.load_incluster_config()
            else:
                kubernetes.config.load_kube_config()
            workers = kubernetes.client.BatchV1Api()
            workers.create_namespaced_job(compute.namespace, workers_job(compute, job_path, processes, name))
        try:
            return PipesK8sClient().run(context=context, namespace=compute.namespace,
                                        base_pod_meta={"labels": NODE_LABEL}, base_pod_spec=node)
        finally:
            if workers is not None:
                workers.delete_namespaced_job(f"{name}-nodes", compute.namespace,
                                              propagation_policy="Background")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def stage_job(job: launch.Job, folder: Path) -> Path:
    """``job`` with its example files copied into ``folder`` (on the data volume, which the pods
    mount), saved there; the job file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: str(shutil.copy(getattr(job, name), folder / f"{name}.jsonl"))
             for name in ("train", "validation") if getattr(job, name)}
    return replace(job, **files).save(folder / "job.json")


def dns_label(model_id: str) -> str:
    """``model_id`` as a name Kubernetes accepts (node 0's hostname; the workers' Job adds -nodes)."""
    return re.sub("[^a-z0-9-]", "-", model_id.lower())[:50].strip("-")


def node_pod(compute: TrainingCompute, job_path: Path, processes: int, name: str) -> dict[str, Any]:
    """Node 0's PodSpec; with other nodes, named ``name`` under the headless Service."""
    command = train_step.command("python", job_path, processes, compute.nnodes, rendezvous(compute, name))
    spec = pod_spec(compute, command, processes)
    if compute.nnodes > 1:
        spec |= {"hostname": name, "subdomain": compute.service}
    return spec


def workers_job(compute: TrainingCompute, job_path: Path, processes: int, name: str) -> dict[str, Any]:
    """The Indexed Job ``<name>-nodes`` of nodes 1..nnodes-1, each taking its node rank from its index."""
    command = train_step.command("python", job_path, processes, compute.nnodes, rendezvous(compute, name),
                                 node_rank=None)
    workers = compute.nnodes - 1
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-nodes"},
            "spec": {"completionMode": "Indexed", "completions": workers, "parallelism": workers, "backoffLimit": 0,
                     "template": {"spec": pod_spec(compute, ["sh", "-c", WORKER_SHELL, *command], processes)}}}


def rendezvous(compute: TrainingCompute, name: str) -> str:
    """Where the nodes meet: node 0 (``name``) under the headless Service."""
    return f"{name}.{compute.service}:{compute.rendezvous_port}"


def pod_spec(compute: TrainingCompute, command: list[str], processes: int) -> dict[str, Any]:
    """A training pod's PodSpec: ``compute.pod_spec`` with the training container, the data claim
    and shared memory."""
    gpus = {"limits": {"nvidia.com/gpu": processes // compute.nnodes}} if compute.gpu_per_process else {}
    container = {"name": "train", "image": compute.image, "command": command, "resources": gpus,
                 "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                 "volumeMounts": [{"name": "data", "mountPath": compute.data_mount},
                                  {"name": "shm", "mountPath": "/dev/shm"}]}
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": compute.volume_claim}},
               {"name": "shm", "emptyDir": {"medium": "Memory"}}]
    return {**compute.pod_spec, "restartPolicy": "Never", "containers": [container],
            "volumes": [*compute.pod_spec.get("volumes", []), *volumes]}
