"""The IMAP side of a backend login: the mesh login and Courier's foreign LOGIN.

Mesh login (``mesh_login``)::

    S: * OK ...                                    (greeting; any other status fails)
    C: <own> STARTTLS / S: <own> OK ...            ([mesh] tls; verified against the node name)
    C: <own> ID ("x-meshproxy-origin" "<me>")
    S: * ID (... "x-meshproxy-node" "<peer>" ...)  (loop guard 3: <peer> must not be me)
    S: <own> OK ...
    C: <client tag> AUTHENTICATE X-MESHPROXY <base64 assertion>
    S: <client tag> OK LOGIN Ok.                   (imapd's own line on the home node: forwarded)

Foreign login (``foreign_login``), as Courier's proxy does it, plus TLS::

    C: <client tag> LOGIN "<login>" "<password>"   (quoted; a synchronising literal when needed)
    S: <client tag> OK ...                         (forwarded, untagged lines before it too)
    C: <client tag> CAPABILITY                     ([imap] foreign: Courier's IMAP_PROXY_FOREIGN;
    S: * CAPABILITY ... / <client tag> OK ...       the client's LOGIN completes with this reply)

``<own>`` is a tag of letters and digits that differs from the client's tag, so no reply to our
own commands can be taken for the answer to the client's login.  Tagged replies are matched on
the exact tag; the status word compares case-insensitively.
"""

from __future__ import annotations

import base64
import re
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
from meshproxy.protocol.replies import quote

_log = log.get("peer")
_NODE = re.compile(rb'"x-meshproxy-node"\s+"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
MAX_LINES = 1000
"""Untagged lines accepted while waiting for one tagged reply."""


def mesh_login(wire: Wire, dialer: Dialer, login: Login, target: MeshNode, blob: bytes) -> bytes:
    own = own_tag(login.tag)
    greeting(wire)
    if dialer.config.mesh.tls:
        starttls(wire, own, dialer.mesh_tls, target.name)
    wire.stage = "id"
    wire.send(f'{own} ID ("x-meshproxy-origin" {quote(dialer.identity.name)})\r\n'.encode())
    untagged, tagged = until_tagged(wire, own)
    if not is_ok(tagged, own):
        raise PeerError("id", f"ID refused: {text(tagged)}")
    check_not_me(dialer.identity, wire, _announced(untagged))
    wire.stage = "login"
    payload = base64.b64encode(blob).decode("ascii")
    wire.send(f"{login.tag} AUTHENTICATE X-MESHPROXY {payload}\r\n".encode())
    untagged, tagged = until_tagged(wire, login.tag)
    if is_ok(tagged, login.tag):
        return b"".join(untagged) + tagged
    raise LoginRefused(
        f"mesh login refused by {target.name}: {text(tagged)}",
        disabled=b"[CONTACTADMIN]" in tagged.upper(),
    )


def foreign_login(
    wire: Wire, dialer: Dialer, login: Login, target: ForeignHost, password: str
) -> bytes:
    own = own_tag(login.tag)
    mode = dialer.config.foreign.tls
    if mode == "implicit":
        start_tls(wire, dialer.foreign_tls, target.name)
        wire.stage = "greeting"
    greeting(wire)
    if mode == "starttls":
        starttls(wire, own, dialer.foreign_tls, target.name)
    wire.stage = "login"
    send_login(wire, login.tag, login.account.login, password)
    untagged, tagged = until_tagged(wire, login.tag)
    if not is_ok(tagged, login.tag):
        _log.warning(
            "session %s sources disagree: foreign server %s refused the password of %s that "
            "the account source accepted: %s",
            login.session,
            log.field(target.name),
            log.field(login.account.login),
            text(tagged),
        )
        raise LoginRefused(f"foreign login refused: {text(tagged)}")
    if not dialer.config.imap.foreign:
        return b"".join(untagged) + tagged
    wire.send(f"{login.tag} CAPABILITY\r\n".encode())
    untagged, tagged = until_tagged(wire, login.tag)
    return b"".join(untagged) + tagged


def own_tag(client_tag: str) -> str:
    """A tag for our own commands that cannot be the client's."""
    return "mp1" if client_tag != "mp1" else "mp2"


def greeting(wire: Wire) -> None:
    wire.stage = "greeting"
    line = wire.readline()
    if not line[:4].upper() == b"* OK":
        raise PeerError("greeting", f"not an OK greeting: {text(line)}")


def starttls(wire: Wire, own: str, context: ssl.SSLContext | None, server_name: str) -> None:
    wire.stage = "tls"
    wire.send(f"{own} STARTTLS\r\n".encode())
    _, tagged = until_tagged(wire, own)
    if not is_ok(tagged, own):
        raise PeerError("tls", f"STARTTLS refused: {text(tagged)}")
    start_tls(wire, context, server_name)


def until_tagged(wire: Wire, tag: str) -> tuple[list[bytes], bytes]:
    """Untagged lines, then the tagged completion of ``tag``."""
    prefix = tag.encode() + b" "
    untagged: list[bytes] = []
    while len(untagged) < MAX_LINES:
        line = wire.readline()
        if line.startswith(prefix):
            return untagged, line
        if line.startswith(b"+"):
            raise PeerError(wire.stage, f"unexpected continuation: {text(line)}")
        if line[:6].upper() == b"* BYE ":
            raise PeerError(wire.stage, f"the server said goodbye: {text(line)}")
        untagged.append(line)
    raise PeerError(wire.stage, f"more than {MAX_LINES} lines without the tagged reply")


def is_ok(line: bytes, tag: str) -> bool:
    status = line[len(tag) + 1 :].split(b" ", 1)[0].rstrip(b"\r\n")
    return status.upper() == b"OK"


def _announced(untagged: list[bytes]) -> str:
    for line in untagged:
        if line[:5].upper() == b"* ID ":
            match = _NODE.search(line)
            if match:
                raw = match.group(1).replace(b'\\"', b'"').replace(b"\\\\", b"\\")
                return raw.decode("utf-8", "replace")
    return ""


# -- LOGIN arguments ---------------------------------------------------------------------------


def needs_literal(raw: bytes) -> bool:
    """Quoted strings carry 7-bit text without CR, LF or NUL; anything else is a literal."""
    return any(byte >= 0x80 or byte in (0, 10, 13) for byte in raw)


def quoted(raw: bytes) -> bytes:
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def send_login(wire: Wire, tag: str, user: str, password: str) -> None:
    """``<tag> LOGIN <user> <password>``; a literal waits for the server's ``+``."""
    line = tag.encode() + b" LOGIN"
    for value in (user, password):
        raw = value.encode("utf-8")
        if not needs_literal(raw):
            line += b" " + quoted(raw)
            continue
        wire.send(line + b" {%d}\r\n" % len(raw))
        _continuation(wire, tag)
        line = raw
    wire.send(line + b"\r\n")


def _continuation(wire: Wire, tag: str) -> None:
    prefix = tag.encode() + b" "
    for _ in range(MAX_LINES):
        line = wire.readline()
        if line.startswith(b"+"):
            return
        if line.startswith(prefix):
            raise LoginRefused(f"literal refused: {text(line)}")
    raise PeerError(wire.stage, "no continuation for a literal")
