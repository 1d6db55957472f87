"""Log a session in on another server and hand back the logged-in socket.

``open_upstream(dialer, login, hosts)`` tries the ``mailhost`` list in order.  Each host is
resolved by the directory (no DNS for a known peer: its addresses are numeric):

* ``SelfNode``: ``None`` is returned and the caller serves the account here;
* ``Unreachable``: logged, next host;
* ``MeshNode``: the mesh login (``peer_imap.mesh_login`` / ``peer_pop3.mesh_login``): no user
  password crosses the wire, the home node gets a signed assertion naming the real client;
* ``ForeignHost``: LOGIN / USER+PASS with the client's clear password, as Courier does.

Every address is dialled with ``[mesh] connect_timeout`` (numeric addresses only, so the
connect never touches the resolver's threadpool) and its whole dialogue runs under
``[mesh] login_timeout``.  A failure is logged with its stage (connect, greeting, tls, id,
login) and the server, never with a password, and the next address or host is tried.  When
none is left the session gets ``TempFail``: ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]`` at once,
with no failed-password delay.

Two refusals end the search at once, because another host would say the same: a home node
answering ``[CONTACTADMIN]`` (``LoginDisabled``), and a CRAM-MD5 session that would need a clear
password for a foreign server (``MechanismUnusable``, ``NO [CANNOT]``).

A foreign server that rejects a password our source accepted is a disagreement between two
account sources, not the client's fault: it is logged as such and the client gets
``[UNAVAILABLE]`` (Courier says "Login failed.", which sends users to reset a password that is
right).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from gevent import Timeout

from meshproxy import log
from meshproxy.credentials import PlainCredentials
from meshproxy.errors import LoginDisabled, MechanismUnusable, TempFail
from meshproxy.io import peer_imap, peer_pop3
from meshproxy.io.wire import Dialer, Login, LoginRefused, PeerError, Wire, keep_alive
from meshproxy.mesh import assertion
from meshproxy.mesh.base import (
    Address,
    ForeignHost,
    MeshNode,
    SelfNode,
    Target,
    normalize_ip,
)

_log = log.get("peer")


class _ExpiredError(Exception):
    """``[mesh] login_timeout`` ran out during one dialogue."""


@dataclass
class Upstream:
    """A logged-in backend: ``reply`` goes to the client, then the relay starts."""

    sock: socket.socket
    reply: bytes
    label: str  # "peer:<node>" | "foreign:<host>"


Dialogue = Callable[[Wire], bytes]
"""Logs in over a connected wire; returns the bytes to forward to the client."""


def open_upstream(dialer: Dialer, login: Login, hosts: tuple[str, ...]) -> Upstream | None:
    """A logged-in socket for ``login`` on the first host that works; None: serve here.

    Raises ``TempFail`` when no host works, ``LoginDisabled`` / ``MechanismUnusable`` when
    the answer cannot differ from one host to the next.
    """
    attempt = _Attempt(dialer, login)
    for host in hosts:
        target = dialer.directory.resolve(host, login.service)
        if isinstance(target, SelfNode):
            return None
        upstream = attempt.target(target)
        if upstream is not None:
            return upstream
    tried = "; ".join(attempt.failures) or "none listed"
    raise TempFail(detail=f"no mailhost reachable ({tried})")


class _Attempt:
    """One session's walk through its mailhosts; ``failures`` feed the final log line."""

    def __init__(self, dialer: Dialer, login: Login) -> None:
        self.dialer = dialer
        self.login = login
        self.failures: list[str] = []

    def target(self, target: Target) -> Upstream | None:
        if isinstance(target, MeshNode):
            if self.dialer.key is None:
                self.skip(target.name, "is a mesh peer but mesh.key_file is not set")
                return None
            dialogue = _mesh_dialogue(self.dialer, self.login, target)
            return self.dial_all(target.name, target.addresses, dialogue, f"peer:{target.name}")
        if isinstance(target, ForeignHost):
            dialogue = _foreign_dialogue(self.dialer, self.login, target)
            label = f"foreign:{target.name}"
            return self.dial_all(target.name, target.addresses, dialogue, label)
        assert not isinstance(target, SelfNode)
        self.skip(target.name, f"unreachable: {target.reason}")
        return None

    def skip(self, name: str, why: str) -> None:
        _log.warning(
            "session %s routing failure: mailhost %s %s",
            self.login.session,
            log.field(name),
            log.field(why),
        )
        self.failures.append(f"{name} {why}")

    def dial_all(
        self, name: str, addresses: tuple[Address, ...], dialogue: Dialogue, label: str
    ) -> Upstream | None:
        if not addresses:
            self.skip(name, "has no address")
        for address in addresses:
            try:
                return _dial_one(self.dialer, address, dialogue, label)
            except LoginRefused as exc:
                self.failed(name, address, exc)
                if exc.disabled:
                    raise LoginDisabled(detail=f"{name} {address}: {exc.detail}") from exc
            except PeerError as exc:
                self.failed(name, address, exc)
        return None

    def failed(self, name: str, address: Address, exc: PeerError) -> None:
        _log.warning(
            "session %s routing failure: %s at %s failed at stage %s: %s",
            self.login.session,
            log.field(name),
            address,
            exc.stage,
            log.field(exc.detail),
        )
        self.failures.append(f"{name} {address} {exc.stage}: {exc.detail}")


