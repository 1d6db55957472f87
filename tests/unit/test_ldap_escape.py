"""LDAP filters: the login is escaped (RFC 4515), the operator's filter is kept; TLS
certificates are verified, against the system CA store or ``tls_cacert``."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from meshproxy.auth.base import BackendUnavailable
from meshproxy.auth.ldap import LdapSource, parse_auxoptions, search_filter
from meshproxy.errors import ConfigError
from meshproxy.sourceconfig import LdapConfig

BASE = LdapConfig(uri="ldap://x", basedn="o=x")


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ("joe@example.org", "(mail=joe@example.org)"),
        ("*", "(mail=\\2a)"),
        ("a)(uid=*", "(mail=a\\29\\28uid=\\2a)"),
        ("back\\slash", "(mail=back\\5cslash)"),
        ("nul\x00byte", "(mail=nul\\00byte)"),
        ("jürgen@example.org", "(mail=jürgen@example.org)"),
        ("o'brien\"x", "(mail=o'brien\"x)"),
    ],
)
def test_login_is_escaped(login: str, expected: str) -> None:
    assert search_filter(BASE, login) == expected


def test_operator_filter_is_anded_and_domain_added() -> None:
    config = LdapConfig(
        uri="ldap://x",
        basedn="o=x",
        mail="uid",
        filter="(objectClass=a)(active=1)",
        domain="example.org",
    )
    assert search_filter(config, "joe") == "(&(objectClass=a)(active=1)(uid=joe@example.org))"
    assert search_filter(config, "joe@other") == "(&(objectClass=a)(active=1)(uid=joe@other))"
    assert search_filter(config, "*") == "(&(objectClass=a)(active=1)(uid=\\2a@example.org))"


def test_auxoptions_pairs() -> None:
    assert parse_auxoptions("mailhost=mailhost,,acct=disableimap,quota") == (
        ("mailhost", "mailhost"),
        ("acct", "disableimap"),
        ("quota", "quota"),
    )
    assert parse_auxoptions("") == ()


# --- TLS: the server's certificate is verified ------------------------------------------------


@pytest.fixture
def untrusted_ldaps() -> Iterator[int]:
    """A TLS listener whose certificate no system CA signed; it answers nothing after TLS."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            with (
                client,
                contextlib.suppress(ssl.SSLError, OSError),
                context.wrap_socket(client, server_side=True) as secured,
            ):
                secured.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()


def test_an_unverifiable_server_certificate_is_refused(untrusted_ldaps: int) -> None:
    config = LdapConfig(uri=f"ldaps://127.0.0.1:{untrusted_ldaps}", basedn="dc=x", timeout=2.0)
    source = LdapSource(config)
    try:
        with pytest.raises(BackendUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            source.lookup("user@example.test")
    finally:
        source.close()


# --- TLS: tls_cacert names the CA that signed the server ----------------------------------------


def _ldap_message(message_id: bytes, op_tag: int) -> bytes:
    """An LDAPMessage with an empty success result (bind, search done...): resultCode 0."""
    result = b"\x0a\x01\x00\x04\x00\x04\x00"
    op = bytes([op_tag, len(result)]) + result
    body = b"\x02" + bytes([len(message_id)]) + message_id + op
    return b"\x30" + bytes([len(body)]) + body


def _read_ber(stream: ssl.SSLSocket) -> bytes:
    """One BER element (an LDAPMessage) from ``stream``; b"" when the peer closed."""
    head = stream.recv(2)
    if len(head) < 2:
        return b""
    length = head[1]
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(stream.recv(size), "big")
    body = b""
    while len(body) < length:
        chunk = stream.recv(length - len(body))
        if not chunk:
            return b""
        body += chunk
    return body


@pytest.fixture
def private_ca_ldaps(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """An LDAPS server whose certificate a private CA signed (written to ``ca.pem``).

    It answers every bind with success and every search with an empty result, and records
    the operations it saw, so a lookup that gets through TLS returns "no such user".
    """
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []
    stop = threading.Event()
    replies = {0x60: 0x61, 0x63: 0x65}  # bindRequest -> bindResponse, search -> searchResDone

    def answer(secured: ssl.SSLSocket) -> None:
        while True:
            message = _read_ber(secured)
            if not message:
                return
            # message = 02 <n> <id: n bytes> <op tag> ...; ldap3 numbers messages per process,
            # so after other tests the id may take more than one byte
            id_size = message[1]
            message_id = message[2 : 2 + id_size]
            op_tag = message[2 + id_size]
            seen.append({0x60: "bind", 0x63: "search", 0x42: "unbind"}.get(op_tag, hex(op_tag)))
            if op_tag not in replies:
                return
            secured.sendall(_ldap_message(message_id, replies[op_tag]))

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    def handle(client: socket.socket) -> None:
        client.settimeout(5)
        with (
            client,
            contextlib.suppress(ssl.SSLError, OSError),
            context.wrap_socket(client, server_side=True) as secured,
        ):
            answer(secured)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1]), ca_file, seen
    stop.set()
    thread.join()
    listener.close()


def test_tls_cacert_verifies_a_privately_signed_server(
    private_ca_ldaps: tuple[int, Path, list[str]],
) -> None:
    port, ca_file, seen = private_ca_ldaps
    uri = f"ldaps://127.0.0.1:{port}"
    trusting = LdapSource(LdapConfig(uri=uri, basedn="dc=x", timeout=3.0, tls_cacert=str(ca_file)))
    untrusting = LdapSource(LdapConfig(uri=uri, basedn="dc=x", timeout=3.0))
    try:
        assert trusting.lookup("user@example.test") is None
        assert seen[:2] == ["bind", "search"]
        with pytest.raises(BackendUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.lookup("user@example.test")
    finally:
        trusting.close()
        untrusting.close()


def test_tls_cacert_of_another_ca_is_refused(
    private_ca_ldaps: tuple[int, Path, list[str]], tmp_path: Path
) -> None:
    port, _, seen = private_ca_ldaps
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    config = LdapConfig(uri=f"ldaps://127.0.0.1:{port}", basedn="dc=x", tls_cacert=str(other))
    source = LdapSource(config)
    try:
        with pytest.raises(BackendUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            source.lookup("user@example.test")
    finally:
        source.close()
    assert seen == []


def test_an_unreadable_tls_cacert_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    config = LdapConfig(uri="ldaps://x", basedn="dc=x", tls_cacert=str(missing))
    with pytest.raises(ConfigError, match=r"auth\.ldap\.tls_cacert: cannot read"):
        LdapSource(config)
