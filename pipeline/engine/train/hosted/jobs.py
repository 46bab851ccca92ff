"""Fine-tuning jobs: one per training data version and configuration, found again after a crash,
followed for a bounded time."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from openai.types.fine_tuning import FineTuningJob

from pipeline.engine.train.hosted.api import FineTuningAPI

TERMINAL = ("succeeded", "failed", "cancelled")
#: Jobs or files a search at the provider looks at, at most (a server may ignore the metadata filter).
MAX_LISTED = 500


@dataclass(frozen=True)
class JobSpec:
    """What a job is made of besides its files; ``data_version`` names the training data."""

    backend: str
    base_model: str
    data_version: str
    suffix: str | None = None
    seed: int | None = None
    #: Supervised hyperparameters (n_epochs, batch_size, learning_rate_multiplier); absent = "auto".
    hyperparameters: tuple[tuple[str, Any], ...] = ()

    @property
    def config_hash(self) -> str:
        """Short hash of everything but the data: the same data and config make the same job."""
        settings = {k: v for k, v in asdict(self).items() if k != "data_version"}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]

    @property
    def metadata(self) -> dict[str, str]:
        """The job's metadata at the provider: how a later run recognises it."""
        return {"flywheel_data_version": self.data_version, "flywheel_config": self.config_hash}

    @property
    def method(self) -> dict[str, Any]:
        return {"type": "supervised", "supervised": {"hyperparameters": dict(self.hyperparameters)}}


def find_job(api: FineTuningAPI, spec: JobSpec) -> FineTuningJob | None:
    """The newest job at the provider made for ``spec`` that did not fail or get cancelled."""
    with api.errors("looking for an existing fine-tuning job"):
        for n, job in enumerate(api.client.fine_tuning.jobs.list(metadata=spec.metadata, limit=100)):
            # Checked here too: an OpenAI-compatible server may ignore the filter.
            mine = all((job.metadata or {}).get(k) == v for k, v in spec.metadata.items())
            if mine and job.status not in ("failed", "cancelled"):
                return job
            if n + 1 >= MAX_LISTED:
                break
    return None


def retrieve(api: FineTuningAPI, job_id: str) -> FineTuningJob:
    with api.errors(f"reading fine-tuning job {job_id}"):
        return api.client.fine_tuning.jobs.retrieve(job_id)


def upload(api: FineTuningAPI, path: Path, name: str) -> str:
    """The id of ``path`` uploaded as ``name`` (purpose fine-tune); an earlier upload of the same
    name and size is reused."""
    size = path.stat().st_size
    with api.errors(f"uploading {path.name}"):
        for n, file in enumerate(api.client.files.list(purpose="fine-tune")):
            if file.filename == name and file.bytes == size and file.status != "error":
                return file.id
            if n + 1 >= MAX_LISTED:
                break
        with open(path, "rb") as handle:
            return api.client.files.create(file=(name, handle), purpose="fine-tune").id


def find_or_create(api: FineTuningAPI, spec: JobSpec, train: Path, validation: Path | None,
                   known_job_id: str | None, log: Callable[[str], None]) -> tuple[FineTuningJob, bool]:
    """The job for ``spec``: ``known_job_id`` (from the registry), else one found at the provider
    by its metadata, else a new one after uploading the files. Returns the job and whether it is new."""
    if known_job_id:
        log(f"resuming fine-tuning job {known_job_id} from the registry (no new job is created)")
        return retrieve(api, known_job_id), False
    found = find_job(api, spec)
    if found is not None:
        log(f"found fine-tuning job {found.id} ({found.status}) at the provider for data version "
            f"{spec.data_version}; resuming it (no new job is created)")
        return found, False
    stem = f"flywheel-{spec.data_version}-{spec.config_hash}"
    training_file = upload(api, train, f"{stem}-train.jsonl")
    validation_file = upload(api, validation, f"{stem}-validation.jsonl") if validation else None
    with api.errors(f"creating a fine-tuning job on {spec.base_model}"):
        job = api.client.fine_tuning.jobs.create(
            model=spec.base_model, training_file=training_file, validation_file=validation_file,
            suffix=spec.suffix, seed=spec.seed, method=spec.method, metadata=spec.metadata)
    log(f"created fine-tuning job {job.id} on {spec.base_model} (files {training_file}, {validation_file})")
    return job, True


def follow(api: FineTuningAPI, job_id: str, max_wait_s: float, poll_interval_s: float,
           log: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> FineTuningJob:
    """Poll ``job_id`` until it ends or ``max_wait_s`` passes; returns its last state either way."""
    deadline = clock() + max_wait_s
    last = None
    while True:
        job = retrieve(api, job_id)
        if job.status != last:
            log(f"fine-tuning job {job_id}: {job.status}")
            last = job.status
        if job.status in TERMINAL or clock() >= deadline:
            return job
        sleep(max(0.0, min(poll_interval_s, deadline - clock())))


def failure(job: FineTuningJob) -> str | None:
    """Why the job did not succeed, in the provider's words; None while it has not failed."""
    if job.status not in ("failed", "cancelled"):
        return None
    said = f": {job.error.code}: {job.error.message}" + (f" (param {job.error.param})" if job.error.param else "") \
        if job.error else ""
    return f"fine-tuning job {job.id} {'failed' if job.status == 'failed' else 'was cancelled'}{said}"

