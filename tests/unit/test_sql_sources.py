"""SQL query building, row mapping and the connection pool, without a server."""

from __future__ import annotations

import threading

import pytest

from meshproxy.auth.base import BackendUnavailable
from meshproxy.auth.pool import Driver, Pool
from meshproxy.auth.sql import (
    Query,
    build_query,
    compile_clause,
    query_values,
    row_to_account,
    usable_login,
)
from meshproxy.errors import ConfigError
from meshproxy.sourceconfig import MysqlConfig, PgsqlConfig, check_sql

VALUES = {"login": "joe@x.org", "local_part": "joe", "domain": "x.org", "service": "imap"}


def render(clause: str, dialect: str = "mysql") -> tuple[str, tuple[str, ...]]:
    return Query(compile_clause(clause, dialect, "key")).render(VALUES)  # type: ignore[arg-type]


def test_quoted_substitutions_become_a_concatenation_of_parameters() -> None:
    clause = "SELECT a FROM t WHERE id = '$(local_part)@$(domain)'"
    assert render(clause) == (
        "SELECT a FROM t WHERE id = CONCAT(%s, '@', %s)",
        ("joe", "x.org"),
    )
    assert render(clause, "pgsql") == (
        "SELECT a FROM t WHERE id = (%s || '@' || %s)",
        ("joe", "x.org"),
    )


def test_a_literal_holding_only_a_substitution_is_a_plain_parameter() -> None:
    assert render("s = '$(service)' AND u = $(local_part)") == (
        "s = %s AND u = %s",
        ("imap", "joe"),
    )


def test_percent_signs_and_literals_without_substitutions_are_kept() -> None:
    assert render("a LIKE 'x%' AND b = \"$\" AND c = 'it''s $(domain)'") == (
        "a LIKE 'x%%' AND b = \"$\" AND c = CONCAT('it''s ', %s)",
        ("x.org",),
    )


def test_postgresql_double_quotes_are_identifiers() -> None:
    text, params = render("SELECT \"col\" FROM t WHERE '$(domain)' = 'x'", "pgsql")
    assert (text, params) == ("SELECT \"col\" FROM t WHERE %s = 'x'", ("x.org",))


def test_mysql_backslash_escapes_inside_literals() -> None:
    assert render("a = 'q\\'$(domain)'") == ("a = CONCAT('q\\'', %s)", ("x.org",))


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("a = '$(nosuch)'", "unknown substitution"),
        ("a = $(domain", "unterminated"),
        ("a = 'open", "unterminated string"),
        ("a = '\\$(domain)'", "backslash"),
    ],
)
def test_bad_clauses_are_config_errors(clause: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compile_clause(clause, "mysql", "auth.mysql select_clause")


def test_default_query_has_courier_columns_and_login_parameter() -> None:
    config = MysqlConfig(
        user_table="users",
        login_field="email",
        crypt_pwfield="pw",
        auxoptions_field="CONCAT('mailhost=',host)",
        where_clause="active = '$(service)'",
    )
    text, params = build_query(config, "mysql", "auth.mysql").render(VALUES)
    assert text == (
        "SELECT email, pw, '', uid, gid, home, '', '', '', CONCAT('mailhost=',host) "
        "FROM users WHERE email = %s AND (active = %s)"
    )
    assert params == ("joe@x.org", "imap")


def test_login_values_follow_default_domain_rules() -> None:
    assert query_values("joe", "pop3", "x.org") == {
        "login": "joe@x.org",
        "local_part": "joe",
        "domain": "x.org",
        "service": "pop3",
    }
    assert query_values("joe@y.org", "imap", "x.org")["login"] == "joe@y.org"
    assert query_values("joe@y@z", "imap", "")["domain"] == "y@z"
    assert query_values("joe", "imap", "")["login"] == "joe"


def test_unusable_logins() -> None:
    assert not usable_login("")
    assert not usable_login("a\x00b")
    assert not usable_login("\udcff")
    assert usable_login("jürgen")


ROW = ("joe@x.org", "$6$s$h", "clear", 1001, "1002", "/home/joe", "", "", "", "mailhost=a")


def test_row_maps_to_account() -> None:
    account = row_to_account(ROW, "typed", "mysql", missing_home_is_unknown=False)
    assert account is not None
    assert (account.login, account.uid, account.gid, account.home) == (
        "joe@x.org",
        1001,
        1002,
        "/home/joe",
    )
    assert account.maildir is None
    assert account.mailhosts == ("a",)
    assert account.secrets.hashed_for("imap") == "$6$s$h"
    assert account.secrets.clear_for("pop3") == "clear"
    assert account.source == "mysql"


def test_short_rows_bytes_and_nulls() -> None:
    row = (b"joe", None, b"pw", b"5", 6, b"/h")
    account = row_to_account(row, "typed", "pgsql", missing_home_is_unknown=True)
    assert account is not None
    assert (account.login, account.uid, account.options.raw) == ("joe", 5, "")
    assert account.secrets.hashed == {}


@pytest.mark.parametrize("uid", [0, "0", "", None, "abc", "-1"])
def test_bad_uid_is_a_source_failure(uid: object) -> None:
    row = ("joe", "", "pw", uid, 5, "/h")
    with pytest.raises(BackendUnavailable, match="uid"):
        row_to_account(row, "joe", "mysql", missing_home_is_unknown=False)


def test_empty_home_depends_on_the_module() -> None:
    row = ("joe", "", "pw", 5, 5, "")
    assert row_to_account(row, "joe", "pgsql", missing_home_is_unknown=True) is None
    with pytest.raises(BackendUnavailable):
        row_to_account(row, "joe", "mysql", missing_home_is_unknown=False)
    with pytest.raises(BackendUnavailable, match="columns"):
        row_to_account(("joe", "", "pw"), "joe", "mysql", missing_home_is_unknown=False)


def test_config_checks_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"auth\.mysql\.database"):
        check_sql(
            MysqlConfig(server="h", username="u", user_table="t", crypt_pwfield="c"), "auth.mysql"
        )
    with pytest.raises(ConfigError, match="MYSQL_CRYPT_PWFIELD"):
        check_sql(
            MysqlConfig(server="h", username="u", database="d", user_table="t"),
            "/etc/courier/authmysqlrc",
        )
    with pytest.raises(ConfigError, match="PGSQL_CONNECTION"):
        check_sql(PgsqlConfig(user_table="t", clear_pwfield="c"), "/etc/courier/authpgsqlrc")
    check_sql(PgsqlConfig(connection="host=h", select_clause="SELECT 1"), "auth.pgsql")


