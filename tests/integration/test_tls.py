"""TLS: STARTTLS/STLS with curl, implicit TLS, tls.required, old versions, command injection."""

from __future__ import annotations

import imaplib
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from .accounts import Account, deliver
from .clients import LineClient
from .daemon import Daemon, DaemonFactory
from .mail import capabilities, imap_login, message, split_body

pytestmark = pytest.mark.integration

CURL_TIMEOUT = 30


@pytest.fixture(scope="module")
def tls_daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    """TLS required for every login on the plaintext listeners."""
    instance = daemon_factory.start({"tls": {"required": True}})
    yield instance
    daemon_factory.stop(instance)


@pytest.fixture(scope="module")
def tls_message(accounts: dict[str, Account]) -> bytes:
    """One message in the ``tls`` account's INBOX (delivered straight into the Maildir)."""
    raw = message("over tls").replace(b"\r\n", b"\n")
    deliver(accounts["tls"], raw)
    return raw


def curl(daemon: Daemon, account: Account, url: str, *options: str) -> bytes:
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--max-time",
        str(CURL_TIMEOUT - 5),
        "--cacert",
        str(daemon.ca_file),
        "--user",
        f"{account.login}:{account.password}",
        "--login-options",
        "AUTH=PLAIN",
        *options,
        url,
    ]
    result = subprocess.run(command, capture_output=True, timeout=CURL_TIMEOUT, check=False)
    assert result.returncode == 0, (result.returncode, result.stderr.decode(errors="replace"))
    return result.stdout


def same_message(fetched: bytes, raw: bytes) -> bool:
    return fetched.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")


def test_curl_imap_starttls_required(
    tls_daemon: Daemon, accounts: dict[str, Account], tls_message: bytes
) -> None:
    base = f"imap://127.0.0.1:{tls_daemon.imap_port}"
    listing = curl(tls_daemon, accounts["tls"], f"{base}/", "--ssl-reqd")
    assert b"INBOX" in listing
    fetched = curl(tls_daemon, accounts["tls"], f"{base}/INBOX;MAILINDEX=1", "--ssl-reqd")
    assert same_message(fetched, tls_message)


def test_curl_pop3_stls_required(
    tls_daemon: Daemon, accounts: dict[str, Account], tls_message: bytes
) -> None:
    base = f"pop3://127.0.0.1:{tls_daemon.pop3_port}"
    listing = curl(tls_daemon, accounts["tls"], f"{base}/", "--ssl-reqd")
    assert listing.startswith(b"1 ")
    fetched = curl(tls_daemon, accounts["tls"], f"{base}/1", "--ssl-reqd")
    assert same_message(fetched, tls_message)


def test_curl_implicit_tls(
    tls_daemon: Daemon, accounts: dict[str, Account], tls_message: bytes
) -> None:
    imaps = f"imaps://127.0.0.1:{tls_daemon.imaps_port}/INBOX;MAILINDEX=1"
    assert same_message(curl(tls_daemon, accounts["tls"], imaps), tls_message)
    pop3s = f"pop3s://127.0.0.1:{tls_daemon.pop3s_port}/1"
    assert same_message(curl(tls_daemon, accounts["tls"], pop3s), tls_message)


def test_imaplib_imaps(
    tls_daemon: Daemon, accounts: dict[str, Account], tls_message: bytes
) -> None:
    with imap_login(tls_daemon, accounts["tls"], tls=True) as client:
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK"
        assert isinstance(data[0], tuple)
        assert split_body(data[0][1]) == split_body(tls_message)


def test_imaplib_starttls(tls_daemon: Daemon, accounts: dict[str, Account]) -> None:
    assert tls_daemon.imap_port is not None
    with imaplib.IMAP4(tls_daemon.host, tls_daemon.imap_port, timeout=15) as client:
        assert "LOGINDISABLED" in client.capabilities
        typ, _ = client.starttls(ssl_context=tls_daemon.client_context())
        assert typ == "OK"
        assert "LOGINDISABLED" not in client.capabilities
        assert "AUTH=PLAIN" in client.capabilities
        typ, _ = client.login(accounts["tls"].login, accounts["tls"].password)
        assert typ == "OK"
        assert client.select("INBOX")[0] == "OK"


