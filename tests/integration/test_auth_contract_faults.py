"""The account-source contract under a slow or absent server, through the running daemon.

* A lookup that waits two seconds in the server (``SLEEP()`` / ``pg_sleep`` in the custom
  ``select_clause`` of the MySQL and PostgreSQL daemons, for one login) holds only its own
  session: twenty other sessions log in and out meanwhile, each within a second, all before
  the slow one is answered.
* Each source's server stopped under its daemon (userdb: the file taken away; ``courier``:
  MariaDB, the second module of the chain) while a client keeps logging in: quick
  ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]`` (well under the 3 s failed-login delay), the log
  names the source failure, no crash; once the server is back the same daemon serves again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from . import services
from .daemon import Daemon, DaemonFactory
from .mail import imap as imaplib_session
from .source_daemon import (
    FAILURE_DELAY,
    SLOW_INDEX,
    SOURCES,
    Contract,
    ContractAccount,
    Daemons,
    connected,
    imap_auth_plain,
    imap_login,
    imap_markers,
    outcome,
    pop3_markers,
    pop3_user_pass,
    shared_contract,
)

pytestmark = pytest.mark.integration

QUICK = 2.0
"""Seconds a temporary failure may take (the failed-login delay is FAILURE_DELAY)."""


@pytest.fixture(scope="session")
def contract(session_dir: Path) -> Contract:
    return shared_contract(session_dir)


@pytest.fixture(scope="module")
def daemons(daemon_factory: DaemonFactory, contract: Contract) -> Iterator[Daemons]:
    cache = Daemons(daemon_factory, contract)
    yield cache
    cache.stop()


def plain_accounts(contract: Contract) -> list[ContractAccount]:
    """Accounts imaplib can log in with (ASCII password, ordinary login) to both services."""
    return [
        account
        for account in contract.usable("imap")
        if account.expected("pop3") == "ok"
        and account.ascii_password
        and account.login.startswith("c")
        and account.index != SLOW_INDEX
    ]


# --- a slow lookup -----------------------------------------------------------------------------


def sleeping_queries(kind: str, contract: Contract) -> int:
    """How many lookups are sleeping in the server right now (not counting this query)."""
    if kind == "mysql":
        with contract.running.mariadb.admin() as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
                ("%SLEEP(2)%",),
            )
            return int(cursor.fetchone()[0])
    with closing(contract.running.postgres.admin()) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
            ("%pg_sleep(2)%",),
        )
        return int(cursor.fetchone()[0])


def wait_for_sleeping_query(kind: str, contract: Contract, timeout: float = 1.5) -> None:
    deadline = time.monotonic() + timeout
    while sleeping_queries(kind, contract) < 1:
        assert time.monotonic() < deadline, "the slow lookup never reached the server"
        time.sleep(0.02)


def timed_login(daemon: Daemon, account: ContractAccount) -> tuple[str, float, float]:
    """imaplib: connect, LOGIN, LOGOUT; (result, start, end)."""
    started = time.monotonic()
    with imaplib_session(daemon) as client:
        typ, data = client.login(account.login, account.password)
        client.logout()
    return f"{typ} {data}", started, time.monotonic()


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_slow_lookup_does_not_stall_twenty_sessions(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    daemon = daemons[kind]
    slow = contract.account(SLOW_INDEX)
    assert slow.expected("imap") == "ok"
    assert slow.ascii_password
    fast = plain_accounts(contract)[:20]
    assert len(fast) == 20
    assert timed_login(daemon, fast[0])[0].startswith("OK")  # the pool holds a connection
    with ThreadPoolExecutor(max_workers=21) as pool:
        slow_future = pool.submit(timed_login, daemon, slow)
        wait_for_sleeping_query(kind, contract)
        assert not slow_future.done()
        fast_futures = [pool.submit(timed_login, daemon, account) for account in fast]
        fast_results = [future.result() for future in fast_futures]
        slow_result, slow_start, slow_end = slow_future.result()
    assert slow_result.startswith("OK"), slow_result
    assert slow_end - slow_start >= 1.9
    assert [result.split()[0] for result, _, _ in fast_results] == ["OK"] * 20
    assert max(end - start for _, start, end in fast_results) < 1.0, fast_results
    assert max(end for _, _, end in fast_results) < slow_end


# --- outages ---------------------------------------------------------------------------------


class Outage:
    """Takes a source away and brings it back: a server stopped, or the userdb file moved."""

    def __init__(self, kind: str, contract: Contract) -> None:
        self.kind = kind
        self.contract = contract
        self.server: services.Server | None = None
        if kind in ("ldap", "mysql", "pgsql"):
            self.server = contract.server(kind)
        elif kind == "courier":
            self.server = contract.running.mariadb
        self.away = contract.userdb.with_suffix(".away")

    def down(self) -> None:
        if self.server is not None:
            self.server.stop()
        else:
            self.contract.userdb.rename(self.away)

    def up(self) -> None:
        if self.server is not None:
            if self.server.process is None:
                self.server.start()
        elif self.away.exists():
            self.away.rename(self.contract.userdb)


class KeepLoggingIn(threading.Thread):
    """A client logging in over IMAP again and again until told to stop."""

    def __init__(self, daemon: Daemon, account: ContractAccount) -> None:
        super().__init__(daemon=True)
        self.target_daemon = daemon
        self.account = account
        self.results: list[tuple[float, float, str]] = []  # start, end, answer
        self.halt = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                started = time.monotonic()
                with connected(self.target_daemon, "imap") as client:
                    reply = imap_login(client, self.account.login, self.account.password)
                self.results.append((started, time.monotonic(), outcome(reply)))
                self.halt.wait(0.05)
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def wait_for(self, answer: str, after: float, timeout: float = 10.0) -> None:
        """Until an attempt that started after ``after`` got ``answer`` (bounded)."""
        deadline = time.monotonic() + timeout
        while not any(got == answer and at > after for at, _, got in list(self.results)):
            assert self.is_alive(), repr(self.failure)
            assert time.monotonic() < deadline, (answer, self.results[-5:])
            time.sleep(0.02)

    def stop(self) -> list[tuple[float, float, str]]:
        self.halt.set()
        self.join(30)
        assert not self.is_alive()
        assert self.failure is None, repr(self.failure)
        return self.results


def attempt(
    daemon: Daemon, service: str, mechanism: str, login: str, password: str
) -> tuple[str, float, bytes]:
    started = time.monotonic()
    with connected(daemon, service) as client:
        if service == "pop3":
            reply = pop3_user_pass(client, login, password)
        elif mechanism == "plain":
            reply = imap_auth_plain(client, login, password)
        else:
            reply = imap_login(client, login, password)
    return outcome(reply), round(time.monotonic() - started, 3), reply


def expectations_while_down(kind: str, contract: Contract) -> list[tuple[ContractAccount, str]]:
    """(account, answer) while the source is down.  For Courier's chain (MariaDB down): an
    account of authldap, the first module, still logs in, every later one is a temporary
    failure, and so is a wrong password for the authldap account (authdaemond: the next
    module's TEMPFAIL ends the search)."""
    plain = plain_accounts(contract)
    if kind != "courier":
        return [(account, "unavailable") for account in plain[:3]]
    by_shard = [next(a for a in plain if a.shard == shard) for shard in range(4)]
    return [(by_shard[0], "ok")] + [(account, "unavailable") for account in by_shard[1:]]


@pytest.mark.parametrize("kind", SOURCES)
def test_source_outage_is_a_quick_temporary_failure_and_service_resumes(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    daemon = daemons[kind]
    expected = expectations_while_down(kind, contract)
    probe = expected[-1][0]
    outage = Outage(kind, contract)
    for account, _ in expected:
        assert attempt(daemon, "imap", "login", account.login, account.password)[0] == "ok"
    offset = daemon.log_size()
    client = KeepLoggingIn(daemon, probe)
    client.start()
    try:
        outage.down()
        went_down = time.monotonic()
        results = []
        for account, want in expected:
            for service, mechanism in (("imap", "login"), ("imap", "plain"), ("pop3", "login")):
                got = attempt(daemon, service, mechanism, account.login, account.password)
                results.append((account.login, service, mechanism, want, *got))
            wrong = attempt(daemon, "imap", "login", account.login, "x" + account.password)
            results.append((account.login, "imap", "wrong password", "unavailable", *wrong))
        unknown = attempt(daemon, "pop3", "login", "nobody@contract.test", probe.password)
        results.append(("nobody", "pop3", "login", "unavailable", *unknown))
        assert daemon.alive()
        failures = daemon.wait_for_log(
            r"account source failure for user \S+: account source unavailable: (.+)",
            since=offset,
        )
        client.wait_for("unavailable", went_down)
        coming_back = time.monotonic()
        outage.up()
        client.wait_for("ok", time.monotonic())
    finally:
        outage.up()
    for account, service in ((probe, "imap"), (probe, "pop3"), (expected[0][0], "imap")):
        with connected(daemon, service) as session:
            if service == "imap":
                reply = imap_login(session, account.login, account.password)
                assert outcome(reply) == "ok", (kind, reply)
                assert imap_markers(session) == [account.marker]
            else:
                reply = pop3_user_pass(session, account.login, account.password)
                assert outcome(reply) == "ok", (kind, reply)
                assert pop3_markers(session) == [account.marker]
    background = client.stop()

    wrong = [row for row in results if row[4] != row[3]]
    slow = [row for row in results if row[3] == "unavailable" and row[5] >= QUICK]
    assert wrong == []
    assert slow == [], f"temporary failures must not wait the {FAILURE_DELAY} s delay"
    assert {got for _, _, got in background} <= {"ok", "unavailable"}
    while_down = [got for start, end, got in background if went_down < start and end < coming_back]
    assert while_down
    assert set(while_down) == {"unavailable"}
    assert failures.group(1).strip()
    assert daemon.alive()
