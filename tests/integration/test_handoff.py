"""The hand-off to Courier: raw fds, socketpair relays, children, signals, Courier's stderr.

Each test waits on real conditions (a reply line, a log line, a process exit), each bounded.
Accounts: ``logs`` (read-only use: LOGIN, SELECT, NOOP, STAT), ``limits`` (the failed-login
delay test) and ``nohome`` (its home directory does not exist).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .accounts import Account, wrong_password
from .clients import LineClient
from .conftest import StartDaemon
from .daemon import Daemon

pytestmark = pytest.mark.integration

WAIT = 10.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll a real condition (a file in /proc, a process state) with a bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """True once ``pid`` no longer exists, not even as a zombie."""
    return not Path(f"/proc/{pid}").exists()


def pending_input(client: LineClient) -> bool:
    """Whether the server has sent ``client`` anything not read yet (without blocking)."""
    if client.buffer:
        return True
    readable, _, _ = select.select([client.sock], [], [], 0)
    return bool(readable)


def imap_login(client: LineClient, account: Account, tag: str = "a1") -> list[bytes]:
    assert client.readline().startswith(b"* OK")
    return client.command(tag, f'LOGIN "{account.login}" "{account.password}"')


def port_of(client: LineClient) -> int:
    return int(client.sock.getsockname()[1])


def session_of(daemon: Daemon, port: int, since: int) -> re.Match[str]:
    """The summary line of the daemon session serving the client at source ``port``."""
    pattern = (
        rf"session (\w+) end client=127\.0\.0\.1:{port} .*decision=(\S+) pid=(\S+) "
        r".*reason=(.*)"
    )
    return daemon.wait_for_log(pattern, since=since)


def child_pid(match: re.Match[str]) -> int:
    assert match.group(3).isdigit(), match.group(0)
    return int(match.group(3))


# -- raw hand-off ------------------------------------------------------------------------------


def test_raw_handoff_keeps_no_copy_of_the_socket(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon()
    account = accounts["logs"]
    # the start-up probes (one connection per listener) are over: this is the idle fd count
    probes = len(list(daemon.listeners()))
    wait_until(lambda: daemon.log().count(" end client=") >= probes, "the start-up probes")
    baseline = daemon.fd_count()
    clients = [daemon.raw("imap") for _ in range(3)]
    try:
        for client in clients:
            since = daemon.log_size()
            assert imap_login(client, account)[-1].startswith(b"a1 OK")
            assert session_of(daemon, port_of(client), since).group(2) == "local-fd"
            assert not daemon_holds(daemon, client)
        # three live IMAP sessions, and the daemon holds none of their sockets
        assert daemon.fd_count() == baseline
        for client in clients:
            assert client.command("a2", "NOOP")[-1].startswith(b"a2 OK")
    finally:
        for client in clients:
            client.close()
    assert daemon.fd_count() == baseline


def daemon_holds(daemon: Daemon, client: LineClient) -> bool:
    """Whether the daemon has an fd on the server side of ``client``'s TCP connection."""
    local = client.sock.getpeername()[1]
    remote = client.sock.getsockname()[1]
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == local and int(fields[2].split(":")[1], 16) == remote:
            inode = fields[9]
    assert inode, "the connection is not in /proc/net/tcp"
    links = []
    for fd in os.listdir(f"/proc/{daemon.pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{daemon.pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return f"socket:[{inode}]" in links


def test_raw_handoff_child_is_reaped(daemon: Daemon, accounts: dict[str, Account]) -> None:
    since = daemon.log_size()
    with daemon.raw("imap") as client:
        imap_login(client, accounts["logs"])
        pid = child_pid(session_of(daemon, port_of(client), since))
        assert pid in daemon.children()
        assert client.command("a2", "LOGOUT")[-1].startswith(b"a2 OK")
    wait_until(lambda: gone(pid), f"imapd {pid} to be reaped (not left a zombie)")
    assert pid not in daemon.children()


def test_imapd_stderr_reaches_the_log_with_the_session(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["logs"]
    since = daemon.log_size()
    with daemon.raw("imap") as client:
        imap_login(client, account)
        port = client.sock.getsockname()[1]
        session = session_of(daemon, port_of(client), since).group(1)
        login = (
            rf"imapd\[{session}\]: INFO: LOGIN, user={re.escape(account.login)}, "
            rf"ip=\[127\.0\.0\.1\], port=\[{port}\]"
        )
        daemon.wait_for_log(login, since=since)
        client.command("a2", "LOGOUT")
    daemon.wait_for_log(rf"imapd\[{session}\]: INFO: LOGOUT, user=", since=since)


# -- pipelined commands go through a socketpair ------------------------------------------------


def test_imap_commands_pipelined_behind_login_are_answered(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["logs"]
    since = daemon.log_size()
    with daemon.raw("imap") as client:
        port = port_of(client)
        assert client.readline().startswith(b"* OK")
        client.send(
            f'a1 LOGIN "{account.login}" "{account.password}"\r\na2 SELECT INBOX\r\n'.encode()
        )
        assert client.tagged("a1")[-1].startswith(b"a1 OK")
        assert client.tagged("a2")[-1].startswith(b"a2 OK [READ-WRITE]")
        assert client.command("a3", "LOGOUT")[-1].startswith(b"a3 OK")
        assert client.read_to_eof() == b""
    summary = session_of(daemon, port, since)
    assert summary.group(2) == "local-relay"


def test_pop3_user_pass_stat_in_one_write(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["logs"]
    since = daemon.log_size()
    with daemon.raw("pop3") as client:
        port = port_of(client)
        assert client.readline().startswith(b"+OK")
        client.send(f"USER {account.login}\r\nPASS {account.password}\r\nSTAT\r\n".encode())
        assert client.readline().startswith(b"+OK")  # USER
        assert client.readline() == b"+OK logged in.\r\n"  # pop3d answers PASS itself
        assert re.match(rb"\+OK \d+ \d+\r\n", client.readline())
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")
    assert session_of(daemon, port, since).group(2) == "local-relay"


def test_relayed_child_is_reaped(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["logs"]
    since = daemon.log_size()
    with daemon.raw("imap") as client:
        port = port_of(client)
        assert client.readline().startswith(b"* OK")
        client.send(f'a1 LOGIN "{account.login}" "{account.password}"\r\na2 NOOP\r\n'.encode())
        assert client.tagged("a2")[-1].startswith(b"a2 OK")
        client.command("a3", "LOGOUT")
    summary = session_of(daemon, port, since)
    assert summary.group(2) == "local-relay"
    pid = child_pid(summary)
    wait_until(lambda: gone(pid), f"the relayed imapd {pid} to be reaped")


# -- TLS goes through a socketpair ------------------------------------------------------------


def test_implicit_tls_session_is_relayed(daemon: Daemon, accounts: dict[str, Account]) -> None:
    since = daemon.log_size()
    with daemon.raw("imap", tls=True) as client:
        port = port_of(client)
        assert imap_login(client, accounts["logs"])[-1].startswith(b"a1 OK")
        assert client.command("a2", "SELECT INBOX")[-1].startswith(b"a2 OK")
        client.command("a3", "LOGOUT")
    summary = session_of(daemon, port, since)
    assert summary.group(2) == "local-relay"


def test_relay_idle_timeout_closes_a_silent_session(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"limits": {"idle_timeout": 1.0}})
    with daemon.raw("imap", tls=True) as client:
        imap_login(client, accounts["logs"])
        started = time.monotonic()
        assert client.read_to_eof(WAIT) == b""
        assert time.monotonic() - started >= 0.9
    daemon.wait_for_log(r"decision=local-relay .*reason=idle")


def test_relayed_client_connections_use_tcp_keepalive(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    """A long IDLE is silent for minutes: a vanished client is found by TCP keepalive
    (probes after 300 s), not by cutting live sessions with a short idle timeout."""
    with daemon.raw("imap", tls=True) as client:
        port = port_of(client)
        assert imap_login(client, accounts["logs"])[-1].startswith(b"a1 OK")
        deadline = time.monotonic() + WAIT
        shown = ""
        while time.monotonic() < deadline:  # ss shows one timer: until the data is acked,
            shown = subprocess.run(  # the retransmission timer ("on") hides keepalive's
                ["ss", "-tnoH", "state", "established", f"( dport = :{port} )"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if "timer:(on," not in shown:
                break
        client.command("a2", "LOGOUT")
    assert re.search(r"timer:\(keepalive,", shown), shown


# -- daemon shutdown ---------------------------------------------------------------------------


def test_sigterm_leaves_a_raw_session_running(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon()
    with daemon.raw("imap") as session, daemon.raw("imap") as waiting:
        assert imap_login(session, accounts["logs"])[-1].startswith(b"a1 OK")
        assert waiting.readline().startswith(b"* OK")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(WAIT) == 0
        # the pre-login client was told, the logged-in one goes on with Courier
        assert waiting.readline().startswith(b"* BYE")
        assert waiting.read_to_eof() == b""
        assert session.command("a2", "NOOP")[-1].startswith(b"a2 OK")
        assert session.command("a3", "SELECT INBOX")[-1].startswith(b"a3 OK")
        assert session.command("a4", "LOGOUT")[-1].startswith(b"a4 OK")
    daemon.check_log()


# -- failures ----------------------------------------------------------------------------------


def test_failed_login_delay_does_not_block_another_login(
    meshproxy_daemon: StartDaemon, accounts: dict[str, Account]
) -> None:
    daemon = meshproxy_daemon({"auth": {"failure_delay": 6.0}})
    account = accounts["limits"]
    with daemon.raw("imap") as failing, daemon.raw("imap") as other:
        assert failing.readline().startswith(b"* OK")
        failing.send(f'f1 LOGIN "{account.login}" "{wrong_password()}"\r\n'.encode())
        daemon.wait_for_log(r"login failed client=.* mechanism=LOGIN")
        started = time.monotonic()
        assert imap_login(other, accounts["logs"])[-1].startswith(b"a1 OK")
        assert time.monotonic() - started < 5.0
        # the failing client has not been answered yet, and is answered later
        assert not pending_input(failing)
        assert failing.tagged("f1", 15)[-1].startswith(b"f1 NO [AUTHENTICATIONFAILED]")
        other.command("a2", "LOGOUT")


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_exec_failure_is_a_temporary_failure(
    daemon: Daemon, accounts: dict[str, Account], proto: str
) -> None:
    account = accounts["nohome"]
    since = daemon.log_size()
    with daemon.raw(proto) as client:
        if proto == "imap":
            reply = imap_login(client, account)[-1]
            assert reply.startswith(b"a1 NO [UNAVAILABLE]"), reply
            assert client.command("a2", "NOOP")[-1].startswith(b"a2 OK")  # still pre-login
        else:
            assert client.readline().startswith(b"+OK")
            client.send(f"USER {account.login}\r\nPASS {account.password}\r\n".encode())
            client.readline()
            reply = client.readline()
            assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    daemon.wait_for_log(r"session \w+ failed at stage exec: exec \S+ in \S+", since=since)
    assert os.path.exists(f"/proc/{daemon.pid}")