def test_imap_login_before_starttls_is_refused(
    tls_daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["tls"]
    with tls_daemon.raw("imap") as client:
        caps = capabilities(client.readline())
        assert "LOGINDISABLED" in caps
        assert "STARTTLS" in caps
        assert not [cap for cap in caps if cap.startswith("AUTH=")]
        reply = client.command("a1", f'LOGIN "{account.login}" "{account.password}"')
        assert reply[-1].startswith(b"a1 NO [PRIVACYREQUIRED]"), reply
        reply = client.command("a2", "AUTHENTICATE PLAIN AGFiYwB4eXo=")
        assert reply[-1].startswith(b"a2 NO [PRIVACYREQUIRED]"), reply
        client.send(b"a3 STARTTLS\r\n")
        assert client.tagged("a3")[-1].startswith(b"a3 OK")
        client.starttls(tls_daemon.client_context())
        caps = capabilities(client.command("a4", "CAPABILITY")[0])
        assert "LOGINDISABLED" not in caps
        assert "STARTTLS" not in caps
        reply = client.command("a5", f'LOGIN "{account.login}" "{account.password}"')
        assert reply[-1].startswith(b"a5 OK"), reply
        assert client.command("a6", "LOGOUT")[-1].startswith(b"a6 OK")


def test_pop3_user_before_stls_is_refused(tls_daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["tls"]
    with tls_daemon.raw("pop3") as client:
        assert client.readline().startswith(b"+OK")
        client.send(b"CAPA\r\n")
        assert client.readline().startswith(b"+OK")
        capa = [line.strip() for line in client.multiline()[:-1]]
        assert b"STLS" in capa
        assert b"USER" not in capa
        client.send(f"USER {account.login}\r\n".encode())
        assert client.readline().startswith(b"-ERR")
        client.send(b"STLS\r\n")
        assert client.readline().startswith(b"+OK")
        client.starttls(tls_daemon.client_context())
        client.send(b"CAPA\r\n")
        assert client.readline().startswith(b"+OK")
        capa = [line.strip() for line in client.multiline()[:-1]]
        assert b"USER" in capa
        assert b"STLS" not in capa
        client.send(f"USER {account.login}\r\nPASS {account.password}\r\nSTAT\r\n".encode())
        assert client.readline().startswith(b"+OK")
        assert client.readline().startswith(b"+OK")
        assert client.readline().startswith(b"+OK")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")


def old_tls_context(ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def assert_refused(exc: ssl.SSLError | OSError) -> None:
    text = str(exc).lower()
    assert "no protocols available" not in text, f"the client could not offer TLS 1.1: {exc}"


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_tls_1_1_is_refused_on_implicit_tls(tls_daemon: Daemon, proto: str) -> None:
    port = tls_daemon.imaps_port if proto == "imap" else tls_daemon.pop3s_port
    assert port is not None
    context = old_tls_context(tls_daemon.ca_file)
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as info:
        LineClient(tls_daemon.host, port, tls=context, timeout=10).close()
    assert_refused(info.value)
    # TLS 1.2 works on the same port
    modern = tls_daemon.client_context(minimum_version=ssl.TLSVersion.TLSv1_2)
    modern.maximum_version = ssl.TLSVersion.TLSv1_2
    with LineClient(tls_daemon.host, port, tls=modern, timeout=10) as client:
        assert client.readline().startswith((b"* OK", b"+OK"))


def test_tls_1_1_is_refused_after_starttls(tls_daemon: Daemon) -> None:
    with tls_daemon.raw("imap") as client:
        client.readline()
        assert client.command("a1", "STARTTLS")[-1].startswith(b"a1 OK")
        with pytest.raises((ssl.SSLError, ConnectionResetError)) as info:
            client.starttls(old_tls_context(tls_daemon.ca_file))
        assert_refused(info.value)
    assert tls_daemon.alive()


def test_imap_starttls_injection_is_discarded(
    tls_daemon: Daemon, accounts: dict[str, Account]
) -> None:
    account = accounts["tls"]
    with tls_daemon.raw("imap") as client:
        client.readline()
        client.send(f'a STARTTLS\r\nb LOGIN "{account.login}" "{account.password}"\r\n'.encode())
        reply = client.tagged("a")
        assert reply[-1].startswith(b"a OK"), reply
        client.starttls(tls_daemon.client_context())
        lines = client.command("c", "CAPABILITY")
        assert not [line for line in lines if line.startswith(b"b ")], lines
        assert "AUTH=PLAIN" in capabilities(lines[0]), "still before login"
        selected = client.command("d", "SELECT INBOX")
        assert selected[-1].startswith(b"d BAD"), selected
        assert not [line for line in selected if line.startswith(b"b ")]
        assert client.command("e", "LOGOUT")[-1].startswith(b"e OK")


def test_pop3_stls_injection_is_discarded(tls_daemon: Daemon, accounts: dict[str, Account]) -> None:
    account = accounts["tls"]
    with tls_daemon.raw("pop3") as client:
        client.readline()
        client.send(f"STLS\r\nUSER {account.login}\r\nPASS {account.password}\r\n".encode())
        assert client.readline().startswith(b"+OK")
        client.starttls(tls_daemon.client_context())
        client.send(b"STAT\r\n")
        stat = client.readline()
        assert stat.startswith(b"-ERR"), stat
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")
        assert client.read_to_eof(5) == b""


def test_starttls_not_offered_twice(tls_daemon: Daemon) -> None:
    with tls_daemon.raw("imap", tls=True) as client:
        caps = capabilities(client.readline())
        assert "STARTTLS" not in caps
        assert "LOGINDISABLED" not in caps
        reply = client.command("a1", "STARTTLS")
        assert reply[-1].startswith((b"a1 BAD", b"a1 NO")), reply
