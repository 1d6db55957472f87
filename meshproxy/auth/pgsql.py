"""The PostgreSQL account source (Courier's authpgsql), through psycopg2.

psycopg2 talks to the server through libpq, in C, so gevent's monkey patching cannot make it
cooperative by itself: psycopg2 must be given a *wait callback* that waits on the socket the
gevent way.  That callback lives in the I/O edge (``meshproxy/io/pgwait.py``) and reaches this
module by injection (``set_wait_callback``), so nothing here imports gevent.

The login reaches the server only as a parameter quoted by psycopg2.  ``query_timeout``
becomes the session's ``statement_timeout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from meshproxy.account import Account
from meshproxy.auth import sql
from meshproxy.auth.base import SingleSource
from meshproxy.auth.pool import Driver, Pool
from meshproxy.config import Config
from meshproxy.sourceconfig import PgsqlConfig, check_sql

SOURCE_NAME = "pgsql"
WaitCallback = Callable[[Any], None]
_QUERY_CANCELED = "57014"


def set_wait_callback(callback: WaitCallback | None) -> None:
    """Install psycopg2's process-wide wait callback (None restores blocking mode)."""
    psycopg2.extensions.set_wait_callback(callback)


class PgsqlSource(SingleSource):
    """Looks accounts up in PostgreSQL, as authpgsql does."""

    def __init__(
        self,
        config: PgsqlConfig,
        *,
        origin: str = "auth.pgsql",
        wait_callback: WaitCallback | None = None,
    ) -> None:
        check_sql(config, origin)
        if wait_callback is not None:
            set_wait_callback(wait_callback)
        self.config = config
        self.query = sql.build_query(config, "pgsql", origin)
        driver: Driver[psycopg2.extensions.connection] = Driver(
            name=f"pgsql {config.server or _host_of(config.connection)}",
            connect=self._connect,
            close=_close,
            errors=(psycopg2.Error, OSError),
            is_connection_error=_is_connection_error,
            is_timeout=_is_timeout,
            describe=_describe,
        )
        self.pool = Pool(driver, size=config.pool_size, wait=config.query_timeout)

    @classmethod
    def from_config(cls, config: Config) -> PgsqlSource:
        section = getattr(config.auth, SOURCE_NAME, None)
        if not isinstance(section, PgsqlConfig):
            section = PgsqlConfig()
        return cls(section)

    def lookup(self, login: str, service: str = "") -> Account | None:
        """The account for ``login``; None if there is none.  Raises BackendUnavailable."""
        if not sql.usable_login(login):
            return None
        values = sql.query_values(login, service, self.config.default_domain)
        statement, params = self.query.render(values)

        def fetch(connection: psycopg2.extensions.connection) -> tuple[Any, ...] | None:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                row = cursor.fetchone()
            return tuple(row) if row is not None else None

        row = self.pool.run(fetch)
        if row is None:
            return None
        return sql.row_to_account(row, login, SOURCE_NAME, missing_home_is_unknown=True)

    def close(self) -> None:
        self.pool.close()

    def _connect(self) -> psycopg2.extensions.connection:
        config = self.config
        overrides: dict[str, Any] = {
            "host": config.server,
            "port": config.port or None,
            "user": config.username,
            "password": config.password,
            "dbname": config.database,
        }
        timeout_ms = int(config.query_timeout * 1000)
        connection: psycopg2.extensions.connection = psycopg2.connect(
            config.connection,
            connect_timeout=max(1, round(config.connect_timeout)),
            options=f"-c statement_timeout={timeout_ms}",
            client_encoding=config.character_set or "UTF8",
            application_name="meshproxy",
            **{key: value for key, value in overrides.items() if value},
        )
        connection.autocommit = True
        return connection


def _host_of(connection: str) -> str:
    for item in connection.split():
        key, _, value = item.partition("=")
        if key == "host":
            return value
    return "(default host)"


def _close(connection: psycopg2.extensions.connection) -> None:
    try:
        connection.close()
    except (psycopg2.Error, OSError):
        return


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError | OSError)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, psycopg2.Error) and exc.pgcode == _QUERY_CANCELED:
        return True
    return "timeout" in str(exc) or "timed out" in str(exc)


def _describe(exc: BaseException) -> str:
    """libpq's message (names host and user, never the password), first line only."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
