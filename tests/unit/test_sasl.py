"""SASL exchanges: PLAIN, LOGIN, CRAM-MD5, cancelling, base64."""

from __future__ import annotations

import base64
import re

import pytest

from meshproxy.credentials import CramCredentials, PlainCredentials
from meshproxy.errors import AuthAborted, ProtocolViolation
from meshproxy.protocol import replies, sasl
from meshproxy.protocol.sasl import Challenge

pytestmark = pytest.mark.unit

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def fixed_challenge() -> bytes:
    return RFC2195_CHALLENGE


def test_decode_base64_is_strict() -> None:
    assert sasl.decode_base64(b"") == b""
    assert sasl.decode_base64(b"YWJj") == b"abc"
    for bad in (b"YWJ", b"YW Jj", b"YWJj\r", b"!!!!", b"YQ"):
        with pytest.raises(ProtocolViolation, match=replies.INVALID_BASE64):
            sasl.decode_base64(bad)


def test_initial_response_equals_sign_is_empty() -> None:
    assert sasl.decode_initial_response(b"=") == b""
    assert sasl.decode_initial_response(b"YQ==") == b"a"


def test_plain_without_initial_response() -> None:
    exchange = sasl.start_exchange("plain", fixed_challenge)
    assert exchange.begin(None) == Challenge(b"")
    result = exchange.respond(b64(b"admin\0tim\0tanstaaftanstaaf"))
    assert result == PlainCredentials("tim", "tanstaaftanstaaf", "admin", "PLAIN")


def test_plain_with_initial_response() -> None:
    result = sasl.start_exchange("PLAIN", fixed_challenge).begin(b"\0user\0p\xc3\xa4ss")
    assert result == PlainCredentials("user", "päss", "", "PLAIN")


@pytest.mark.parametrize(
    "message", [b"", b"user\0pass", b"\0\0pass", b"a\0b\0c\0d", b"\0user\0\xff"]
)
def test_plain_malformed(message: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        sasl.start_exchange("PLAIN", fixed_challenge).begin(message)


def test_login_prompts_then_credentials() -> None:
    exchange = sasl.start_exchange("LOGIN", fixed_challenge)
    assert exchange.begin(None) == Challenge(b"Username:")
    assert exchange.respond(b64(b"user")) == Challenge(b"Password:")
    assert exchange.respond(b64(b"secret")) == PlainCredentials("user", "secret", "", "LOGIN")


def test_login_initial_response_is_the_user_name() -> None:
    exchange = sasl.start_exchange("login", fixed_challenge)
    assert exchange.begin(b"user") == Challenge(b"Password:")
    assert exchange.respond(b"") == PlainCredentials("user", "", "", "LOGIN")


def test_cram_md5_rfc2195_example() -> None:
    exchange = sasl.start_exchange("CRAM-MD5", fixed_challenge)
    assert exchange.begin(None) == Challenge(RFC2195_CHALLENGE)
    user, digest = RFC2195_RESPONSE.split(b" ")
    result = exchange.respond(b64(user + b" " + digest.upper()))
    assert result == CramCredentials("tim", RFC2195_CHALLENGE, "b913a602c7eda7a495b4e6e7334d3890")


def test_cram_md5_refuses_an_initial_response() -> None:
    with pytest.raises(ProtocolViolation, match=replies.NO_INITIAL_RESPONSE):
        sasl.start_exchange("CRAM-MD5", fixed_challenge).begin(b"")


@pytest.mark.parametrize(
    "answer", [b"tim", b" b913a602c7eda7a495b4e6e7334d3890", b"tim b913", b"tim " + b"g" * 32]
)
def test_cram_md5_malformed(answer: bytes) -> None:
    exchange = sasl.start_exchange("CRAM-MD5", fixed_challenge)
    exchange.begin(None)
    with pytest.raises(ProtocolViolation, match=replies.MALFORMED_CRAM):
        exchange.respond(b64(answer))


def test_cancel_and_bad_base64() -> None:
    exchange = sasl.start_exchange("LOGIN", fixed_challenge)
    exchange.begin(None)
    with pytest.raises(ProtocolViolation, match=replies.INVALID_BASE64):
        exchange.respond(b"not base64")
    with pytest.raises(AuthAborted):
        exchange.respond(b"*")


def test_unsupported_mechanism() -> None:
    with pytest.raises(replies.UnsupportedMechanism):
        sasl.start_exchange("GSSAPI", fixed_challenge)


def test_challenge_factory_format_uses_injected_clock() -> None:
    challenge = sasl.cram_challenge_factory("mx.example", clock=lambda: 1234.9)
    first, second = challenge(), challenge()
    assert re.fullmatch(rb"<\d+\.1234@mx\.example>", first)
    assert first != second
