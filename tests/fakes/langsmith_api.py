"""A stub LangSmith HTTP API on 127.0.0.1, serving what ``langsmith.Client.runs.query`` and the
deprecated ``Client.list_runs`` call.

    with FakeLangSmith(api_key="lsv2_test", page_size=2) as fake:
        session_id = fake.add_project("nl2query-prod")
        fake.runs.append(make_run(session_id=session_id, ...))
        client = Client(api_url=fake.url, api_key="lsv2_test")

Endpoints, in the real API's shapes: ``GET /info`` (a version of 0.16 or later, or before 0.16
with ``v2=False``), ``GET /sessions?name=`` (a list of sessions), ``POST /runs/query`` (v1:
``{"runs": [...], "cursors": {"next": ...}}``) and ``POST /api/v2/runs/query`` (v2: project ids,
upper-case ``run_type`` and ``selects``, ``min_start_time`` defaulting to one day before now and
``max_start_time`` to now, ``{"items": [...], "next_cursor": ...}`` with only the selected fields,
``id`` alone when nothing is selected; a 404 with ``v2=False``, as servers before v0.16). Pages
hold at most ``page_size`` runs behind an opaque cursor. Runs are filtered by project, run_type,
is_root, start time and the ``gte/lt(start_time, "...")`` and ``has(tags, "...")`` clauses of the
filter expression. Requests without ``x-api-key: <api_key>`` get a 401. With ``echo_key_status``
set, every request but ``/info`` (or only those to the paths in ``echo_key_paths``) gets that
HTTP status and an error body that echoes the key it was sent (as careless servers do).
``requests`` holds (method, path, JSON body) of every request, never headers. The server runs on
its own thread and is stopped (by that thread) when the ``with`` block ends.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import typing
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from langsmith.types import RunSelectField, RunType

TENANT = "7b6c3c1e-0000-4000-8000-000000000001"
V2_QUERY = "/api/v2/runs/query"
SELECTS, RUN_TYPES = set(typing.get_args(RunSelectField)), set(typing.get_args(RunType))


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

    def __init__(self, api_key: str, page_size: int = 100, echo_key_status: int | None = None,
                 echo_key_paths: tuple[str, ...] | None = None, v2: bool = True):
        self.api_key, self.page_size, self.v2 = api_key, page_size, v2
        self.echo_key_status, self.echo_key_paths = echo_key_status, echo_key_paths
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

    def _matching(self, runs: list[dict[str, Any]], expression: str) -> list[dict[str, Any]]:
        for op, value in re.findall(r'(gte|lt)\(start_time, "([^"]+)"\)', expression or ""):
            bound = _ts(value)
            runs = [r for r in runs if (_ts(r["start_time"]) >= bound) == (op == "gte")]
        for tag in re.findall(r'has\(tags, "([^"]+)"\)', expression or ""):
            runs = [r for r in runs if tag in (r["tags"] or [])]
        return sorted(runs, key=lambda r: (r["start_time"], r["id"]), reverse=True)  # newest first, as the API

    def _page(self, runs: list[dict[str, Any]], cursor: str | None,
              size: int) -> tuple[list[dict[str, Any]], str | None]:
        offset = int(base64.b64decode(cursor)) if cursor else 0
        more = offset + size < len(runs)
        return runs[offset:offset + size], base64.b64encode(str(offset + size).encode()).decode() if more else None

    def _query(self, body: dict[str, Any]) -> dict[str, Any]:
        runs = [r for r in self.runs if not body.get("session") or r["session_id"] in body["session"]]
        if body.get("run_type"):
            runs = [r for r in runs if r["run_type"] == body["run_type"]]
        if body.get("is_root") is not None:
            runs = [r for r in runs if (r["parent_run_id"] is None) == body["is_root"]]
        if body.get("start_time"):
            runs = [r for r in runs if _ts(r["start_time"]) >= _ts(body["start_time"])]
        page, cursor = self._page(self._matching(runs, body.get("filter")), body.get("cursor"), self.page_size)
        return {"runs": page, "cursors": {"next": cursor, "prev": None}, "search_cursors": None}

    def _query_v2(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /api/v2/runs/query: (status, response body)."""
        selects, run_type = body.get("selects") or ["ID"], body.get("run_type")
        if not body.get("project_ids"):  # (or reference_dataset_id, which this stub does not serve)
            return 400, {"detail": "project_ids or reference_dataset_id is required"}
        if run_type is not None and run_type not in RUN_TYPES:
            return 400, {"detail": f"run_type: invalid value {run_type!r}, expected one of {sorted(RUN_TYPES)}"}
        if unknown := [s for s in selects if s not in SELECTS]:
            return 400, {"detail": f"selects: invalid values {unknown}, expected upper-case run fields"}
        now = datetime.now(timezone.utc)
        low = _ts(body["min_start_time"]) if body.get("min_start_time") else now - timedelta(days=1)
        high = _ts(body["max_start_time"]) if body.get("max_start_time") else now
        runs = [r for r in self.runs
                if r["session_id"] in body["project_ids"] and low <= _ts(r["start_time"]) <= high]
        if run_type:
            runs = [r for r in runs if r["run_type"].upper() == run_type]
        if body.get("is_root") is not None:
            runs = [r for r in runs if (r["parent_run_id"] is None) == body["is_root"]]
        size = min(body.get("page_size") or 100, self.page_size)
        page, cursor = self._page(self._matching(runs, body.get("filter")), body.get("cursor"), size)
        return 200, {"items": [_v2_run(r, selects) for r in page], "next_cursor": cursor}

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

            def _authorised(self, path: str) -> bool:
                key = self.headers.get("x-api-key")
                if fake.echo_key_status is not None and (fake.echo_key_paths is None or path in fake.echo_key_paths):
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
                    self._reply(200, {"version": "0.16.4" if fake.v2 else "0.15.3", "license_expiration_time": None,
                                      "batch_ingest_config": None, "instance_flags": {}})
                elif not self._authorised(url.path):
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
                if not self._authorised(url.path):
                    return
                if url.path == "/runs/query":
                    self._reply(200, fake._query(body))
                elif url.path == V2_QUERY and fake.v2:
                    self._reply(*fake._query_v2(body))
                else:
                    self._reply(404, {"detail": "Not Found"})

        return Handler


def _v2_run(run: dict[str, Any], selects: list[str]) -> dict[str, Any]:
    """A run (as /runs/query returns it) as /api/v2/runs/query does: the selected fields only,
    upper-case run type and status, its project as ``project_id`` and its metadata apart from ``extra``."""
    extra = dict(run["extra"] or {})
    start, end = _ts(run["start_time"]), _ts(run["end_time"]) if run["end_time"] else None
    fields = {**run, "run_type": run["run_type"].upper(), "status": run["status"].upper(),
              "project_id": run["session_id"], "metadata": extra.pop("metadata", None), "extra": extra,
              "is_root": run["parent_run_id"] is None,
              "latency_seconds": (end - start).total_seconds() if end else None}
    return {select.lower(): fields.get(select.lower()) for select in selects}
