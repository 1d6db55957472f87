"""What ``MysqlSource`` and ``PgsqlSource`` share: the checks, the query, the pool, the lookup.

A driver module says which ``sql.Dialect`` it speaks, what its errors are and how to judge
them, how to connect, and how to fetch the first row; ``SqlSource`` does the rest as
authlib's SQL modules do (``sql.py`` holds the query building and the row mapping).
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, TypeVar

from meshproxy.account import Account
from meshproxy.auth import sql
from meshproxy.auth.base import SingleSource
from meshproxy.auth.pool import Driver, Pool
from meshproxy.config import Config
from meshproxy.sourceconfig import MysqlConfig, PgsqlConfig, check_sql


class _Connection(Protocol):
    def close(self) -> None: ...


ConfigT = TypeVar("ConfigT", MysqlConfig, PgsqlConfig)
ConnectionT = TypeVar("ConnectionT", bound=_Connection)
Row = tuple[Any, ...]


def config_section(config: Config, name: str, kind: type[ConfigT]) -> ConfigT:
    """``[auth.<name>]`` of ``config``, or the defaults when it has none of that kind."""
    section = getattr(config.auth, name, None)
    return section if isinstance(section, kind) else kind()


class SqlSource(SingleSource, Generic[ConfigT, ConnectionT]):
    """Looks accounts up with one SQL query through a pool of driver connections."""

    source_name: ClassVar[str]
    """The source's name in logs and in ``Account.source``."""
    dialect: ClassVar[sql.Dialect]
    errors: ClassVar[tuple[type[BaseException], ...]]
    """Everything the driver raises (the pool turns them into ``BackendUnavailable``)."""
    missing_home_is_unknown: ClassVar[bool]
    """An empty home means "no such user" (authpgsql), not a source failure (authmysql)."""

    def __init__(self, config: ConfigT, *, origin: str) -> None:
        check_sql(config, origin)
        self.config: ConfigT = config
        self.query = sql.build_query(config, self.dialect, origin)
        driver: Driver[ConnectionT] = Driver(
            name=f"{self.source_name} {self._server()}",
            connect=self._connect,
            close=self._close_connection,
            errors=self.errors,
            is_connection_error=self._is_connection_error,
            is_timeout=self._is_timeout,
            describe=self._describe,
        )
        self.pool = Pool(driver, size=config.pool_size, wait=config.query_timeout)

    def lookup(self, login: str, service: str = "") -> Account | None:
        """The account for ``login``; None if there is none.  Raises BackendUnavailable."""
        if not sql.usable_login(login):
            return None
        values = sql.query_values(login, service, self.config.default_domain)
        statement, params = self.query.render(values)
        row = self.pool.run(lambda connection: self._fetch(connection, statement, params))
        if row is None:
            return None
        return sql.row_to_account(
            row, login, self.source_name, missing_home_is_unknown=self.missing_home_is_unknown
        )

    def close(self) -> None:
        self.pool.close()

    def _close_connection(self, connection: ConnectionT) -> None:
        try:
            connection.close()
        except self.errors:
            return

    # What a driver supplies.

    def _server(self) -> str:
        """The server as the logs name it."""
        raise NotImplementedError

    def _connect(self) -> ConnectionT:
        raise NotImplementedError

    def _fetch(
        self, connection: ConnectionT, statement: str, params: tuple[str, ...]
    ) -> Row | None:
        """Run the query; the first row, or None when there is none."""
        raise NotImplementedError

    @staticmethod
    def _is_connection_error(exc: BaseException) -> bool:
        raise NotImplementedError

    @staticmethod
    def _is_timeout(exc: BaseException) -> bool:
        raise NotImplementedError

    @staticmethod
    def _describe(exc: BaseException) -> str:
        """The driver's message for the log, without secrets."""
        raise NotImplementedError
