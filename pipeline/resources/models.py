"""Model backends: the LLM judge's chat model, the local trainer and where it computes, the
fine-tuning backend, and the server that evaluation asks local models through."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.engine.label.judge_session import JudgeSettings
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.train.hosted.api import FineTuningAPI
from pipeline.engine.train.hosted.jobs import JobSpec
from pipeline.engine.train.local import ModelConfig, TrainConfig
from pipeline.engine.train.local.pretrained import PretrainedSpec
from pipeline.engine.train.local.settings import LocalTrainerSettings
from pipeline.resources.settings import settings_resource


class JudgeResource(settings_resource(JudgeSettings)):
    """The LLM judge (fields declared in :class:`JudgeSettings`): an OpenAI (or OpenAI-compatible)
    chat model, off while ``model`` is None. ``api_key``, when set, must come from
    ``dg.EnvVar("...")`` (never a literal); unset, OPENAI_API_KEY is read."""

    def __repr_args__(self):
        return [(k, "***" if k == "api_key" and v else v) for k, v in super().__repr_args__()]

    @property
    def enabled(self) -> bool:
        return self.settings().enabled

    def provider(self) -> OpenAIChatProvider:
        return self.settings().provider()


class LocalTrainer(settings_resource(LocalTrainerSettings)):
    """The local backend: the built-in small seq2seq transformer (trained here from the base corpus)
    or a pretrained transformers model (``model_name_or_path``: an HF id or a local path),
    fine-tuned fully or with LoRA (``lora``), on ``device`` ("auto": cuda when available).

    The fields are LocalTrainerSettings' (declared there). Those left as None take the engine's
    defaults (the demo's for the built-in model); set them smaller for tests. A crashed run
    resumes from its last checkpoint (every ``checkpoint_every_steps``).
    """

    def architecture(self) -> ModelConfig | PretrainedSpec:
        return self.settings().architecture()

    def base_train_config(self) -> TrainConfig:
        return self.settings().base_train_config()

    def finetune_train_config(self) -> TrainConfig:
        return self.settings().finetune_train_config()


class FineTuning(dg.ConfigurableResource):
    """Which backend fine-tunes, and the hosted job's settings.

    ``backend``: ``local`` (the default: the LocalTrainer trains an open model here), ``openai``
    or ``azure`` (the same fine-tuning API; ``azure_endpoint``/``api_version`` or
    AZURE_OPENAI_ENDPOINT/OPENAI_API_VERSION). ``api_key`` must come from ``dg.EnvVar(...)``
    (unset, OPENAI_API_KEY or AZURE_OPENAI_API_KEY is read); ``base_url`` or OPENAI_BASE_URL
    points at any OpenAI-compatible server. A job is followed for ``max_wait_s`` at most; a
    re-materialization resumes it. Hyperparameters left as None are the provider's "auto".
    On Azure a fine-tuned model answers through a deployment named after its model id.
    """

    backend: str = "local"
    base_model: str = "gpt-4o-mini-2024-07-18"
    suffix: str | None = "flywheel"
    seed: int | None = 0
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    poll_interval_s: float = 30.0
    max_wait_s: float = 1800.0
    api_key: str | None = None
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    max_retries: int = 5
    timeout: float = 60.0
    #: Price of 1M training tokens for the cost estimate (gpt-4o-mini's list price when written).
    price_per_1m_training_tokens: float = 3.0
    #: Parallel chat calls when evaluating a hosted model.
    inference_concurrency: int = 4

    def __repr_args__(self):
        return [(k, "***" if k == "api_key" and v else v) for k, v in super().__repr_args__()]

    @property
    def hosted(self) -> bool:
        if self.backend not in ("local", "openai", "azure"):
            raise ValueError(f"fine-tuning backend {self.backend!r}: expected local, openai or azure")
        return self.backend != "local"

    def api(self, backend: str | None = None) -> FineTuningAPI:
        """The fine-tuning client for ``backend`` (default: the configured one)."""
        return FineTuningAPI(backend or self.backend, api_key=self.api_key, base_url=self.base_url,
                             azure_endpoint=self.azure_endpoint, api_version=self.api_version,
                             max_retries=self.max_retries, timeout=self.timeout)

    def spec(self, data_version: str) -> JobSpec:
        """The job to run on ``data_version`` with these settings."""
        hyper = {"n_epochs": self.n_epochs, "batch_size": self.batch_size,
                 "learning_rate_multiplier": self.learning_rate_multiplier}
        return JobSpec(backend=self.backend, base_model=self.base_model, data_version=data_version,
                       suffix=self.suffix, seed=self.seed,
                       hyperparameters=tuple((k, v) for k, v in hyper.items() if v is not None))


class TrainingCompute(dg.ConfigurableResource):
    """Where a local training step runs (:func:`pipeline.pipes.training.run_training_step`); the
    trainer's ``processes`` (data-parallel world size) say how many processes it takes.

    ``launcher``: ``in_process`` (the default: in the step's process, or torchrun started from it
    for several processes), ``subprocess`` (torchrun on this machine, through Dagster Pipes) or
    ``kubernetes`` (pods of ``image`` in ``namespace``, through Dagster Pipes; needs dagster-k8s).
    On Kubernetes the processes are spread over ``nnodes`` pods, one GPU each unless
    ``gpu_per_process`` is False; every pod mounts the claim ``volume_claim`` (the data folder,
    models included) at ``data_mount``. Node 0 is the Pipes pod; with ``nnodes`` > 1 the others
    are an Indexed Job that joins it through the headless Service ``service`` on
    ``rendezvous_port`` (deploy/k8s/training.yaml). ``pod_spec`` adds PodSpec fields to every
    training pod (nodeSelector, tolerations, serviceAccountName, imagePullSecrets).
    """

    launcher: str = "in_process"
    nnodes: int = 1
    image: str | None = None
    namespace: str | None = None
    gpu_per_process: bool = True
    volume_claim: str = "flywheel-data"
    data_mount: str = "/opt/flywheel/data"
    service: str = "flywheel-training"
    rendezvous_port: int = 29500
    pod_spec: dict[str, Any] = {}


class EvalServing(dg.ConfigurableResource):
    """Evaluation of local models through an OpenAI-compatible server (vLLM or any other) instead
    of here; off while ``base_url`` is None. Each model answers under its model id, e.g.
    ``vllm serve data/models/<model_id> --served-model-name <model_id>``. ``api_key`` must come
    from ``dg.EnvVar(...)``; unset, OPENAI_API_KEY is read (a server without authentication
    accepts any non-empty value)."""

    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    max_retries: int = 3
    timeout: float = 120.0

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    def provider(self, model_id: str) -> OpenAIChatProvider:
        """Chat completions with the local model ``model_id`` on the server."""
        return OpenAIChatProvider(model_id, api_key=self.api_key, base_url=self.base_url,
                                  max_retries=self.max_retries, timeout=self.timeout)