def _dial_one(dialer: Dialer, address: Address, dialogue: Dialogue, label: str) -> Upstream:
    sock = connect(address, dialer.config.mesh.connect_timeout)
    wire = Wire(sock, str(address))
    try:
        with Timeout(dialer.config.mesh.login_timeout, _ExpiredError):
            reply = dialogue(wire)
    except _ExpiredError:
        _close(wire.sock)
        seconds = dialer.config.mesh.login_timeout
        raise PeerError(wire.stage, f"no answer within {seconds} s") from None
    except OSError as exc:
        _close(wire.sock)
        raise PeerError(wire.stage, exc.strerror or str(exc) or type(exc).__name__) from exc
    except BaseException:
        _close(wire.sock)
        raise
    return Upstream(wire.sock, reply + wire.rest(), label)


def connect(address: Address, timeout: float) -> socket.socket:
    """A TCP connection to a numeric address within ``timeout`` (PeerError at "connect")."""
    ip = normalize_ip(address.host)
    if ip is None:
        raise PeerError("connect", f"{address.host!r} is not a numeric address")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((ip, address.port))
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keep_alive(sock)
    except OSError as exc:
        sock.close()
        raise PeerError("connect", _describe(exc, timeout)) from exc
    return sock


def _describe(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {timeout} s"
    return exc.strerror or str(exc) or type(exc).__name__


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


# -- the dialogues ---------------------------------------------------------------------------


def _mesh_dialogue(dialer: Dialer, login: Login, target: MeshNode) -> Dialogue:
    """A fresh assertion per dial: a home node that saw one (and failed) would call the
    next a replay."""
    module = peer_imap if login.service == "imap" else peer_pop3
    return lambda wire: module.mesh_login(
        wire, dialer, login, target, _assert(dialer, login, target)
    )


def _assert(dialer: Dialer, login: Login, target: MeshNode) -> bytes:
    assert dialer.key is not None
    return assertion.issue(
        dialer.key,
        user=login.account.login,
        origin=dialer.identity.name,
        target=target.name,
        service=login.service,
        client_ip=login.client_ip,
        client_port=login.client_port,
        session=login.session,
        hop=1,
        now=time.time(),
        nonce=assertion.new_nonce(),
    )


def _foreign_dialogue(dialer: Dialer, login: Login, target: ForeignHost) -> Dialogue:
    password = clear_password(login)
    module = peer_imap if login.service == "imap" else peer_pop3
    return lambda wire: module.foreign_login(wire, dialer, login, target, password)


def clear_password(login: Login) -> str:
    """The password a foreign server needs: the client's, else a stored clear one."""
    if isinstance(login.credentials, PlainCredentials):
        return login.credentials.password
    stored = login.account.secrets.clear_for(login.service)
    if stored is None:
        raise MechanismUnusable(
            detail=f"{login.account.login!r}: a foreign login needs the clear password",
            text="A foreign login needs the clear password: use LOGIN or PLAIN.",
        )
    return stored
