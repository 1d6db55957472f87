"""The pre-login IMAP grammar: tags, verbs, tokens, literals, LOGIN/AUTHENTICATE/ID rules."""

from __future__ import annotations

import pytest

from meshproxy.errors import ProtocolViolation
from meshproxy.protocol import grammar, replies
from meshproxy.protocol.grammar import Atom, LiteralSpec, Punct, String

pytestmark = pytest.mark.unit


def violation_text(call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(ProtocolViolation) as caught:
        call(*args)
    return caught.value.text


@pytest.mark.parametrize(
    ("segment", "body", "spec"),
    [
        (b"a LOGIN {5}", b"a LOGIN ", LiteralSpec(5, synchronizing=True)),
        (b"a LOGIN x {12+}", b"a LOGIN x ", LiteralSpec(12, synchronizing=False)),
        (b"{0}", b"", LiteralSpec(0, synchronizing=True)),
        (b"a LOGIN {5} x", b"a LOGIN {5} x", None),
        (b"a LOGIN {}", b"a LOGIN {}", None),
        (b"a LOGIN {12345678901}", b"a LOGIN {12345678901}", None),
        (b"a LOGIN {-1}", b"a LOGIN {-1}", None),
    ],
)
def test_split_literal(segment: bytes, body: bytes, spec: LiteralSpec | None) -> None:
    assert grammar.split_literal(segment) == (body, spec)


@pytest.mark.parametrize("tag", [b"a", b"A001", b"x]y", b"tag.1-2_3", b"}", b"t" * 64])
def test_valid_tags(tag: bytes) -> None:
    assert grammar.split_tag(tag + b" NOOP") == (tag.decode(), b"NOOP")


@pytest.mark.parametrize(
    "tag", [b"+a", b"a+", b"*", b"a%", b"a(", b"a{", b'a"', b"a\\", b"\x01", b"\xc3\xa9", b"t" * 65]
)
def test_invalid_tags(tag: bytes) -> None:
    assert violation_text(grammar.split_tag, tag + b" NOOP") == replies.INVALID_TAG


def test_empty_line_and_leading_space() -> None:
    assert violation_text(grammar.split_tag, b"") == replies.EMPTY_LINE
    assert violation_text(grammar.split_tag, b" a NOOP") == replies.INVALID_TAG


def test_split_verb_uppercases_and_keeps_the_space() -> None:
    assert grammar.split_verb(b"login x y") == ("LOGIN", b" x y")
    assert grammar.split_verb(b"NOOP") == ("NOOP", b"")
    assert violation_text(grammar.split_verb, b"") == replies.MISSING_COMMAND
    assert violation_text(grammar.split_verb, b" NOOP") == replies.MISSING_COMMAND
    assert violation_text(grammar.split_verb, b"NO\xffOP") == replies.UNKNOWN_COMMAND


def test_tokenize_atoms_strings_and_lists() -> None:
    tokens = grammar.tokenize(b' ("k" NIL) x]*%')
    assert tokens == [
        Punct.SPACE,
        Punct.OPEN,
        String(b"k"),
        Punct.SPACE,
        Atom(b"NIL"),
        Punct.CLOSE,
        Punct.SPACE,
        Atom(b"x]*%"),
    ]


def test_quoted_string_escapes_and_utf8() -> None:
    assert grammar.tokenize(rb'"a\"b\\c"') == [String(b'a"b\\c')]
    assert grammar.tokenize('"pässwörd"'.encode()) == [String("pässwörd".encode())]


@pytest.mark.parametrize("data", [b'"open', b'"bad\\escape"', b'"cr\r"', b'"\\"'])
def test_invalid_quoted_strings(data: bytes) -> None:
    assert violation_text(grammar.tokenize, data) == replies.INVALID_QUOTED


@pytest.mark.parametrize("data", [b"a\x01b", b"x{y", b"\x7f", b"\\"])
def test_invalid_characters(data: bytes) -> None:
    assert violation_text(grammar.tokenize, data) == replies.INVALID_CHARACTER


def test_nul_is_refused_anywhere() -> None:
    assert violation_text(grammar.tokenize, b'"a\x00b"') == replies.NUL_NOT_ALLOWED


def test_parse_login_forms() -> None:
    assert grammar.parse_login(grammar.tokenize(b' user "p w"')) == ("user", "p w")
    tokens: list[grammar.Token] = [Punct.SPACE, String(b"u"), Punct.SPACE, String("é".encode())]
    assert grammar.parse_login(tokens) == ("u", "é")


@pytest.mark.parametrize("data", [b" user", b"  user pw", b" user  pw", b" user pw x", b" (u) pw"])
def test_parse_login_syntax_errors(data: bytes) -> None:
    assert violation_text(grammar.parse_login, grammar.tokenize(data)) == replies.SYNTAX_ERROR


def test_parse_login_needs_utf8() -> None:
    tokens = grammar.tokenize(b' user "\xff"')
    assert violation_text(grammar.parse_login, tokens) == replies.INVALID_UTF8


def test_parse_authenticate() -> None:
    assert grammar.parse_authenticate(grammar.tokenize(b" plain")) == ("PLAIN", None)
    assert grammar.parse_authenticate(grammar.tokenize(b" PLAIN AGEAYg==")) == (
        "PLAIN",
        b"AGEAYg==",
    )
    assert violation_text(grammar.parse_authenticate, grammar.tokenize(b' PLAIN "x"')) == (
        replies.SYNTAX_ERROR
    )
    assert violation_text(grammar.parse_authenticate, []) == replies.SYNTAX_ERROR


def test_parse_id() -> None:
    assert grammar.parse_id(grammar.tokenize(b" NIL")) == {}
    assert grammar.parse_id(grammar.tokenize(b' ("name" "x" "os" NIL)')) == {
        "name": "x",
        "os": None,
    }


@pytest.mark.parametrize(
    "data",
    [b" ()", b' ("name")', b' (NIL "x")', b' ("a" "b"', b' ("a" "b") x', b' "x"', b" atom"],
)
def test_parse_id_errors(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        grammar.parse_id(grammar.tokenize(data))


def test_parse_id_limits() -> None:
    pairs = b" ".join(b'"k%d" "v"' % index for index in range(31))
    assert violation_text(grammar.parse_id, grammar.tokenize(b" (" + pairs + b")")) == (
        replies.BAD_ID
    )
    long_key = b' ("' + b"k" * 31 + b'" "v")'
    assert violation_text(grammar.parse_id, grammar.tokenize(long_key)) == replies.BAD_ID
    long_value = [Punct.SPACE, Punct.OPEN, String(b"k"), Punct.SPACE, String(b"v" * 1025)]
    assert violation_text(grammar.parse_id, [*long_value, Punct.CLOSE]) == replies.BAD_ID


def test_parse_no_arguments() -> None:
    grammar.parse_no_arguments([])
    assert violation_text(grammar.parse_no_arguments, [Punct.SPACE]) == replies.SYNTAX_ERROR
