"""What the daemon logs: one summary per session, one line per failed login, imapd's lines."""

from __future__ import annotations

import re

import pytest

from .accounts import Account, wrong_password
from .daemon import Daemon
from .mail import imap_login, pop3

pytestmark = pytest.mark.integration

SUMMARY = re.compile(
    r"session (?P<id>\S+) end client=(?P<client>\S+) listener=(?P<listener>\S+) "
    r"user=(?P<user>\S+) decision=(?P<decision>\S+)(?: \S+=\S+)*? in=(?P<bytes_in>\d+) "
    r"out=(?P<bytes_out>\d+) duration=(?P<duration>[\d.]+)s"
)
FAILED = re.compile(
    r"session (?P<id>\S+) login failed client=(?P<client>\S+) user=(?P<user>\S+) "
    r"mechanism=(?P<mechanism>\S+) reason=(?P<reason>.*)$",
    re.MULTILINE,
)


def test_one_summary_line_per_local_imap_session(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["logs"]
    offset = daemon.log_size()
    with imap_login(daemon, account) as client:
        client.select("INBOX")
        local_port = client.sock.getsockname()[1]
    match = daemon.wait_for_log(
        SUMMARY, since=offset, predicate=lambda m: m["client"] == f"127.0.0.1:{local_port}"
    )
    assert match["user"] == account.login
    assert match["decision"].lower().startswith("local"), match.group(0)
    assert int(match["bytes_in"]) > 0
    assert int(match["bytes_out"]) > 0
    assert float(match["duration"]) >= 0
    text = daemon.log_since(offset)
    lines = [m for m in SUMMARY.finditer(text) if m["client"] == f"127.0.0.1:{local_port}"]
    assert len(lines) == 1, text


def test_one_summary_line_per_pop3_session(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["logs"]
    offset = daemon.log_size()
    with pop3(daemon) as client:
        local_port = client.sock.getsockname()[1]
        client.user(account.login)
        client.pass_(account.password)
        client.stat()
        client.quit()
    match = daemon.wait_for_log(
        SUMMARY, since=offset, predicate=lambda m: m["client"] == f"127.0.0.1:{local_port}"
    )
    assert match["user"] == account.login
    assert match["decision"].lower().startswith("local"), match.group(0)


def test_session_without_login_has_a_summary(daemon: Daemon) -> None:
    offset = daemon.log_size()
    with daemon.raw("imap") as client:
        client.readline()
        local_port = client.sock.getsockname()[1]
        client.command("a1", "LOGOUT")
    match = daemon.wait_for_log(
        SUMMARY, since=offset, predicate=lambda m: m["client"] == f"127.0.0.1:{local_port}"
    )
    assert match["user"] == "-"
    assert int(match["bytes_in"]) == len(b"a1 LOGOUT\r\n")


def test_failed_login_line_without_password(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["logs"]
    password = wrong_password()
    offset = daemon.log_size()
    with daemon.raw("imap") as client:
        client.readline()
        local_port = client.sock.getsockname()[1]
        reply = client.command("a1", f'LOGIN "{account.login}" "{password}"')
        assert reply[-1].startswith(b"a1 NO")
        client.command("a2", "LOGOUT")
    match = daemon.wait_for_log(
        FAILED, since=offset, predicate=lambda m: m["client"] == f"127.0.0.1:{local_port}"
    )
    assert match["user"] == account.login
    summary = daemon.wait_for_log(
        SUMMARY, since=offset, predicate=lambda m: m["client"] == f"127.0.0.1:{local_port}"
    )
    assert summary["id"] == match["id"]
    text = daemon.log_since(offset)
    assert password not in text
    assert account.password not in text
    failed = [m for m in FAILED.finditer(text) if m["client"] == f"127.0.0.1:{local_port}"]
    assert len(failed) == 1


def test_failed_pop3_login_line(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["logs"]
    password = wrong_password()
    offset = daemon.log_size()
    with daemon.raw("pop3") as client:
        client.readline()
        local_port = client.sock.getsockname()[1]
        client.send(f"USER {account.login}\r\nPASS {password}\r\nQUIT\r\n".encode())
        client.readline()
        assert client.readline().startswith(b"-ERR")
    match = daemon.wait_for_log(
        FAILED, since=offset, predicate=lambda m: m["client"] == f"127.0.0.1:{local_port}"
    )
    assert match["user"] == account.login
    assert password not in daemon.log_since(offset)


def test_imapd_login_and_logout_lines_reach_the_log(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["logs"]
    offset = daemon.log_size()
    with imap_login(daemon, account) as client:
        local_port = client.sock.getsockname()[1]
        client.select("INBOX")
    login = re.escape(f"LOGIN, user={account.login}, ip=[127.0.0.1], port=[{local_port}]")
    daemon.wait_for_log(login, since=offset)
    logout = re.escape(f"LOGOUT, user={account.login}, ip=[127.0.0.1], port=[{local_port}]")
    daemon.wait_for_log(logout, since=offset)


def test_pop3d_logout_line_reaches_the_log(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["logs"]
    offset = daemon.log_size()
    with pop3(daemon) as client:
        local_port = client.sock.getsockname()[1]
        client.user(account.login)
        client.pass_(account.password)
        client.quit()
    line = re.escape(f"LOGOUT, user={account.login}, ip=[127.0.0.1], port=[{local_port}]")
    daemon.wait_for_log(line, since=offset)