class BrokenError(Exception):
    pass


class DroppedError(Exception):
    pass


class Counter:
    """A connection factory of numbered connections; ``closed`` records what was closed."""

    def __init__(self, fail_connect: bool = False) -> None:
        self.made = 0
        self.closed: list[int] = []
        self.fail_connect = fail_connect

    def connect(self) -> int:
        if self.fail_connect:
            raise BrokenError("refused")
        self.made += 1
        return self.made

    def driver(self) -> Driver[int]:
        return Driver(
            name="test",
            connect=self.connect,
            close=self.closed.append,
            errors=(BrokenError, DroppedError),
            is_connection_error=lambda exc: isinstance(exc, DroppedError),
            is_timeout=lambda exc: "timed out" in str(exc),
        )


def test_pool_reuses_connections() -> None:
    counter = Counter()
    pool = Pool(counter.driver(), size=2, wait=1.0)
    assert [pool.run(lambda conn: conn) for _ in range(3)] == [1, 1, 1]
    assert pool.idle_count == 1
    pool.close()
    assert counter.closed == [1]
    assert pool.run(lambda conn: conn) == 2


def test_pool_retries_once_on_a_fresh_connection_after_a_dropped_one() -> None:
    counter = Counter()
    pool = Pool(counter.driver(), size=2, wait=1.0)
    pool.run(lambda conn: conn)

    def drop_first(conn: int) -> int:
        if conn == 1:
            raise DroppedError("server has gone away")
        return conn

    assert pool.run(drop_first) == 2
    assert counter.closed == [1]


def test_pool_never_retries_a_timeout_or_a_fresh_connection() -> None:
    counter = Counter()
    pool = Pool(counter.driver(), size=2, wait=1.0)
    pool.run(lambda conn: conn)

    def time_out(conn: int) -> int:
        raise DroppedError("timed out")

    with pytest.raises(BackendUnavailable, match="timed out"):
        pool.run(time_out)
    assert counter.made == 1

    def always_drop(conn: int) -> int:
        raise DroppedError("gone")

    with pytest.raises(BackendUnavailable, match="gone"):
        pool.run(always_drop)
    assert counter.made == 2


def test_pool_connect_failure_and_exhaustion_are_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="refused"):
        Pool(Counter(fail_connect=True).driver(), size=1, wait=0.1).run(lambda conn: conn)
    pool = Pool(Counter().driver(), size=1, wait=0.1)
    inside, release = threading.Event(), threading.Event()

    def hold(conn: int) -> int:
        inside.set()
        release.wait(5)
        return conn

    worker = threading.Thread(target=pool.run, args=(hold,))
    worker.start()
    inside.wait(5)
    try:
        with pytest.raises(BackendUnavailable, match="busy"):
            pool.run(lambda conn: conn)
    finally:
        release.set()
        worker.join()
    assert pool.idle_count == 1


def test_pool_closes_connections_given_back_after_close() -> None:
    counter = Counter()
    pool = Pool(counter.driver(), size=2, wait=1.0)

    def close_meanwhile(conn: int) -> int:
        pool.close()
        return conn

    pool.run(close_meanwhile)
    assert counter.closed == [1]
    assert pool.idle_count == 0
