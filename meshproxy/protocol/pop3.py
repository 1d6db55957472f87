"""The sans-I/O POP3 pre-login core (RFC 1939 with APOP, 2449 CAPA, 5034 AUTH, 2595 STLS,
6856 UTF8).

Same shape as ``imap.ImapPreauth``: ``_READERS`` maps each ``Pop3State`` to how input is
consumed and ``_COMMANDS`` maps each verb allowed in the AUTHORIZATION state to its handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from meshproxy.credentials import ApopCredentials, Credentials, PlainCredentials
from meshproxy.errors import MeshproxyError
from meshproxy.protocol import replies
from meshproxy.protocol.buffer import LineTooLongError, ReceiveBuffer
from meshproxy.protocol.events import NEED_DATA, Closed, LoginAttempt, NextEvent, StartTLS
from meshproxy.protocol.grammar import decode, violation
from meshproxy.protocol.sasl import (
    Challenge,
    SaslExchange,
    SaslStep,
    check_privacy,
    cram_challenge_factory,
    decode_initial_response,
    start_exchange,
)

Result = NextEvent | None
_VERB = re.compile(rb"[A-Za-z0-9]{1,16}")
_HEX_DIGEST = re.compile(rb"[0-9a-fA-F]{32}")
_TIMESTAMP = re.compile(rb"<[!-;=?-~]{1,250}>")
"""An APOP timestamp: RFC 1939's msg-id form ``<...>``, printable ASCII, no inner ``<>``."""


@dataclass(frozen=True)
class Pop3Settings:
    """What the POP3 core needs to know.

    ``capabilities`` are the CAPA lines pop3d offers; USER, STLS, SASL and IMPLEMENTATION
    lines in it are dropped, since the login stage owns them.  ``max_literal`` is unused
    (POP3 has no literals) and kept so both settings have the same limit fields.
    ``mesh_login``: accept ``AUTH X-MESHPROXY`` (never listed, allowed before STLS).
    ``apop``: the greeting ends with a timestamp from ``challenge`` and ``APOP`` is accepted
    (RFC 1939 section 7); CAPA never lists it (RFC 2449 has no tag for APOP).  Off, ``APOP``
    is an unknown command.
    """

    capabilities: tuple[str, ...] = replies.POP3_CAPABILITIES
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    tls_available: bool = False
    secure: bool = False
    tls_required: bool = False
    greeting: str = "meshproxy ready."
    implementation: str = "meshproxy"
    challenge: Callable[[], bytes] = field(default_factory=cram_challenge_factory, compare=False)
    max_line: int = 8192
    max_literal: int = 8192
    max_errors: int = 10
    mesh_login: bool = False
    apop: bool = False


class Pop3State(Enum):
    READY = "ready"  # AUTHORIZATION state, waiting for a command
    SASL = "sasl"  # waiting for an AUTH response line
    TLS_PENDING = "tls pending"
    LOGIN_PENDING = "login pending"
    CLOSED = "closed"


POST_LOGIN_VERBS = frozenset(["STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL", "LAST"])
LOGIN_VERBS = frozenset({"USER", "PASS", "AUTH", "APOP"})


