"""HTTP plumbing: one ThreadingHTTPServer per agent, requests, replies, routing."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .state import AgentGone
from .util import ApiError

if TYPE_CHECKING:
    from .server import ConsulCluster

MAX_BODY = 512 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    node: str  # the node whose agent received the request
    params: tuple[str, ...] = ()
    alive: Callable[[], bool] = lambda: True

    def has(self, name: str) -> bool:
        return name in self.query

    def get(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def token_secret(self) -> str | None:
        """?token= first, then X-Consul-Token, then Authorization: Bearer."""
        if self.get("token"):
            return self.get("token")
        if self.headers.get("X-Consul-Token"):
            return str(self.headers["X-Consul-Token"])
        auth = str(self.headers.get("Authorization") or "")
        if auth[:7].lower() == "bearer " and auth[7:].strip():
            return auth[7:].strip()
        return None

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, f"Request decode failed: {exc}") from None


@dataclass
class Reply:
    code: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    after: Callable[[], None] | None = None  # runs once the reply is written

    @classmethod
    def json(cls, data: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(body=json.dumps(data).encode(), headers=dict(headers or {}))


Handler = Callable[[Request], Reply]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, pattern: str, **methods: Handler) -> None:
        self.routes.append((re.compile(f"^{pattern}$"), methods))

    def dispatch(self, req: Request) -> Reply:
        for pattern, methods in self.routes:
            m = pattern.match(req.path)
            if m is None:
                continue
            allow = "OPTIONS," + ",".join(methods)
            if req.method == "OPTIONS":
                return Reply(headers={"Allow": allow})
            handler = methods.get(req.method)
            if handler is None:
                raise ApiError(405, f"method {req.method} not allowed", {"Allow": allow})
            req.params = tuple(unquote(g) for g in m.groups())
            return handler(req)
        if req.path.startswith("/v1/"):
            raise ApiError(404, "Invalid URL path: not a recognized HTTP API endpoint")
        raise ApiError(404, "404 page not found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    agent: Agent

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets its keep-alive connection (a node exiting) is normal here."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.agent.track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.agent.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        agent = self.server.agent
        url = urlsplit(self.path)
        body = self._body()
        req = Request(
            method=self.command,
            path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            node=agent.node,
            alive=lambda: agent.alive,
        )
        try:
            if len(body) > MAX_BODY and req.path.startswith("/v1/kv/"):
                raise ApiError(
                    413, f"Request body({len(body)} bytes) too large, max size: {MAX_BODY} bytes."
                )
            reply = agent.cluster.api.router.dispatch(req)
        except AgentGone:
            self.close_connection = True
            return
        except ApiError as err:
            reply = Reply(err.code, err.text.encode(), "text/plain; charset=utf-8", err.headers)
        reply.headers.setdefault("X-Consul-Default-Acl-Policy", agent.cluster.acl.default_policy)
        self._write(reply)
        if reply.after is not None:
            reply.after()

    def _write(self, reply: Reply) -> None:
        try:
            self.send_response(reply.code)
            self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()


class Agent:
    """The HTTP API of one node's agent: its own listener, bound to its node name."""

    def __init__(self, cluster: ConsulCluster, node: str, host: str, port: int) -> None:
        self.cluster = cluster
        self.node = node
        self.host = host
        self.port = port
        self.alive = False
        self._server: _Server | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def start(self) -> None:
        if self.alive:
            return
        server = _Server((self.host, self.port), _Handler)
        server.agent = self
        self.port = server.server_address[1]  # ephemeral on first start, then kept
        self._server = server
        self.alive = True
        threading.Thread(
            target=server.serve_forever, args=(0.05,), daemon=True, name=f"fakeconsul-{self.node}"
        ).start()

    def stop(self) -> None:
        """Close the listener and every open connection (blocked queries included)."""
        server, self._server = self._server, None
        self.alive = False
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self.cluster.state.cond:
            self.cluster.state.cond.notify_all()
