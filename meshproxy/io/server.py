"""The daemon: one gevent StreamServer per listener, connection caps, signals.

``serve(config, config_path)`` builds the shared state once (Courier settings, account source,
identity, TLS context, protocol settings per listener), starts every listener, logs one line
naming them all, and runs until SIGTERM or SIGINT.  Then it stops accepting, says BYE to
pre-login sessions, ends relays and returns 0.  Sessions handed to Courier as raw sockets live
in their own processes and sessions (``setsid``) and are left running.

Caps: ``limits.max_connections`` sessions at once (pre-login and relayed; a raw hand-off leaves
the count) and ``limits.max_per_ip`` per client address.  A client over a cap gets
``* BYE [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]`` (after the handshake on TLS listeners) and is
closed; it is never dropped silently.
"""

from __future__ import annotations

import signal
import socket
from collections import Counter
from time import monotonic
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from meshproxy import __version__, courier, log, mesh
from meshproxy.auth import BackendUnavailable, open_source
from meshproxy.config import Config, parse_address
from meshproxy.errors import MeshproxyError
from meshproxy.io import health, tls
from meshproxy.io.connection import Session
from meshproxy.io.local import Launcher
from meshproxy.io.state import Listener, Shared, listeners
from meshproxy.io.wire import Dialer, keep_alive
from meshproxy.mesh import assertion
from meshproxy.protocol import replies

if TYPE_CHECKING:
    from gevent.pywsgi import WSGIServer

    from meshproxy.io.consul import ConsulRunner

_log = log.get("server")
TURN_AWAY_TIMEOUT = 5.0
STOP_TIMEOUT = 8.0
BACKLOG = 1024
TOO_MANY = "Too many connections"


