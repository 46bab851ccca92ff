"""The local training step through Dagster Pipes: a real materialization whose training runs in a
subprocess (torchrun for 2 processes), its log lines streamed into the run's log and its result
reported back as Pipes metadata; the pods the kubernetes launcher would start, and the manifests
in deploy/k8s they rely on."""

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipeline.engine.tasks import load_task
from pipeline.engine.train.local import ModelConfig, TrainConfig, launch, runs
from pipeline.engine.train.local.folders import META_FILE
from pipeline.pipes import k8s, train_step
from pipeline.pipes.training import run_training_step
from pipeline.resources import TrainingCompute

ROOT = Path(__file__).resolve().parents[2]
TINY = ModelConfig(vocab_size=400, d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,
                   max_source_tokens=160, max_target_tokens=40)


def tiny_job(folder: Path, processes: int) -> launch.Job:
    """Base training of the tiny built-in model on 48 demo examples, 8 steps, in ``processes`` processes."""
    corpus = runs.read_corpus(ROOT / "data/demo/base_corpus.jsonl", max_examples=48)
    config = TrainConfig(batch_size=8, max_steps=8, warmup_steps=2, logging_steps=2, processes=processes)
    return launch.write_job(folder, launch.BASE, folder / "models" / "local-base-tiny",
                            runs.pairs(corpus, load_task("nl2query")), None, config, model_config=TINY)


def materialize_training(job: launch.Job, compute: TrainingCompute, processes: int):
    """Materialize an asset that trains ``job`` through run_training_step: its materialization's
    metadata and the messages of the run's log."""
    @dg.asset
    def tiny_model(context: dg.AssetExecutionContext, training: TrainingCompute) -> dg.MaterializeResult:
        result = run_training_step(context, training, job, processes, context.log.info)
        return dg.MaterializeResult(metadata={"result": dg.MetadataValue.json(asdict(result))})

    with dg.instance_for_test() as instance:
        outcome = dg.materialize([tiny_model], resources={"training": compute}, instance=instance)
        assert outcome.success
        messages = [record.user_message for record in instance.all_logs(outcome.run_id)]
    [materialization] = [e.event_specific_data.materialization for e in outcome.get_asset_materialization_events()]
    return materialization.metadata["result"].value, messages


@pytest.mark.parametrize("processes", [1, 2])
def test_a_subprocess_trains_and_reports_its_result_through_pipes(tmp_path, processes):
    job = tiny_job(tmp_path, processes)
    result, messages = materialize_training(job, TrainingCompute(launcher="subprocess"), processes)
    assert any("successfully opened dagster pipes" in m for m in messages)
    assert any(m.startswith("step 8/8 loss") for m in messages)  # the trainer's log line, through Pipes
    assert result["steps"] == result["planned_steps"] == 8 and result["processes"] == processes
    assert result["tokens"] > 0 and not result["stopped_early"]
    model_dir = Path(job.model_dir)
    assert {META_FILE, "model.safetensors", "tokenizer.json", "config.json"} <= {p.name for p in model_dir.iterdir()}
    assert json.loads((model_dir / META_FILE).read_text())["result"] == result


def test_in_process_is_the_default_and_opens_no_pipes(tmp_path):
    job = tiny_job(tmp_path, 1)
    result, messages = materialize_training(job, TrainingCompute(), 1)
    assert not any("dagster pipes" in m for m in messages) and any(m.startswith("step 8/8 loss") for m in messages)
    assert result["steps"] == 8 and runs.is_complete(Path(job.model_dir))


def test_commands_for_one_process_several_and_several_nodes():
    assert train_step.command("python", "j.json", 1) == ["python", "-m", "pipeline.pipes.train_step", "j.json"]
    assert train_step.command("python", "j.json", 4) == [
        "python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
        "-m", "pipeline.pipes.train_step", "j.json"]
    assert train_step.command("python", "j.json", 8, nnodes=2, rendezvous="m.svc:29500") == [
        "python", "-m", "torch.distributed.run", "--nnodes=2", "--rdzv-backend=static", "--rdzv-endpoint=m.svc:29500",
        "--node-rank=0", "--nproc-per-node=4", "-m", "pipeline.pipes.train_step", "j.json"]
    with pytest.raises(ValueError, match="do not split evenly"):
        train_step.command("python", "j.json", 3, nnodes=2, rendezvous="m.svc:29500")


