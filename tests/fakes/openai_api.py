"""A small stateful fake of the OpenAI HTTP API, as a WSGI app, for HTTP-level tests.

openai 3.x sends requests through ``httpx2``, so request-mocking libraries do not see them.
Instead, point the real client at this fake:

In process (unit tests)::

    fake = FakeOpenAI(api_key="sk-test")
    fake.chat_responder = lambda request: '{"outcome": "good", "critique": "fine"}'
    provider = OpenAIChatProvider("gpt-test", api_key="sk-test", http_client=fake.http_client())

Over a real socket (Dagster steps in subprocesses, other processes)::

    with fake.serve() as base_url:              # "http://127.0.0.1:<port>/v1"
        os.environ["OPENAI_BASE_URL"] = base_url

State a test can set or read:

- ``chat_responder``: ``(request_json) -> str | dict``. A string is the assistant's reply; a
  dict is an error reply ``{"status": 400, "message": "...", "type": "...", "code": "..."}``,
  or ``{"refusal": "..."}`` for a model refusal (no content).
- ``fail_next(status, times=1, path=None)``: the next ``times`` requests (to ``path`` only,
  when given) fail with ``status`` (429, 500, ...) in the API's error shape, with a short
  ``retry-after-ms`` so that client retries stay fast.
- ``requests``: JSON bodies received (never headers, so no Authorization value).
- ``calls``: ``(method, path, status)`` of every request, in order.
- ``api_key``: when set, requests without ``Authorization: Bearer <api_key>`` (or Azure's
  ``api-key: <api_key>``) get a 401. Azure's deployment paths reach the same endpoints.

Responses have the real API's shapes (ids, ``object``, ``created``, ``choices``, ``usage``)
so that a client built with ``_strict_response_validation=True`` accepts them. Endpoints are
rows of a route table (``self.routes``): more of the API (files, fine_tuning.jobs) is added by
registering handlers with :meth:`FakeOpenAI.route`, each ``(request, match) -> Reply``;
``fine_tuning`` (:class:`tests.fakes.openai_finetuning.FakeFineTuning`) serves files and
fine-tuning jobs, under ``/v1`` and Azure's ``/openai`` prefix.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx2

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                404: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error", 502: "server_error",
                503: "server_error"}


@dataclass
class Request:
    """What a handler sees: method, path (without the ``/v1`` prefix), headers and raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: Query parameters (the last value of each name), e.g. ``{"metadata[k]": "v", "limit": "20"}``.
    query: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Reply:
    """A handler's answer: status, a JSON-able body and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, type: str | None = None, code: str | None = None,
                headers: dict[str, str] | None = None) -> Reply:
    """An error in the API's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return Reply(status, {"error": {"message": message, "type": type or _ERROR_TYPES.get(status, "error"),
                                    "param": None, "code": code}}, headers or {})


def _count_tokens(text: str) -> int:
    """A stand-in token count (whitespace words), enough for usage figures to be plausible."""
    return len(text.split())


def _default_responder(request: dict[str, Any]) -> str:
    response_format = request.get("response_format") or {}
    return "{}" if response_format.get("type") in ("json_object", "json_schema") else "ok"


class FakeOpenAI:
    """The fake API; see the module docstring."""

    def __init__(self, api_key: str | None = None):
        self.api_key = api_key
        self.chat_responder: Callable[[dict[str, Any]], str | dict[str, Any]] = _default_responder
        self.requests: list[Any] = []
        self.calls: list[tuple[str, str, int]] = []
        self.routes: list[tuple[str, re.Pattern[str], Callable[[Request, re.Match[str]], Reply]]] = []
        self._failures: list[tuple[int, str | None]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.route("POST", r"(/openai/deployments/[^/]+)?/chat/completions", self._chat_completions)
        self.route("GET", r"/models", lambda request, match: Reply(200, {"object": "list", "data": []}))
        from tests.fakes.openai_finetuning import FakeFineTuning

        #: Files and fine-tuning jobs (see :mod:`tests.fakes.openai_finetuning`).
        self.fine_tuning = FakeFineTuning(self)

    # --- configuration ---------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Callable[[Request, re.Match[str]], Reply]) -> None:
        """Serve ``method`` requests whose path (without ``/v1``) fully matches ``pattern``."""
        self.routes.append((method, re.compile(pattern), handler))

    def fail_next(self, status: int, times: int = 1, path: str | None = None) -> None:
        """Make the next ``times`` requests (to ``path`` only, when given) fail with ``status``."""
        with self._lock:
            self._failures += [(status, path)] * times

    def next_id(self, prefix: str) -> str:
        """A fresh id such as ``chatcmpl-000001``."""
        return f"{prefix}-{next(self._ids):06d}"

    # --- clients ----------------------------------------------------------------------------

    def http_client(self) -> httpx2.Client:
        """An httpx2 client that sends every request to this fake, in process."""
        return httpx2.Client(transport=httpx2.WSGITransport(app=self))

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the fake on 127.0.0.1 (a free port) in a thread; yields the base URL (``.../v1``)."""
        server = make_server("127.0.0.1", 0, self, server_class=_ThreadingServer, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/v1"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # --- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        path = environ.get("PATH_INFO", "/")
        path = path[3:] if path.startswith("/v1/") else path
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        request = Request(environ["REQUEST_METHOD"], path, headers, body, query)
        reply = self._handle(request)
        with self._lock:
            self.calls.append((request.method, request.path, reply.status))
        payload = json.dumps(reply.body).encode()
        start_response(f"{reply.status} {_REASONS.get(reply.status, 'Status')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                        ("x-request-id", self.next_id("req")), *reply.headers.items()])
        return [payload]

    def _handle(self, request: Request) -> Reply:
        if "json" in request.headers.get("content-type", "") and request.body:
            try:
                parsed = request.json()
            except json.JSONDecodeError:
                return error_reply(400, "We could not parse the JSON body of your request.")
            with self._lock:
                self.requests.append(parsed)
        sent = request.headers.get("authorization", "").removeprefix("Bearer ") or request.headers.get("api-key", "")
        if self.api_key is not None and sent != self.api_key:
            masked = sent[:3] + "*" * max(0, len(sent) - 7) + sent[-4:] if len(sent) > 7 else "***"
            return error_reply(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                                    "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        with self._lock:
            for n, (status, path) in enumerate(self._failures):
                if path is None or path == request.path:
                    del self._failures[n]
                    return error_reply(status, f"injected failure {status}", headers={"retry-after-ms": "5"})
        known_path = False
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match:
                known_path = True
                if method == request.method:
                    return handler(request, match)
        if known_path:
            return error_reply(405, f"method {request.method} not allowed on {request.path}")
        return error_reply(404, f"Invalid URL ({request.method} /v1{request.path})")

    # --- endpoints --------------------------------------------------------------------------

    def _chat_completions(self, request: Request, match: re.Match[str]) -> Reply:
        body = request.json()
        if not isinstance(body.get("messages"), list) or not body["messages"] or not body.get("model"):
            return error_reply(400, "'messages' and 'model' are required")
        answer = self.chat_responder(body)
        refusal = answer.get("refusal") if isinstance(answer, dict) else None
        if isinstance(answer, dict) and refusal is None:
            return error_reply(answer.get("status", 400), answer.get("message", "error"), answer.get("type"),
                               answer.get("code"))
        prompt_tokens = sum(_count_tokens(str(m.get("content", ""))) for m in body["messages"])
        completion_tokens = _count_tokens(refusal or answer)
        return Reply(200, {
            "id": self.next_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": None if refusal else answer,
                                     "refusal": refusal}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Keep test output clean: no access log lines on stderr."""
