"""A real, scriptable HTTP server on 127.0.0.1 for tests (no request mocking anywhere).

    with ScriptedHTTPServer() as server:
        server.route("/v2/trackers", Reply(429, headers={"Retry-After": "1"}), Reply(body={...}))
        ...  # point a client at server.url
        server.requests  # what the client really sent

A route answers its replies in order and repeats the last one; a reply may be a callable
that builds the answer from the request (for cursors). Routes can also match on query
parameters; the most specific match wins. Unknown paths answer 404.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (client timeouts)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float  # time.monotonic() when the request arrived
    url: str  # path + query as sent
    body: bytes = b""  # the request body as received

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


Responder = Reply | Callable[[RecordedRequest], Reply]


@dataclass
class _Route:
    path: str
    query: dict[str, str]
    replies: list[Responder]
    served: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        return request.path == self.path and all(
            request.param(k) == v for k, v in self.query.items()
        )

    def next_reply(self, request: RecordedRequest) -> Reply:
        responder = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return responder(request) if callable(responder) else responder


class ScriptedHTTPServer:
    """`http.server.ThreadingHTTPServer` on 127.0.0.1, port 0, served from a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._routes: list[_Route] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, *replies: Responder, query: dict[str, str] | None = None) -> None:
        if not replies:
            raise ValueError("a route needs at least one reply")
        with self._lock:
            self._routes.append(_Route(path, dict(query or {}), list(replies)))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> ScriptedHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            candidates = [route for route in self._routes if route.matches(request)]
            if not candidates:
                return Reply(status=404, body={"error": f"no route for {request.path}"})
            route = max(candidates, key=lambda r: len(r.query))
            return route.next_reply(request)


def _handler_for(server: ScriptedHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k: v for k, v in self.headers.items()},
                at=time.monotonic(),
                url=self.path,
                body=body,
            )
            reply = server._answer(request)
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.encoded()
            try:
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test): nothing to answer to

        do_GET = _serve
        do_POST = _serve
        do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean; the request log is `server.requests`

    return Handler


@pytest.fixture
def http_server() -> Iterator[ScriptedHTTPServer]:
    """A started ScriptedHTTPServer, stopped after the test."""
    with ScriptedHTTPServer() as server:
        yield server
