"""The pieces every backend dialogue shares: the line-buffered wire, its errors, the context.

``Wire.stage`` names what is being waited for (greeting, tls, id, login), so that a failure,
whatever raised it, is logged with the stage it happened in.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from meshproxy import log
from meshproxy.account import Account
from meshproxy.config import Config
from meshproxy.credentials import Credentials
from meshproxy.io import tls
from meshproxy.mesh.base import Directory, Identity

_log = log.get("peer")
LINE_CAP = 65536
"""Longest line accepted from a backend before login (greetings and CAPA stay far below)."""
RECV_SIZE = 16384


KEEPALIVE_IDLE = 300
"""Seconds of silence before TCP keepalive probes start on client and peer connections."""
KEEPALIVE_INTERVAL = 60
KEEPALIVE_PROBES = 5


def keep_alive(sock: socket.socket) -> None:
    """TCP keepalive: a vanished peer or client of a long, silent session (IDLE) is noticed
    after about ten minutes, without a short idle timeout cutting live IMAP IDLE sessions."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class PeerError(Exception):
    """One address failed at ``stage``; ``detail`` is for the log (never a password)."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


class LoginRefused(PeerError):
    """The server answered the login itself with a refusal (``NO`` / ``-ERR``)."""

    def __init__(self, detail: str, *, disabled: bool = False) -> None:
        super().__init__("login", detail)
        self.disabled = disabled


@dataclass(frozen=True)
class Dialer:
    """What every peer dial needs, built once by the server."""

    config: Config
    identity: Identity
    directory: Directory
    key: bytes | None
    mesh_tls: ssl.SSLContext | None
    foreign_tls: ssl.SSLContext | None


@dataclass(frozen=True)
class Login:
    """The session being proxied: who, how the client logged in, from where."""

    service: str  # "imap" | "pop3"
    tag: str  # the client's IMAP tag ("" for POP3)
    account: Account
    credentials: Credentials
    session: str
    client_ip: str
    client_port: int


class Wire:
    """A dialled socket with a line buffer; ``stage`` names what is being waited for."""

    def __init__(self, sock: socket.socket, server: str) -> None:
        self.sock = sock
        self.server = server
        self.stage = "greeting"
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        """One line with its line end (CRLF or a bare LF)."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > LINE_CAP:
                raise PeerError(self.stage, f"line longer than {LINE_CAP} bytes")
            chunk = self.sock.recv(RECV_SIZE)
            if not chunk:
                raise PeerError(self.stage, "connection closed by the server")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def starttls(self, context: ssl.SSLContext, server_name: str) -> None:
        if self.buffer:
            raise PeerError("tls", "plaintext sent behind the TLS go-ahead")
        self.stage = "tls"
        self.sock = tls.client_handshake(self.sock, context, server_name)

    def rest(self) -> bytes:
        """Bytes read beyond the last line (the relay must deliver them)."""
        data, self.buffer = self.buffer, b""
        return data


def text(line: bytes) -> str:
    """A backend line for the log: decoded, stripped, capped."""
    return log.field(line.decode("utf-8", "replace").rstrip("\r\n"))


def check_not_me(identity: Identity, wire: Wire, announced: str) -> None:
    """Loop guard 3: a server that names itself as this node is dropped before login."""
    if not announced:
        raise PeerError(wire.stage, "the peer did not announce its node name")
    if identity.matches(announced):
        _log.warning(
            "loop guard: %s answered as %s, which is this node; dropped before login",
            wire.server,
            log.field(announced),
        )
        raise PeerError(wire.stage, f"the peer is this node ({announced}): loop refused")


def start_tls(wire: Wire, context: ssl.SSLContext | None, name: str) -> None:
    """Wrap after the go-ahead; the context verifies (or, for foreign verify=false, not)."""
    if context is None:
        raise PeerError("tls", "TLS requested but no client context was built")
    try:
        wire.starttls(context, name)
    except ssl.SSLError as exc:
        raise PeerError("tls", exc.reason or str(exc)) from exc
