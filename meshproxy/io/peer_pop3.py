"""The POP3 side of a backend login: the mesh login and Courier's foreign USER+PASS.

Mesh login (``mesh_login``)::

    S: +OK ...                           (greeting)
    C: STLS / S: +OK                     ([mesh] tls; verified against the node name)
    C: CAPA / S: +OK ... X-MESHPROXY-NODE <peer> ... .   (loop guard 3: <peer> must not be me)
    C: AUTH X-MESHPROXY <base64 assertion>
    S: +OK logged in.                    (pop3d's own line on the home node: forwarded)

Foreign login (``foreign_login``): ``USER <login>`` / ``+OK``, ``PASS <password>`` / ``+OK``
(forwarded), optionally over STLS or implicit TLS.  POP3 has no quoting: a login or password
holding CR or LF cannot be sent and fails the dial.
"""

from __future__ import annotations

import base64
import ssl

from meshproxy import log
from meshproxy.io.wire import (
    Dialer,
    Login,
    LoginRefused,
    PeerError,
    Wire,
    check_not_me,
    start_tls,
    text,
)
from meshproxy.mesh.base import ForeignHost, MeshNode

_log = log.get("peer")
MAX_CAPA = 200
"""CAPA lines accepted from a peer."""
NODE_CAPA = b"X-MESHPROXY-NODE"


def mesh_login(wire: Wire, dialer: Dialer, login: Login, target: MeshNode, blob: bytes) -> bytes:
    greeting(wire)
    if dialer.config.mesh.tls:
        stls(wire, dialer.mesh_tls, target.name)
    wire.stage = "id"
    wire.send(b"CAPA\r\n")
    check_not_me(dialer.identity, wire, _announced(capa(wire)))
    wire.stage = "login"
    wire.send(b"AUTH X-MESHPROXY " + base64.b64encode(blob) + b"\r\n")
    line = wire.readline()
    if is_ok(line):
        return line
    raise LoginRefused(f"mesh login refused by {target.name}: {text(line)}")


def foreign_login(
    wire: Wire, dialer: Dialer, login: Login, target: ForeignHost, password: str
) -> bytes:
    mode = dialer.config.foreign.tls
    if mode == "implicit":
        start_tls(wire, dialer.foreign_tls, target.name)
    greeting(wire)
    if mode == "starttls":
        stls(wire, dialer.foreign_tls, target.name)
    wire.stage = "login"
    user = _argument(login.account.login, "login name")
    secret = _argument(password, "password")
    line = _command(wire, b"USER " + user)
    if is_ok(line):
        line = _command(wire, b"PASS " + secret)
    if is_ok(line):
        return line
    _log.warning(
        "session %s sources disagree: foreign server %s refused the login of %s that the "
        "account source accepted: %s",
        login.session,
        log.field(target.name),
        log.field(login.account.login),
        text(line),
    )
    raise LoginRefused(f"foreign login refused: {text(line)}")


def greeting(wire: Wire) -> None:
    wire.stage = "greeting"
    line = wire.readline()
    if not is_ok(line):
        raise PeerError("greeting", f"not a +OK greeting: {text(line)}")


def stls(wire: Wire, context: ssl.SSLContext | None, server_name: str) -> None:
    wire.stage = "tls"
    line = _command(wire, b"STLS")
    if not is_ok(line):
        raise PeerError("tls", f"STLS refused: {text(line)}")
    start_tls(wire, context, server_name)


def capa(wire: Wire) -> list[bytes]:
    """The CAPA list (after its ``+OK``), without the final dot."""
    status = wire.readline()
    if not is_ok(status):
        raise PeerError(wire.stage, f"CAPA refused: {text(status)}")
    lines: list[bytes] = []
    while len(lines) < MAX_CAPA:
        line = wire.readline().rstrip(b"\r\n")
        if line == b".":
            return lines
        lines.append(line)
    raise PeerError(wire.stage, f"CAPA longer than {MAX_CAPA} lines")


def is_ok(line: bytes) -> bool:
    return line[:3].upper() == b"+OK" and line[3:4] in (b" ", b"\r", b"\n", b"")


def _announced(lines: list[bytes]) -> str:
    for line in lines:
        name, _, value = line.partition(b" ")
        if name.upper() == NODE_CAPA:
            return value.strip().decode("utf-8", "replace")
    return ""


def _command(wire: Wire, line: bytes) -> bytes:
    wire.send(line + b"\r\n")
    return wire.readline()


def _argument(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if b"\r" in raw or b"\n" in raw or b"\0" in raw:
        raise PeerError("login", f"the {what} holds CR, LF or NUL: POP3 cannot send it")
    return raw
