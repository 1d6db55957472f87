"""POP3 APOP (RFC 1939 section 7) through the daemon, with poplib and raw commands.

A private PostgreSQL holds two accounts in a table with a clear-password column: one with a
clear password (APOP works and reaches its real Courier Maildir), one with only a crypt hash
(APOP is refused with "needs a clear password", USER/PASS still works).  userdb stores hashes
only, so APOP never works there.  Without ``[pop3] apop`` the greeting has no timestamp and
APOP is an unknown command.
"""

from __future__ import annotations

import hashlib
import poplib
import re
import secrets
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from meshproxy.protocol import replies

from . import services
from .accounts import (
    DOMAIN,
    EXTRA_SECRETS,
    Account,
    deliver,
    ensure_system_user,
    hash_password,
    make_home,
    wrong_password,
)
from .conftest import StartDaemon, all_secrets
from .daemon import Daemon, DaemonFactory
from .mail import message, pop3

pytestmark = pytest.mark.integration

NEEDS_CLEAR = "-ERR [AUTH] APOP needs a clear password"
AUTH_FAILED = "-ERR [AUTH] Authentication failed."
TIMESTAMP = re.compile(rb"\+OK [^<]* (<[!-;=?-~]+>)\r\n")
TABLE = """CREATE TABLE apop_accounts (
    id VARCHAR(200) PRIMARY KEY, crypt VARCHAR(255), clear VARCHAR(255),
    uid INTEGER NOT NULL, gid INTEGER NOT NULL, home VARCHAR(255) NOT NULL)"""


def new_account(key: str, root: Path) -> Account:
    """A system user ``mpt_<key>`` with a real Courier Maildir under ``root``."""
    account = Account(key, f"Äpop-{key}-{secrets.token_hex(5)}")
    EXTRA_SECRETS.append(account.password)  # the daemon logs are checked for it
    account.login = f"{key}@{DOMAIN}"
    account.user = f"mpt_{key}"
    account.uid, account.gid = ensure_system_user(account.user)
    make_home(account, root)
    return account


@pytest.fixture(scope="module")
def sql_accounts(session_dir: Path) -> dict[str, Account]:
    root = session_dir / "apop-home"
    root.mkdir()
    root.chmod(0o755)
    return {key: new_account(key, root) for key in ("apopclear", "apophash")}


@pytest.fixture(scope="module")
def postgres(sql_accounts: dict[str, Account]) -> Iterator[services.Postgres]:
    server = services.Postgres()
    try:
        server.start()
        server.create_database()
        clear, hashed = sql_accounts["apopclear"], sql_accounts["apophash"]
        rows = [
            (clear.login, None, clear.password, clear.uid, clear.gid, str(clear.home)),
            (
                hashed.login,
                hash_password("$6$", hashed.password),
                None,
                hashed.uid,
                hashed.gid,
                str(hashed.home),
            ),
        ]
        with closing(server.admin(services.DB_NAME)) as connection, connection.cursor() as cursor:
            cursor.execute(TABLE)
            cursor.executemany("INSERT INTO apop_accounts VALUES (%s, %s, %s, %s, %s, %s)", rows)
            cursor.execute(f"GRANT SELECT ON apop_accounts TO {services.DB_USER}")
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def sql_daemon(
    daemon_factory: DaemonFactory,
    postgres: services.Postgres,
    accounts: dict[str, Account],
) -> Iterator[Daemon]:
    source: dict[str, Any] = {
        "connection": postgres.connection_string(),
        "user_table": "apop_accounts",
        "crypt_pwfield": "crypt",
        "clear_pwfield": "clear",
        "connect_timeout": 2.0,
        "query_timeout": 5.0,
    }
    instance = daemon_factory.start(
        {"pop3": {"apop": True}, "auth": {"source": "pgsql", "pgsql": source}}
    )
    yield instance
    daemon_factory.stop(instance, all_secrets(accounts))


def refused(client: poplib.POP3, login: str, password: str) -> str:
    with pytest.raises(poplib.error_proto) as caught:
        client.apop(login, password)
    return bytes(caught.value.args[0]).decode()


