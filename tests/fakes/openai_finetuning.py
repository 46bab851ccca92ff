"""Files and fine-tuning jobs for :class:`tests.fakes.openai_api.FakeOpenAI`, in the real API's shapes.

Every ``FakeOpenAI`` has one, as ``fake.fine_tuning``. Endpoints (also under Azure's ``/openai``):
POST /files (multipart, purpose fine-tune), GET /files (``purpose`` filter), GET /files/{id},
POST and GET /fine_tuning/jobs (list: newest first, ``after``/``limit`` pages, ``metadata[k]=v``
filters), GET /fine_tuning/jobs/{id}, POST .../cancel, GET .../events (newest first, paged) and GET
.../checkpoints.

A job moves one status further on each GET of it: validating_files -> queued -> running
(``running_polls`` times, one metrics event each) -> ``outcome`` (succeeded, failed with
``error``, or cancelled). Settings a test can change (they apply to jobs created afterwards):

- ``running_polls``, ``outcome``, ``error``, ``total_steps``;
- ``refusal``: ``(status, message)`` with which POST /fine_tuning/jobs is refused;
- ``finish(job_id, outcome)`` ends a job at its next GET; ``jobs`` and ``files`` hold the state.
"""

from __future__ import annotations

import json
import re
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

from tests.fakes.openai_api import Reply, Request, error_reply

if TYPE_CHECKING:
    from tests.fakes.openai_api import FakeOpenAI

_PREFIX = r"(?:/openai)?"
TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_ERROR = {"code": "invalid_training_file",
                 "message": "The job failed due to an invalid training file. Expected file to have JSONL format.",
                 "param": "training_file"}


