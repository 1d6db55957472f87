"""Relay bytes between two connected sockets with no greenlet and no buffer while idle.

``start_relay(a, b, idle_timeout=..., on_done=...)`` returns a ``Relay`` at once; the relay
runs from the gevent hub on io watchers and calls ``on_done(RelayResult)`` exactly once, from
the hub, when it ends.  ``relay(a, b, idle_timeout=...)`` is the blocking form (start_relay and
wait).  The byte moving lives in ``io/relay_bytes.py``, the splice pipe pool in
``io/splice.py``.  Design (measured in relay-findings.md, figures in docs/performance.md):

* An idle session holds two read watchers on the raw fds and one timer: no greenlet, no buffer,
  no pipe.  A watcher callback reads into ONE buffer shared by every relay (safe: nothing
  yields between the read and the write), writes what the other side takes without blocking,
  and only when that side is slow copies the unsent tail into a per-direction pending buffer,
  arms a write watcher and stops reading that direction until the tail is drained
  (backpressure: at most one buffer's worth, 256 KiB, is held per slow direction).
* Between two plaintext sockets, a streaming direction (a read filled the buffer) moves bytes
  through a pipe with ``os.splice``, never through Python; the pipe is borrowed from
  ``splice.POOL`` only while bytes are in flight (``io/splice.py``).  Small messages (IMAP
  commands and replies) take the copy path, which costs less per round trip.
* A TLS side (``ssl.SSLSocket``, TLS terminated in this process) is read and written without
  blocking (``SSLWantReadError``/``SSLWantWriteError`` select the watcher to wait on); a read
  goes on until the TLS layer has nothing buffered, since decrypted bytes held by OpenSSL
  do not wake the fd watcher.
* EOF from one side half-closes the other (``shutdown(SHUT_WR)``) and the other direction goes
  on until it ends too.  A TLS side cannot be half-closed (``SSLSocket.shutdown`` drops the TLS
  layer), so EOF towards a TLS side ends the relay.  An error on either side ends both.
* ``idle_timeout``: no byte moved either way for that long ends the relay (reason ``idle``, or
  ``<name> stalled`` when that side stopped taking bytes).  One timer per session, re-armed
  lazily: when it fires it compares the last-activity time and re-arms for the remainder.

Ownership: the relay never closes the sockets it is given.  While it runs it sets both fds
non-blocking (a TLS side: ``settimeout(0.0)``) and restores the previous mode when it ends, after
stopping every watcher.  The caller closes both sockets after ``on_done`` (or after ``stop()``,
which stops the watchers before it returns); closing them while the relay runs is an error.
Everything here runs in the thread of the gevent hub; callbacks never raise into the hub.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any

import gevent
from gevent.event import Event

from meshproxy import log
from meshproxy.io import splice
from meshproxy.io.relay_bytes import NOTHING, READ, WRITE, Direction, Mover, Side

_log = log.get("relay")


@dataclass(frozen=True)
class RelayResult:
    a_to_b: int
    b_to_a: int
    reason: str


def start_relay(
    a: socket.socket,
    b: socket.socket,
    *,
    idle_timeout: float,
    names: tuple[str, str] = ("a", "b"),
    on_done: Callable[[RelayResult], None],
    use_splice: bool = True,
) -> Relay:
    """Relay a<->b from the hub; returns at once.  See the module docstring."""
    return Relay(
        a, b, idle_timeout=idle_timeout, names=names, on_done=on_done, use_splice=use_splice
    )


def relay(
    a: socket.socket,
    b: socket.socket,
    *,
    idle_timeout: float,
    names: tuple[str, str] = ("a", "b"),
) -> RelayResult:
    """Relay a<->b and wait until it ends.  If the waiting greenlet is killed, the relay stops
    (reason ``stopped``) before the exception propagates, so the caller may close both sockets."""
    finished = Event()
    running = start_relay(
        a, b, idle_timeout=idle_timeout, names=names, on_done=lambda _result: finished.set()
    )
    try:
        finished.wait()
    finally:
        running.stop("stopped")
    assert running.result is not None
    return running.result


class Relay(Mover):
    """One running relay; ``result`` is set when it has ended."""

    __slots__ = ("_closed", "_idle", "_loop", "_on_done", "_timer", "result")

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        *,
        idle_timeout: float,
        names: tuple[str, str],
        on_done: Callable[[RelayResult], None],
        use_splice: bool,
    ) -> None:
        self.result: RelayResult | None = None
        self._sides = (Side(a, names[0]), Side(b, names[1]))
        plain = use_splice and splice.AVAILABLE and not any(s.tls for s in self._sides)
        self._dirs = (Direction(0, plain), Direction(1, plain))
        self._idle = idle_timeout
        self._on_done = on_done
        self._closed = ""  # "<name> closed" once the first EOF is seen
        self._loop: Any = gevent.get_hub().loop
        for side in self._sides:
            if side.tls:
                side.saved = side.sock.gettimeout()
                side.sock.settimeout(0.0)
            else:
                side.saved = os.get_blocking(side.fd)
                os.set_blocking(side.fd, False)
            side.reader = self._loop.io(side.fd, 1)
        self._sync()
        self._loop.update_now()
        self._last = monotonic()
        self._timer: Any = None
        self._arm_timer(idle_timeout)
        for side, direction in zip(self._sides, self._dirs, strict=True):
            # Decrypted bytes already buffered by OpenSSL (read ahead of the relay's start)
            # do not make the fd readable.
            if side.tls and side.sock.pending():
                self._schedule(direction)

    def stop(self, reason: str = "stopped") -> None:
        """End the relay now (daemon shutdown): every watcher is stopped when this returns;
        ``on_done`` still follows from the hub.  Does nothing if the relay has already ended."""
        self._end(reason)

    # -- events ------------------------------------------------------------------------------

    def _ready(self, want: int) -> None:
        """An fd is readable/writable: run the directions waiting for it."""
        try:
            for direction in self._dirs:
                if direction.want == want and self.result is None:
                    self._pump(direction)
            self._sync()
        except Exception as exc:
            self._crash(exc)

    def _resume(self, direction: Direction) -> None:
        """A scheduled continuation: the TLS layer may hold more than the fd shows."""
        direction.later = None
        try:
            if self.result is None:
                self._pump(direction)
                self._sync()
        except Exception as exc:
            self._crash(exc)

    def _on_timer(self) -> None:
        try:
            if self.result is not None:
                return
            left = self._idle - (monotonic() - self._last)
            if left > 0:
                self._arm_timer(left)
                return
            stalled = [d for d in self._dirs if d.piped or d.pending is not None]
            self._end(f"{self._sides[stalled[0].dst].name} stalled" if stalled else "idle")
        except Exception as exc:
            self._crash(exc)

    # -- moving bytes ------------------------------------------------------------------------

    # -- ends --------------------------------------------------------------------------------

    def _eof(self, direction: Direction) -> None:
        """``src`` reached EOF: half-close ``dst``, or end the relay."""
        direction.want = NOTHING
        direction.eof = False
        src, dst = self._sides[direction.src], self._sides[direction.dst]
        if not self._closed:
            self._closed = f"{src.name} closed"
        if self._dirs[1 - direction.index].want == NOTHING or dst.tls:
            self._end(self._closed)
            return
        try:
            dst.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._end(self._closed)

    def _error(self, direction: Direction, exc: OSError) -> None:
        src, dst = self._sides[direction.src].name, self._sides[direction.dst].name
        self._end(f"{src}->{dst} error: {exc.strerror or exc}")

    def _crash(self, exc: Exception) -> None:
        names = "<->".join(side.name for side in self._sides)
        _log.error("relay %s failed: %s: %s", names, type(exc).__name__, log.field(exc))
        with contextlib.suppress(Exception):
            self._end(f"error: {type(exc).__name__}: {exc}")

    def _end(self, reason: str) -> None:
        if self.result is not None:
            return
        self.result = RelayResult(self._dirs[0].count, self._dirs[1].count, reason)
        _close_watcher(self._timer)
        self._timer = None
        for side in self._sides:
            _close_watcher(side.reader)
            _close_watcher(side.writer)
            side.reader = side.writer = None
        for direction in self._dirs:
            direction.want = NOTHING
            direction.pending = None
            _close_watcher(direction.later)
            direction.later = None
            if direction.pipe is not None:
                if direction.piped:
                    splice.POOL.discard(direction.pipe)
                else:
                    splice.POOL.put(direction.pipe)
                direction.pipe = None
        for side in self._sides:  # only now: the watchers are stopped
            with contextlib.suppress(OSError, ValueError):
                if side.tls:
                    side.sock.settimeout(side.saved)
                else:
                    os.set_blocking(side.fd, side.saved)
        self._loop.run_callback(self._deliver)

    def _deliver(self) -> None:
        assert self.result is not None
        try:
            self._on_done(self.result)
        except Exception as exc:
            _log.error("relay on_done failed: %s: %s", type(exc).__name__, log.field(exc))

    # -- watchers ----------------------------------------------------------------------------

    def _sync(self) -> None:
        """Start exactly the watchers some direction waits for."""
        if self.result is not None:
            return
        wants = (self._dirs[0].want, self._dirs[1].want)
        for index, side in enumerate(self._sides):
            read, write = index * 2 + READ, index * 2 + WRITE
            _arm(side.reader, read in wants, self._ready, read)
            if write in wants and side.writer is None:
                side.writer = self._loop.io(side.fd, 2)
            if side.writer is not None:
                _arm(side.writer, write in wants, self._ready, write)

    def _schedule(self, direction: Direction) -> None:
        direction.want = NOTHING
        if direction.later is None:
            direction.later = self._loop.run_callback(self._resume, direction)

    def _arm_timer(self, seconds: float) -> None:
        _close_watcher(self._timer)
        self._timer = self._loop.timer(seconds)
        self._timer.start(self._on_timer)


def _arm(watcher: Any, on: bool, callback: Callable[[int], None], want: int) -> None:
    if on and not watcher.active:
        watcher.start(callback, want)
    elif not on and watcher.active:
        watcher.stop()


def _close_watcher(watcher: Any) -> None:
    if watcher is not None:
        watcher.stop()
        watcher.close()
