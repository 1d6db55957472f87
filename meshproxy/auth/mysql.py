"""The MySQL/MariaDB account source (Courier's authmysql), through PyMySQL.

PyMySQL is pure Python on the standard socket module, so under gevent's monkey patching it
is cooperative without any help.  The login reaches the server only as a parameter, quoted by
PyMySQL (which also honours ``NO_BACKSLASH_ESCAPES``).
"""

from __future__ import annotations

import socket
from typing import Any

import pymysql

from meshproxy.auth.sqlsource import Row, SqlSource, config_section
from meshproxy.config import Config
from meshproxy.sourceconfig import MysqlConfig

SOURCE_NAME = "mysql"
_CONNECTION_ERRNOS = frozenset({2003, 2006, 2013, 2055})
"""Can't connect, server has gone away, lost connection, lost at handshake."""
_MYSQL_PORT = 3306


class MysqlSource(SqlSource[MysqlConfig, "pymysql.Connection[Any]"]):
    """Looks accounts up in MySQL/MariaDB, as authmysql does."""

    source_name = SOURCE_NAME
    dialect = "mysql"
    errors = (pymysql.Error, OSError)
    missing_home_is_unknown = False

    def __init__(self, config: MysqlConfig, *, origin: str = "auth.mysql") -> None:
        super().__init__(config, origin=origin)

    @classmethod
    def from_config(cls, config: Config) -> MysqlSource:
        return cls(config_section(config, SOURCE_NAME, MysqlConfig))

    def _server(self) -> str:
        return self.config.server or self.config.socket

    def _fetch(
        self, connection: pymysql.Connection[Any], statement: str, params: tuple[str, ...]
    ) -> Row | None:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            row = cursor.fetchone()
            cursor.fetchall()
        return tuple(row) if row is not None else None

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

    @staticmethod
    def _is_connection_error(exc: BaseException) -> bool:
        if isinstance(exc, pymysql.InterfaceError | OSError):
            return True
        return isinstance(exc, pymysql.OperationalError) and _errno(exc) in _CONNECTION_ERRNOS

    @staticmethod
    def _is_timeout(exc: BaseException) -> bool:
        if isinstance(exc, socket.timeout | TimeoutError):
            return True
        return "timed out" in str(exc)

    @staticmethod
    def _describe(exc: BaseException) -> str:
        """The driver's message: it names the server and user, never the password."""
        return f"{type(exc).__name__}: {exc}"


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


def _errno(exc: pymysql.Error) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None
