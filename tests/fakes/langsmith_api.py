"""A stub LangSmith HTTP API on 127.0.0.1, serving what ``langsmith.Client.list_runs`` calls.

    with FakeLangSmith(api_key="lsv2_test", page_size=2) as fake:
        fake.add_project("nl2query-prod")
        fake.add_run(make_run(project="nl2query-prod", ...))
        client = Client(api_url=fake.url, api_key="lsv2_test")

Endpoints, in the real API's response shapes: ``GET /info``, ``GET /sessions?name=``
(a list of sessions), ``POST /runs/query`` (``{"runs": [...], "cursors": {"next": ...}}``,
``page_size`` runs per page, an opaque cursor). Runs are filtered by session, run_type,
is_root, start_time and the ``gte/lt(start_time, "...")`` and ``has(tags, "...")`` clauses of
the filter expression. Requests without ``x-api-key: <api_key>`` get a 401. With ``echo_key_status``
set, every other request but ``/info`` gets that HTTP status and an error body that echoes the key
it was sent (as careless servers do). ``requests`` holds (method, path, JSON body) of every
request, never headers. The server runs on its own thread and is stopped (by that thread) when
the ``with`` block ends.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TENANT = "7b6c3c1e-0000-4000-8000-000000000001"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def make_run(*, session_id: str, start: datetime, inputs: dict, outputs: dict | None, run_type: str = "llm",
             name: str = "ChatOpenAI", latency_s: float = 1.2, error: str | None = None, tags: list[str] | None = None,
             prompt_tokens: int | None = 250, completion_tokens: int | None = 40, model: str = "gpt-4o-mini",
             feedback: dict | None = None, run_id: str | None = None) -> dict[str, Any]:
    """A run as the API returns it from /runs/query (the default select)."""
    run_id = run_id or str(uuid.uuid4())
    end = start + timedelta(seconds=latency_s)
    return {
        "id": run_id, "name": name, "run_type": run_type, "start_time": start.isoformat(),
        "end_time": end.isoformat(), "status": "error" if error else "success", "error": error,
        "inputs": inputs, "outputs": outputs, "events": [{"name": "start", "time": start.isoformat()}],
        "extra": {"metadata": {"ls_provider": "openai", "ls_model_name": model, "ls_run_depth": 0},
                  "invocation_params": {"model": model, "temperature": 0}, "runtime": {"sdk": "langsmith-py"}},
        "tags": tags or [], "trace_id": run_id, "dotted_order": f"{start:%Y%m%dT%H%M%S%fZ}{run_id}",
        "parent_run_id": None, "parent_run_ids": [], "session_id": session_id, "reference_example_id": None,
        "app_path": f"/o/{TENANT}/projects/p/{session_id}/r/{run_id}", "feedback_stats": feedback,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": (prompt_tokens or 0) + (completion_tokens or 0) if prompt_tokens is not None else None,
        "prompt_cost": None, "completion_cost": None, "total_cost": None, "first_token_time": None,
        "s3_urls": {},
    }


class FakeLangSmith:
    """The stub server and its state (projects, runs, requests received)."""

    def __init__(self, api_key: str, page_size: int = 100, echo_key_status: int | None = None):
        self.api_key, self.page_size, self.echo_key_status = api_key, page_size, echo_key_status
        self.projects: dict[str, dict[str, Any]] = {}
        self.runs: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_project(self, name: str) -> str:
        session_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        self.projects[name] = {
            "id": session_id, "name": name, "tenant_id": TENANT, "start_time": "2026-01-01T00:00:00+00:00",
            "end_time": None, "description": None, "extra": None, "reference_dataset_id": None,
            "run_count": None, "latency_p50": None, "latency_p99": None, "total_tokens": None,
            "prompt_tokens": None, "completion_tokens": None, "total_cost": None, "last_run_start_time": None,
            "feedback_stats": None, "session_feedback_stats": None, "run_facets": None, "error_rate": None,
            "streaming_rate": None, "default_dataset_id": None,
        }
        return session_id

    def __enter__(self) -> FakeLangSmith:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- the API -------------------------------------------------------------------------------

    def _query(self, body: dict[str, Any]) -> dict[str, Any]:
        runs = [r for r in self.runs if not body.get("session") or r["session_id"] in body["session"]]
        if body.get("run_type"):
            runs = [r for r in runs if r["run_type"] == body["run_type"]]
        if body.get("is_root") is not None:
            runs = [r for r in runs if (r["parent_run_id"] is None) == body["is_root"]]
        if body.get("start_time"):
            runs = [r for r in runs if _ts(r["start_time"]) >= _ts(body["start_time"])]
        expression = body.get("filter") or ""
        for op, value in re.findall(r'(gte|lt)\(start_time, "([^"]+)"\)', expression):
            bound = _ts(value)
            runs = [r for r in runs if (_ts(r["start_time"]) >= bound) == (op == "gte")]
        for tag in re.findall(r'has\(tags, "([^"]+)"\)', expression):
            runs = [r for r in runs if tag in (r["tags"] or [])]
        runs.sort(key=lambda r: (r["start_time"], r["id"]), reverse=True)  # newest first, as the API
        offset = int(base64.b64decode(body["cursor"])) if body.get("cursor") else 0
        page = runs[offset:offset + self.page_size]
        more = offset + self.page_size < len(runs)
        cursor = base64.b64encode(str(offset + self.page_size).encode()).decode() if more else None
        return {"runs": page, "cursors": {"next": cursor, "prev": None}, "search_cursors": None}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                key = self.headers.get("x-api-key")
                if fake.echo_key_status is not None:
                    self._reply(fake.echo_key_status, {"detail": f"request refused for x-api-key {key}"})
                    return False
                if key == fake.api_key:
                    return True
                self._reply(401, {"detail": "Invalid token"})
                return False

            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.requests.append(("GET", url.path, parse_qs(url.query)))
                if url.path == "/info":
                    self._reply(200, {"version": "0.12.33", "license_expiration_time": None,
                                      "batch_ingest_config": None, "instance_flags": {}})
                elif not self._authorised():
                    return
                elif url.path == "/sessions":
                    name = parse_qs(url.query).get("name", [None])[0]
                    self._reply(200, [p for n, p in fake.projects.items() if name in (None, n)])
                else:
                    self._reply(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fake.requests.append(("POST", url.path, body))
                if not self._authorised():
                    return
                if url.path == "/runs/query":
                    self._reply(200, fake._query(body))
                else:
                    self._reply(404, {"detail": "Not Found"})

        return Handler
