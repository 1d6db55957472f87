"""The sans-I/O POP3 pre-login core (RFC 1939 with APOP, 2449 CAPA, 5034 AUTH, 2595 STLS,
6856 UTF8).

Same shape as ``imap.ImapPreauth``, on the same ``core.PreauthCore``: ``_READERS`` maps each
``Pop3State`` to how input is consumed and ``_COMMANDS`` maps each verb allowed in the
AUTHORIZATION state to its handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from meshproxy.credentials import ApopCredentials, Credentials, PlainCredentials
from meshproxy.errors import MeshproxyError
from meshproxy.protocol import replies
from meshproxy.protocol.core import PreauthCore, Result
from meshproxy.protocol.events import StartTLS
from meshproxy.protocol.grammar import decode, violation
from meshproxy.protocol.sasl import (
    check_privacy,
    cram_challenge_factory,
    decode_initial_response,
    start_exchange,
)

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


class Pop3Preauth(PreauthCore[Pop3State, Pop3Settings]):
    """One POP3 session before login.  The constructor queues the greeting."""

    _READY = Pop3State.READY
    _SASL = Pop3State.SASL
    _TLS_PENDING = Pop3State.TLS_PENDING
    _LOGIN_PENDING = Pop3State.LOGIN_PENDING
    _CLOSED = Pop3State.CLOSED
    _LINE_TOO_LONG = replies.POP3_LINE_TOO_LONG
    _TOO_MANY_ERRORS = replies.POP3_TOO_MANY_ERRORS

    def __init__(self, settings: Pop3Settings) -> None:
        super().__init__(settings)
        self._timestamp = _apop_timestamp(settings) if settings.apop else b""
        self._output += replies.pop3_greeting(settings.greeting, self._timestamp)
        self._utf8 = False
        self._user: str | None = None

    # The API the edge uses (the rest is PreauthCore's).

    @property
    def utf8(self) -> bool:
        """The client sent UTF8 before logging in (pop3d then gets ``UTF8=1``)."""
        return self._utf8

    @property
    def apop_timestamp(self) -> bytes:
        """The timestamp the greeting carried (b"" without ``apop``)."""
        return self._timestamp

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

    def tls_started(self) -> None:
        super().tls_started()
        self._user = None  # a USER sent before STLS does not count after it

    # What PreauthCore asks of a core.

    def _read(self) -> Result:
        return _READERS[self._state](self)

    def _error_reply(self, error: MeshproxyError) -> bytes:
        return replies.pop3_error(error)

    def _farewell(self, text: str) -> bytes:
        return replies.pop3_err(text)

    def _login_attempt(self, credentials: Credentials) -> Result:
        self._user = None
        return super()._login_attempt(credentials)

    # Reading input.

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
