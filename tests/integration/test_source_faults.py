"""Each server stopped and restarted under a live source.

While a server is down, ``lookup`` raises ``BackendUnavailable`` and ``authenticate`` raises
``TempFail``, both quickly and never as a wrong password.  When it is back, the same source
object serves again: idle pooled connections to the old server process are replaced without
a failed lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshproxy.auth import authenticate
from meshproxy.auth.base import BackendUnavailable
from meshproxy.auth.courier_chain import CourierSource
from meshproxy.credentials import PlainCredentials
from meshproxy.errors import TempFail

from . import services
from .source_accounts import ACCOUNTS, servers
from .test_sources import Source, open_source, write_courier_dir

pytestmark = pytest.mark.integration

QUICK = 3.0
"""Seconds a down server may take to be reported."""

ACTIVE = [account for account in ACCOUNTS if account.active and not account.options]


def server_of(kind: str) -> services.Server:
    running = servers()
    return {"ldap": running.slapd, "mysql": running.mariadb, "pgsql": running.postgres}[kind]


@pytest.fixture(params=["ldap", "mysql", "pgsql"])
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
    server = server_of(request.param)
    if server.process is None:
        server.start()


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def logs_in(source: Source | CourierSource, index: int) -> None:
    account = ACTIVE[index % len(ACTIVE)]
    found = authenticate(
        source, PlainCredentials(account.login, account.password), service="imap", secure=True
    )
    assert found.uid == account.uid


def test_down_server_is_a_quick_temporary_failure_then_service_resumes(kind: str) -> None:
    source = open_source(kind)
    server = server_of(kind)
    try:
        for index in range(5):
            logs_in(source, index)
        server.stop()
        for index in range(3):
            with pytest.raises(BackendUnavailable):
                source.lookup(ACTIVE[index].login)
            assert timed(lambda i=index: expect_tempfail(source, i)) < QUICK
        server.start()
        for index in range(5):
            logs_in(source, index)
    finally:
        source.close()


def expect_tempfail(source: Source | CourierSource, index: int) -> None:
    account = ACTIVE[index]
    credentials = PlainCredentials(account.login, account.password)
    with pytest.raises(TempFail):
        authenticate(source, credentials, service="imap", secure=True)


def test_restart_between_lookups_costs_no_failed_login(kind: str) -> None:
    """Pooled connections to the old process are dead: the pool retries on a new one."""
    source = open_source(kind)
    try:
        logs_in(source, 0)
        assert source.pool.idle_count == 1
        server_of(kind).restart()
        for index in range(3):
            logs_in(source, index)
    finally:
        source.close()


def test_chain_reports_a_down_module_even_when_a_later_one_knows_the_login(
    tmp_path: Path,
) -> None:
    """authdaemond: TEMPFAIL - no more modules will be tried."""
    chain = CourierSource(str(write_courier_dir(tmp_path, "authmysql authpgsql")))
    mariadb = servers().mariadb
    try:
        logs_in(chain, 1)
        mariadb.stop()
        assert timed(lambda: expect_tempfail(chain, 1)) < QUICK
        mariadb.start()
        logs_in(chain, 1)
    finally:
        chain.close()
        if mariadb.process is None:
            mariadb.start()
