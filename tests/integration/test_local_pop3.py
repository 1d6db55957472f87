"""POP3 through meshproxy to Courier's courierpop3d, with poplib and raw commands."""

from __future__ import annotations

import base64
import poplib

import pytest

from .accounts import Account, deliver, wrong_password
from .clients import LineClient
from .daemon import Daemon
from .mail import append, imap_login, message, pop3

pytestmark = pytest.mark.integration


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def retr(client: LineClient, number: int) -> bytes:
    """RETR over a raw connection: the message with dot-stuffing undone, CRLF line ends."""
    client.send(b"RETR %d\r\n" % number)
    status = client.readline()
    assert status.startswith(b"+OK"), status
    lines = client.multiline()[:-1]
    return b"".join(line[1:] if line.startswith(b"..") else line for line in lines)


def login(client: LineClient, account: Account, password: str | None = None) -> bytes:
    client.send(f"USER {account.login}\r\n".encode())
    assert client.readline().startswith(b"+OK")
    client.send(f"PASS {password or account.pop3_password or account.password}\r\n".encode())
    return client.readline()


def test_user_pass_stat_list_retr_quit(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["pop3"]
    raw = message("pop3 retr", "first\r\n.starts with a dot\r\n\r\nlast\r\n")
    with imap_login(daemon, account) as client:
        append(client, raw)
    with pop3(daemon) as client:
        assert client.getwelcome().startswith(b"+OK")
        client.user(account.login)
        assert client.pass_(account.password).startswith(b"+OK")
        count, size = client.stat()
        assert count >= 1
        response, listing, _ = client.list()
        assert response.startswith(b"+OK")
        assert len(listing) == count
        assert sum(int(item.split()[1]) for item in listing) == size
        bodies = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
        assert raw in bodies
        assert client.quit().startswith(b"+OK")


def test_auth_plain_with_and_without_initial_response(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["pop3"]
    token = b64(f"\0{account.login}\0{account.password}".encode())
    with daemon.raw("pop3") as client:
        assert client.readline().startswith(b"+OK")
        client.send(b"AUTH PLAIN " + token + b"\r\n")
        assert client.readline().startswith(b"+OK"), "AUTH PLAIN with initial response"
        client.send(b"STAT\r\n")
        assert client.readline().startswith(b"+OK")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(b"AUTH PLAIN\r\n")
        assert client.readline().startswith(b"+")
        client.send(token + b"\r\n")
        assert client.readline().startswith(b"+OK")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")


def test_poplib_auth_plain_shortcmd(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["pop3"]
    token = b64(f"\0{account.login}\0{account.password}".encode()).decode()
    with pop3(daemon) as client:
        assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
        assert client.stat()[0] >= 0
        client.quit()


def test_dele_removes_the_message(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["pop3dele"]
    keep, drop = message("keep"), message("drop")
    with imap_login(daemon, account) as client:
        append(client, drop)
        append(client, keep)
    with pop3(daemon) as client:
        client.user(account.login)
        client.pass_(account.password)
        count, _ = client.stat()
        bodies = {n: b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)}
        doomed = next(n for n, body in bodies.items() if body == drop)
        assert client.dele(doomed).startswith(b"+OK")
        client.quit()
    with pop3(daemon) as client:
        client.user(account.login)
        client.pass_(account.password)
        count, _ = client.stat()
        left = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
        client.quit()
    assert drop not in left
    assert keep in left


def test_utf8_before_login_is_passed_to_pop3d(daemon: Daemon, accounts: dict[str, Account]) -> None:
    """pop3d serves 8-bit headers raw only with UTF8=1 (contract section 3)."""
    account = accounts["utf8"]
    raw = (
        "From: Jörg <joerg@mpt.test>\nTo: Zoë <zoe@mpt.test>\nSubject: Grüße aus Köln\n"
        "Message-Id: <utf8-test@mpt.test>\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        "Schöne Grüße.\n"
    ).encode()
    deliver(account, raw)
    expected = raw.replace(b"\n", b"\r\n")
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(b"UTF8\r\n")
        assert client.readline().startswith(b"+OK")
        assert login(client, account).startswith(b"+OK")
        assert retr(client, 1) == expected
        client.send(b"QUIT\r\n")
        client.readline()
    with daemon.raw("pop3") as client:
        client.readline()
        assert login(client, account).startswith(b"+OK")
        wrapped = retr(client, 1)
        client.send(b"QUIT\r\n")
        client.readline()
    assert wrapped != expected
    assert b"message/global" in wrapped


def test_wrong_password_and_unknown_user(daemon: Daemon, accounts: dict[str, Account]) -> None:
    replies = []
    for user in (accounts["pop3"].login, "nobody-here@mpt.test"):
        with daemon.raw("pop3") as client:
            client.readline()
            client.send(f"USER {user}\r\nPASS {wrong_password()}\r\n".encode())
            assert client.readline().startswith(b"+OK")
            replies.append(client.readline())
            client.send(b"QUIT\r\n")
    assert replies[0].startswith(b"-ERR [AUTH]"), replies
    assert replies[0] == replies[1]


def test_poplib_wrong_password_raises(daemon: Daemon, accounts: dict[str, Account]) -> None:
    with pop3(daemon) as client:
        client.user(accounts["pop3"].login)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_(wrong_password())


def test_pipelined_user_pass_stat_all_answered(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["pop3"]
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(f"USER {account.login}\r\nPASS {account.password}\r\nSTAT\r\nQUIT\r\n".encode())
        assert client.readline().startswith(b"+OK"), "USER"
        assert client.readline().startswith(b"+OK"), "PASS"
        stat = client.readline()
        assert stat.split()[0] == b"+OK", stat
        assert len(stat.split()) == 3, stat
        assert client.readline().startswith(b"+OK"), "QUIT"


def test_disabled_account(daemon: Daemon, accounts: dict[str, Account]) -> None:
    with daemon.raw("pop3") as client:
        client.readline()
        reply = login(client, accounts["nopop3"])
        assert reply.startswith(b"-ERR [AUTH]"), reply
    with pop3(daemon) as client:
        client.user(accounts["noimap"].login)
        assert client.pass_(accounts["noimap"].password).startswith(b"+OK")
        client.quit()


def test_service_specific_passwords(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["services"]
    with daemon.raw("pop3") as client:
        client.readline()
        assert login(client, account, account.pop3_password).startswith(b"+OK")
        client.send(b"QUIT\r\n")
        client.readline()
    for other in (account.imap_password, account.password):
        with daemon.raw("pop3") as client:
            client.readline()
            assert login(client, account, other).startswith(b"-ERR [AUTH]")


def test_capa_and_pre_login_commands(daemon: Daemon) -> None:
    with daemon.raw("pop3") as client:
        client.readline()
        client.send(b"CAPA\r\n")
        assert client.readline().startswith(b"+OK")
        capa = [line.strip().decode() for line in client.multiline()[:-1]]
        assert "USER" in capa
        assert "STLS" in capa
        assert "UTF8 USER" in capa or "UTF8" in capa
        assert any(line.startswith("SASL ") and "PLAIN" in line for line in capa)
        client.send(b"STAT\r\n")
        assert client.readline().startswith(b"-ERR")
        client.send(b"PASS before-user\r\n")
        assert client.readline().startswith(b"-ERR")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")
        assert client.read_to_eof(5) == b""


def test_missing_home_is_sys_temp(daemon: Daemon, accounts: dict[str, Account]) -> None:
    with daemon.raw("pop3") as client:
        client.readline()
        reply = login(client, accounts["nohome"])
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
