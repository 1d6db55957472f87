"""Hostile and broken input: the daemon answers sanely, keeps serving, leaks nothing."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .accounts import Account
from .clients import LineClient
from .conftest import StartDaemon, all_secrets
from .daemon import Daemon
from .mail import imap_login, pop3

pytestmark = pytest.mark.integration

GARBAGE_CONNECTIONS = 1000
CONCURRENCY = 16


def assert_serving(daemon: Daemon, account: Account) -> None:
    assert daemon.alive(), daemon.log()
    with imap_login(daemon, account) as client:
        assert client.select("INBOX")[0] == "OK"
    with pop3(daemon) as client:
        client.user(account.login)
        assert client.pass_(account.password).startswith(b"+OK")
        client.quit()


def read_reply_then_eof(client: LineClient) -> bytes:
    """Everything the server sends before closing (a reset after its reply is fine)."""
    try:
        return client.read_to_eof(10)
    except ConnectionResetError:
        return client.buffer


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_overlong_line_gets_bye_and_close(
    daemon: Daemon, accounts: dict[str, Account], proto: str
) -> None:
    with daemon.raw(proto) as client:
        client.readline()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send(b"a" * 100 * 1024)
        reply = read_reply_then_eof(client)
    expected = b"* BYE" if proto == "imap" else b"-ERR"
    assert reply.startswith(expected), reply[:200]
    assert_serving(daemon, accounts["badinput"])


def test_huge_literal_is_refused_without_continuation(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"a1 LOGIN {100000000}\r\n")
        line = client.readline()
        assert not line.startswith(b"+"), line
        assert line.startswith((b"a1 BAD", b"* BYE")), line
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"a1 LOGIN {100000000+}\r\n")
        line = client.readline()
        assert line.startswith((b"a1 BAD", b"* BYE")), line
    assert_serving(daemon, accounts["badinput"])


def test_invalid_base64_in_authenticate(daemon: Daemon) -> None:
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert client.readline().startswith(b"+")
        client.send(b"!!not*base64**\r\n")
        assert client.tagged("a1")[-1].startswith(b"a1 BAD")
        reply = client.command("a2", "AUTHENTICATE PLAIN @@@@")
        assert reply[-1].startswith(b"a2 BAD"), reply
        assert client.command("a3", "NOOP")[-1].startswith(b"a3 OK")
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(b"AUTH PLAIN\r\n")
        assert client.readline().startswith(b"+")
        client.send(b"!!not*base64**\r\n")
        assert client.readline().startswith(b"-ERR")
        client.send(b"AUTH PLAIN @@@@\r\n")
        assert client.readline().startswith(b"-ERR")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")


def test_nul_bytes(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["badinput"]
    with daemon.raw("imap") as client:
        client.readline()
        assert client.command("a1", "NOOP\0")[-1].startswith(b"a1 BAD")
        reply = client.command("a2", f'LOGIN "{account.login}\0" "{account.password}"')
        assert reply[-1].startswith(b"a2 BAD"), reply
        reply = client.command("a3", f"LOGIN {account.login} {account.password}\0x")
        assert reply[-1].startswith(b"a3 BAD"), reply
        assert client.command("a4", "NOOP")[-1].startswith(b"a4 OK")
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(f"USER {account.login}\0\r\n".encode())
        assert client.readline().startswith(b"-ERR")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")


def test_commands_before_the_greeting(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["badinput"]
    with daemon.raw("imap") as client:
        client.send(b"a1 CAPABILITY\r\na2 NOOP\r\n")
        assert client.readline().startswith(b"* OK")
        assert client.tagged("a1")[-1].startswith(b"a1 OK")
        assert client.tagged("a2")[-1].startswith(b"a2 OK")
    with daemon.raw("pop3") as client:
        client.send(f"USER {account.login}\r\nPASS {account.password}\r\nSTAT\r\nQUIT\r\n".encode())
        assert client.readline().startswith(b"+OK")  # greeting
        for what in ("USER", "PASS", "STAT", "QUIT"):
            assert client.readline().startswith(b"+OK"), what


def test_too_many_errors_close_the_session(daemon: Daemon) -> None:
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"".join(b"x%d FROB\r\n" % n for n in range(50)))
        data = read_reply_then_eof(client)
    assert b"* BYE" in data
    assert data.count(b" BAD ") <= 20


def one_garbage_connection(daemon: Daemon, number: int) -> None:
    rng = random.Random(number)
    ports = [p for p in (daemon.imap_port, daemon.pop3_port) if p]
    tls_ports = [p for p in (daemon.imaps_port, daemon.pop3s_port) if p]
    port = rng.choice(ports + tls_ports)
    kind = number % 5
    try:
        with socket.create_connection((daemon.host, port), timeout=10) as sock:
            if kind == 0:
                return  # connect and close at once
            if kind == 1:  # random bytes, then close
                sock.sendall(rng.randbytes(rng.randint(1, 4000)))
                return
            if kind == 2:  # random lines, read a bit, close
                for _ in range(rng.randint(1, 5)):
                    sock.sendall(rng.randbytes(rng.randint(1, 200)) + b"\r\n")
                sock.settimeout(0.2)
                with contextlib.suppress(TimeoutError):
                    sock.recv(4096)
                return
            if kind == 3:  # half-open: partial line, shut our side, wait for the close
                sock.sendall(b"a1 LOGIN partial")
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(10)
                while sock.recv(4096):
                    pass
                return
            # kind 4: reset (SO_LINGER 0) after a partial command
            sock.sendall(b"a1 AUTHENTICATE PLAIN\r\n" if port in ports else b"\x16\x03\x01")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    except OSError:
        pass  # resets are part of the game


def test_a_thousand_garbage_connections(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"limits": {"max_per_ip": 100}})
    assert_serving(daemon, accounts["badinput"])
    baseline = daemon.fd_count()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        list(pool.map(lambda n: one_garbage_connection(daemon, n), range(GARBAGE_CONNECTIONS)))
    assert daemon.alive(), daemon.log()[-5000:]
    assert_serving(daemon, accounts["badinput"])
    deadline = time.monotonic() + 20
    while daemon.fd_count() > baseline + 3:
        assert time.monotonic() < deadline, (
            f"fds stay at {daemon.fd_count()} (baseline {baseline}): {daemon.open_fds()}"
        )
        time.sleep(0.1)
    text = daemon.log()
    assert "Traceback" not in text
    for secret in all_secrets(accounts):
        assert secret not in text


def test_session_log_has_no_secrets(daemon: Daemon, accounts: dict[str, Account]) -> None:
    """So far in the session; every daemon's log is checked again when it stops."""
    text = daemon.log()
    assert "Traceback" not in text
    for secret in all_secrets(accounts):
        assert secret not in text, "a password appears in the daemon log"
