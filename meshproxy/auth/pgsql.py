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

from meshproxy.auth.sqlsource import Row, SqlSource, config_section
from meshproxy.config import Config
from meshproxy.sourceconfig import PgsqlConfig, check_sql

SOURCE_NAME = "pgsql"
WaitCallback = Callable[[Any], None]
_QUERY_CANCELED = "57014"


def set_wait_callback(callback: WaitCallback | None) -> None:
    """Install psycopg2's process-wide wait callback (None restores blocking mode)."""
    psycopg2.extensions.set_wait_callback(callback)


class PgsqlSource(SqlSource[PgsqlConfig, psycopg2.extensions.connection]):
    """Looks accounts up in PostgreSQL, as authpgsql does."""

    source_name = SOURCE_NAME
    dialect = "pgsql"
    errors = (psycopg2.Error, OSError)
    missing_home_is_unknown = True

    def __init__(
        self,
        config: PgsqlConfig,
        *,
        origin: str = "auth.pgsql",
        wait_callback: WaitCallback | None = None,
    ) -> None:
        # The callback is installed only for a configuration that passes the checks, and
        # before the query is built; SqlSource checks again (the checks are pure).
        check_sql(config, origin)
        if wait_callback is not None:
            set_wait_callback(wait_callback)
        super().__init__(config, origin=origin)

    @classmethod
    def from_config(cls, config: Config) -> PgsqlSource:
        return cls(config_section(config, SOURCE_NAME, PgsqlConfig))

    def _server(self) -> str:
        return self.config.server or _host_of(self.config.connection)

    def _fetch(
        self, connection: psycopg2.extensions.connection, statement: str, params: tuple[str, ...]
    ) -> Row | None:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            row = cursor.fetchone()
        return tuple(row) if row is not None else None

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

    @staticmethod
    def _is_connection_error(exc: BaseException) -> bool:
        return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError | OSError)

    @staticmethod
    def _is_timeout(exc: BaseException) -> bool:
        if isinstance(exc, psycopg2.Error) and exc.pgcode == _QUERY_CANCELED:
            return True
        return "timeout" in str(exc) or "timed out" in str(exc)

    @staticmethod
    def _describe(exc: BaseException) -> str:
        """libpq's message (names host and user, never the password), first line only."""
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"


def _host_of(connection: str) -> str:
    for item in connection.split():
        key, _, value = item.partition("=")
        if key == "host":
            return value
    return "(default host)"
