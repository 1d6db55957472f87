"""psycopg2's wait callback on gevent sockets (the recipe psycogreen popularised).

libpq does its I/O in C, out of reach of gevent's monkey patching.  With this callback
installed (``meshproxy.auth.pgsql.set_wait_callback(make_wait_callback(t))``) psycopg2 runs
every connection in non-blocking mode and calls back here whenever libpq would block; the
greenlet then waits on the socket with gevent, so other sessions go on.  ``timeout`` bounds
each single wait: a server that stops answering fails the query instead of hanging it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
from gevent.socket import wait_read, wait_write


def make_wait_callback(timeout: float | None = None) -> Callable[[Any], None]:
    """A wait callback whose single waits last at most ``timeout`` seconds."""

    def wait(connection: Any) -> None:
        while True:
            state = connection.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                wait_read(connection.fileno(), timeout=timeout, timeout_exc=_timed_out())
            elif state == psycopg2.extensions.POLL_WRITE:
                wait_write(connection.fileno(), timeout=timeout, timeout_exc=_timed_out())
            else:
                raise psycopg2.OperationalError(f"unexpected poll state {state!r}")

    return wait


def _timed_out() -> psycopg2.OperationalError:
    return psycopg2.OperationalError("timed out waiting for the PostgreSQL server")
