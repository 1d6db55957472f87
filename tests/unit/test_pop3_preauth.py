"""Pop3Preauth: the AUTHORIZATION state, SASL, STLS, UTF8, limits and errors."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from meshproxy.credentials import CramCredentials, PlainCredentials
from meshproxy.errors import (
    AuthAborted,
    AuthFailed,
    LoginDisabled,
    MechanismUnusable,
    MeshproxyError,
    PrivacyRequired,
    ProtocolViolation,
    TempFail,
)
from meshproxy.protocol import (
    NEED_DATA,
    Closed,
    LoginAttempt,
    NextEvent,
    Pop3Preauth,
    Pop3Settings,
    Pop3State,
    StartTLS,
)

pytestmark = pytest.mark.unit

CHALLENGE = b"<1896.697170952@postoffice.example.net>"
SETTINGS = Pop3Settings(
    tls_available=True,
    greeting="meshproxy ready.",
    implementation="meshproxy 0.1",
    challenge=lambda: CHALLENGE,
    max_line=100,
)
BASE_CAPA = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8 USER"]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def started(settings: Pop3Settings = SETTINGS) -> Pop3Preauth:
    core = Pop3Preauth(settings)
    core.data_to_send()
    return core


def send(core: Pop3Preauth, data: bytes) -> tuple[NextEvent, bytes]:
    core.receive_data(data)
    event = core.next_event()
    return event, core.data_to_send()


def lines(output: bytes) -> list[str]:
    assert output.endswith(b"\r\n") or not output
    return output.decode().split("\r\n")[:-1]


def credentials_of(event: NextEvent) -> object:
    assert isinstance(event, LoginAttempt)
    assert event.tag == ""
    return event.credentials


def test_greeting() -> None:
    core = Pop3Preauth(SETTINGS)
    assert core.data_to_send() == b"+OK meshproxy ready.\r\n"
    assert core.next_event() is NEED_DATA
    assert not core.secure
    assert not core.utf8


def test_capa() -> None:
    event, output = send(started(), b"capa\r\n")
    assert event is NEED_DATA
    assert lines(output) == [
        "+OK Capability list follows",
        *BASE_CAPA,
        "IMPLEMENTATION meshproxy 0.1",
        "USER",
        "STLS",
        "SASL PLAIN LOGIN",
        ".",
    ]


def test_capa_when_tls_is_required_and_missing() -> None:
    core = started(replace(SETTINGS, tls_required=True, sasl_mechanisms=("CRAM-MD5",)))
    assert lines(send(core, b"CAPA\r\n")[1]) == [
        "+OK Capability list follows",
        *BASE_CAPA,
        "IMPLEMENTATION meshproxy 0.1",
        "STLS",
        ".",
    ]


def test_capa_when_secure_drops_stls_and_login_stage_entries_of_pop3d() -> None:
    settings = replace(
        SETTINGS, secure=True, capabilities=("TOP", "STLS", "USER", "SASL X", "LOGIN-DELAY 10")
    )
    assert lines(send(started(settings), b"CAPA\r\n")[1]) == [
        "+OK Capability list follows",
        "TOP",
        "LOGIN-DELAY 10",
        "IMPLEMENTATION meshproxy 0.1",
        "USER",
        "SASL PLAIN LOGIN",
        ".",
    ]


def test_capa_with_no_mechanisms_has_no_sasl_line() -> None:
    core = started(replace(SETTINGS, sasl_mechanisms=()))
    assert not any(line.startswith("SASL") for line in lines(send(core, b"CAPA\r\n")[1]))


def test_noop_utf8_and_case() -> None:
    core = started()
    output = send(core, b"NOOP\r\nuTf8\r\n")[1]
    assert lines(output) == ["+OK", "+OK UTF8 enabled"]
    assert core.utf8


def test_quit_closes() -> None:
    core = started()
    assert send(core, b"QUIT\r\nNOOP\r\n") == (Closed("logout"), b"+OK Bye\r\n")
    assert core.next_event() == Closed("logout")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"FROB", "-ERR Unknown command"),
        (b"", "-ERR Unknown command"),
        (b" USER x", "-ERR Unknown command"),
        (b"STAT", "-ERR Command not allowed before login"),
        (b"retr 1", "-ERR Command not allowed before login"),
        (b"NOOP x", "-ERR Syntax error"),
        (b"US\x00ER x", "-ERR NUL not allowed in commands"),
        (b"USER", "-ERR Syntax error"),
        (b"USER ", "-ERR Syntax error"),
        (b"USER \xff", "-ERR Invalid UTF-8"),
        (b"PASS x", "-ERR USER first"),
        (b"AUTH X", "-ERR Unsupported authentication mechanism"),
        (b"AUTH PLAIN ", "-ERR Syntax error"),
        (b"AUTH PLAIN a b", "-ERR Syntax error"),
        (b"AUTH PLAIN =", "-ERR Malformed PLAIN message"),
        (b"AUTH PLAIN AGEAYg", "-ERR Invalid base64"),
        (b"AUTH CRAM-MD5 =", "-ERR This mechanism takes no initial response"),
    ],
)
def test_errors(line: bytes, reply: str) -> None:
    core = started()
    assert send(core, line + b"\r\n") == (NEED_DATA, f"{reply}\r\n".encode())
    assert core.state is Pop3State.READY


def test_trailing_spaces_after_argumentless_commands_are_tolerated() -> None:
    assert send(started(), b"CAPA \r\n")[1].startswith(b"+OK Capability")


def test_user_pass_with_pipelining() -> None:
    core = started()
    event, output = send(core, b"USER bob\r\nPASS pass word \r\nSTAT\r\nLIST\r\n")
    assert output == b"+OK Password required.\r\n"
    assert credentials_of(event) == PlainCredentials("bob", "pass word ", "", "USER")
    assert core.trailing_data == b"STAT\r\nLIST\r\n"
    assert send(core, b"QUIT\r\n") == (NEED_DATA, b"")


def test_user_name_may_hold_spaces_and_utf8() -> None:
    core = started()
    send(core, "USER jörg x\r\n".encode())
    assert credentials_of(send(core, b"PASS \r\n")[0]) == PlainCredentials("jörg x", "", "", "USER")


def test_pass_without_argument_is_a_syntax_error() -> None:
    core = started()
    send(core, b"USER bob\r\n")
    assert send(core, b"PASS\r\n")[1] == b"-ERR Syntax error\r\n"


def test_login_failed_resets_user_and_continues() -> None:
    core = started()
    send(core, b"USER bob\r\nPASS x\r\nNOOP\r\n")
    core.login_failed(AuthFailed())
    assert core.trailing_data == b""
    event, output = send(core, b"PASS again\r\n")
    assert event is NEED_DATA
    assert lines(output) == ["-ERR [AUTH] Authentication failed.", "+OK", "-ERR USER first"]


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (AuthFailed(), "-ERR [AUTH] Authentication failed."),
        (LoginDisabled(text="Disabled."), "-ERR [AUTH] Disabled."),
        (MechanismUnusable(text="No."), "-ERR [AUTH] No."),
        (PrivacyRequired(), "-ERR [AUTH] TLS required to log in."),
        (TempFail(), "-ERR [SYS/TEMP] Account is temporarily unavailable."),
        (MeshproxyError(), "-ERR [SYS/TEMP] Error"),
        (ProtocolViolation(text="Nope"), "-ERR Nope"),
        (AuthAborted(), "-ERR Authentication aborted."),
    ],
)
def test_login_failed_rendering(error: MeshproxyError, reply: str) -> None:
    core = started()
    send(core, b"USER u\r\nPASS p\r\n")
    core.login_failed(error)
    assert core.data_to_send() == f"{reply}\r\n".encode()


def test_misuse_of_the_edge_api_raises() -> None:
    core = started()
    with pytest.raises(RuntimeError):
        core.login_failed(AuthFailed())
    with pytest.raises(RuntimeError):
        core.tls_started()


def test_auth_without_argument_lists_mechanisms() -> None:
    assert lines(send(started(), b"AUTH\r\n")[1]) == ["+OK", "PLAIN", "LOGIN", "."]


def test_auth_plain_continuation_and_initial_response() -> None:
    core = started()
    assert send(core, b"AUTH plain\r\n") == (NEED_DATA, b"+ \r\n")
    assert core.state is Pop3State.SASL
    event, _ = send(core, b64(b"\0bob\0pw") + b"\r\nSTAT\r\n")
    assert credentials_of(event) == PlainCredentials("bob", "pw", "", "PLAIN")
    assert core.trailing_data == b"STAT\r\n"
    event, _ = send(started(), b"AUTH PLAIN " + b64(b"a\0bob\0pw") + b"\r\n")
    assert credentials_of(event) == PlainCredentials("bob", "pw", "a", "PLAIN")


def test_auth_login_and_cancel() -> None:
    core = started()
    assert send(core, b"AUTH LOGIN\r\n")[1] == b"+ VXNlcm5hbWU6\r\n"
    assert send(core, b"*\r\n")[1] == b"-ERR Authentication aborted.\r\n"
    assert send(core, b"AUTH LOGIN " + b64(b"bob") + b"\r\n")[1] == b"+ UGFzc3dvcmQ6\r\n"
    assert credentials_of(send(core, b64(b"pw") + b"\r\n")[0]) == PlainCredentials(
        "bob", "pw", "", "LOGIN"
    )


def test_auth_cram_md5() -> None:
    core = started()
    assert send(core, b"AUTH CRAM-MD5\r\n")[1] == b"+ " + b64(CHALLENGE) + b"\r\n"
    answer = b64(b"tim b913a602c7eda7a495b4e6e7334d3890")
    assert credentials_of(send(core, answer + b"\r\n")[0]) == CramCredentials(
        "tim", CHALLENGE, "b913a602c7eda7a495b4e6e7334d3890"
    )


def test_auth_bad_base64_response() -> None:
    core = started()
    send(core, b"AUTH PLAIN\r\n")
    assert send(core, b"%%%%\r\nNOOP\r\n")[1] == b"-ERR Invalid base64\r\n+OK\r\n"


def test_stls_discards_injected_plaintext() -> None:
    core = started()
    event, output = send(core, b"USER bob\r\nSTLS\r\nPASS injected\r\n")
    assert event == StartTLS()
    assert lines(output) == ["+OK Password required.", "+OK Begin TLS negotiation now."]
    core.tls_started()
    assert core.secure
    event, output = send(core, b"PASS x\r\nCAPA\r\n")
    assert lines(output)[0] == "-ERR USER first"
    assert "STLS" not in lines(output)


def test_stls_unavailable_or_already_secure() -> None:
    assert send(started(replace(SETTINGS, tls_available=False)), b"STLS\r\n")[1] == (
        b"-ERR STLS not available\r\n"
    )
    assert send(started(replace(SETTINGS, secure=True)), b"STLS\r\n")[1] == (
        b"-ERR STLS not available\r\n"
    )


def test_tls_required_refuses_user_pass_auth() -> None:
    core = started(replace(SETTINGS, tls_required=True))
    output = send(core, b"USER bob\r\nPASS x\r\nAUTH\r\nAUTH PLAIN\r\n")[1]
    assert lines(output) == ["-ERR [AUTH] TLS required to log in."] * 4
    send(core, b"STLS\r\n")
    core.tls_started()
    assert send(core, b"USER bob\r\n")[1] == b"+OK Password required.\r\n"


def test_overlong_line_closes() -> None:
    core = started()
    assert send(core, b"PASS " + b"x" * 95 + b"\r\n")[1] == b"-ERR USER first\r\n"
    event, output = send(core, b"PASS " + b"x" * 96 + b"\r\n")
    assert (event, output) == (Closed("line too long"), b"-ERR Line too long\r\n")


def test_too_many_errors_closes_and_good_commands_reset() -> None:
    core = started(replace(SETTINGS, max_errors=2))
    event, output = send(core, b"X\r\nNOOP\r\nX\r\nX\r\nNOOP\r\n")
    assert event == Closed("too many errors")
    assert lines(output) == [
        "-ERR Unknown command",
        "+OK",
        "-ERR Unknown command",
        "-ERR Unknown command",
        "-ERR Too many errors",
    ]


def test_shutdown_and_client_close() -> None:
    core = started()
    core.shutdown("Login timeout")
    assert core.data_to_send() == b"-ERR Login timeout\r\n"
    assert core.next_event() == Closed("shutdown")
    core = started()
    assert send(core, b"NOOP\r\nUSER") == (NEED_DATA, b"+OK\r\n")
    assert send(core, b"") == (Closed("client closed"), b"")


def test_login_failed_after_shutdown_is_ignored() -> None:
    core = started()
    send(core, b"USER a\r\nPASS b\r\n")
    core.shutdown("Bye")
    core.login_failed(AuthFailed())
    assert core.data_to_send() == b"-ERR Bye\r\n"
