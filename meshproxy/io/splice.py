"""Pipes for ``os.splice``, lent to relays only while bytes are in flight.

Between two plaintext sockets the relay moves bytes socket -> pipe -> socket with
``os.splice`` and never copies them through Python.  A pipe is borrowed from the pool when a
read watcher fires and given back as soon as it is empty again, so an idle session holds no pipe
(relay-findings.md: 0.8 KiB per idle session, 1.03-1.20 of direct throughput with 1 MiB pipes).
Only a direction whose receiver is slow keeps its pipe until the receiver drains it.

The pool keeps at most ``keep`` empty pipes for reuse and lends at most ``limit`` at a time
(2 fds each); past that, ``get`` answers None and the relay copies through its shared buffer
instead.  Pipes are non-blocking and close-on-exec (Courier children never inherit them).
The pool belongs to the thread that runs the gevent hub; nothing here yields.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from gevent.monkey import get_original

PIPE_SIZE = 1 << 20
"""Requested pipe capacity (``F_SETPIPE_SZ``); the kernel may grant less."""

AVAILABLE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if AVAILABLE else 0

_close = get_original("os", "close")
"""The real close(2): gevent's patched ``os.close`` defers the close to the next loop
iteration (it guards fds that may have watchers); a pool pipe never has one."""


class Pipe:
    """One pipe: read end, write end, capacity in bytes."""

    __slots__ = ("read", "size", "write")

    def __init__(self, read: int, write: int, size: int) -> None:
        self.read = read
        self.write = write
        self.size = size

    def close(self) -> None:
        for fd in (self.read, self.write):
            with contextlib.suppress(OSError):
                _close(fd)


class PipePool:
    """Empty pipes for reuse; see the module docstring."""

    def __init__(self, keep: int = 8, limit: int = 256, size: int = PIPE_SIZE) -> None:
        self.keep = keep
        self.limit = limit
        self.size = size
        self.idle: list[Pipe] = []
        self.lent = 0

    def get(self) -> Pipe | None:
        """An empty pipe, or None (no splice support, the limit reached, out of fds)."""
        if not AVAILABLE or self.lent >= self.limit:
            return None
        if self.idle:
            pipe = self.idle.pop()
        else:
            try:
                pipe = _new_pipe(self.size)
            except OSError:
                return None
        self.lent += 1
        return pipe

    def put(self, pipe: Pipe) -> None:
        """Give back a pipe that holds no bytes."""
        self.lent -= 1
        if len(self.idle) < self.keep:
            self.idle.append(pipe)
        else:
            pipe.close()

    def discard(self, pipe: Pipe) -> None:
        """Give back a pipe that may still hold bytes (the relay ended): close it."""
        self.lent -= 1
        pipe.close()

    def close_idle(self) -> None:
        """Close the pipes kept for reuse (tests count fds; a daemon may trim at quiet times)."""
        while self.idle:
            self.idle.pop().close()


def _new_pipe(size: int) -> Pipe:
    read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # Unprivileged processes may be refused big pipes (fs.pipe-max-size, pipe-user-pages):
        # keep the default capacity then.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, size)
        granted = fcntl.fcntl(write, fcntl.F_GETPIPE_SZ)
    except OSError:
        _close(read)
        _close(write)
        raise
    return Pipe(read, write, granted)


POOL = PipePool()
"""The process's pool, used by every relay."""
