"""ImapPreauth: every pre-login command, the literal forms, SASL, TLS, limits and errors."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from meshproxy.credentials import CramCredentials, PlainCredentials
from meshproxy.errors import (
    AuthAborted,
    AuthFailed,
    ConfigError,
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
    ImapPreauth,
    ImapSettings,
    ImapState,
    LoginAttempt,
    NextEvent,
    StartTLS,
)

pytestmark = pytest.mark.unit

CHALLENGE = b"<1896.697170952@postoffice.example.net>"
SETTINGS = ImapSettings(
    capabilities=("IMAP4rev1", "IDLE", "ENABLE", "UTF8=ACCEPT"),
    capabilities_tls=("IMAP4rev1", "IDLE", "ENABLE", "UTF8=ACCEPT", "XTLSONLY"),
    tls_available=True,
    greeting="meshproxy ready.",
    challenge=lambda: CHALLENGE,
    max_line=200,
    max_literal=100,
)
PLAIN_CAPS = "IMAP4rev1 IDLE ENABLE UTF8=ACCEPT SASL-IR ID STARTTLS AUTH=PLAIN AUTH=LOGIN"
TLS_CAPS = "IMAP4rev1 IDLE ENABLE UTF8=ACCEPT XTLSONLY SASL-IR ID AUTH=PLAIN AUTH=LOGIN"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def started(settings: ImapSettings = SETTINGS) -> ImapPreauth:
    """A core whose greeting has been read."""
    core = ImapPreauth(settings)
    core.data_to_send()
    return core


def send(core: ImapPreauth, data: bytes) -> tuple[NextEvent, bytes]:
    core.receive_data(data)
    event = core.next_event()
    return event, core.data_to_send()


def lines(output: bytes) -> list[str]:
    assert output.endswith(b"\r\n") or not output
    return output.decode().split("\r\n")[:-1]


def login_event(event: NextEvent) -> LoginAttempt:
    assert isinstance(event, LoginAttempt)
    return event


# Greeting and capabilities.


def test_greeting_lists_pre_login_capabilities() -> None:
    core = ImapPreauth(SETTINGS)
    assert core.data_to_send() == f"* OK [CAPABILITY {PLAIN_CAPS}] meshproxy ready.\r\n".encode()
    assert core.next_event() is NEED_DATA
    assert not core.secure


def test_capability_command() -> None:
    event, output = send(started(), b"a1 CAPABILITY\r\n")
    assert event is NEED_DATA
    assert lines(output) == [f"* CAPABILITY {PLAIN_CAPS}", "a1 OK CAPABILITY completed"]


def test_login_stage_entries_of_imapd_capabilities_are_replaced() -> None:
    settings = replace(
        SETTINGS,
        capabilities=("IDLE", "AUTH=EXTERNAL", "starttls", "LOGINDISABLED", "ID"),
        sasl_mechanisms=("cram-md5",),
        tls_available=False,
    )
    greeting = ImapPreauth(settings).data_to_send()
    assert (
        greeting
        == b"* OK [CAPABILITY IMAP4rev1 IDLE ID SASL-IR AUTH=CRAM-MD5] meshproxy ready.\r\n"
    )


def test_implicit_tls_uses_tls_capabilities_and_offers_no_starttls() -> None:
    core = ImapPreauth(replace(SETTINGS, secure=True))
    assert core.secure
    assert core.data_to_send() == f"* OK [CAPABILITY {TLS_CAPS}] meshproxy ready.\r\n".encode()
    event, output = send(core, b"a STARTTLS\r\n")
    assert event is NEED_DATA
    assert output == b"a BAD STARTTLS not available\r\n"


def test_empty_tls_capabilities_mean_the_plain_ones() -> None:
    core = ImapPreauth(replace(SETTINGS, capabilities_tls=(), secure=True))
    assert core.data_to_send().startswith(
        b"* OK [CAPABILITY IMAP4rev1 IDLE ENABLE UTF8=ACCEPT SASL"
    )


def test_tls_required_advertises_logindisabled_and_no_mechanisms() -> None:
    core = ImapPreauth(replace(SETTINGS, tls_required=True))
    expected = "IMAP4rev1 IDLE ENABLE UTF8=ACCEPT SASL-IR ID STARTTLS LOGINDISABLED"
    assert core.data_to_send() == f"* OK [CAPABILITY {expected}] meshproxy ready.\r\n".encode()


# Simple commands.


@pytest.mark.parametrize("command", [b"a noop", b"a NoOp", b"A NOOP"])
def test_commands_are_case_insensitive(command: bytes) -> None:
    tag = command.split()[0].decode()
    assert send(started(), command + b"\r\n")[1] == f"{tag} OK NOOP completed\r\n".encode()


def test_logout_says_bye_and_closes_for_good() -> None:
    core = started()
    event, output = send(core, b"z LOGOUT\r\nb NOOP\r\n")
    assert event == Closed("logout")
    assert lines(output) == ["* BYE Logging out", "z OK LOGOUT completed"]
    core.receive_data(b"c NOOP\r\n")
    assert core.next_event() == Closed("logout")
    assert core.data_to_send() == b""


def test_arguments_to_argumentless_commands_are_bad() -> None:
    output = send(started(), b"a NOOP x\r\nb CAPABILITY \r\nc LOGOUT now\r\n")[1]
    assert lines(output) == ["a BAD Syntax error", "b BAD Syntax error", "c BAD Syntax error"]


def test_unknown_and_post_login_commands() -> None:
    output = send(started(), b"a FROB\r\nb SELECT INBOX\r\nc enable UTF8=ACCEPT\r\n")[1]
    assert lines(output) == [
        "a BAD Unknown command",
        "b BAD Command not allowed before login",
        "c BAD Command not allowed before login",
    ]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"", "* BAD Empty command line"),
        (b"+a NOOP", "* BAD Invalid tag"),
        (b"a* NOOP", "* BAD Invalid tag"),
        (b"t" * 65 + b" NOOP", "* BAD Invalid tag"),
        (b"\x00 NOOP", "* BAD Invalid tag"),
        (b"a", "a BAD Missing command"),
        (b"a  NOOP", "a BAD Missing command"),
        (b"a NO\x00OP", "a BAD Unknown command"),
        (b"a LOGIN u \x00", "a BAD NUL not allowed in commands"),
        (b'a LOGIN u "p\x00"', "a BAD NUL not allowed in commands"),
    ],
)
def test_malformed_lines(line: bytes, reply: str) -> None:
    assert lines(send(started(), line + b"\r\n")[1]) == [reply]


def test_bare_lf_ends_a_command() -> None:
    assert send(started(), b"a NOOP\n")[1] == b"a OK NOOP completed\r\n"


def test_bytes_sent_before_the_greeting_is_read() -> None:
    core = ImapPreauth(SETTINGS)
    core.receive_data(b"a NOOP\r\nb LOGOUT\r\n")
    assert core.next_event() == Closed("logout")
    assert lines(core.data_to_send()) == [
        f"* OK [CAPABILITY {PLAIN_CAPS}] meshproxy ready.",
        "a OK NOOP completed",
        "* BYE Logging out",
        "b OK LOGOUT completed",
    ]


# ID.


def test_id_records_client_fields_and_answers_ours() -> None:
    core = started()
    event, output = send(core, b'a ID ("name" "Thunderbird" "version" NIL)\r\n')
    assert event is NEED_DATA
    assert lines(output) == ['* ID ("name" "meshproxy")', "a OK ID completed"]
    assert core.client_id == {"name": "Thunderbird", "version": None}
    send(core, b"b ID NIL\r\n")
    assert core.client_id == {}


def test_id_answer_quotes_and_nil() -> None:
    core = started(replace(SETTINGS, id_fields=(("name", 'a "b" \\c'),)))
    assert lines(send(core, b"a ID NIL\r\n")[1])[0] == '* ID ("name" "a \\"b\\" \\\\c")'
    core = started(replace(SETTINGS, id_fields=()))
    assert lines(send(core, b"a ID NIL\r\n")[1]) == ["* ID NIL", "a OK ID completed"]


def test_id_with_literal_value() -> None:
    core = started()
    assert send(core, b'a ID ("name" {3}\r\n')[1] == b"+ Ready for literal\r\n"
    assert send(core, b"x y)\r\n")[1] == b'* ID ("name" "meshproxy")\r\na OK ID completed\r\n'
    assert core.client_id == {"name": "x y"}


def test_bad_id() -> None:
    assert send(started(), b'a ID ("name")\r\n')[1] == b"a BAD Syntax error\r\n"


# LOGIN and the astring forms.


@pytest.mark.parametrize(
    ("arguments", "user", "password"),
    [
        (b"user secret", "user", "secret"),
        (b'"us er" "se\\"c\\\\ret"', "us er", 'se"c\\ret'),
        ('"jörg" "pässwörd"'.encode(), "jörg", "pässwörd"),
        (b"user pa%ss*]", "user", "pa%ss*]"),
        (b'"" ""', "", ""),
    ],
)
def test_login_forms(arguments: bytes, user: str, password: str) -> None:
    event, output = send(started(), b"a1 login " + arguments + b"\r\n")
    assert output == b""
    assert event == LoginAttempt(PlainCredentials(user, password, "", "LOGIN"), "a1")


def test_login_with_synchronizing_literals() -> None:
    core = started()
    assert send(core, b"a LOGIN {4}\r\n") == (NEED_DATA, b"+ Ready for literal\r\n")
    assert core.state is ImapState.LITERAL
    assert send(core, b"us") == (NEED_DATA, b"")
    assert send(core, b"er {7}\r\n") == (NEED_DATA, b"+ Ready for literal\r\n")
    event, output = send(core, b"p\r\n \x7f\xc3\xa9\r\n")
    assert output == b""
    assert login_event(event).credentials == PlainCredentials("user", "p\r\n \x7fé", "", "LOGIN")


def test_login_with_non_synchronizing_literals() -> None:
    event, output = send(started(), b"a LOGIN {4+}\r\nuser {3+}\r\npwd\r\n")
    assert output == b""
    assert login_event(event).credentials == PlainCredentials("user", "pwd", "", "LOGIN")


def test_login_with_empty_literal() -> None:
    event, _ = send(started(), b"a LOGIN user {0+}\r\n\r\n")
    assert login_event(event).credentials == PlainCredentials("user", "", "", "LOGIN")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"a LOGIN user", "a BAD Syntax error"),
        (b"a LOGIN user pw extra", "a BAD Syntax error"),
        (b"a LOGIN  user pw", "a BAD Syntax error"),
        (b"a LOGIN (user) pw", "a BAD Syntax error"),
        (b'a LOGIN "user pw', "a BAD Invalid quoted string"),
        (b'a LOGIN user "\xff"', "a BAD Invalid UTF-8"),
        (b"a LOGIN user {3}x", "a BAD Invalid character in command"),
    ],
)
def test_login_syntax_errors(line: bytes, reply: str) -> None:
    core = started()
    event, output = send(core, line + b"\r\n")
    assert event is NEED_DATA
    assert lines(output) == [reply]


def test_literal_followed_by_garbage_is_bad() -> None:
    output = send(started(), b'a LOGIN {4+}\r\nuser"x" pw\r\n')[1]
    assert output == b"a BAD Syntax error\r\n"


def test_nul_in_literal_is_bad() -> None:
    output = send(started(), b"a LOGIN {4+}\r\nu\x00er pw\r\nb NOOP\r\n")[1]
    assert lines(output) == ["a BAD NUL not allowed in commands", "b OK NOOP completed"]


def test_synchronizing_literal_refused_where_none_belongs() -> None:
    output = send(started(), b"a NOOP {3}\r\nb FROB {3}\r\nc NOOP\r\n")[1]
    assert lines(output) == [
        "a BAD Literal not allowed here",
        "b BAD Unknown command",
        "c OK NOOP completed",
    ]


def test_non_synchronizing_literal_of_a_bad_command_is_skipped() -> None:
    output = send(started(), b"a FROB {9+}\r\nb NOOP\r\n {3+}\r\nxyz\r\nc NOOP\r\n")[1]
    assert lines(output) == ["a BAD Unknown command", "c OK NOOP completed"]


def test_error_in_a_continuation_line_is_reported_at_the_command_end() -> None:
    output = send(started(), b'a LOGIN {1+}\r\nu "bad {2+}\r\nxy\r\nb NOOP\r\n')[1]
    assert lines(output) == ["a BAD Invalid quoted string", "b OK NOOP completed"]


# Pipelining and login results.


def test_pipelined_login_keeps_the_rest_as_trailing_data() -> None:
    core = started()
    event, output = send(core, b"a LOGIN x y\r\nb NOOP\r\n")
    assert event == LoginAttempt(PlainCredentials("x", "y", "", "LOGIN"), "a")
    assert output == b""
    assert core.trailing_data == b"b NOOP\r\n"
    assert core.state is ImapState.LOGIN_PENDING


def test_core_waits_while_a_login_is_pending() -> None:
    core = started()
    send(core, b"a LOGIN x y\r\nb NOOP\r\n")
    assert send(core, b"c LOGOUT\r\n") == (NEED_DATA, b"")
    assert core.trailing_data == b"b NOOP\r\nc LOGOUT\r\n"


def test_login_failed_answers_then_processes_the_pipelined_commands() -> None:
    core = started()
    send(core, b"a LOGIN x y\r\nb NOOP\r\n")
    core.login_failed(AuthFailed())
    assert core.trailing_data == b""
    event, output = send(core, b"")
    assert event == Closed("client closed")
    assert lines(output) == [
        "a NO [AUTHENTICATIONFAILED] Authentication failed.",
        "b OK NOOP completed",
    ]


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (ProtocolViolation(text="Nope"), "t BAD Nope"),
        (AuthFailed(), "t NO [AUTHENTICATIONFAILED] Authentication failed."),
        (AuthAborted(), "t BAD Authentication aborted."),
        (LoginDisabled(text="Disabled."), "t NO [CONTACTADMIN] Disabled."),
        (PrivacyRequired(), "t NO [PRIVACYREQUIRED] TLS required to log in."),
        (MechanismUnusable(text="No."), "t NO [CANNOT] No."),
        (TempFail(), "t NO [UNAVAILABLE] Account is temporarily unavailable."),
        (ConfigError("k", "v"), "t NO [UNAVAILABLE] k: v"),
        (TempFail(text="two\r\nlines"), "t NO [UNAVAILABLE] two  lines"),
    ],
)
def test_login_failed_rendering(error: MeshproxyError, reply: str) -> None:
    core = started()
    send(core, b"t LOGIN user pw\r\n")
    core.login_failed(error)
    assert lines(core.data_to_send()) == [reply]
    assert core.state is ImapState.READY


def test_misuse_of_the_edge_api_raises() -> None:
    core = started()
    with pytest.raises(RuntimeError):
        core.login_failed(AuthFailed())
    with pytest.raises(RuntimeError):
        core.tls_started()


def test_login_failed_after_shutdown_is_ignored() -> None:
    core = started()
    send(core, b"a LOGIN user pw\r\n")
    core.shutdown("Login timeout")
    core.login_failed(AuthFailed())
    core.tls_started()
    assert core.data_to_send() == b"* BYE Login timeout\r\n"
    assert core.next_event() == Closed("shutdown")
    assert core.trailing_data == b""


def test_shutdown_queues_bye_once_and_cleans_text() -> None:
    core = started()
    core.shutdown("Server\r\nshutting down")
    core.shutdown("again")
    assert core.data_to_send() == b"* BYE Server  shutting down\r\n"
    assert core.next_event() == Closed("shutdown")
    assert core.next_event() == Closed("shutdown")


def test_replies_never_echo_the_password() -> None:
    core = started()
    commands = [b'a LOGIN user "s3cr3t', b"b LOGIN user s3cr3t x", b"c AUTHENTICATE PLAIN s3cr3t"]
    output = send(core, b"\r\n".join(commands) + b"\r\n")[1]
    assert b"s3cr3t" not in output
    assert len(lines(output)) == 3


# STARTTLS.


def test_starttls_discards_injected_plaintext() -> None:
    core = started()
    event, output = send(core, b"a STARTTLS\r\nb LOGIN evil injected\r\n")
    assert event == StartTLS()
    assert output == b"a OK Begin TLS negotiation now\r\n"
    assert send(core, b"c NOOP\r\n") == (NEED_DATA, b"")
    core.tls_started()
    assert core.secure
    assert core.next_event() is NEED_DATA
    assert core.data_to_send() == b""
    event, output = send(core, b"d CAPABILITY\r\n")
    assert lines(output) == [f"* CAPABILITY {TLS_CAPS}", "d OK CAPABILITY completed"]


def test_starttls_twice_or_unavailable_is_bad() -> None:
    core = started()
    send(core, b"a STARTTLS\r\n")
    core.tls_started()
    assert send(core, b"b STARTTLS\r\n")[1] == b"b BAD STARTTLS not available\r\n"
    core = started(replace(SETTINGS, tls_available=False))
    assert send(core, b"a STARTTLS\r\n")[1] == b"a BAD STARTTLS not available\r\n"


def test_tls_required_refuses_every_login_before_tls() -> None:
    core = started(replace(SETTINGS, tls_required=True))
    output = send(core, b"a LOGIN u p\r\nb AUTHENTICATE CRAM-MD5\r\nc LOGIN {4}\r\n")[1]
    assert lines(output) == [
        "a NO [PRIVACYREQUIRED] TLS required to log in.",
        "b NO [PRIVACYREQUIRED] TLS required to log in.",
        "c NO [PRIVACYREQUIRED] TLS required to log in.",
    ]
    send(core, b"d STARTTLS\r\n")
    core.tls_started()
    event, _ = send(core, b"e LOGIN u p\r\n")
    assert login_event(event).tag == "e"


# AUTHENTICATE.


def test_authenticate_plain_with_continuation() -> None:
    core = started()
    assert send(core, b"a AUTHENTICATE plain\r\n") == (NEED_DATA, b"+ \r\n")
    assert core.state is ImapState.SASL
    event, output = send(core, b64(b"\0user\0pass") + b"\r\nb NOOP\r\n")
    assert output == b""
    assert event == LoginAttempt(PlainCredentials("user", "pass", "", "PLAIN"), "a")
    assert core.trailing_data == b"b NOOP\r\n"


def test_authenticate_plain_with_initial_response_and_authzid() -> None:
    event, output = send(started(), b"a AUTHENTICATE PLAIN " + b64(b"boss\0user\0pw") + b"\r\n")
    assert output == b""
    assert login_event(event).credentials == PlainCredentials("user", "pw", "boss", "PLAIN")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"a AUTHENTICATE PLAIN =", "a BAD Malformed PLAIN message"),
        (b"a AUTHENTICATE PLAIN " + b64(b"user\0pw"), "a BAD Malformed PLAIN message"),
        (b"a AUTHENTICATE PLAIN " + b64(b"\0\0pw"), "a BAD Malformed PLAIN message"),
        (b"a AUTHENTICATE PLAIN AGEAYg", "a BAD Invalid base64"),
        (b"a AUTHENTICATE CRAM-MD5 =", "a BAD This mechanism takes no initial response"),
        (b"a AUTHENTICATE GSSAPI", "a NO Unsupported authentication mechanism"),
        (b"a AUTHENTICATE", "a BAD Syntax error"),
        (b'a AUTHENTICATE "PLAIN"', "a BAD Syntax error"),
    ],
)
def test_authenticate_errors(line: bytes, reply: str) -> None:
    core = started()
    assert send(core, line + b"\r\n") == (NEED_DATA, f"{reply}\r\n".encode())
    assert core.state is ImapState.READY


def test_authenticate_login_prompts() -> None:
    core = started()
    assert send(core, b"a AUTHENTICATE LOGIN\r\n")[1] == b"+ VXNlcm5hbWU6\r\n"
    assert send(core, b64(b"user") + b"\r\n")[1] == b"+ UGFzc3dvcmQ6\r\n"
    event, _ = send(core, b64(b"pass") + b"\r\n")
    assert event == LoginAttempt(PlainCredentials("user", "pass", "", "LOGIN"), "a")


def test_authenticate_login_with_initial_user_name() -> None:
    core = started()
    assert send(core, b"a AUTHENTICATE LOGIN " + b64(b"user") + b"\r\n")[1] == (
        b"+ UGFzc3dvcmQ6\r\n"
    )
    event, _ = send(core, b"\r\n")
    assert login_event(event).credentials == PlainCredentials("user", "", "", "LOGIN")


def test_authenticate_cram_md5_even_when_not_advertised() -> None:
    core = started()
    assert send(core, b"a AUTHENTICATE CRAM-MD5\r\n")[1] == b"+ " + b64(CHALLENGE) + b"\r\n"
    answer = b64(b"tim B913A602C7EDA7A495B4E6E7334D3890")
    event, _ = send(core, answer + b"\r\n")
    assert event == LoginAttempt(
        CramCredentials("tim", CHALLENGE, "b913a602c7eda7a495b4e6e7334d3890"), "a"
    )


def test_authenticate_cancel_and_bad_base64() -> None:
    core = started()
    send(core, b"a AUTHENTICATE PLAIN\r\n")
    assert send(core, b"*\r\n")[1] == b"a BAD Authentication aborted.\r\n"
    send(core, b"b AUTHENTICATE LOGIN\r\n")
    assert send(core, b"dXNlcg\r\n")[1] == b"b BAD Invalid base64\r\n"
    assert send(core, b"c NOOP\r\n")[1] == b"c OK NOOP completed\r\n"


def test_login_failed_after_authenticate_uses_its_tag() -> None:
    core = started()
    send(core, b"x9 AUTHENTICATE PLAIN " + b64(b"\0u\0p") + b"\r\n")
    core.login_failed(MechanismUnusable())
    assert core.data_to_send().startswith(b"x9 NO [CANNOT] ")


# Limits.


def test_line_of_max_length_is_fine_and_longer_is_fatal() -> None:
    core = started()
    fits = b"a LOGIN u " + b"p" * (200 - 10)
    assert isinstance(send(core, fits + b"\r\n")[0], LoginAttempt)
    core = started()
    event, output = send(core, fits + b"p\r\n")
    assert event == Closed("line too long")
    assert output == b"* BYE Line too long\r\n"


def test_overlong_line_is_fatal_before_it_ends() -> None:
    event, output = send(started(), b"a NOOP " + b"x" * 300)
    assert (event, output) == (Closed("line too long"), b"* BYE Line too long\r\n")


def test_overlong_sasl_response_is_fatal() -> None:
    core = started()
    send(core, b"a AUTHENTICATE PLAIN\r\n")
    assert send(core, b"A" * 400) == (Closed("line too long"), b"* BYE Line too long\r\n")


def test_huge_synchronizing_literal_is_refused_without_continuation() -> None:
    output = send(started(), b"a LOGIN {101}\r\nb NOOP\r\n")[1]
    assert lines(output) == ["a BAD Literal too large", "b OK NOOP completed"]


def test_literal_of_max_size_is_accepted() -> None:
    core = started()
    assert send(core, b"a LOGIN u {100}\r\n")[1] == b"+ Ready for literal\r\n"
    event, _ = send(core, b"p" * 100 + b"\r\n")
    assert login_event(event).credentials.authcid == "u"


def test_huge_non_synchronizing_literal_is_fatal() -> None:
    event, output = send(started(), b"a LOGIN {101+}\r\n")
    assert (event, output) == (Closed("literal too large"), b"* BYE Literal too large\r\n")


def test_endless_chain_of_literals_is_fatal() -> None:
    core = started()
    chain = b'a ID ("k" {100+}\r\n' + (b"v" * 100 + b' "k" {100+}\r\n') * 5
    event, output = send(core, chain)
    assert (event, output) == (Closed("line too long"), b"* BYE Line too long\r\n")


def test_too_many_errors_in_a_row_closes() -> None:
    core = started(replace(SETTINGS, max_errors=3))
    event, output = send(core, b"a FROB\r\n\r\nc FROB\r\nd NOOP\r\n")
    assert event == Closed("too many errors")
    assert lines(output) == [
        "a BAD Unknown command",
        "* BAD Empty command line",
        "c BAD Unknown command",
        "* BYE Too many protocol errors",
    ]


def test_a_good_command_resets_the_error_count() -> None:
    core = started(replace(SETTINGS, max_errors=3))
    script = b"a FROB\r\nb FROB\r\nc NOOP\r\nd FROB\r\ne FROB\r\nf AUTHENTICATE X\r\n"
    event, output = send(core, script)
    assert event == Closed("too many errors")
    assert lines(output)[-1] == "* BYE Too many protocol errors"
    assert len(lines(output)) == 7


def test_client_close_mid_line_and_mid_literal() -> None:
    core = started()
    assert send(core, b"a NOO") == (NEED_DATA, b"")
    assert send(core, b"") == (Closed("client closed"), b"")
    core = started()
    send(core, b"a LOGIN {5}\r\nab")
    assert send(core, b"") == (Closed("client closed"), b"")


def test_commands_received_before_close_are_answered() -> None:
    core = started()
    core.receive_data(b"a NOOP\r\n")
    core.receive_data(b"")
    assert core.next_event() == Closed("client closed")
    assert core.data_to_send() == b"a OK NOOP completed\r\n"
