"""IMAP through meshproxy to Courier's imapd, with imaplib and raw commands."""

from __future__ import annotations

import base64
import hashlib
import hmac
import imaplib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from .accounts import HASH_SCHEMES, Account, wrong_password
from .daemon import Daemon, DaemonFactory
from .mail import append, capabilities, fetch_all, imap, imap_login, message, message_id

pytestmark = pytest.mark.integration

LOGIN_STAGE = {"STARTTLS", "LOGINDISABLED", "SASL-IR", "ID"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def login_reply(daemon: Daemon, login: str, password: str, *, tls: bool = False) -> bytes:
    """The tagged reply to a raw LOGIN (quoted strings), after the greeting."""
    with daemon.raw("imap", tls=tls) as client:
        client.readline()
        lines = client.command("a1", f'LOGIN "{login}" "{password}"')
        client.send(b"a2 LOGOUT\r\n")
        return lines[-1]


@pytest.mark.parametrize("scheme", list(HASH_SCHEMES))
def test_login_with_every_hash_scheme(
    daemon: Daemon, accounts: dict[str, Account], scheme: str
) -> None:
    account = accounts[HASH_SCHEMES[scheme]]
    with imap_login(daemon, account) as client:
        typ, data = client.select("INBOX")
        assert typ == "OK", data


def test_wrong_password_and_unknown_user_get_the_same_reply(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    wrong = login_reply(daemon, accounts["imap"].login, wrong_password())
    unknown = login_reply(daemon, "nobody-here@mpt.test", wrong_password())
    assert wrong.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), wrong
    assert unknown == wrong


def test_login_is_case_sensitive_like_userdb(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["imap"]
    reply = login_reply(daemon, account.login.upper(), account.password)
    assert reply.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), reply


def test_literal_login_arguments(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["imap"]
    user, password = account.login.encode(), account.password.encode()
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"a1 LOGIN {%d}\r\n" % len(user))
        assert client.readline().startswith(b"+")
        client.send(user + b" {%d+}\r\n" % len(password) + password + b"\r\n")
        reply = client.tagged("a1")
        assert reply[-1].startswith(b"a1 OK"), reply
        assert client.command("a2", "LOGOUT")[-1].startswith(b"a2 OK")


def test_authenticate_plain(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["imap"]
    with imap(daemon) as client:
        response = f"\0{account.login}\0{account.password}".encode()
        typ, data = client.authenticate("PLAIN", lambda _challenge: response)
        assert typ == "OK", data
        typ, data = client.select("INBOX")
        assert typ == "OK", data


def test_authenticate_plain_with_initial_response(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["imap"]
    with daemon.raw("imap") as client:
        client.readline()
        token = b64(f"\0{account.login}\0{account.password}".encode())
        reply = client.command("a1", f"AUTHENTICATE PLAIN {token}")
        assert reply[-1].startswith(b"a1 OK"), reply
        assert client.command("a2", "LOGOUT")[-1].startswith(b"a2 OK")


def test_authenticate_cram_md5_with_hmac_md5pw(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["cram"]
    with imap(daemon) as client:
        typ, data = client.login_cram_md5(account.login, account.password)
        assert typ == "OK", data
        typ, data = client.select("INBOX")
        assert typ == "OK", data


def cram_reply(daemon: Daemon, account: Account, password: str) -> bytes:
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"a1 AUTHENTICATE CRAM-MD5\r\n")
        line = client.readline()
        assert line.startswith(b"+ "), line
        challenge = base64.b64decode(line[2:].strip())
        digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
        client.send(b64(f"{account.login} {digest}".encode()).encode() + b"\r\n")
        reply = client.tagged("a1")[-1]
        client.send(b"a2 LOGOUT\r\n")
        return reply


def test_cram_md5_wrong_password(daemon: Daemon, accounts: dict[str, Account]) -> None:
    reply = cram_reply(daemon, accounts["cram"], wrong_password())
    assert reply.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), reply


def test_cram_md5_refused_for_a_crypt_only_account(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["sha512c"]
    reply = cram_reply(daemon, account, account.password)
    assert reply.startswith(b"a1 NO [CANNOT]"), reply


def test_select_append_fetch_round_trip(daemon: Daemon, accounts: dict[str, Account]) -> None:
    raw = message("round trip", "line one\r\nline two\r\n.\r\nlast line\r\n")
    with imap_login(daemon, accounts["imap"]) as client:
        append(client, raw)
        messages = fetch_all(client)
    assert raw in messages
    assert message_id(raw) in {message_id(item) for item in messages}


def test_commands_pipelined_behind_login_reach_imapd(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["imap"]
    with daemon.raw("imap") as client:
        client.send(
            f'a1 LOGIN "{account.login}" "{account.password}"\r\n'
            "a2 SELECT INBOX\r\na3 LOGOUT\r\n".encode()
        )
        assert client.readline().startswith(b"* OK")
        assert client.tagged("a1")[-1].startswith(b"a1 OK")
        assert client.tagged("a2")[-1].startswith(b"a2 OK")
        assert client.tagged("a3")[-1].startswith(b"a3 OK")


@pytest.fixture(scope="module")
def idle_daemon(
    daemon_factory: DaemonFactory,
    courier_config: Callable[[Mapping[str, str]], Path],
    accounts: dict[str, Account],
) -> Iterator[Daemon]:
    """imapd polls the Maildir every IMAP_IDLE_TIMEOUT seconds in IDLE (Debian: 60)."""
    folder = courier_config({"IMAP_IDLE_TIMEOUT": "2"})
    instance = daemon_factory.start({"courier": {"config_dir": str(folder)}})
    yield instance
    daemon_factory.stop(instance)


def test_idle_sees_a_message_appended_elsewhere(
    idle_daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["idle"]
    with idle_daemon.raw("imap") as client:
        client.readline()
        assert client.command("a1", f'LOGIN "{account.login}" "{account.password}"')[-1].startswith(
            b"a1 OK"
        )
        selected = client.command("a2", "SELECT INBOX")
        assert selected[-1].startswith(b"a2 OK"), selected
        client.send(b"a3 IDLE\r\n")
        assert client.readline().startswith(b"+"), "no IDLE continuation"
        with imap_login(idle_daemon, account) as other:
            append(other, message("idle"))
        lines = client.read_until(lambda line: line.endswith(b"EXISTS\r\n"), timeout=15)
        assert lines[-1].startswith(b"* ")
        client.send(b"DONE\r\n")
        assert client.tagged("a3")[-1].startswith(b"a3 OK")
        logout = client.command("a4", "LOGOUT")
        assert any(line.startswith(b"* BYE") for line in logout)
        assert logout[-1].startswith(b"a4 OK")


def test_disabled_account_gets_no_not_ok_then_bye(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["noimap"]
    reply = login_reply(daemon, account.login, account.password)
    assert reply.startswith(b"a1 NO [CONTACTADMIN]"), reply


def test_disabled_pop3_does_not_disable_imap(daemon: Daemon, accounts: dict[str, Account]) -> None:
    with imap_login(daemon, accounts["nopop3"]) as client:
        assert client.select("INBOX")[0] == "OK"


def test_disableinsecureimap_refuses_plaintext_only(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["noinsecure"]
    reply = login_reply(daemon, account.login, account.password)
    assert reply.startswith(b"a1 NO [CONTACTADMIN]"), reply
    with imap_login(daemon, account, tls=True) as client:
        assert client.select("INBOX")[0] == "OK"


def test_service_specific_passwords(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["services"]
    assert account.imap_password
    assert account.pop3_password
    ok = login_reply(daemon, account.login, account.imap_password)
    assert ok.startswith(b"a1 OK"), ok
    for other in (account.pop3_password, account.password):
        reply = login_reply(daemon, account.login, other)
        assert reply.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), reply


def test_missing_home_is_a_temporary_failure(daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["nohome"]
    reply = login_reply(daemon, account.login, account.password)
    assert reply.startswith(b"a1 NO [UNAVAILABLE]"), reply


@pytest.fixture(scope="module")
def proxy_daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    instance = daemon_factory.start({"imap": {"proxy": True}, "pop3": {"proxy": True}})
    yield instance
    daemon_factory.stop(instance)


def test_mailhost_elsewhere_with_proxy_is_unavailable(
    proxy_daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["elsewhere"]
    reply = login_reply(proxy_daemon, account.login, account.password)
    assert reply.startswith(b"a1 NO [UNAVAILABLE]"), reply


@pytest.mark.parametrize("key", ["here", "imap"])
def test_mailhost_here_or_none_with_proxy_is_served_locally(
    proxy_daemon: Daemon, accounts: dict[str, Account], key: str
) -> None:
    with imap_login(proxy_daemon, accounts[key]) as client:
        assert client.select("INBOX")[0] == "OK"


def test_mailhost_elsewhere_without_proxy_is_served_locally(
    daemon: Daemon, accounts: dict[str, Account]
) -> None:
    with imap_login(daemon, accounts["elsewhere"]) as client:
        assert client.select("INBOX")[0] == "OK"


def post_login_capabilities(
    daemon: Daemon, account: Account, *, tls: bool
) -> tuple[list[str], list[str]]:
    with daemon.raw("imap", tls=tls) as client:
        greeting = client.readline()
        pre = capabilities(greeting)
        listed = client.command("a0", "CAPABILITY")
        assert capabilities(listed[0]) == pre, (listed, greeting)
        assert client.command("a1", f'LOGIN "{account.login}" "{account.password}"')[-1].startswith(
            b"a1 OK"
        )
        after = client.command("a2", "CAPABILITY")
        client.send(b"a3 LOGOUT\r\n")
    return pre, capabilities(after[0])


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "imaps"])
def test_greeting_capabilities_match_imapd(
    daemon: Daemon, accounts: dict[str, Account], tls: bool
) -> None:
    pre, post = post_login_capabilities(daemon, accounts["imap"], tls=tls)

    def core(caps: list[str]) -> set[str]:
        return {
            cap.upper()
            for cap in caps
            if cap.upper() not in LOGIN_STAGE and not cap.upper().startswith("AUTH=")
        }

    assert core(pre) == core(post), (pre, post)
    if not tls:
        assert "STARTTLS" in pre
    assert "STARTTLS" not in post
    assert "IMAP4REV1" in {cap.upper() for cap in pre}
    assert {"AUTH=PLAIN", "AUTH=LOGIN", "AUTH=CRAM-MD5"} <= set(pre)


def test_pre_login_commands(daemon: Daemon) -> None:
    with daemon.raw("imap") as client:
        client.readline()
        assert client.command("a1", "NOOP")[-1].startswith(b"a1 OK")
        reply = client.command("a2", 'ID ("name" "mpt")')
        assert reply[0].startswith(b"* ID"), reply
        assert reply[-1].startswith(b"a2 OK")
        assert client.command("a3", "SELECT INBOX")[-1].startswith(b"a3 BAD")
        assert client.command("a4", "LOGIN onlyone")[-1].startswith(b"a4 BAD")
        logout = client.command("a5", "LOGOUT")
        assert logout[0].startswith(b"* BYE")
        assert logout[-1].startswith(b"a5 OK")
        assert client.read_to_eof(5) == b""


def test_authenticate_cancel(daemon: Daemon, accounts: dict[str, Account]) -> None:
    with daemon.raw("imap") as client:
        client.readline()
        client.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert client.readline().startswith(b"+")
        client.send(b"*\r\n")
        assert client.tagged("a1")[-1].startswith(b"a1 BAD")
        account = accounts["imap"]
        ok = client.command("a2", f'LOGIN "{account.login}" "{account.password}"')
        assert ok[-1].startswith(b"a2 OK"), ok
        client.send(b"a3 LOGOUT\r\n")


def test_imaplib_session_end_to_end(daemon: Daemon, accounts: dict[str, Account]) -> None:
    """LOGIN, SELECT, APPEND, SEARCH, FETCH, STORE, EXPUNGE, LOGOUT in one session."""
    raw = message("end to end")
    with imap_login(daemon, accounts["imap"]) as client:
        append(client, raw)
        typ, data = client.select("INBOX")
        assert typ == "OK"
        typ, data = client.search(None, "HEADER", "Message-Id", message_id(raw))
        assert typ == "OK"
        assert data[0], data
        number = data[0].split()[-1]
        typ, data = client.fetch(number, "(BODY.PEEK[])")
        assert typ == "OK"
        assert isinstance(data[0], tuple)
        assert data[0][1] == raw
        assert client.store(number, "+FLAGS", r"(\Deleted)")[0] == "OK"
        assert client.expunge()[0] == "OK"
        typ, _ = client.logout()
        assert typ == "BYE"
    with pytest.raises(imaplib.IMAP4.error), imap(daemon) as client:
        client.login(accounts["imap"].login, wrong_password())
