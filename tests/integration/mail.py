"""Messages and client helpers shared by the integration tests."""

from __future__ import annotations

import email
import imaplib
import poplib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from .accounts import Account
from .daemon import Daemon

TIMEOUT = 15.0


def message(subject: str = "test", body: str = "", *, msgid: str | None = None) -> bytes:
    """A small RFC 5322 message with CRLF line ends and a unique Message-Id."""
    msgid = msgid or f"<{secrets.token_hex(8)}@mpt.test>"
    body = body or f"Hello from the meshproxy tests.\r\nToken {secrets.token_hex(8)}\r\n"
    return (
        f"From: tester@mpt.test\r\nTo: someone@mpt.test\r\nSubject: {subject}\r\n"
        f"Message-Id: {msgid}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n{body}"
    ).encode()


def message_id(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw)
    return str(parsed["Message-Id"]).strip()


def split_body(raw: bytes) -> bytes:
    """The body of a message, line ends normalised to LF."""
    text = raw.replace(b"\r\n", b"\n")
    return text.partition(b"\n\n")[2]


@contextmanager
def imap(daemon: Daemon, *, tls: bool = False) -> Iterator[imaplib.IMAP4]:
    """An imaplib connection (greeting read), logged out on exit."""
    client: imaplib.IMAP4
    if tls:
        assert daemon.imaps_port is not None
        client = imaplib.IMAP4_SSL(
            daemon.host, daemon.imaps_port, ssl_context=daemon.client_context(), timeout=TIMEOUT
        )
    else:
        assert daemon.imap_port is not None
        client = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=TIMEOUT)
    try:
        yield client
    finally:
        if client.state != "LOGOUT":
            try:
                client.logout()
            except (imaplib.IMAP4.error, OSError):
                client.shutdown()


@contextmanager
def imap_login(daemon: Daemon, account: Account, *, tls: bool = False) -> Iterator[imaplib.IMAP4]:
    with imap(daemon, tls=tls) as client:
        typ, _ = client.login(account.login, account.imap_password or account.password)
        assert typ == "OK"
        yield client


@contextmanager
def pop3(daemon: Daemon, *, tls: bool = False) -> Iterator[poplib.POP3]:
    client: poplib.POP3
    if tls:
        assert daemon.pop3s_port is not None
        client = poplib.POP3_SSL(
            daemon.host, daemon.pop3s_port, context=daemon.client_context(), timeout=TIMEOUT
        )
    else:
        assert daemon.pop3_port is not None
        client = poplib.POP3(daemon.host, daemon.pop3_port, timeout=TIMEOUT)
    try:
        yield client
    finally:
        client.close()


def append(client: imaplib.IMAP4, raw: bytes, mailbox: str = "INBOX") -> None:
    typ, data = client.append(mailbox, "", None, raw)
    assert typ == "OK", data


def empty_mailbox(client: imaplib.IMAP4, mailbox: str = "INBOX") -> None:
    typ, _ = client.select(mailbox)
    assert typ == "OK"
    typ, data = client.search(None, "ALL")
    if data[0]:
        client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()
    client.close()


def fetch_all(client: imaplib.IMAP4, mailbox: str = "INBOX") -> list[bytes]:
    """Every message of ``mailbox``, in sequence order."""
    typ, data = client.select(mailbox, readonly=True)
    assert typ == "OK", data
    count = int(data[0] or 0)
    if not count:
        return []
    typ, data = client.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    messages = [item[1] for item in data if isinstance(item, tuple)]
    assert len(messages) == count, (len(messages), count)
    return messages


def capabilities(line: bytes) -> list[str]:
    """Capability names in a greeting's [CAPABILITY ...] code or a * CAPABILITY line."""
    text = line.decode()
    match = re.search(r"\[CAPABILITY ([^\]]*)\]", text) or re.match(
        r"\* CAPABILITY (.*)", text.strip()
    )
    assert match, f"no capability list in {text!r}"
    return match.group(1).split()
