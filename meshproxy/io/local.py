"""Hand a logged-in session to Courier's imapd/courierpop3d (courier-contract.md 2, 3, 8).

``Launcher`` is process-wide: it starts children from an ``ExecSpec``, reaps them through
gevent's child watchers (no greenlet per child) and copies their stderr into meshproxy's log
(one shared pipe, one reader greenlet; see ``io/childlog.py``).

``launch`` decides how the client reaches Courier:

* plaintext and nothing pipelined: the client socket itself becomes fd 0 and 1 of the child
  and the daemon closes its copy at once; the session then lives only in Courier's process.
* TLS, or bytes pipelined behind the login command: the child gets one end of a
  ``socketpair()``; the pipelined bytes are written into it first (Courier's own login stage
  loses them); the session then relays between the client and the pair (``io/relay.py``).

Children run in their own session (``setsid``), so a signal to meshproxy's process group does
not reach them and they outlive a daemon restart.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from meshproxy import log
from meshproxy.courier import ExecSpec
from meshproxy.errors import TempFail
from meshproxy.io.childlog import ChildLog

_log = log.get("local")


class HomeUnusableError(Exception):
    """Raised in the child when it cannot enter the home directory as the account's user.

    Module-level so the parent can unpickle it (gevent re-raises child exceptions).
    """


@dataclass(frozen=True)
class Child:
    """What the log needs to name a child: its program label and session id."""

    label: str
    session: str


@dataclass(frozen=True)
class Launched:
    """A started child; ``pair`` is the daemon's end of its socketpair (None: raw hand-off)."""

    pid: int
    pair: socket.socket | None


class Launcher:
    """Starts and reaps Courier children; owns the shared stderr pipe."""

    def __init__(self) -> None:
        self.log = ChildLog()
        self.live: dict[int, Child] = {}

    def start(self, spec: ExecSpec, fd: int, child: Child, peer: tuple[str, int]) -> int:
        """Exec ``spec`` with ``fd`` as stdin/stdout; the child's pid, or TempFail."""
        try:
            process = subprocess.Popen(
                list(spec.argv),
                stdin=fd,
                stdout=fd,
                stderr=self.log.write_fd,
                env=spec.env,
                cwd=spec.cwd,
                user=spec.uid,
                group=spec.gid,
                extra_groups=list(_groups(spec)),
                umask=spec.umask,
                preexec_fn=_child_setup(spec.limit_as),  # noqa: PLW1509 - no threads here
                start_new_session=True,
                restore_signals=True,
                close_fds=True,
            )
        except (OSError, subprocess.SubprocessError, HomeUnusableError, KeyError) as exc:
            raise TempFail(detail=f"exec {spec.argv[0]} in {spec.cwd}: {_describe(exc)}") from exc
        self.live[process.pid] = child
        self.log.attach(peer, f"{child.label}[{child.session}]")
        process.rawlink(lambda proc: self._exited(proc, peer))  # type: ignore[attr-defined]
        return int(process.pid)

    def _exited(self, process: subprocess.Popen[bytes], peer: tuple[str, int]) -> None:
        """Child watcher callback (runs in the hub): log the status and forget the child."""
        child = self.live.pop(process.pid, None)
        self.log.detach(peer)
        if child is None:
            return
        status = process.returncode
        level = _log.info if status else _log.debug
        level(
            "session %s %s pid %d exited with %s",
            child.session,
            child.label,
            process.pid,
            f"signal {-status}" if status < 0 else f"status {status}",
        )

    def shutdown(self) -> None:
        """The daemon exits: surviving children keep a logger, the reader stops."""
        self.log.close(keep_draining=bool(self.live))


def _groups(spec: ExecSpec) -> tuple[int, ...]:
    """``setgroups`` list: the spec's, else ``initgroups(system_user)``, never empty."""
    if spec.groups:
        return spec.groups
    if spec.system_user:
        return tuple(os.getgrouplist(spec.system_user, spec.gid))
    return (spec.gid,)


def _child_setup(limit_as: int | None) -> Callable[[], None]:
    """Runs in the child after setgroups/setgid/setuid, before exec."""

    def setup() -> None:
        try:
            # cwd was entered as root; authlib enters the home as the user: check we may.
            os.chdir(".")
        except OSError as exc:
            raise HomeUnusableError(
                f"uid {os.getuid()} cannot enter its home: {exc.strerror}"
            ) from None
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    return setup


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{name}"
    return str(exc) or type(exc).__name__


def launch(
    launcher: Launcher,
    spec: ExecSpec,
    client: socket.socket,
    *,
    trailing: bytes,
    child: Child,
    peer: tuple[str, int],
) -> Launched:
    """Start Courier for this session (exec failures raise ``TempFail``).

    Raw hand-off: the daemon's copy of ``client`` is closed and ``pair`` is None.  Otherwise
    ``pair`` is the daemon's end of the socketpair, already holding ``trailing``; the caller
    relays between ``client`` and it (``relay.relay``) and closes it.
    """
    if not trailing and not isinstance(client, ssl.SSLSocket):
        pid = launcher.start(spec, client.fileno(), child, peer)
        client.close()
        return Launched(pid, None)
    ours, theirs = socket.socketpair()
    try:
        try:
            pid = launcher.start(spec, theirs.fileno(), child, peer)
        finally:
            theirs.close()
        if trailing:
            ours.sendall(trailing)
    except BaseException:
        ours.close()
        raise
    return Launched(pid, ours)
