"""LDAP filters: the login is escaped (RFC 4515), the operator's filter is kept; TLS
certificates are verified."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from meshproxy.auth.base import BackendUnavailable
from meshproxy.auth.ldap import LdapSource, parse_auxoptions, search_filter
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