class _Gate:
    """Counts live sessions, in total and per client address."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.count = 0
        self.by_ip: Counter[str] = Counter()
        self.empty = Event()
        self.empty.set()

    def refuse(self, ip: str) -> str:
        """Why ``ip`` may not start a session now ("" if it may)."""
        if self.count >= self.total:
            return f"max_connections {self.total} reached"
        if self.by_ip[ip] >= self.per_ip:
            return f"max_per_ip {self.per_ip} reached"
        return ""

    def enter(self, ip: str) -> None:
        self.count += 1
        self.by_ip[ip] += 1
        self.empty.clear()

    def leave(self, ip: str) -> None:
        self.count -= 1
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]
        if self.count == 0:
            self.empty.set()


class Daemon:
    """The listeners and the handler they share."""

    def __init__(self, shared: Shared, specs: list[Listener]) -> None:
        self.shared = shared
        limits = shared.config.limits
        self.gate = _Gate(limits.max_connections, limits.max_per_ip)
        self.servers = [self._server(spec) for spec in specs]
        self.specs = specs
        self.draining = False

    def _server(self, spec: Listener) -> StreamServer:
        host, port = parse_address(spec.address, spec.service)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(BACKLOG)
        return StreamServer(listener, lambda sock, addr: self.handle(spec, sock, addr))

    def handle(self, spec: Listener, sock: socket.socket, address: tuple[str, int]) -> None:
        ip = courier.plain_ip(str(address[0]))
        why = self.gate.refuse(ip)
        if why:
            self._turn_away(spec, sock, ip, int(address[1]), why)
            return
        self.gate.enter(ip)
        # The session owns its socket and may outlive this handler (a relay runs on watchers),
        # but StreamServer closes the socket it passed in when the handler returns: detach.
        owned = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        keep_alive(owned)
        session = Session(self.shared, spec, owned, address)
        session.on_end = lambda: self._ended(session, ip)
        self.shared.sessions.add(session)
        session.run()

    def _ended(self, session: Session, ip: str) -> None:
        """A session is over: after its pre-login part, or when its relay ends."""
        self.shared.sessions.discard(session)
        self.gate.leave(ip)

    def _turn_away(self, spec: Listener, sock: socket.socket, ip: str, port: int, why: str) -> None:
        _log.warning(
            "refused client %s on %s: %s", log.client(ip, port), spec.name, f"{TOO_MANY} ({why})"
        )
        if spec.service == "imap":
            line = replies.imap_bye(f"[UNAVAILABLE] {TOO_MANY}")
        else:
            line = replies.pop3_err(f"[SYS/TEMP] {TOO_MANY}")
        try:
            with gevent.Timeout(TURN_AWAY_TIMEOUT):
                if spec.implicit_tls and self.shared.tls is not None:
                    sock = tls.handshake(sock, self.shared.tls, TURN_AWAY_TIMEOUT)
                sock.sendall(line)
        except (OSError, gevent.Timeout):
            pass
        finally:
            sock.close()

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def close(self) -> None:
        """Stop accepting (the first step of SIGTERM)."""
        if not self.draining:
            self.draining = True
            for server in self.servers:
                server.close()

    def stop(self, drain: float = 0.0) -> None:
        """Stop accepting, let sessions finish for up to ``drain`` seconds, interrupt the
        rest, wait for them (bounded)."""
        self.close()
        if drain > 0 and self.shared.sessions:
            _log.info("draining %d sessions for up to %g s", len(self.shared.sessions), drain)
            if self.gate.empty.wait(drain):
                _log.info("drained: every session ended")
        sessions = list(self.shared.sessions)
        for session in sessions:
            session.interrupt()
        deadline = monotonic() + STOP_TIMEOUT
        if not self.gate.empty.wait(STOP_TIMEOUT):
            _log.warning("%d sessions still running at exit", len(self.shared.sessions))
        for server in self.servers:
            server.stop(timeout=max(0.0, deadline - monotonic()))
        _log.info("stopped: %d sessions were interrupted", len(sessions))


def serve(config: Config, config_path: str) -> int:
    """Run the daemon until SIGTERM/SIGINT; the process exit status."""
    log.setup(config.log.level)
    try:
        shared, specs, consul = _build(config)
    except (MeshproxyError, BackendUnavailable, OSError, ImportError) as exc:
        _log.error("cannot start: %s", exc)
        return 1
    try:
        daemon = Daemon(shared, specs)
    except OSError as exc:
        _log.error("cannot listen: %s", exc)
        _release(shared)
        return 1
    try:
        endpoint = _health(shared, consul, daemon)
    except OSError as exc:
        _log.error("cannot listen on health.listen: %s", exc)
        _release(shared)
        return 1
    stop = Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    daemon.start()
    if consul is not None:
        consul.start(shared, specs)
    _log.info(
        "meshproxy %s node %s config %s listening on %s",
        __version__,
        shared.identity.name or "-",
        config_path,
        ", ".join(spec.name for spec in specs),
    )
    _log_mesh(shared)
    stop.wait()
    _log.info("signal received: shutting down")
    daemon.close()
    if consul is not None:
        consul.drain()
    daemon.stop(config.mesh.drain_timeout)
    if consul is not None:
        consul.stop()
    if endpoint is not None:
        endpoint.stop(timeout=1.0)
    for handler in handlers:
        handler.cancel()
    _release(shared)
    return 0


def _health(shared: Shared, consul: ConsulRunner | None, daemon: Daemon) -> WSGIServer | None:
    """The ``[health]`` endpoint, when configured."""
    if not shared.config.health.listen:
        return None
    snapshot = consul.snapshot if consul is not None else (lambda: None)
    return health.start(shared, snapshot, lambda: daemon.draining)


def _consul(config: Config, directory: mesh.Directory) -> ConsulRunner | None:
    """With ``[mesh] consul``: the runner, primed (identity and catalog, bounded)."""
    if not config.mesh.consul:
        return None
    from meshproxy.io import consul  # noqa: PLC0415 -- py-consul only when configured

    return consul.open_runner(directory)


def _release(shared: Shared) -> None:
    shared.launcher.shutdown()
    shared.source.close()
    shared.directory.close()


def _make_drivers_cooperative(config: Config) -> None:
    """libpq does its I/O in C, out of monkey patching's reach: give psycopg2 gevent's wait
    callback.  ldap3 and pymysql are pure Python and already cooperative."""
    if config.auth.source not in ("pgsql", "courier"):
        return
    from meshproxy.auth.pgsql import set_wait_callback  # noqa: PLC0415 -- only when used
    from meshproxy.io.pgwait import make_wait_callback  # noqa: PLC0415

    set_wait_callback(make_wait_callback(config.auth.pgsql.query_timeout))


def _build(config: Config) -> tuple[Shared, list[Listener], ConsulRunner | None]:
    _make_drivers_cooperative(config)
    settings = courier.load(config)
    context = tls.server_context(config.tls)
    directory = mesh.open_directory(config)
    consul = _consul(config, directory)
    identity = directory.whoami()
    key = assertion.load_key(config.mesh.key_file) if config.mesh.key_file else None
    shared = Shared(
        config=config,
        courier=settings,
        source=open_source(config),
        directory=directory,
        identity=identity,
        tls=context,
        launcher=Launcher(),
        dialer=_dialer(config, identity, directory, key),
        mesh_key=key,
        replay=assertion.ReplayCache(config.mesh.clock_skew) if key is not None else None,
    )
    return shared, list(listeners(config, settings, identity, tls=context is not None)), consul


def _dialer(
    config: Config, identity: mesh.Identity, directory: mesh.Directory, key: bytes | None
) -> Dialer:
    """The client-side TLS contexts are built once: loading a CA bundle is not cheap."""
    mesh_tls = tls.client_context(config.mesh.ca_file) if config.mesh.tls else None
    foreign_tls = None
    if config.foreign.tls != "none":
        foreign_tls = tls.client_context(config.foreign.ca_file, verify=config.foreign.verify)
    return Dialer(config, identity, directory, key, mesh_tls, foreign_tls)


def _log_mesh(shared: Shared) -> None:
    """Who this node is and where its peers are, as resolved at start."""
    config, identity = shared.config, shared.identity
    _log.info(
        "node %s names %s addresses %s%s; mesh logins %s",
        identity.name or "-",
        ",".join(sorted(identity.names)) or "-",
        ",".join(sorted(identity.addresses)) or "-",
        " (and all of loopback)" if identity.loopback else "",
        "accepted" if shared.mesh_key is not None else "off (no mesh.key_file)",
    )
    for name in config.mesh.peers:
        targets = [shared.directory.resolve(name, service) for service in ("imap", "pop3")]
        _log.info("peer %s: %s", name, "; ".join(_describe_target(t) for t in targets))


def _describe_target(target: mesh.Target) -> str:
    if isinstance(target, mesh.Unreachable):
        return f"unreachable ({target.reason})"
    if isinstance(target, mesh.SelfNode):
        return "this node"
    kind = "mesh" if isinstance(target, mesh.MeshNode) else "foreign"
    return f"{kind} " + ",".join(str(address) for address in target.addresses)