class Pop3Preauth:
    """One POP3 session before login.  The constructor queues the greeting."""

    def __init__(self, settings: Pop3Settings) -> None:
        self._settings = settings
        self._buffer = ReceiveBuffer()
        self._timestamp = _apop_timestamp(settings) if settings.apop else b""
        self._output = bytearray(replies.pop3_greeting(settings.greeting, self._timestamp))
        self._state = Pop3State.READY
        self._secure = settings.secure
        self._utf8 = False
        self._user: str | None = None
        self._errors = 0
        self._exchange: SaslExchange | None = None
        self._closed_reason = ""

    # The API the edge uses.

    @property
    def state(self) -> Pop3State:
        return self._state

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def utf8(self) -> bool:
        """The client sent UTF8 before logging in (pop3d then gets ``UTF8=1``)."""
        return self._utf8

    @property
    def apop_timestamp(self) -> bytes:
        """The timestamp the greeting carried (b"" without ``apop``)."""
        return self._timestamp

    @property
    def trailing_data(self) -> bytes:
        return bytes(self._buffer) if self._state is Pop3State.LOGIN_PENDING else b""

    @property
    def capabilities(self) -> tuple[str, ...]:
        settings = self._settings
        return replies.pop3_capabilities(
            settings.capabilities,
            settings.sasl_mechanisms,
            implementation=settings.implementation,
            tls_available=settings.tls_available,
            tls_required=settings.tls_required,
            secure=self._secure,
        )

    def receive_data(self, data: bytes) -> None:
        if self._state is not Pop3State.CLOSED:
            self._buffer.feed(data)

    def data_to_send(self) -> bytes:
        data = bytes(self._output)
        self._output.clear()
        return data

    def next_event(self) -> NextEvent:
        while True:
            result = _READERS[self._state](self)
            if result is not None:
                return result

    def tls_started(self) -> None:
        if self._state is Pop3State.CLOSED:
            return
        if self._state is not Pop3State.TLS_PENDING:
            raise RuntimeError("tls_started() without a StartTLS event")
        self._buffer.clear()
        self._secure = True
        self._user = None
        self._state = Pop3State.READY

    def login_failed(self, error: MeshproxyError) -> None:
        if self._state is Pop3State.CLOSED:
            return
        if self._state is not Pop3State.LOGIN_PENDING:
            raise RuntimeError("login_failed() without a LoginAttempt event")
        self._output += replies.pop3_error(error)
        self._state = Pop3State.READY

    def shutdown(self, text: str) -> None:
        if self._state is not Pop3State.CLOSED:
            self._close(replies.REASON_SHUTDOWN, text)

    # Reading input.

    def _wait(self) -> Result:
        return NEED_DATA

    def _report_closed(self) -> Result:
        return Closed(self._closed_reason)

    def _take_line(self) -> bytes | None:
        try:
            return self._buffer.take_line(self._settings.max_line)
        except LineTooLongError:
            self._close(replies.REASON_LINE_TOO_LONG, replies.POP3_LINE_TOO_LONG)
            return None

    def _stalled(self) -> Result:
        if self._state is not Pop3State.CLOSED and self._buffer.eof:
            self._close(replies.REASON_CLIENT_CLOSED)
        if self._state is Pop3State.CLOSED:
            return Closed(self._closed_reason)
        return NEED_DATA

    def _read_command(self) -> Result:
        line = self._take_line()
        if line is None:
            return self._stalled()
        try:
            verb, arguments = self._split_command(line)
            result = _COMMANDS[verb](self, arguments)
        except MeshproxyError as error:
            return self._reject(error)
        if self._state is not Pop3State.CLOSED:
            self._errors = 0
        return result

    def _split_command(self, line: bytes) -> tuple[str, bytes | None]:
        """Verb (upper case) and the rest after one SP (None when there is no SP)."""
        if b"\0" in line:
            raise violation(replies.NUL_NOT_ALLOWED)
        verb, space, arguments = line.partition(b" ")
        if _VERB.fullmatch(verb) is None:
            raise violation(replies.UNKNOWN_COMMAND)
        name = verb.decode("ascii").upper()
        if name == "APOP" and not self._settings.apop:
            raise violation(replies.UNKNOWN_COMMAND)
        mechanism = arguments.split(b" ", 1)[0] if name == "AUTH" else b""
        check_privacy(name in LOGIN_VERBS, mechanism, self._settings, secure=self._secure)
        if name in POST_LOGIN_VERBS:
            raise violation(replies.NOT_BEFORE_LOGIN)
        if name not in _COMMANDS:
            raise violation(replies.UNKNOWN_COMMAND)
        return name, arguments if space else None

    def _read_sasl_response(self) -> Result:
        line = self._take_line()
        if line is None:
            return self._stalled()
        assert self._exchange is not None
        self._state = Pop3State.READY
        try:
            return self._sasl_step(self._exchange.respond(line))
        except MeshproxyError as error:
            return self._reject(error)

    # Replies and state changes.

    def _reject(self, error: MeshproxyError) -> Result:
        self._output += replies.pop3_error(error)
        self._errors += 1
        if self._errors >= self._settings.max_errors:
            self._close(replies.REASON_TOO_MANY_ERRORS, replies.POP3_TOO_MANY_ERRORS)
        return None

    def _close(self, reason: str, text: str | None = None) -> None:
        if text is not None:
            self._output += replies.pop3_err(text)
        self._state = Pop3State.CLOSED
        self._closed_reason = reason

    def _login_attempt(self, credentials: Credentials) -> Result:
        self._state = Pop3State.LOGIN_PENDING
        self._user = None
        self._exchange = None
        self._errors = 0
        return LoginAttempt(credentials)

    def _sasl_step(self, step: SaslStep) -> Result:
        if isinstance(step, Challenge):
            self._output += replies.continuation(step.data)
            self._state = Pop3State.SASL
            return None
        return self._login_attempt(step)

    # Command handlers: (self, arguments) -> Result; errors raise MeshproxyError.

    def _do_capa(self, arguments: bytes | None) -> Result:
        _no_arguments(arguments)
        self._output += replies.pop3_multiline(replies.CAPA_FOLLOWS, self.capabilities)
        return None

    def _do_noop(self, arguments: bytes | None) -> Result:
        _no_arguments(arguments)
        self._output += replies.pop3_ok()
        return None

    def _do_quit(self, arguments: bytes | None) -> Result:
        _no_arguments(arguments)
        self._output += replies.pop3_ok(replies.POP3_BYE)
        self._close(replies.REASON_LOGOUT)
        return None

    def _do_utf8(self, arguments: bytes | None) -> Result:
        _no_arguments(arguments)
        self._utf8 = True
        self._output += replies.pop3_ok(replies.UTF8_ENABLED)
        return None

    def _do_stls(self, arguments: bytes | None) -> Result:
        _no_arguments(arguments)
        if self._secure or not self._settings.tls_available:
            raise violation(replies.STLS_UNAVAILABLE)
        self._output += replies.pop3_ok(replies.POP3_BEGIN_TLS)
        self._state = Pop3State.TLS_PENDING
        return StartTLS()

    def _do_user(self, arguments: bytes | None) -> Result:
        if not arguments:
            raise violation(replies.SYNTAX_ERROR)
        self._user = decode(arguments)
        self._output += replies.pop3_ok(replies.PASSWORD_REQUIRED)
        return None

    def _do_pass(self, arguments: bytes | None) -> Result:
        if self._user is None:
            raise violation(replies.USER_FIRST)
        if arguments is None:
            raise violation(replies.SYNTAX_ERROR)
        credentials = PlainCredentials(self._user, decode(arguments), mechanism="USER")
        return self._login_attempt(credentials)

    def _do_apop(self, arguments: bytes | None) -> Result:
        """``APOP name digest``: the name is everything before the last SP, as USER's is."""
        name, space, digest = (arguments or b"").rpartition(b" ")
        if not space or not name or _HEX_DIGEST.fullmatch(digest) is None:
            raise violation(replies.MALFORMED_APOP)
        answer = digest.decode("ascii").lower()
        return self._login_attempt(ApopCredentials(decode(name), self._timestamp, answer))

    def _do_auth(self, arguments: bytes | None) -> Result:
        if not arguments:
            mechanisms = [mech.upper() for mech in self._settings.sasl_mechanisms]
            self._output += replies.pop3_multiline("", mechanisms)
            return None
        mechanism, space, initial = arguments.partition(b" ")
        if b" " in initial or (space and not initial):
            raise violation(replies.SYNTAX_ERROR)
        settings = self._settings
        exchange = start_exchange(
            decode(mechanism), settings.challenge, mesh_login=settings.mesh_login
        )
        step = exchange.begin(decode_initial_response(initial) if space else None)
        self._exchange = exchange
        return self._sasl_step(step)


