"""One client session: the pump between the socket and the protocol core, and what follows.

Stages (named in the log when something fails): ``tls`` (implicit-TLS handshake),
``prelogin`` (the core's conversation), ``starttls``, ``auth``, ``route``, ``exec``,
``relay``.  The pre-login phase has an absolute deadline (``limits.login_timeout``) that
bounds every read, write and handshake; authentication and the failed-login delay are not
interrupted by it, but the next read after them is.

Every session ends with one summary line (``log.session_summary``).  An unexpected error
is caught here, logged with its stage and answered ``[UNAVAILABLE]`` / ``[SYS/TEMP]`` when the
client still waits for an answer; it never reaches the server.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import traceback
from collections.abc import Callable
from time import monotonic

import gevent
from gevent import Greenlet, Timeout

from meshproxy import auth, courier, log, route
from meshproxy.account import Account
from meshproxy.credentials import MeshCredentials
from meshproxy.errors import AuthFailed, MeshproxyError, TempFail
from meshproxy.io import inbound, local, peer, tls
from meshproxy.io.relay import Relay, RelayResult, start_relay
from meshproxy.io.state import Core, Listener, Shared
from meshproxy.io.wire import Login
from meshproxy.protocol import NEED_DATA, LoginAttempt, StartTLS

_log = log.get("session")
RECV_SIZE = 16384
GRACE = 5.0
"""Seconds allowed for a last write (BYE, timeout notice) after the deadline or a failure."""


class ServerShutdown(gevent.GreenletExit):  # type: ignore[misc]
    """Thrown into a session by the server when the daemon stops."""


class _DeadlineError(Exception):
    """The pre-login deadline (or a grace period) ran out."""


class Session:
    """One accepted connection, from greeting to hand-off or close."""

    def __init__(
        self, shared: Shared, listener: Listener, sock: socket.socket, address: tuple[str, int]
    ) -> None:
        self.shared = shared
        self.listener = listener
        self.sock = sock
        self.ip = courier.plain_ip(str(address[0]))
        self.port = int(address[1])
        self.local = _local_address(sock)
        self.id = secrets.token_hex(4)
        self.started = monotonic()
        self.deadline = self.started + shared.config.limits.login_timeout
        self.stage = "accept"
        self.core: Core | None = None
        self.pending = False  # a LoginAttempt is not answered yet
        self.shielded = False  # starting a child: do not interrupt
        self.stop_requested = False
        self.greenlet: Greenlet | None = None
        self.relay: Relay | None = None  # set once the session is relayed without a greenlet
        self.on_end: Callable[[], None] = _nothing  # the server's bookkeeping, run once at the end
        self.summary = log.Summary(self.id, log.client(self.ip, self.port), listener.name)

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        """The session up to its hand-off; never raises (ServerShutdown included).

        A relayed session outlives this call: its relay runs on watchers, with no greenlet,
        and ``_finish`` runs when the relay ends.
        """
        self.greenlet = gevent.getcurrent()
        try:
            self._run()
        except ServerShutdown:
            self._shutdown_reply()
        except _DeadlineError:
            self._timed_out()
        except OSError as exc:
            self.summary.reason = f"connection error at {self.stage}: {exc.strerror or exc}"
        except Exception as exc:
            self._crashed(exc)
        finally:
            if self.relay is None:
                self._finish()

    def _finish(self) -> None:
        self._close()
        log.session_summary(_log, self.summary, monotonic() - self.started)
        on_end, self.on_end = self.on_end, _nothing
        on_end()

    def interrupt(self) -> None:
        """Server shutdown: BYE to a pre-login client, end a relay; never cut a child's start."""
        if self.stop_requested:
            return
        self.stop_requested = True
        if self.relay is not None:
            self.relay.stop("server shutdown")
        elif not self.shielded and self.greenlet is not None:
            self.greenlet.kill(ServerShutdown, block=False)

    def _run(self) -> None:
        if self.listener.implicit_tls:
            self.stage = "tls"
            self.sock = tls.handshake(self.sock, self._tls_context(), self._remaining())
        self.stage = "prelogin"
        self.core = self.listener.make_core()
        while not self._step(self.core):
            pass

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- the pump ----------------------------------------------------------------------------

    def _step(self, core: Core) -> bool:
        """Take one event, send what the core queued, act; True when the session is over."""
        event = core.next_event()
        self._flush(core)
        if event is NEED_DATA:
            data = self._recv()
            self.summary.bytes_in += len(data)
            core.receive_data(data)
            return False
        if isinstance(event, StartTLS):
            self._starttls(core)
            return False
        if isinstance(event, LoginAttempt):
            return self._login(core, event)
        self.summary.reason = event.reason or "closed"
        return True

    def _recv(self) -> bytes:
        with Timeout(self._remaining(), _DeadlineError):
            return self.sock.recv(RECV_SIZE)

    def _flush(self, core: Core, seconds: float | None = None) -> None:
        data = core.data_to_send()
        if not data:
            return
        with Timeout(self._remaining() if seconds is None else seconds, _DeadlineError):
            self.sock.sendall(data)
        self.summary.bytes_out += len(data)

    def _remaining(self) -> float:
        remaining = self.deadline - monotonic()
        if remaining <= 0:
            raise _DeadlineError
        return remaining

    def _tls_context(self) -> ssl.SSLContext:
        if self.shared.tls is None:
            raise RuntimeError("TLS requested but tls.cert is not configured")
        return self.shared.tls

    def _starttls(self, core: Core) -> None:
        self.stage = "starttls"
        self.sock = tls.handshake(self.sock, self._tls_context(), self._remaining())
        core.tls_started()
        self.stage = "prelogin"

    # -- login -------------------------------------------------------------------------------

    def _login(self, core: Core, event: LoginAttempt) -> bool:
        """Check the credentials and hand over; False when the client may try again."""
        self.pending = True
        credentials = event.credentials
        self.summary.user = credentials.authcid
        self.stage = "auth"
        if isinstance(credentials, MeshCredentials):
            return self._mesh_login(core, event, credentials)
        try:
            account = auth.authenticate(
                self.shared.source,
                credentials,
                service=self.listener.service,
                secure=core.secure,
                default_options=self.shared.config.auth.default_options,
            )
        except MeshproxyError as error:
            self._auth_refused(core, error, credentials.mechanism)
            return False
        self.summary.user = account.login
        self.stage = "route"
        decision = route.decide(account, proxy=self.listener.proxy, me=self.shared.identity)
        if isinstance(decision, route.Refuse):
            return self._refuse(core, TempFail(detail=f"route: {decision.reason}"))
        if isinstance(decision, route.Peer):
            return self._proxy(core, event, account, decision.hosts)
        if decision.note == route.NO_MAILHOST:
            _log.warning(
                "session %s: proxying is on but %s has no mailhost; serving it here",
                self.id,
                log.field(account.login),
            )
        return self._hand_off(core, event, account, (self.ip, self.port))

    def _mesh_login(self, core: Core, event: LoginAttempt, credentials: MeshCredentials) -> bool:
        """Home node: a peer vouches for the user; serve the account for the real client."""
        try:
            account, origin = inbound.accept(self.shared, self.listener, credentials, self.id)
        except TempFail as error:
            self.stage = "mesh"
            return self._refuse(core, error)
        except MeshproxyError as error:
            self._auth_refused(core, error, credentials.mechanism)
            return False
        self.summary.user = account.login
        self.summary.origin = f"{origin.origin}/{origin.session}"
        return self._hand_off(core, event, account, (origin.client_ip, origin.client_port))

    def _proxy(
        self, core: Core, event: LoginAttempt, account: Account, hosts: tuple[str, ...]
    ) -> bool:
        """Front node: log in on the account's home (or a foreign server) and relay."""
        self.stage = "dial"
        login = Login(
            self.listener.service,
            event.tag,
            account,
            event.credentials,
            self.id,
            self.ip,
            self.port,
        )
        try:
            upstream = peer.open_upstream(self.shared.dialer, login, hosts)
        except MeshproxyError as error:
            return self._refuse(core, error)
        if upstream is None:
            return self._hand_off(core, event, account, (self.ip, self.port))
        self.pending = False
        self.summary.decision = upstream.label
        try:
            self.stage = "relay"
            _send(self.sock, upstream.reply, self.shared.config.limits.idle_timeout)
            self.summary.bytes_out += len(upstream.reply)
            _send(upstream.sock, core.trailing_data, self.shared.config.limits.idle_timeout)
            self.summary.bytes_in += len(core.trailing_data)
        except BaseException:
            upstream.sock.close()
            raise
        self._relay(upstream.sock, upstream.label)
        return True

    def _auth_refused(self, core: Core, error: MeshproxyError, mechanism: str) -> None:
        reason = f"{type(error).__name__}: {error.detail or error.text}"
        if isinstance(error, TempFail):
            _log.warning(
                "session %s account source failure for user %s: %s",
                self.id,
                log.field(self.summary.user),
                log.field(error.detail),
            )
        else:
            log.failed_login(
                _log,
                session=self.id,
                client=self.summary.client,
                user=self.summary.user,
                mechanism=mechanism,
                reason=reason,
            )
        if isinstance(error, AuthFailed):
            gevent.sleep(self.shared.config.auth.failure_delay)
        self._refuse(core, error)

    def _refuse(self, core: Core, error: MeshproxyError) -> bool:
        if isinstance(error, TempFail) and self.stage != "auth":
            _log.warning(
                "session %s failed at stage %s: %s", self.id, self.stage, log.field(error.detail)
            )
        core.login_failed(error)
        self.pending = False
        self.summary.decision = "refused"
        self.stage = "prelogin"
        return False

    def _hand_off(
        self, core: Core, event: LoginAttempt, account: Account, client: tuple[str, int]
    ) -> bool:
        """Exec Courier; ``client`` is the real client (from the mesh login on a home node)."""
        self.summary.decision = "local"
        self.stage = "exec"
        target = courier.Session(
            service=self.listener.service,
            remote_ip=client[0],
            remote_port=client[1],
            local_ip=self.local[0],
            local_port=self.local[1],
            tls=core.secure,
            tag=event.tag,
            utf8=bool(getattr(core, "utf8", False)),
        )
        spec = courier.exec_spec(self.shared.courier, self.shared.config, account, target)
        child = local.Child(self.listener.program, self.id)
        self.shielded = True
        try:
            launched = local.launch(
                self.shared.launcher,
                spec,
                self.sock,
                trailing=core.trailing_data,
                child=child,
                peer=client,
            )
        except TempFail as error:
            return self._refuse(core, error)
        finally:
            self.shielded = False
        self.pending = False
        self.summary.pid = launched.pid
        if launched.pair is None:
            self.summary.decision = "local-fd"
            self.summary.reason = f"handed off to {child.label}"
            return True
        self.summary.decision = "local-relay"
        self._relay(launched.pair, child.label)
        return True

    def _relay(self, pair: socket.socket, label: str) -> None:
        """Start relaying client <-> ``pair``; the session ends in ``_relayed``."""
        if self.stop_requested:
            pair.close()
            raise ServerShutdown
        self.stage = "relay"
        self.relay = start_relay(
            self.sock,
            pair,
            idle_timeout=self.shared.config.limits.idle_timeout,
            names=("client", label),
            on_done=lambda result: self._relayed(pair, result),
        )
        self.core = None  # the pre-login core's buffers are not needed while relaying
        self.greenlet = None

    def _relayed(self, pair: socket.socket, result: RelayResult) -> None:
        with contextlib.suppress(OSError):
            pair.close()
        self.summary.bytes_in += result.a_to_b
        self.summary.bytes_out += result.b_to_a
        self.summary.reason = result.reason
        self._finish()

    # -- endings -----------------------------------------------------------------------------

    def _timed_out(self) -> None:
        self.summary.reason = f"login timeout at {self.stage}"
        if self.core is not None and self.stage == "prelogin":
            self.core.shutdown("Login timeout")
            self._last_words(self.core)

    def _shutdown_reply(self) -> None:
        self.summary.reason = f"server shutdown at {self.stage}"
        if self.core is None or self.stage == "relay":
            return
        if self.pending:
            self.core.login_failed(TempFail(detail="server shutdown"))
        self.core.shutdown("Server shutting down")
        self._last_words(self.core)

    def _crashed(self, exc: Exception) -> None:
        self.summary.reason = f"failed at stage {self.stage}"
        _log.error(
            "session %s failed at stage %s: %s: %s",
            self.id,
            self.stage,
            type(exc).__name__,
            log.field(exc),
        )
        frames = traceback.format_tb(exc.__traceback__)
        _log.debug("session %s failure trace: %s", self.id, " | ".join(f.strip() for f in frames))
        if self.core is None or self.stage == "relay":
            return
        try:
            if self.pending:
                self.core.login_failed(TempFail(detail="internal error"))
            else:
                self.core.shutdown("Internal server error")
        except Exception as again:  # the core itself may be what failed: no reply is possible
            _log.error(
                "session %s: no reply after the failure: %s: %s",
                self.id,
                type(again).__name__,
                log.field(again),
            )
            return
        self._last_words(self.core)

    def _last_words(self, core: Core) -> None:
        """A best-effort final write, bounded by GRACE."""
        with contextlib.suppress(OSError, _DeadlineError):
            self._flush(core, GRACE)


def _send(sock: socket.socket, data: bytes, seconds: float) -> None:
    """One bounded write (a socket timeout: ``OSError`` when it runs out)."""
    if not data:
        return
    sock.settimeout(seconds)
    try:
        sock.sendall(data)
    finally:
        sock.settimeout(None)


def _nothing() -> None:
    return None


def _local_address(sock: socket.socket) -> tuple[str, int]:
    """The address the client reached (the listener may be bound to a wildcard)."""
    host, port = sock.getsockname()[:2]
    return courier.plain_ip(str(host)), int(port)
