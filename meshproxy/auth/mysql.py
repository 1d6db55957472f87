"""The MySQL/MariaDB account source (Courier's authmysql), through PyMySQL.

PyMySQL is pure Python on the standard socket module, so under gevent's monkey patching it
is cooperative without any help.  The login reaches the server only as a parameter, quoted by
PyMySQL (which also honours ``NO_BACKSLASH_ESCAPES``).
"""

from __future__ import annotations

import socket
from typing import Any

import pymysql

from meshproxy.account import Account
from meshproxy.auth import sql
from meshproxy.auth.base import SingleSource
from meshproxy.auth.pool import Driver, Pool
from meshproxy.config import Config
from meshproxy.sourceconfig import MysqlConfig, check_sql

SOURCE_NAME = "mysql"
_CONNECTION_ERRNOS = frozenset({2003, 2006, 2013, 2055})
"""Can't connect, server has gone away, lost connection, lost at handshake."""
_MYSQL_PORT = 3306


class MysqlSource(SingleSource):
    """Looks accounts up in MySQL/MariaDB, as authmysql does."""

    def __init__(self, config: MysqlConfig, *, origin: str = "auth.mysql") -> None:
        check_sql(config, origin)
        self.config = config
        self.query = sql.build_query(config, "mysql", origin)
        driver: Driver[pymysql.Connection[Any]] = Driver(
            name=f"mysql {config.server or config.socket}",
            connect=self._connect,
            close=_close,
            errors=(pymysql.Error, OSError),
            is_connection_error=_is_connection_error,
            is_timeout=_is_timeout,
            describe=_describe,
        )
        self.pool = Pool(driver, size=config.pool_size, wait=config.query_timeout)

    @classmethod
    def from_config(cls, config: Config) -> MysqlSource:
        section = getattr(config.auth, SOURCE_NAME, None)
        if not isinstance(section, MysqlConfig):
            section = MysqlConfig()
        return cls(section)

    def lookup(self, login: str, service: str = "") -> Account | None:
        """The account for ``login``; None if there is none.  Raises BackendUnavailable."""
        if not sql.usable_login(login):
            return None
        values = sql.query_values(login, service, self.config.default_domain)
        statement, params = self.query.render(values)

        def fetch(connection: pymysql.Connection[Any]) -> tuple[Any, ...] | None:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                row = cursor.fetchone()
                cursor.fetchall()
            return tuple(row) if row is not None else None

        row = self.pool.run(fetch)
        if row is None:
            return None
        return sql.row_to_account(row, login, SOURCE_NAME, missing_home_is_unknown=False)

    def close(self) -> None:
        self.pool.close()

    def _connect(self) -> pymysql.Connection[Any]:
        config = self.config
        return pymysql.connect(
            host=config.server or None,
            unix_socket=config.socket or None,
            port=config.port or _MYSQL_PORT,
            user=config.username,
            password=config.password,
            database=config.database,
            charset=config.character_set or "utf8mb4",
            connect_timeout=config.connect_timeout,
            read_timeout=config.query_timeout,
            write_timeout=config.query_timeout,
            ssl=_ssl_settings(config),
            autocommit=True,
        )


def _ssl_settings(config: MysqlConfig) -> dict[str, str] | None:
    """TLS as authmysql turns it on: only when a CA file or directory is given."""
    if not (config.ssl_cacert or config.ssl_capath):
        return None
    names = {
        "ca": config.ssl_cacert,
        "capath": config.ssl_capath,
        "cert": config.ssl_cert,
        "key": config.ssl_key,
        "cipher": config.ssl_cipher,
    }
    return {key: value for key, value in names.items() if value}


def _close(connection: pymysql.Connection[Any]) -> None:
    try:
        connection.close()
    except (pymysql.Error, OSError):
        return


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.InterfaceError | OSError):
        return True
    return isinstance(exc, pymysql.OperationalError) and _errno(exc) in _CONNECTION_ERRNOS


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, socket.timeout | TimeoutError):
        return True
    return "timed out" in str(exc)


def _errno(exc: pymysql.Error) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _describe(exc: BaseException) -> str:
    """The driver's message: it names the server and user, never the password."""
    return f"{type(exc).__name__}: {exc}"