class FakeFineTuning:
    """The state and endpoints of files and fine-tuning jobs; see the module docstring."""

    def __init__(self, api: FakeOpenAI):
        self.api = api
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.running_polls = 2
        self.outcome = "succeeded"
        self.error: dict[str, Any] = dict(DEFAULT_ERROR)
        self.total_steps = 6
        self.refusal: tuple[int, str] | None = None
        self._script: dict[str, list[str]] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._checkpoints: dict[str, list[dict[str, Any]]] = {}
        routes = [
            ("POST", "/files", self._upload), ("GET", "/files", self._list_files),
            ("GET", "/files/(?P<id>[^/]+)", self._file),
            ("POST", "/fine_tuning/jobs", self._create), ("GET", "/fine_tuning/jobs", self._list),
            ("GET", "/fine_tuning/jobs/(?P<id>[^/]+)", self._retrieve),
            ("POST", "/fine_tuning/jobs/(?P<id>[^/]+)/cancel", self._cancel),
            ("GET", "/fine_tuning/jobs/(?P<id>[^/]+)/events", self._list_events),
            ("GET", "/fine_tuning/jobs/(?P<id>[^/]+)/checkpoints", self._list_checkpoints),
        ]
        for method, path, handler in routes:
            api.route(method, _PREFIX + path, handler)

    def finish(self, job_id: str, outcome: str = "succeeded") -> None:
        """End ``job_id`` with ``outcome`` at its next GET."""
        with self.api._lock:
            self._script[job_id] = [outcome]

    # --- files ------------------------------------------------------------------------------

    def _upload(self, request: Request, match: re.Match[str]) -> Reply:
        fields = _multipart(request)
        if fields.get("purpose", (None, b""))[1] != b"fine-tune" or "file" not in fields:
            return error_reply(400, "'file' and purpose 'fine-tune' are required")
        filename, content = fields["file"]
        try:
            lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError):
            return error_reply(400, f"Invalid file format for Fine-Tuning API. Must be .jsonl ({filename})")
        if not lines or not all(isinstance(line.get("messages"), list) for line in lines):
            return error_reply(400, "Invalid file format for Fine-Tuning API: every line needs 'messages'")
        file = {"id": self.api.next_id("file"), "object": "file", "bytes": len(content),
                "created_at": int(time.time()), "filename": filename or "upload.jsonl", "purpose": "fine-tune",
                "status": "processed", "expires_at": None, "status_details": None}
        with self.api._lock:
            self.files[file["id"]] = file
            self.contents[file["id"]] = content
        return Reply(200, file)

    def _list_files(self, request: Request, match: re.Match[str]) -> Reply:
        purpose = request.query.get("purpose")
        files = [f for f in reversed(list(self.files.values())) if purpose in (None, f["purpose"])]
        return Reply(200, _page(files, request.query, default_limit=10_000))

    def _file(self, request: Request, match: re.Match[str]) -> Reply:
        file = self.files.get(match["id"])
        return Reply(200, file) if file else error_reply(404, f"No such File object: {match['id']}")

    # --- jobs -------------------------------------------------------------------------------

    def _create(self, request: Request, match: re.Match[str]) -> Reply:
        if self.refusal:
            return error_reply(self.refusal[0], self.refusal[1])
        body = request.json()
        if not body.get("model") or not body.get("training_file"):
            return error_reply(400, "'model' and 'training_file' are required")
        for name in ("training_file", "validation_file"):
            if body.get(name) and body[name] not in self.files:
                return error_reply(400, f"invalid {name}: {body[name]}")
        metadata = body.get("metadata")
        if metadata is not None and (len(metadata) > 16 or any(
                len(k) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in metadata.items())):
            return error_reply(400, "metadata: at most 16 pairs, keys up to 64 and string values up to 512 characters")
        if len(body.get("suffix") or "") > 64:
            return error_reply(400, "suffix: at most 64 characters")
        hyper = ((body.get("method") or {}).get("supervised") or {}).get("hyperparameters") \
            or body.get("hyperparameters") or {}
        hyper = {k: hyper.get(k, "auto") for k in ("batch_size", "learning_rate_multiplier", "n_epochs")}
        job = {"id": self.api.next_id("ftjob"), "object": "fine_tuning.job", "created_at": int(time.time()),
               "error": None, "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper,
               "model": body["model"], "organization_id": "org-flywheel-test", "result_files": [],
               "seed": body.get("seed") if body.get("seed") is not None else 42, "status": "validating_files",
               "trained_tokens": None, "training_file": body["training_file"],
               "validation_file": body.get("validation_file"), "estimated_finish": None, "integrations": [],
               "metadata": metadata, "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
               "user_provided_suffix": body.get("suffix")}
        with self.api._lock:
            self.jobs[job["id"]] = job
            self._script[job["id"]] = ["queued", "running", *["running"] * (self.running_polls - 1), self.outcome]
            self._events[job["id"]] = []
            self._checkpoints[job["id"]] = []
            self._event(job, f"Created fine-tuning job: {job['id']}")
            self._event(job, f"Validating training file: {job['training_file']}")
            job["_error"] = dict(self.error)
            job["_step"] = 0
            job["_total_steps"] = self.total_steps
        return Reply(200, _public(job))

    def _list(self, request: Request, match: re.Match[str]) -> Reply:
        wanted = {k[len("metadata["):-1]: v for k, v in request.query.items() if k.startswith("metadata[")}
        jobs = [j for j in reversed(list(self.jobs.values()))
                if all((j["metadata"] or {}).get(k) == v for k, v in wanted.items())]
        return Reply(200, _page(jobs, request.query))

    def _retrieve(self, request: Request, match: re.Match[str]) -> Reply:
        job = self.jobs.get(match["id"])
        if job is None:
            return error_reply(404, f"Could not find fine-tune: {match['id']}")
        with self.api._lock:
            script = self._script.get(job["id"])
            if job["status"] not in TERMINAL and script:
                self._advance(job, script.pop(0))
        return Reply(200, _public(job))

    def _cancel(self, request: Request, match: re.Match[str]) -> Reply:
        job = self.jobs.get(match["id"])
        if job is None:
            return error_reply(404, f"Could not find fine-tune: {match['id']}")
        if job["status"] in TERMINAL:
            return error_reply(400, f"Job {job['id']} has already {job['status']}")
        with self.api._lock:
            self._advance(job, "cancelled")
        return Reply(200, _public(job))

    def _list_events(self, request: Request, match: re.Match[str]) -> Reply:
        if match["id"] not in self.jobs:
            return error_reply(404, f"Could not find fine-tune: {match['id']}")
        return Reply(200, _page(list(reversed(self._events[match["id"]])), request.query))

    def _list_checkpoints(self, request: Request, match: re.Match[str]) -> Reply:
        if match["id"] not in self.jobs:
            return error_reply(404, f"Could not find fine-tune: {match['id']}")
        return Reply(200, _page(list(reversed(self._checkpoints[match["id"]])), request.query, default_limit=10))

    # --- the life cycle ---------------------------------------------------------------------

    def _advance(self, job: dict[str, Any], status: str) -> None:
        if status == "queued":
            self._event(job, "Files validated, moving job to queued state")
        elif status == "running":
            if job["status"] != "running":
                self._event(job, "Fine-tuning job started")
            self._metrics(job, min(job["_step"] + 1, job["_total_steps"]))
        elif status == "succeeded":
            while job["_step"] < job["_total_steps"]:
                self._metrics(job, job["_step"] + 1)
            suffix = job["user_provided_suffix"] or "flywheel"
            job["fine_tuned_model"] = f"ft:{job['model']}:flywheel-test:{suffix}:{job['id'][-6:]}"
            job["trained_tokens"] = sum(self.files[job["training_file"]]["bytes"] // 4 for _ in range(3))
            job["result_files"] = [self.api.next_id("file")]
            self._checkpoint(job)
            self._event(job, f"New fine-tuned model created: {job['fine_tuned_model']}")
            self._event(job, "The job has successfully completed")
        elif status == "failed":
            job["error"] = job["_error"]
            self._event(job, job["error"]["message"], level="error")
        elif status == "cancelled":
            self._event(job, "Fine-tuning job cancelled")
        job["status"] = status
        if status in TERMINAL:
            job["finished_at"] = int(time.time())
            self._script[job["id"]] = []

    def _event(self, job: dict[str, Any], message: str, level: str = "info", data: Any = None,
               type: str = "message") -> None:
        self._events[job["id"]].append({"id": self.api.next_id("ftevent"), "object": "fine_tuning.job.event",
                                        "created_at": int(time.time()), "level": level, "message": message,
                                        "data": data, "type": type})

    def _metrics(self, job: dict[str, Any], step: int) -> None:
        job["_step"] = step
        train_loss, valid_loss = round(2.0 / step, 4), round(2.2 / step, 4)
        data = {"step": step, "train_loss": train_loss, "valid_loss": valid_loss, "total_steps": job["_total_steps"],
                "train_mean_token_accuracy": round(1 - 0.5 / step, 4),
                "valid_mean_token_accuracy": round(1 - 0.6 / step, 4)}
        self._event(job, f"Step {step}/{job['_total_steps']}: training loss={train_loss:.4f}, "
                         f"validation loss={valid_loss:.4f}", data=data, type="metrics")

    def _checkpoint(self, job: dict[str, Any]) -> None:
        step = job["_total_steps"]
        self._checkpoints[job["id"]].append({
            "id": self.api.next_id("ftckpt"), "object": "fine_tuning.job.checkpoint", "created_at": int(time.time()),
            "fine_tuned_model_checkpoint": f"ft:{job['model']}:flywheel-test::{job['id'][-6:]}:ckpt-step-{step}",
            "fine_tuning_job_id": job["id"], "step_number": step,
            "metrics": {"step": float(step), "train_loss": round(2.0 / step, 4), "valid_loss": round(2.2 / step, 4),
                        "full_valid_loss": round(2.3 / step, 4)}})


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API returns it (without the fake's own bookkeeping)."""
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _page(items: list[dict[str, Any]], query: dict[str, str], default_limit: int = 20) -> dict[str, Any]:
    """A cursor page: the items after ``query['after']`` (an id), at most ``limit`` of them."""
    if query.get("after"):
        ids = [item["id"] for item in items]
        items = items[ids.index(query["after"]) + 1:] if query["after"] in ids else []
    limit = int(query.get("limit") or default_limit)
    return {"object": "list", "data": [_public(i) for i in items[:limit]], "has_more": len(items) > limit}


def _multipart(request: Request) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart body: name -> (filename, content)."""
    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    if not message.is_multipart():
        return {}
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()}