def test_greeting_carries_a_timestamp_and_capa_does_not_list_apop(sql_daemon: Daemon) -> None:
    with pop3(sql_daemon) as first, pop3(sql_daemon) as second:
        stamps = [TIMESTAMP.fullmatch(client.getwelcome() + b"\r\n") for client in (first, second)]
        assert all(stamps), [first.getwelcome(), second.getwelcome()]
        assert stamps[0] is not None
        assert stamps[1] is not None
        assert stamps[0].group(1) != stamps[1].group(1)
        capabilities = first.capa()
        assert "USER" in capabilities
        assert not any("APOP" in name for name in capabilities)


def test_apop_logs_in_and_reads_the_real_maildir(
    sql_daemon: Daemon, sql_accounts: dict[str, Account]
) -> None:
    account = sql_accounts["apopclear"]
    raw = message("apop retr", "delivered for APOP\r\n.dot line\r\n")
    deliver(account, raw.replace(b"\r\n", b"\n"))  # a Maildir holds LF line ends
    with pop3(sql_daemon) as client:
        assert client.apop(account.login, account.password).startswith(b"+OK")
        count, size = client.stat()
        assert count >= 1
        assert size >= len(raw)
        bodies = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
        assert raw in bodies
        assert client.quit().startswith(b"+OK")


def test_apop_digest_by_hand_in_upper_case_with_pipelining(
    sql_daemon: Daemon, sql_accounts: dict[str, Account]
) -> None:
    account = sql_accounts["apopclear"]
    with sql_daemon.raw("pop3") as client:
        match = TIMESTAMP.fullmatch(client.readline())
        assert match is not None
        digest = hashlib.md5(match.group(1) + account.password.encode()).hexdigest().upper()
        client.send(f"APOP {account.login} {digest}\r\nSTAT\r\nQUIT\r\n".encode())
        assert client.readline().startswith(b"+OK")
        assert re.fullmatch(rb"\+OK \d+ \d+\r\n", client.readline())
        assert client.readline().startswith(b"+OK")


def test_wrong_password_is_auth_failed_and_a_retry_works(
    sql_daemon: Daemon, sql_accounts: dict[str, Account]
) -> None:
    account = sql_accounts["apopclear"]
    with pop3(sql_daemon) as client:
        assert refused(client, account.login, wrong_password()) == AUTH_FAILED
        assert refused(client, f"nobody@{DOMAIN}", account.password) == AUTH_FAILED
        assert client.apop(account.login, account.password).startswith(b"+OK")
        assert client.stat()[0] >= 0


def test_hash_only_account_needs_a_clear_password(
    sql_daemon: Daemon, sql_accounts: dict[str, Account]
) -> None:
    account = sql_accounts["apophash"]
    since = sql_daemon.log_size()
    with pop3(sql_daemon) as client:
        assert refused(client, account.login, account.password).startswith(NEEDS_CLEAR)
        sql_daemon.wait_for_log(
            r"login failed .*mechanism=APOP reason=MechanismUnusable: .*clear password", since=since
        )
        client.user(account.login)
        assert client.pass_(account.password).startswith(b"+OK")
        assert client.stat() == (0, 0)


def test_malformed_apop_is_a_syntax_error(sql_daemon: Daemon) -> None:
    with sql_daemon.raw("pop3") as client:
        client.readline()
        client.send(b"APOP someone 1234\r\nAPOP\r\n")
        expected = f"-ERR {replies.MALFORMED_APOP}\r\n".encode()
        assert [client.readline(), client.readline()] == [expected, expected]


def test_userdb_stores_hashes_only_so_apop_is_refused(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"pop3": {"apop": True}})
    account = accounts["pop3"]
    with pop3(daemon) as client:
        assert TIMESTAMP.fullmatch(client.getwelcome() + b"\r\n")
        assert refused(client, account.login, account.password).startswith(NEEDS_CLEAR)
        assert refused(client, accounts["cram"].login, accounts["cram"].password).startswith(
            NEEDS_CLEAR
        )  # a CRAM-MD5 (hmac-md5pw) state cannot check APOP either
        assert refused(client, f"nobody@{DOMAIN}", "x") == AUTH_FAILED


def test_without_the_option_apop_is_an_unknown_command(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["pop3"]
    with pop3(daemon) as client:
        assert b"<" not in client.getwelcome()
        with pytest.raises(poplib.error_proto, match="APOP not supported"):
            client.apop(account.login, account.password)
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(f"APOP {account.login} {'0' * 32}\r\n".encode())
        assert client.readline() == b"-ERR Unknown command\r\n"
