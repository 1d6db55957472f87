"""Connection caps, the pre-login timeout and the non-blocking failed-login delay."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from .accounts import Account, wrong_password
from .clients import LineClient
from .conftest import StartDaemon
from .daemon import Daemon

pytestmark = pytest.mark.integration

REFUSAL = {"imap": b"* BYE", "pop3": b"-ERR"}
GREETING = {"imap": b"* OK", "pop3": b"+OK"}


def connect(daemon: Daemon, proto: str, source: str | None = None) -> LineClient:
    port = daemon.imap_port if proto == "imap" else daemon.pop3_port
    assert port is not None
    return LineClient(daemon.host, port, timeout=10, source=source)


def refused(client: LineClient) -> bytes:
    """The one line the server sends before closing; then EOF."""
    line = client.readline()
    try:
        rest = client.read_to_eof(10)
    except ConnectionResetError:
        rest = b""
    assert rest == b"", rest
    return line


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_max_per_ip_answers_instead_of_closing_silently(
    meshproxy_daemon: StartDaemon, proto: str
) -> None:
    daemon = meshproxy_daemon({"limits": {"max_per_ip": 2}})
    with ExitStack() as stack:
        for _ in range(2):
            client = stack.enter_context(connect(daemon, proto))
            assert client.readline().startswith(GREETING[proto])
        with connect(daemon, proto) as third:
            line = refused(third)
        assert line.startswith(REFUSAL[proto]), line
        # another client address is still welcome
        with connect(daemon, proto, source="127.0.0.2") as other:
            assert other.readline().startswith(GREETING[proto])


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_max_connections_counts_every_address(meshproxy_daemon: StartDaemon, proto: str) -> None:
    daemon = meshproxy_daemon({"limits": {"max_connections": 2}})
    with ExitStack() as stack:
        for source in ("127.0.0.2", "127.0.0.3"):
            client = stack.enter_context(connect(daemon, proto, source=source))
            assert client.readline().startswith(GREETING[proto])
        with connect(daemon, proto, source="127.0.0.4") as third:
            line = refused(third)
        assert line.startswith(REFUSAL[proto]), line


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_login_timeout(meshproxy_daemon: StartDaemon, proto: str) -> None:
    daemon = meshproxy_daemon({"limits": {"login_timeout": 1.0}})
    with connect(daemon, proto) as client:
        assert client.readline().startswith(GREETING[proto])
        start = time.monotonic()
        if proto == "imap":
            assert client.command("a1", "NOOP")[-1].startswith(b"a1 OK")
        line = refused(client)
        elapsed = time.monotonic() - start
    assert line.startswith(REFUSAL[proto]), line
    assert 0.5 <= elapsed <= 6, elapsed


def test_failed_login_delay_does_not_block_others(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"auth": {"failure_delay": 1.0}})
    account = accounts["limits"]
    with connect(daemon, "imap") as slow, connect(daemon, "imap") as fast:
        slow.readline()
        fast.readline()
        start = time.monotonic()
        slow.send(f'a1 LOGIN "{account.login}" "{wrong_password()}"\r\n'.encode())
        fast.send(f'b1 LOGIN "{account.login}" "{account.password}"\r\n'.encode())
        ok = fast.tagged("b1")
        fast_done = time.monotonic() - start
        failed = slow.tagged("a1")
        slow_done = time.monotonic() - start
        fast.send(b"b2 LOGOUT\r\n")
        fast.tagged("b2")
    assert ok[-1].startswith(b"b1 OK"), ok
    assert failed[-1].startswith(b"a1 NO [AUTHENTICATIONFAILED]"), failed
    assert slow_done >= 1.0, slow_done
    assert fast_done < 0.9, fast_done


def test_failed_login_delay_pop3(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"auth": {"failure_delay": 1.0}})
    account = accounts["limits"]
    with connect(daemon, "pop3") as client:
        client.readline()
        client.send(f"USER {account.login}\r\n".encode())
        client.readline()
        start = time.monotonic()
        client.send(f"PASS {wrong_password()}\r\n".encode())
        reply = client.readline()
        assert time.monotonic() - start >= 1.0
        assert reply.startswith(b"-ERR [AUTH]"), reply


def test_temporary_failure_is_not_delayed(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"auth": {"failure_delay": 3.0}})
    account = accounts["nohome"]
    with connect(daemon, "imap") as client:
        client.readline()
        start = time.monotonic()
        reply = client.command("a1", f'LOGIN "{account.login}" "{account.password}"')
        assert time.monotonic() - start < 2.0
        assert reply[-1].startswith(b"a1 NO [UNAVAILABLE]"), reply