def _apop_timestamp(settings: Pop3Settings) -> bytes:
    timestamp = settings.challenge()
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise ValueError(f"not an RFC 1939 APOP timestamp: {timestamp!r}")
    return timestamp


def _no_arguments(arguments: bytes | None) -> None:
    if arguments is not None and arguments.strip(b" "):
        raise violation(replies.SYNTAX_ERROR)


_READERS: Mapping[Pop3State, Callable[[Pop3Preauth], Result]] = {
    Pop3State.READY: Pop3Preauth._read_command,
    Pop3State.SASL: Pop3Preauth._read_sasl_response,
    Pop3State.TLS_PENDING: Pop3Preauth._wait,
    Pop3State.LOGIN_PENDING: Pop3Preauth._wait,
    Pop3State.CLOSED: Pop3Preauth._report_closed,
}

_COMMANDS: Mapping[str, Callable[[Pop3Preauth, bytes | None], Result]] = {
    "CAPA": Pop3Preauth._do_capa,
    "NOOP": Pop3Preauth._do_noop,
    "QUIT": Pop3Preauth._do_quit,
    "UTF8": Pop3Preauth._do_utf8,
    "STLS": Pop3Preauth._do_stls,
    "USER": Pop3Preauth._do_user,
    "PASS": Pop3Preauth._do_pass,
    "APOP": Pop3Preauth._do_apop,
    "AUTH": Pop3Preauth._do_auth,
}
COMMANDS = frozenset(_COMMANDS)
"""The verbs answered in the AUTHORIZATION state."""
