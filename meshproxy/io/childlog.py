"""Courier children's stderr, copied into meshproxy's log.

Every child writes to the same pipe; one greenlet reads it with a single io watcher and logs
each line.  Courier's lines name the client (``ip=[...], port=[...]``), which is how a line is
tied back to its session: ``imapd[3fa2c1d0]: INFO: LOGIN, user=..., ip=[...]``.  Lines that name
no known client keep a plain ``courier:`` prefix.

A child's last lines may still be in the pipe when its exit is reported, so a finished child's
name is forgotten only once the pipe has been read empty after its exit.

When the daemon exits while children live on (raw hand-offs survive a restart), the read end
is handed to a ``cat`` in its own session writing to meshproxy's stderr, so that a surviving
child never writes into a pipe nobody reads (SIGPIPE would kill it).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess

import gevent
from gevent import Greenlet

from meshproxy import log

_log = log.get("courier")
_PEER = re.compile(rb"ip=\[([^\]]*)\], port=\[(\d+)\]")
_MAX_LINE = 2048
_READ = 65536
CAT = "/bin/cat"


class ChildLog:
    """The shared stderr pipe of all children and its reader."""

    def __init__(self) -> None:
        self._read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._read_fd, False)
        self._names: dict[tuple[str, int], str] = {}
        self._finished: list[tuple[str, int]] = []
        self._pending = b""
        self._reader: Greenlet | None = gevent.spawn(self._run)

    def attach(self, peer: tuple[str, int], name: str) -> None:
        """Lines naming client ``peer`` are logged as ``name``."""
        self._names[peer] = name

    def detach(self, peer: tuple[str, int]) -> None:
        """The child for ``peer`` exited; forget it once its output is read."""
        self._finished.append(peer)

    def _run(self) -> None:
        hub = gevent.get_hub()
        watcher = hub.loop.io(self._read_fd, 1)
        try:
            while True:
                try:
                    chunk = os.read(self._read_fd, _READ)
                except BlockingIOError:
                    self._forget_finished()
                    hub.wait(watcher)
                    continue
                if not chunk:
                    return
                self._consume(chunk)
        finally:
            watcher.close()

    def _forget_finished(self) -> None:
        for peer in self._finished:
            self._names.pop(peer, None)
        self._finished.clear()

    def _consume(self, chunk: bytes) -> None:
        data = self._pending + chunk
        *lines, rest = data.split(b"\n")
        for line in lines:
            self._emit(line)
        if len(rest) > _MAX_LINE:
            self._emit(rest)
            rest = b""
        self._pending = rest

    def _emit(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line:
            return
        name = "courier"
        match = _PEER.search(line)
        if match:
            peer = (match.group(1).decode("ascii", "replace"), int(match.group(2)))
            name = self._names.get(peer, name)
        text = log.field(line.decode("utf-8", "replace"))
        if line.startswith((b"ERR:", b"ALERT:", b"CRIT:")):
            _log.warning("%s: %s", name, text)
        else:
            _log.info("%s: %s", name, text)

    def close(self, *, keep_draining: bool) -> None:
        """Stop reading; with ``keep_draining``, leave the pipe to a ``cat`` that outlives us."""
        if self._reader is not None:
            self._reader.kill()
            self._reader = None
        if self._pending:
            self._emit(self._pending)
            self._pending = b""
        if keep_draining:
            _start_drain(self._read_fd)
        for fd in (self._read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise


def _start_drain(read_fd: int) -> None:
    try:
        subprocess.Popen(
            [CAT],
            stdin=read_fd,
            stdout=2,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:
        _log.warning("cannot keep a reader for surviving children's stderr: %s", exc)
    else:
        _log.info("surviving children's stderr now goes to meshproxy's stderr unprefixed")
