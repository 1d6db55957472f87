"""The mesh login mechanism (X-MESHPROXY) in both cores, and the node name in ID / CAPA."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from meshproxy.credentials import MeshCredentials
from meshproxy.protocol import (
    NEED_DATA,
    ImapPreauth,
    ImapSettings,
    LoginAttempt,
    NextEvent,
    Pop3Preauth,
    Pop3Settings,
    sasl,
)

pytestmark = pytest.mark.unit

BLOB = b"MESHPROXY1 " + b"0" * 64 + b' {"user":"bob"}\0\xff'
B64 = base64.b64encode(BLOB)
IMAP = ImapSettings(
    tls_available=True,
    mesh_login=True,
    id_fields=(("name", "meshproxy"), ("x-meshproxy-node", "node1")),
)
POP3 = Pop3Settings(
    tls_available=True,
    mesh_login=True,
    capabilities=("TOP", "UIDL", "X-MESHPROXY-NODE node1"),
)
Core = ImapPreauth | Pop3Preauth


def started(core: Core) -> Core:
    core.data_to_send()
    return core


def send(core: Core, data: bytes) -> tuple[NextEvent, bytes]:
    core.receive_data(data)
    event = core.next_event()
    return event, core.data_to_send()


def lines(output: bytes) -> list[str]:
    return output.decode("utf-8", "replace").split("\r\n")[:-1]


def imap(**changes: object) -> ImapPreauth:
    core = started(ImapPreauth(replace(IMAP, **changes)))  # type: ignore[arg-type]
    assert isinstance(core, ImapPreauth)
    return core


def pop3(**changes: object) -> Pop3Preauth:
    core = started(Pop3Preauth(replace(POP3, **changes)))  # type: ignore[arg-type]
    assert isinstance(core, Pop3Preauth)
    return core


# -- IMAP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", [b"X-MESHPROXY", b"x-meshproxy"])
def test_imap_mesh_login_is_a_login_attempt(mechanism: bytes) -> None:
    event, out = send(imap(), b"m1 AUTHENTICATE " + mechanism + b" " + B64 + b"\r\n")
    assert event == LoginAttempt(MeshCredentials(BLOB), "m1")
    assert out == b""


def test_imap_mesh_login_keeps_pipelined_commands() -> None:
    core = imap()
    event, _ = send(core, b"m1 AUTHENTICATE X-MESHPROXY " + B64 + b"\r\nm2 SELECT INBOX\r\n")
    assert isinstance(event, LoginAttempt)
    assert core.trailing_data == b"m2 SELECT INBOX\r\n"


def test_imap_mesh_login_allowed_before_tls_when_tls_is_required() -> None:
    core = imap(tls_required=True)
    event, _ = send(core, b"m1 AUTHENTICATE X-MESHPROXY " + B64 + b"\r\n")
    assert event == LoginAttempt(MeshCredentials(BLOB), "m1")


def test_imap_other_logins_still_need_tls() -> None:
    core = imap(tls_required=True)
    for command in (b"a LOGIN x-meshproxy pw", b"b AUTHENTICATE PLAIN", b"c AUTHENTICATE"):
        event, out = send(core, command + b"\r\n")
        assert event is NEED_DATA
        assert b"NO [PRIVACYREQUIRED]" in out


@pytest.mark.parametrize("line", [b"m1 AUTHENTICATE X-MESHPROXY", b"m1 AUTHENTICATE X-MESHPROXY ="])
def test_imap_mesh_login_needs_an_initial_response(line: bytes) -> None:
    event, out = send(imap(), line + b"\r\n")
    assert event is NEED_DATA
    assert lines(out) == ["m1 BAD X-MESHPROXY needs an initial response"]


def test_imap_mesh_login_with_bad_base64() -> None:
    event, out = send(imap(), b"m1 AUTHENTICATE X-MESHPROXY ###\r\n")
    assert event is NEED_DATA
    assert lines(out)[0].startswith("m1 BAD ")


def test_imap_mesh_login_disabled_is_an_unknown_mechanism() -> None:
    event, out = send(imap(mesh_login=False), b"m1 AUTHENTICATE X-MESHPROXY " + B64 + b"\r\n")
    assert event is NEED_DATA
    assert lines(out) == ["m1 NO Unsupported authentication mechanism"]
    event, out = send(
        imap(mesh_login=False, tls_required=True), b"m1 AUTHENTICATE X-MESHPROXY " + B64 + b"\r\n"
    )
    assert b"NO [PRIVACYREQUIRED]" in out


@pytest.mark.parametrize("tls_required", [False, True])
def test_imap_mesh_mechanism_is_never_advertised(tls_required: bool) -> None:
    core = ImapPreauth(replace(IMAP, tls_required=tls_required))
    greeting = core.data_to_send()
    _, out = send(core, b"c CAPABILITY\r\n")
    assert b"MESHPROXY" not in greeting + out
    assert "X-MESHPROXY" not in " ".join(core.capabilities)


def test_imap_id_names_the_node() -> None:
    _, out = send(imap(), b'i ID ("name" "client")\r\n')
    assert lines(out) == [
        '* ID ("name" "meshproxy" "x-meshproxy-node" "node1")',
        "i OK ID completed",
    ]


# -- POP3 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", [b"X-MESHPROXY", b"X-MeshProxy"])
def test_pop3_mesh_login_is_a_login_attempt(mechanism: bytes) -> None:
    event, out = send(pop3(), b"AUTH " + mechanism + b" " + B64 + b"\r\n")
    assert event == LoginAttempt(MeshCredentials(BLOB))
    assert out == b""


def test_pop3_mesh_login_allowed_before_stls_when_tls_is_required() -> None:
    core = pop3(tls_required=True)
    event, _ = send(core, b"AUTH X-MESHPROXY " + B64 + b"\r\nSTAT\r\n")
    assert event == LoginAttempt(MeshCredentials(BLOB))
    assert core.trailing_data == b"STAT\r\n"


def test_pop3_other_logins_still_need_tls() -> None:
    core = pop3(tls_required=True)
    for command in (b"USER x-meshproxy", b"AUTH PLAIN", b"AUTH"):
        event, out = send(core, command + b"\r\n")
        assert event is NEED_DATA
        assert out.startswith(b"-ERR [AUTH]")


@pytest.mark.parametrize("line", [b"AUTH X-MESHPROXY", b"AUTH X-MESHPROXY ="])
def test_pop3_mesh_login_needs_an_initial_response(line: bytes) -> None:
    event, out = send(pop3(), line + b"\r\n")
    assert event is NEED_DATA
    assert lines(out) == ["-ERR X-MESHPROXY needs an initial response"]


def test_pop3_mesh_login_disabled_is_an_unknown_mechanism() -> None:
    event, out = send(pop3(mesh_login=False), b"AUTH X-MESHPROXY " + B64 + b"\r\n")
    assert event is NEED_DATA
    assert lines(out) == ["-ERR Unsupported authentication mechanism"]


@pytest.mark.parametrize("tls_required", [False, True])
def test_pop3_capa_names_the_node_and_hides_the_mechanism(tls_required: bool) -> None:
    core = pop3(tls_required=tls_required)
    _, out = send(core, b"CAPA\r\n")
    capa = lines(out)
    assert "X-MESHPROXY-NODE node1" in capa
    assert not any("X-MESHPROXY " in line and line.startswith("SASL") for line in capa)
    _, listed = send(core, b"AUTH\r\n")
    assert b"X-MESHPROXY" not in listed


# -- the exchange and the credentials -------------------------------------------------------------


def test_exchange_is_single_step() -> None:
    exchange = sasl.start_exchange("x-meshproxy", lambda: b"", mesh_login=True)
    assert exchange.begin(BLOB) == MeshCredentials(BLOB)
    with pytest.raises(sasl.replies.UnsupportedMechanism):
        sasl.start_exchange("X-MESHPROXY", lambda: b"")


def test_mesh_credentials_hide_the_blob() -> None:
    credentials = MeshCredentials(BLOB)
    assert "MESHPROXY1" not in repr(credentials)
    assert credentials.mechanism == "X-MESHPROXY"
    assert credentials.authcid == "(mesh-login)"
