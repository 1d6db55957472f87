"""The sans-I/O IMAP pre-login core (RFC 9051/3501, 4959 SASL-IR, 2971 ID, 7888 LITERAL+).

``ImapPreauth`` answers CAPABILITY, NOOP, ID, LOGOUT and every error by itself and surfaces
only ``StartTLS``, ``LoginAttempt`` and ``Closed`` (see ``events.py``).  Input handling is a
table: ``_READERS`` maps each ``ImapState`` to how the next input is consumed, and
``_COMMANDS`` maps each verb allowed before login to its handler (the (state, verb) table:
commands are only read in ``ImapState.READY``).

A command arrives as segments and literals; ``_Command`` collects its tokens.  Once a segment
is wrong the command is only skimmed to its end (non-synchronizing literals are read and
dropped; a synchronizing literal ends it at once, without ``+``) and then answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from meshproxy.credentials import Credentials, PlainCredentials
from meshproxy.errors import MeshproxyError
from meshproxy.protocol import grammar, replies, verbs
from meshproxy.protocol.buffer import LineTooLongError, ReceiveBuffer
from meshproxy.protocol.events import NEED_DATA, Closed, LoginAttempt, NextEvent, StartTLS
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


@dataclass(frozen=True)
class ImapSettings:
    """What the IMAP core needs to know; ``capabilities_tls`` empty means "same as plain";
    ``mesh_login``: accept ``AUTHENTICATE X-MESHPROXY`` (never advertised; see sasl.py)."""

    capabilities: tuple[str, ...] = ("IMAP4rev1",)
    capabilities_tls: tuple[str, ...] = ()
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    tls_available: bool = False
    secure: bool = False
    tls_required: bool = False
    greeting: str = "meshproxy ready."
    challenge: Callable[[], bytes] = field(default_factory=cram_challenge_factory, compare=False)
    max_line: int = 8192
    max_literal: int = 8192
    max_errors: int = 10
    id_fields: tuple[tuple[str, str], ...] = (("name", "meshproxy"),)
    mesh_login: bool = False


class ImapState(Enum):
    READY = "ready"  # waiting for a command (not authenticated)
    LITERAL = "literal"  # reading a literal's octets
    CONTINUATION = "continuation"  # reading the command line after a literal
    SASL = "sasl"  # waiting for an AUTHENTICATE response line
    TLS_PENDING = "tls pending"  # StartTLS surfaced, waiting for tls_started()
    LOGIN_PENDING = "login pending"  # LoginAttempt surfaced, waiting for login_failed()
    CLOSED = "closed"


POST_LOGIN_VERBS = verbs.IMAP_POST_LOGIN_VERBS
LOGIN_VERBS = verbs.IMAP_LOGIN_VERBS
LITERAL_VERBS = verbs.IMAP_LITERAL_VERBS


@dataclass
class _Command:
    tag: str = "*"
    verb: str = ""
    tokens: list[grammar.Token] = field(default_factory=list)
    error: MeshproxyError | None = None
    size: int = 0
    literal: grammar.LiteralSpec | None = None


class ImapPreauth:
    """One IMAP session before login.  The constructor queues the greeting."""

    def __init__(self, settings: ImapSettings) -> None:
        self._settings = settings
        self._buffer = ReceiveBuffer()
        self._output = bytearray()
        self._state = ImapState.READY
        self._secure = settings.secure
        self._errors = 0
        self._command = _Command()
        self._exchange: SaslExchange | None = None
        self._pending_tag = ""
        self._closed_reason = ""
        self._client_id: dict[str, str | None] = {}
        self._output += replies.imap_greeting(self.capabilities, settings.greeting)

    # The API the edge uses.

    @property
    def state(self) -> ImapState:
        return self._state

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def client_id(self) -> dict[str, str | None]:
        return dict(self._client_id)

    @property
    def trailing_data(self) -> bytes:
        """Bytes received behind the pending login command ("" when none is pending)."""
        return bytes(self._buffer) if self._state is ImapState.LOGIN_PENDING else b""

    @property
    def capabilities(self) -> tuple[str, ...]:
        settings = self._settings
        offered = settings.capabilities
        if self._secure and settings.capabilities_tls:
            offered = settings.capabilities_tls
        return replies.imap_capabilities(
            offered,
            settings.sasl_mechanisms,
            tls_available=settings.tls_available,
            tls_required=settings.tls_required,
            secure=self._secure,
        )

    def receive_data(self, data: bytes) -> None:
        if self._state is not ImapState.CLOSED:
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
        """The handshake is done: drop buffered plaintext, switch to the TLS capabilities."""
        if self._state is ImapState.CLOSED:
            return
        if self._state is not ImapState.TLS_PENDING:
            raise RuntimeError("tls_started() without a StartTLS event")
        self._buffer.clear()
        self._secure = True
        self._state = ImapState.READY

    def login_failed(self, error: MeshproxyError) -> None:
        """Answer the pending login with ``error`` and read commands again."""
        if self._state is ImapState.CLOSED:
            return
        if self._state is not ImapState.LOGIN_PENDING:
            raise RuntimeError("login_failed() without a LoginAttempt event")
        self._output += replies.imap_error(self._pending_tag, error)
        self._state = ImapState.READY

    def shutdown(self, text: str) -> None:
        if self._state is not ImapState.CLOSED:
            self._close(replies.REASON_SHUTDOWN, text)

    # Reading input, one step per call; None means "go on".

    def _wait(self) -> Result:
        return NEED_DATA

    def _report_closed(self) -> Result:
        return Closed(self._closed_reason)

    def _stalled(self) -> Result:
        """No complete input: Closed if the client is gone (or the line overflowed)."""
        if self._state is not ImapState.CLOSED and self._buffer.eof:
            self._close(replies.REASON_CLIENT_CLOSED)
        if self._state is ImapState.CLOSED:
            return Closed(self._closed_reason)
        return NEED_DATA

    def _take_line(self) -> bytes | None:
        try:
            return self._buffer.take_line(self._settings.max_line)
        except LineTooLongError:
            self._close(replies.REASON_LINE_TOO_LONG, replies.IMAP_LINE_TOO_LONG)
            return None

    def _read_command(self) -> Result:
        line = self._take_line()
        if line is None:
            return self._stalled()
        body, literal = grammar.split_literal(line)
        command = self._command = _Command(size=len(line))
        try:
            command.tag, rest = grammar.split_tag(body)
            command.verb, arguments = grammar.split_verb(rest)
            self._check_verb(command.verb, arguments)
            command.tokens = grammar.tokenize(arguments)
        except MeshproxyError as error:
            command.error = error
        return self._segment_done(literal)

    def _read_continuation(self) -> Result:
        line = self._take_line()
        if line is None:
            return self._stalled()
        body, literal = grammar.split_literal(line)
        command = self._command
        command.size += len(line)
        if command.error is None:
            try:
                command.tokens += grammar.tokenize(body)
            except MeshproxyError as error:
                command.error = error
        return self._segment_done(literal)

    def _read_literal(self) -> Result:
        command = self._command
        assert command.literal is not None
        data = self._buffer.take_exactly(command.literal.size)
        if data is None:
            return self._stalled()
        command.size += len(data)
        if command.error is None and b"\0" in data:
            command.error = grammar.violation(replies.NUL_NOT_ALLOWED)
        command.tokens.append(grammar.String(data))
        self._state = ImapState.CONTINUATION
        return None

    def _read_sasl_response(self) -> Result:
        line = self._take_line()
        if line is None:
            return self._stalled()
        assert self._exchange is not None
        self._state = ImapState.READY
        try:
            return self._sasl_step(self._command.tag, self._exchange.respond(line))
        except MeshproxyError as error:
            return self._reject(self._command.tag, error)

    def _segment_done(self, literal: grammar.LiteralSpec | None) -> Result:
        """After a segment: finish the command, or get ready for its literal."""
        command = self._command
        settings = self._settings
        if command.size > settings.max_line + 2 * settings.max_literal:
            self._close(replies.REASON_LINE_TOO_LONG, replies.IMAP_LINE_TOO_LONG)
            return None
        if literal is None:
            return self._finish_command()
        if literal.size > settings.max_literal:
            if not literal.synchronizing:
                self._close(replies.REASON_LITERAL_TOO_LARGE, replies.LITERAL_TOO_LARGE)
                return None
            command.error = command.error or grammar.violation(replies.LITERAL_TOO_LARGE)
        if literal.synchronizing:
            if command.error is None and command.verb not in LITERAL_VERBS:
                command.error = grammar.violation(replies.LITERAL_NOT_ALLOWED)
            if command.error is not None:
                return self._finish_command()
            self._output += replies.LITERAL_READY
        command.literal = literal
        self._state = ImapState.LITERAL
        return None

    def _finish_command(self) -> Result:
        command = self._command
        self._state = ImapState.READY
        if command.error is not None:
            return self._reject(command.tag, command.error)
        try:
            result = _COMMANDS[command.verb](self, command)
        except MeshproxyError as error:
            return self._reject(command.tag, error)
        self._errors = 0
        return result

    def _check_verb(self, verb: str, arguments: bytes) -> None:
        mechanism = arguments[1:].partition(b" ")[0] if verb == "AUTHENTICATE" else b""
        check_privacy(verb in LOGIN_VERBS, mechanism, self._settings, secure=self._secure)
        if verb in POST_LOGIN_VERBS:
            raise grammar.violation(replies.NOT_BEFORE_LOGIN)
        if verb not in _COMMANDS:
            raise grammar.violation(replies.UNKNOWN_COMMAND)

    # Replies and state changes.

    def _reject(self, tag: str, error: MeshproxyError) -> Result:
        self._output += replies.imap_error(tag, error)
        self._count_error()
        return None

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= self._settings.max_errors:
            self._close(replies.REASON_TOO_MANY_ERRORS, replies.IMAP_TOO_MANY_ERRORS)

    def _close(self, reason: str, bye: str | None = None) -> None:
        if bye is not None:
            self._output += replies.imap_bye(bye)
        self._state = ImapState.CLOSED
        self._closed_reason = reason

    def _ok(self, tag: str, text: str) -> None:
        self._output += replies.imap_tagged(tag, "OK", text)

    def _login_attempt(self, tag: str, credentials: Credentials) -> Result:
        self._state = ImapState.LOGIN_PENDING
        self._pending_tag = tag
        self._exchange = None
        return LoginAttempt(credentials, tag)

    def _sasl_step(self, tag: str, step: SaslStep) -> Result:
        if isinstance(step, Challenge):
            self._output += replies.continuation(step.data)
            self._state = ImapState.SASL
            return None
        self._errors = 0
        return self._login_attempt(tag, step)

    # Command handlers: (self, command) -> Result; errors raise MeshproxyError.

    def _do_capability(self, command: _Command) -> Result:
        grammar.parse_no_arguments(command.tokens)
        self._output += replies.imap_capability(self.capabilities)
        self._ok(command.tag, replies.CAPABILITY_DONE)
        return None

    def _do_noop(self, command: _Command) -> Result:
        grammar.parse_no_arguments(command.tokens)
        self._ok(command.tag, replies.NOOP_DONE)
        return None

    def _do_logout(self, command: _Command) -> Result:
        grammar.parse_no_arguments(command.tokens)
        self._output += replies.imap_bye(replies.LOGGING_OUT)
        self._ok(command.tag, replies.LOGOUT_DONE)
        self._close(replies.REASON_LOGOUT)
        return None

    def _do_starttls(self, command: _Command) -> Result:
        grammar.parse_no_arguments(command.tokens)
        if self._secure or not self._settings.tls_available:
            raise grammar.violation(replies.STARTTLS_UNAVAILABLE)
        self._ok(command.tag, replies.BEGIN_TLS)
        self._state = ImapState.TLS_PENDING
        return StartTLS()

    def _do_id(self, command: _Command) -> Result:
        self._client_id = grammar.parse_id(command.tokens)
        self._output += replies.imap_id(self._settings.id_fields)
        self._ok(command.tag, replies.ID_DONE)
        return None

    def _do_login(self, command: _Command) -> Result:
        user, password = grammar.parse_login(command.tokens)
        return self._login_attempt(command.tag, PlainCredentials(user, password))

    def _do_authenticate(self, command: _Command) -> Result:
        mechanism, initial = grammar.parse_authenticate(command.tokens)
        settings = self._settings
        exchange = start_exchange(mechanism, settings.challenge, mesh_login=settings.mesh_login)
        decoded = None if initial is None else decode_initial_response(initial)
        step = exchange.begin(decoded)
        self._exchange = exchange
        return self._sasl_step(command.tag, step)


_READERS: Mapping[ImapState, Callable[[ImapPreauth], Result]] = {
    ImapState.READY: ImapPreauth._read_command,
    ImapState.LITERAL: ImapPreauth._read_literal,
    ImapState.CONTINUATION: ImapPreauth._read_continuation,
    ImapState.SASL: ImapPreauth._read_sasl_response,
    ImapState.TLS_PENDING: ImapPreauth._wait,
    ImapState.LOGIN_PENDING: ImapPreauth._wait,
    ImapState.CLOSED: ImapPreauth._report_closed,
}

_COMMANDS: Mapping[str, Callable[[ImapPreauth, _Command], Result]] = {
    "CAPABILITY": ImapPreauth._do_capability,
    "NOOP": ImapPreauth._do_noop,
    "LOGOUT": ImapPreauth._do_logout,
    "STARTTLS": ImapPreauth._do_starttls,
    "ID": ImapPreauth._do_id,
    "LOGIN": ImapPreauth._do_login,
    "AUTHENTICATE": ImapPreauth._do_authenticate,
}
COMMANDS = frozenset(_COMMANDS)
"""The verbs answered before login."""
