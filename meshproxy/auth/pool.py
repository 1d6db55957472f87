"""A small connection pool shared by the SQL and LDAP sources.

Connections are made on demand up to ``size``, reused afterwards, and thrown away after any
error (their state is unknown then).  An operation that fails on a *reused* connection with
a connection-level error is tried once more on a fresh one, as authlib does after a lost
connection, so a server restart costs no failed login; a timeout is never retried.

The pool uses ``threading`` primitives only.  Under gevent's monkey patching (done by the
daemon's entry point before anything is imported) they are cooperative, so a lookup waiting
for a connection or for the server blocks only its own greenlet.  This module never imports
gevent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshproxy.auth.base import BackendUnavailable

log = logging.getLogger(__name__)

C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True)
class Driver(Generic[C]):
    """How a pool makes, closes and judges connections of one kind.

    ``connect`` opens one connection (raising the driver's exceptions); ``close`` releases it
    and must not raise; ``is_connection_error`` says whether an exception means the
    connection (not the query) broke and ``is_timeout`` whether it was a timeout.
    ``describe`` turns an exception into a log message without secrets.
    """

    name: str
    connect: Callable[[], C]
    close: Callable[[C], None]
    errors: tuple[type[BaseException], ...]
    is_connection_error: Callable[[BaseException], bool]
    is_timeout: Callable[[BaseException], bool]
    describe: Callable[[BaseException], str] = str


class Pool(Generic[C]):
    """At most ``size`` connections of one ``Driver``; waits at most ``wait`` seconds for one."""

    def __init__(self, driver: Driver[C], *, size: int, wait: float) -> None:
        self.driver = driver
        self.size = size
        self.wait = wait
        self._idle: list[C] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._generation = 0

    def run(self, operation: Callable[[C], R]) -> R:
        """``operation(connection)``; driver errors become ``BackendUnavailable``."""
        if not self._slots.acquire(timeout=self.wait):
            raise BackendUnavailable(f"{self.driver.name}: all {self.size} connections busy")
        try:
            return self._run_in_slot(operation)
        finally:
            self._slots.release()

    def _run_in_slot(self, operation: Callable[[C], R]) -> R:
        connection, reused = self._take()
        try:
            return self._attempt(connection, operation)
        except self.driver.errors as exc:
            if not (reused and self._worth_retrying(exc)):
                raise self._unavailable(exc) from exc
            log.info("%s: connection lost (%s), reconnecting", self.driver.name, exc)
        connection = self._open()
        try:
            return self._attempt(connection, operation)
        except self.driver.errors as exc:
            raise self._unavailable(exc) from exc

    def _attempt(self, connection: C, operation: Callable[[C], R]) -> R:
        generation = self._generation
        try:
            result = operation(connection)
        except BaseException:
            self.driver.close(connection)
            raise
        self._give_back(connection, generation)
        return result

    def _worth_retrying(self, exc: BaseException) -> bool:
        return self.driver.is_connection_error(exc) and not self.driver.is_timeout(exc)

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"{self.driver.name}: {self.driver.describe(exc)}")

    def _take(self) -> tuple[C, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._open(), False

    def _open(self) -> C:
        started = time.monotonic()
        try:
            return self.driver.connect()
        except self.driver.errors as exc:
            elapsed = time.monotonic() - started
            log.debug("%s: connect failed after %.2fs", self.driver.name, elapsed)
            raise self._unavailable(exc) from exc

    def _give_back(self, connection: C, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._idle.append(connection)
                return
        self.driver.close(connection)

    def close(self) -> None:
        """Close the idle connections; connections in use are closed when given back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for connection in idle:
            self.driver.close(connection)

    @property
    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)
