"""Moving a relay's bytes: the per-side and per-direction records and the read/write/splice
steps (see ``io/relay.py`` for the design, the API and the lifecycle).

``Mover`` is the half of ``relay.Relay`` that moves bytes; it never yields, and it reports the
ends it meets through ``_eof``, ``_error`` and ``_schedule``, which ``Relay`` implements.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from time import monotonic
from typing import Any

import gevent.ssl

from meshproxy.io import splice

BUFFER_SIZE = 256 * 1024
"""The buffer shared by every relay of the process (copies, TLS records)."""
SMALL = 64 * 1024
"""Splice only while bytes stream (a read filled the buffer) and stop when a splice moves less
than this: for small messages two plain syscalls are cheaper (bench/latency.py)."""
MAX_PASSES = 4
"""Buffers (or pipes) moved per event before other sessions get their turn."""

_buffer = bytearray(BUFFER_SIZE)
_view = memoryview(_buffer)

READ, WRITE = 0, 1
NOTHING = -1  # a direction's ``want``: side * 2 + event, or nothing (done, scheduled)


class Side:
    __slots__ = ("fd", "name", "reader", "saved", "sock", "tls", "writer")

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock: Any = sock  # socket.socket, ssl.SSLSocket or gevent's counterparts
        self.name = name
        self.fd = sock.fileno()
        if self.fd < 0:
            raise ValueError(f"relay: {name} socket is closed")
        self.tls = isinstance(sock, (ssl.SSLSocket, gevent.ssl.SSLSocket))
        self.saved: Any = None
        self.reader: Any = None
        self.writer: Any = None


class Direction:
    __slots__ = (
        "bulk",
        "count",
        "dst",
        "eof",
        "index",
        "later",
        "offset",
        "pending",
        "pipe",
        "piped",
        "splice",
        "src",
        "want",
    )

    def __init__(self, index: int, use_splice: bool) -> None:
        self.index = index
        self.src = index  # side 0 is a, side 1 is b
        self.dst = 1 - index
        self.count = 0
        self.want = index * 2 + READ
        self.eof = False  # TLS: EOF seen after the bytes still to deliver
        self.pending: bytes | None = None  # the unsent tail (copy path)
        self.offset = 0
        self.pipe: splice.Pipe | None = None
        self.piped = 0  # bytes in ``pipe``
        self.splice = use_splice  # both sides plaintext: splice when ``bulk``
        self.bulk = False  # the last read filled the buffer: bytes are streaming
        self.later: Any = None  # a scheduled continuation (TLS with more buffered)


class Mover:
    """Reads, writes and splices for ``Relay``; sets each direction's ``want``."""

    __slots__ = ("_dirs", "_last", "_sides")

    _dirs: tuple[Direction, Direction]
    _sides: tuple[Side, Side]
    _last: float

    def _pump(self, direction: Direction) -> None:
        """Drain what is pending, then move up to MAX_PASSES buffers; sets ``want``."""
        if (direction.piped or direction.pending is not None) and not self._flush(direction):
            return
        for _ in range(MAX_PASSES):
            if not self._move(direction):
                return
        if self._sides[direction.src].tls:
            self._schedule(direction)  # more may be buffered inside the TLS layer
        else:
            direction.want = direction.src * 2 + READ

    def _move(self, direction: Direction) -> bool:
        """Read once and write it on; True when a full buffer went through (read again)."""
        if direction.eof:
            self._eof(direction)
            return False
        if direction.bulk:
            pipe = direction.pipe or splice.POOL.get()
            if pipe is not None:
                direction.pipe = pipe
                return self._splice_in(direction, pipe)
        src = self._sides[direction.src]
        try:
            size, more = self._read_tls(direction, src) if src.tls else _read_plain(src)
        except OSError as exc:
            self._error(direction, exc)
            return False
        if size < 0:
            direction.want = direction.src * 2 + (WRITE if size == -2 else READ)
            return False
        if size == 0:
            self._eof(direction)
            return False
        self._last = monotonic()
        direction.bulk = direction.splice and size == BUFFER_SIZE
        sent = self._send(direction, _view[:size])
        if sent < 0:
            return False
        if sent < size:
            direction.pending = bytes(_view[sent:size])
            direction.offset = 0
            return False
        if not more:
            direction.want = direction.src * 2 + READ
        return more

    def _read_tls(self, direction: Direction, src: Side) -> tuple[int, bool]:
        """Read records until nothing is buffered: (size, more); size -1/-2: wants read/write."""
        size = 0
        while size < BUFFER_SIZE:
            try:
                got = src.sock.recv_into(_view[size:], BUFFER_SIZE - size)
            except ssl.SSLWantReadError:
                return (size or -1), False
            except ssl.SSLWantWriteError:
                return (size or -2), False
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                got = 0
            if got == 0:
                direction.eof = size > 0
                return size, size > 0
            size += got
        return size, True

    def _send(self, direction: Direction, data: memoryview) -> int:
        """Write ``data`` without blocking; bytes sent, or -1 when the relay ended.

        When not all went, ``want`` is set to wait for the receiving side."""
        dst = self._sides[direction.dst]
        sent = 0
        try:
            if dst.tls:
                # All or nothing (no partial writes); a retry must offer the same bytes,
                # which the pending tail does.
                sent = dst.sock.write(data)
            else:
                while sent < len(data):
                    sent += os.write(dst.fd, data[sent:])
        except ssl.SSLWantReadError:
            direction.want = direction.dst * 2 + READ
        except (BlockingIOError, ssl.SSLWantWriteError):
            direction.want = direction.dst * 2 + WRITE
        except OSError as exc:
            self._error(direction, exc)
            return -1
        direction.count += sent
        if sent:
            self._last = monotonic()
        return sent

    def _flush(self, direction: Direction) -> bool:
        """Write the pending tail or pipe; True when it is all gone."""
        if direction.piped:
            assert direction.pipe is not None
            return self._splice_out(direction, direction.pipe)
        assert direction.pending is not None
        tail = memoryview(direction.pending)[direction.offset :]
        sent = self._send(direction, tail)
        if sent < 0:
            return False
        if sent < len(tail):
            direction.offset += sent
            return False
        direction.pending = None
        return True

    def _splice_in(self, direction: Direction, pipe: splice.Pipe) -> bool:
        src = self._sides[direction.src]
        try:
            size = os.splice(src.fd, pipe.write, pipe.size, flags=splice.FLAGS)
        except BlockingIOError:
            self._give_back(direction, pipe)
            direction.want = direction.src * 2 + READ
            return False
        except OSError as exc:
            self._give_back(direction, pipe)
            if exc.errno != errno.EINVAL:
                self._error(direction, exc)
                return False
            direction.splice = direction.bulk = False  # an fd splice cannot handle: copy
            return self._move(direction)
        if size == 0:
            self._give_back(direction, pipe)
            self._eof(direction)
            return False
        self._last = monotonic()
        direction.piped = size
        direction.bulk = size >= SMALL
        if not self._splice_out(direction, pipe):
            return False
        if size < pipe.size:
            direction.want = direction.src * 2 + READ
            return False
        return True

    def _splice_out(self, direction: Direction, pipe: splice.Pipe) -> bool:
        dst = self._sides[direction.dst]
        while direction.piped:
            try:
                sent = os.splice(pipe.read, dst.fd, direction.piped, flags=splice.FLAGS)
            except BlockingIOError:
                direction.want = direction.dst * 2 + WRITE
                return False
            except OSError as exc:
                self._error(direction, exc)
                return False
            direction.piped -= sent
            direction.count += sent
            self._last = monotonic()
        self._give_back(direction, pipe)
        return True

    def _give_back(self, direction: Direction, pipe: splice.Pipe) -> None:
        direction.pipe = None
        splice.POOL.put(pipe)

    # -- implemented by Relay ------------------------------------------------------------------

    def _eof(self, direction: Direction) -> None:
        raise NotImplementedError

    def _error(self, direction: Direction, exc: OSError) -> None:
        raise NotImplementedError

    def _schedule(self, direction: Direction) -> None:
        raise NotImplementedError


def _read_plain(src: Side) -> tuple[int, bool]:
    """One read into the shared buffer: (size, full); size -1: would block."""
    try:
        size = os.readv(src.fd, [_view])
    except BlockingIOError:
        return -1, False
    return size, size == BUFFER_SIZE
