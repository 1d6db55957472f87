"""REFERENCE ONLY (bench): the previous relay, one greenlet per direction, kept unchanged from
meshproxy/io/relay.py before the watcher relay replaced it, so that bench/ can compare the two.

Relay bytes between two connected sockets until the session is over.

``relay(a, b, idle_timeout=...)`` copies both ways with one greenlet per direction and returns
the byte counts and why it ended.  Rules:

* EOF from one side half-closes the other (``shutdown(SHUT_WR)``) and the other direction goes
  on until it ends too.  A TLS socket cannot be half-closed (``SSLSocket.shutdown`` drops the
  TLS layer), so EOF towards a TLS side ends the whole relay.
* An error on either side, or a side that stops accepting bytes for ``idle_timeout``, ends
  both directions.
* ``idle_timeout`` counts from the last byte moved in either direction: a session where one
  side talks and the other listens is not idle.

The caller owns both sockets and closes them afterwards.  This is the simple design; a
watcher-based relay with no greenlet per idle session replaces it later (relay-findings.md).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from time import monotonic

import gevent
from gevent import Greenlet, Timeout

CHUNK = 65536


@dataclass(frozen=True)
class RelayResult:
    a_to_b: int
    b_to_a: int
    reason: str


class _ExpiredError(Exception):
    """A relay timer ran out (private to this module)."""


class _IdleError(Exception):
    """Nothing moved either way for ``idle_timeout``."""


@dataclass
class _State:
    idle_timeout: float
    names: tuple[str, str]
    counts: list[int] = field(default_factory=lambda: [0, 0])
    done: list[bool] = field(default_factory=lambda: [False, False])
    last: float = field(default_factory=monotonic)
    reason: str = ""
    pumps: list[Greenlet] = field(default_factory=list)

    def end(self, reason: str) -> None:
        """End both directions (the calling pump returns by itself)."""
        if not self.reason:
            self.reason = reason
        current = gevent.getcurrent()
        for pump in self.pumps:
            if pump is not current:
                pump.kill(block=False)


def relay(
    a: socket.socket,
    b: socket.socket,
    *,
    idle_timeout: float,
    names: tuple[str, str] = ("a", "b"),
) -> RelayResult:
    """Copy a<->b until both directions are done; see the module docstring."""
    state = _State(idle_timeout, names)
    state.pumps = [
        gevent.spawn(_pump, state, a, b, 0),
        gevent.spawn(_pump, state, b, a, 1),
    ]
    try:
        gevent.joinall(state.pumps)
    finally:
        gevent.killall(state.pumps)
    return RelayResult(state.counts[0], state.counts[1], state.reason or "closed")


def _pump(state: _State, src: socket.socket, dst: socket.socket, index: int) -> None:
    source, target = state.names[index], state.names[1 - index]
    try:
        while True:
            data = _receive(state, src)
            if not data:
                break
            _send(state.idle_timeout, dst, data)
            state.counts[index] += len(data)
            state.last = monotonic()
    except _IdleError:
        state.end("idle")
        return
    except _ExpiredError:
        state.end(f"{target} stalled")
        return
    except OSError as exc:
        state.end(f"{source}->{target} error: {exc.strerror or exc}")
        return
    _finish(state, dst, index)


def _receive(state: _State, src: socket.socket) -> bytes:
    """One read; waits as long as the session as a whole is not idle."""
    while True:
        remaining = state.idle_timeout - (monotonic() - state.last)
        if remaining <= 0:
            raise _IdleError
        timer = Timeout(remaining, _ExpiredError)
        timer.start()
        try:
            return src.recv(CHUNK)
        except _ExpiredError:
            continue
        finally:
            timer.close()


def _send(seconds: float, dst: socket.socket, data: bytes) -> None:
    timer = Timeout(seconds, _ExpiredError)
    timer.start()
    try:
        dst.sendall(data)
    finally:
        timer.close()


def _finish(state: _State, dst: socket.socket, index: int) -> None:
    """``src`` reached EOF: half-close ``dst``, or end the relay."""
    state.done[index] = True
    source = state.names[index]
    if state.done[1 - index]:
        state.end(state.reason or f"{source} closed")
        return
    if not state.reason:
        state.reason = f"{source} closed"
    if isinstance(dst, ssl.SSLSocket):
        state.end(state.reason)
        return
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        state.end(state.reason)
