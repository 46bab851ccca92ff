"""A stand-in incumbent for the offline demo: a local model folder (built-in or transformers)
served on 127.0.0.1 through the OpenAI chat completions API, so the demo can register it as the
model in production and capture it as it would a hosted fine-tuned model.

It answers ``POST /v1/chat/completions`` (the reply to the request's messages, greedy, one at a
time; usage counted with the model's tokenizer) and ``GET /v1/models``, in the real API's shapes
and its error shape; sampling settings (temperature, seed, max_tokens) are accepted and ignored,
streaming is refused. It asks for no key: it listens on the loopback interface only.

In a program::

    with IncumbentServer(Path("data/models/local-ft-..."), load_task("nl2query")) as server:
        server.base_url    # "http://127.0.0.1:<port>/v1"

From the shell (prints the URL on stdout, serves until SIGINT or SIGTERM)::

    python -m pipeline.demo.incumbent_server --model-dir data/models/local-ft-... --port 0
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.engine.tasks import Task, hooks, load_task
from pipeline.engine.train.local.inference import LocalModelProvider


class _MessagesTask:
    """The task as the local backend asks it for a request: the prompt is the request's messages
    (the last user message is what the built-in model reads), the literal masking is the task's."""

    def __init__(self, task: Task):
        self.literals = hooks.literal_masker(task)

    def prompt(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return input["messages"]


class IncumbentServer:
    """The model in ``model_dir`` behind the chat completions API on ``host``:``port`` (0: a free
    port), answering under ``served_model_name`` (default: the folder's name). A context manager:
    serves in a thread from ``__enter__`` to ``__exit__``."""

    def __init__(self, model_dir: Path, task: Task, served_model_name: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, device: str = "auto"):
        self.model_dir = Path(model_dir)
        self.served_model_name = served_model_name or self.model_dir.name
        self.provider = LocalModelProvider(self.model_dir, _MessagesTask(task), batch_size=1, device=device)
        self.created = int(time.time())
        self._generating = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``http://host:port/v1``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (or an interrupt)."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=30)
        self._httpd.server_close()

    def __enter__(self) -> "IncumbentServer":
        self._thread = threading.Thread(target=self.serve_forever, name="incumbent-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` body."""
        return {"object": "list", "data": [{"id": self.served_model_name, "object": "model", "created": self.created,
                                            "owned_by": "flywheel"}]}

    def chat_completion(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, body) of a chat completions request, in the API's shapes."""
        problem = _request_problem(body)
        if problem:
            return 400, _error(problem, "invalid_request_error")
        if body["model"] != self.served_model_name:
            return 404, _error(f"The model `{body['model']}` does not exist or you do not have access to it.",
                               "invalid_request_error", "model_not_found")
        messages = [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
        with self._generating:
            text = self.provider.complete([{"messages": messages}])[0]
            prompt_tokens, completion_tokens = self._tokens(messages, text)
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.served_model_name, "system_fingerprint": "flywheel-local",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _tokens(self, messages: list[dict[str, str]], text: str) -> tuple[int, int]:
        """Prompt and completion tokens as the model's tokenizer counts them."""
        model = self.provider.model
        if self.provider.pretrained:
            tokenizer = model.codec.tokenizer
            return len(model.codec.prompt_ids(messages)), len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(model.tokenizer.encode(messages[-1]["content"]).ids), len(model.tokenizer.encode(text).ids)


def _request_problem(body: Any) -> str | None:
    """What makes a chat completions request unanswerable here, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "'model' is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
               for m in messages):
        return "each message needs a 'role' and a text 'content'"
    if body.get("stream"):
        return "streaming is not supported by this stand-in server"
    return None


def _error(message: str, type: str, code: str | None = None) -> dict[str, Any]:  # noqa: A002 (the API's field)
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


def _handler(server: IncumbentServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """One request per connection (HTTP/1.0, the base class's), so nothing is served after stop()."""

        def do_GET(self) -> None:  # noqa: N802 (the base class's name)
            if self.path.rstrip("/") == "/v1/models":
                self._reply(200, server.models())
            else:
                self._reply(404, _error(f"Invalid URL (GET {self.path})", "invalid_request_error"))

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/chat/completions":
                self._reply(404, _error(f"Invalid URL (POST {self.path})", "invalid_request_error"))
                return
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError:
                self._reply(400, _error("We could not parse the JSON body of your request.", "invalid_request_error"))
                return
            try:
                status, reply = server.chat_completion(request)
            except Exception as exc:  # the model failed: an answer in the API's shape, not a dropped connection
                status, reply = 500, _error(f"the local model failed: {type(exc).__name__}: {exc}", "server_error")
            self._reply(status, reply)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            """No access log: the demo's output stays readable."""

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve a model folder until SIGINT or SIGTERM, its base URL printed on stdout."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.demo.incumbent_server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a local model folder (data/models/...)")
    parser.add_argument("--task", default="nl2query", help="the task whose literal masking the model was trained with")
    parser.add_argument("--served-model-name", help="the model name it answers under (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.model_dir.is_dir():
        parser.error(f"--model-dir {args.model_dir} is not a folder")
    server = IncumbentServer(args.model_dir, load_task(args.task), args.served_model_name, args.host, args.port,
                             args.device)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
