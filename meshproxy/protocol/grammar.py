"""The pre-login IMAP grammar (RFC 9051 section 9, RFC 2971, RFC 4959, RFC 7888).

A command reaches the parser as line segments and literals: ``a LOGIN {4}`` CRLF, the four
literal octets, `` pass`` CRLF.  ``split_literal`` finds the literal announced at the end of a
segment, ``split_tag`` / ``split_verb`` take the head of the first segment, ``tokenize`` turns
the rest of every segment into tokens, and a ``TokenReader`` checks the arguments of one
command against its rule.  Every failure raises ``ProtocolViolation`` with a fixed text.

Leniency, on purpose: atoms may hold ``%``, ``*``, ``]`` and 8-bit octets (passwords typed
without quotes); strings must still decode as UTF-8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from meshproxy.errors import ProtocolViolation
from meshproxy.protocol import replies

MAX_TAG = 64
"""Longest tag accepted (tags are echoed in replies)."""
ID_MAX_PAIRS = 30
ID_MAX_FIELD = 30
ID_MAX_VALUE = 1024

# tag = 1*<any ASTRING-CHAR except "+">: CHAR minus SP, CTL, ( ) { % * " \ and +.
_TAG = re.compile(rb"[!#$&',\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]{1,%d}" % MAX_TAG)
_VERB = re.compile(rb"[A-Za-z0-9\-]+")
_ATOM = re.compile(rb"[^\x00-\x20\x7f(){\"\\]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}\Z")


class Punct(Enum):
    SPACE = " "
    OPEN = "("
    CLOSE = ")"


@dataclass(frozen=True)
class Atom:
    value: bytes


@dataclass(frozen=True)
class String:
    """A quoted string (unescaped) or a literal."""

    value: bytes


Token = Atom | String | Punct


@dataclass(frozen=True)
class LiteralSpec:
    """``{size}`` (synchronizing) or ``{size+}`` (RFC 7888) at the end of a line."""

    size: int
    synchronizing: bool


def violation(text: str) -> ProtocolViolation:
    return ProtocolViolation(text, text=text)


def split_literal(segment: bytes) -> tuple[bytes, LiteralSpec | None]:
    """The segment without a trailing literal marker, and the marker."""
    match = _LITERAL.search(segment)
    if match is None:
        return segment, None
    spec = LiteralSpec(int(match.group(1)), synchronizing=not match.group(2))
    return segment[: match.start()], spec


def split_tag(line: bytes) -> tuple[str, bytes]:
    """The tag and what follows its SP; an empty line or a bad tag raises."""
    if not line:
        raise violation(replies.EMPTY_LINE)
    tag, _, rest = line.partition(b" ")
    if _TAG.fullmatch(tag) is None:
        raise violation(replies.INVALID_TAG)
    return tag.decode("ascii"), rest


def split_verb(rest: bytes) -> tuple[str, bytes]:
    """The command name (upper case) and its arguments, which start with SP if present."""
    verb, space, arguments = rest.partition(b" ")
    if not verb:
        raise violation(replies.MISSING_COMMAND)
    if _VERB.fullmatch(verb) is None:
        raise violation(replies.UNKNOWN_COMMAND)
    return verb.decode("ascii").upper(), space + arguments


def tokenize(data: bytes) -> list[Token]:
    """Tokens of one segment (the part of a command line between literals)."""
    if b"\0" in data:
        raise violation(replies.NUL_NOT_ALLOWED)
    tokens: list[Token] = []
    position = 0
    while position < len(data):
        token, position = _next_token(data, position)
        tokens.append(token)
    return tokens


def _next_token(data: bytes, position: int) -> tuple[Token, int]:
    char = data[position : position + 1]
    if char in (b" ", b"(", b")"):
        return Punct(char.decode("ascii")), position + 1
    if char == b'"':
        quoted = _QUOTED.match(data, position)
        if quoted is None:
            raise violation(replies.INVALID_QUOTED)
        return String(_QUOTED_ESCAPE.sub(rb"\1", quoted.group(1))), quoted.end()
    atom = _ATOM.match(data, position)
    if atom is None:
        raise violation(replies.INVALID_CHARACTER)
    return Atom(atom.group()), atom.end()


def decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise violation(replies.INVALID_UTF8) from None


class TokenReader:
    """Reads one command's argument tokens, left to right."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._position = 0

    def _take(self) -> Token | None:
        if self._position >= len(self._tokens):
            return None
        token = self._tokens[self._position]
        self._position += 1
        return token

    def at_end(self) -> bool:
        return self._position >= len(self._tokens)

    def end(self) -> None:
        if not self.at_end():
            raise violation(replies.SYNTAX_ERROR)

    def punct(self, expected: Punct) -> None:
        if self._take() is not expected:
            raise violation(replies.SYNTAX_ERROR)

    def peek_punct(self, expected: Punct) -> bool:
        if self._position < len(self._tokens) and self._tokens[self._position] is expected:
            self._position += 1
            return True
        return False

    def atom(self) -> bytes:
        token = self._take()
        if not isinstance(token, Atom):
            raise violation(replies.SYNTAX_ERROR)
        return token.value

    def astring(self) -> bytes:
        token = self._take()
        if not isinstance(token, Atom | String):
            raise violation(replies.SYNTAX_ERROR)
        return token.value

    def nstring(self) -> bytes | None:
        token = self._take()
        if isinstance(token, String):
            return token.value
        if isinstance(token, Atom) and token.value.upper() == b"NIL":
            return None
        raise violation(replies.SYNTAX_ERROR)


def parse_no_arguments(tokens: list[Token]) -> None:
    TokenReader(tokens).end()


def parse_login(tokens: list[Token]) -> tuple[str, str]:
    """``LOGIN SP userid SP password`` -> (userid, password)."""
    reader = TokenReader(tokens)
    reader.punct(Punct.SPACE)
    user = reader.astring()
    reader.punct(Punct.SPACE)
    password = reader.astring()
    reader.end()
    return decode(user), decode(password)


def parse_authenticate(tokens: list[Token]) -> tuple[str, bytes | None]:
    """``AUTHENTICATE SP mechanism [SP initial-response]`` (RFC 4959); the response raw."""
    reader = TokenReader(tokens)
    reader.punct(Punct.SPACE)
    mechanism = reader.atom().decode("utf-8", "replace").upper()
    initial = None
    if reader.peek_punct(Punct.SPACE):
        initial = reader.atom()
    reader.end()
    return mechanism, initial


def parse_id(tokens: list[Token]) -> dict[str, str | None]:
    """``ID SP ("(" field SP value *(SP field SP value) ")" / NIL)`` (RFC 2971)."""
    reader = TokenReader(tokens)
    reader.punct(Punct.SPACE)
    if not reader.peek_punct(Punct.OPEN):
        if reader.nstring() is not None:
            raise violation(replies.BAD_ID)
        reader.end()
        return {}
    fields: dict[str, str | None] = {}
    while True:
        key = _id_string(reader.nstring(), ID_MAX_FIELD)
        reader.punct(Punct.SPACE)
        value = reader.nstring()
        fields[key] = None if value is None else _id_string(value, ID_MAX_VALUE)
        if len(fields) > ID_MAX_PAIRS:
            raise violation(replies.BAD_ID)
        if not reader.peek_punct(Punct.SPACE):
            break
    reader.punct(Punct.CLOSE)
    reader.end()
    return fields


def _id_string(value: bytes | None, limit: int) -> str:
    if value is None or len(value) > limit:
        raise violation(replies.BAD_ID)
    return decode(value)