def test_kubernetes_pods_mount_the_data_claim_and_request_a_gpu_per_process(tmp_path):
    compute = TrainingCompute(launcher="kubernetes", image="registry.example.com/flywheel-train:1", nnodes=2,
                              namespace="ml", pod_spec={"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]})
    job_path = k8s.stage_job(tiny_job(tmp_path, 4), tmp_path / "models" / ".local-base-tiny.job")
    staged = launch.Job.load(job_path)
    assert Path(staged.train).parent == job_path.parent and Path(staged.train).read_text()
    name = k8s.dns_label("local-ft-0A1b2c3d4e-5f6a7b8c")
    assert name == "local-ft-0a1b2c3d4e-5f6a7b8c"
    node = k8s.node_pod(compute, job_path, 4, name)
    [container] = node["containers"]
    assert container["image"] == compute.image and container["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert container["command"][-3:] == ["-m", "pipeline.pipes.train_step", str(job_path)]
    assert "--node-rank=0" in container["command"]
    assert f"--rdzv-endpoint={name}.flywheel-training:29500" in container["command"]
    assert {"name": "data", "mountPath": "/opt/flywheel/data"} in container["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "flywheel-data"}} in node["volumes"]
    assert node["tolerations"] and node["hostname"] == name and node["subdomain"] == "flywheel-training"
    workers = k8s.workers_job(compute, job_path, 4, name)
    assert workers["metadata"]["name"] == f"{name}-nodes" and workers["spec"]["completions"] == 1
    [worker] = workers["spec"]["template"]["spec"]["containers"]
    assert worker["command"][:3] == ["sh", "-c", k8s.WORKER_SHELL] and "--node-rank=0" not in worker["command"]
    cpu = k8s.pod_spec(TrainingCompute(launcher="kubernetes", image="i", gpu_per_process=False), ["python"], 2)
    assert cpu["containers"][0]["resources"] == {} and "hostname" not in cpu


def test_a_launcher_that_cannot_run_says_why(tmp_path):
    if importlib.util.find_spec("dagster_k8s"):
        pytest.skip("dagster-k8s is installed here: the launcher would look for a cluster")
    compute = TrainingCompute(launcher="kubernetes", image="i")
    with pytest.raises(ImportError, match="pip install dagster-k8s"):
        run_training_step(None, compute, tiny_job(tmp_path, 1), 1, print)
    with pytest.raises(ValueError, match="need the kubernetes launcher"):
        run_training_step(None, TrainingCompute(launcher="subprocess", nnodes=2), tiny_job(tmp_path, 2), 2, print)
    with pytest.raises(ValueError, match="expected in_process, subprocess, kubernetes"):
        run_training_step(None, TrainingCompute(launcher="slurm"), tiny_job(tmp_path, 1), 1, print)


def test_the_manifests_in_deploy_match_the_launcher_defaults():
    compute = TrainingCompute(launcher="kubernetes")
    objects = {o["kind"]: o for o in yaml.safe_load_all((ROOT / "deploy/k8s/training.yaml").read_text())}
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == compute.volume_claim
    service = objects["Service"]
    assert service["metadata"]["name"] == compute.service and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == k8s.NODE_LABEL
    assert service["spec"]["ports"][0]["port"] == compute.rendezvous_port
    rules = {(r["apiGroups"][0], resource): set(r["verbs"])
             for r in objects["Role"]["rules"] for resource in r["resources"]}
    assert {"create", "delete"} <= rules["", "pods"] and rules["", "pods/log"] == {"get"}
    assert {"create", "delete"} <= rules["batch", "jobs"]
    launcher = yaml.safe_load((ROOT / "deploy/k8s/training-values.yaml").read_text())["runLauncher"]["config"]
    [volume], [mount] = launcher["k8sRunLauncher"]["volumes"], launcher["k8sRunLauncher"]["volumeMounts"]
    assert volume["persistentVolumeClaim"]["claimName"] == compute.volume_claim
    assert mount == {"name": volume["name"], "mountPath": compute.data_mount}
