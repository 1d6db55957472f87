"""The sans-I/O IMAP pre-login core (RFC 9051/3501, 4959 SASL-IR, 2971 ID, 7888 LITERAL+).

``ImapPreauth`` answers CAPABILITY, NOOP, ID, LOGOUT and every error by itself and surfaces
only ``StartTLS``, ``LoginAttempt`` and ``Closed`` (see ``events.py``).  Input handling is a
table: ``_READERS`` maps each ``ImapState`` to how the next input is consumed, and
``_COMMANDS`` maps each verb allowed before login to its handler (the (state, verb) table:
commands are only read in ``ImapState.READY``).  The session plumbing around them (buffers,
the ``next_event`` loop, the state guards of the edge's calls) is ``core.PreauthCore``'s.

A command arrives as segments and literals; ``_Command`` collects its tokens.  Once a segment
is wrong the command is only skimmed to its end (non-synchronizing literals are read and
dropped; a synchronizing literal ends it at once, without ``+``) and then answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from meshproxy.credentials import PlainCredentials
from meshproxy.errors import MeshproxyError
from meshproxy.protocol import grammar, replies, verbs
from meshproxy.protocol.core import PreauthCore, Result
from meshproxy.protocol.events import StartTLS
from meshproxy.protocol.sasl import (
    check_privacy,
    cram_challenge_factory,
    decode_initial_response,
    start_exchange,
)


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


class ImapPreauth(PreauthCore[ImapState, ImapSettings]):
    """One IMAP session before login.  The constructor queues the greeting."""

    _READY = ImapState.READY
    _SASL = ImapState.SASL
    _TLS_PENDING = ImapState.TLS_PENDING
    _LOGIN_PENDING = ImapState.LOGIN_PENDING
    _CLOSED = ImapState.CLOSED
    _LINE_TOO_LONG = replies.IMAP_LINE_TOO_LONG
    _TOO_MANY_ERRORS = replies.IMAP_TOO_MANY_ERRORS

    def __init__(self, settings: ImapSettings) -> None:
        super().__init__(settings)
        self._command = _Command()
        self._client_id: dict[str, str | None] = {}
        self._output += replies.imap_greeting(self.capabilities, settings.greeting)

    # The API the edge uses (the rest is PreauthCore's).

    @property
    def client_id(self) -> dict[str, str | None]:
        return dict(self._client_id)

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

    # What PreauthCore asks of a core.

    def _read(self) -> Result:
        return _READERS[self._state](self)

    @property
    def _tag(self) -> str:
        """The tag of the command being answered; it stays put while a login is pending."""
        return self._command.tag

    def _error_reply(self, error: MeshproxyError) -> bytes:
        return replies.imap_error(self._tag, error)

    def _farewell(self, text: str) -> bytes:
        return replies.imap_bye(text)

    # Reading input, one step per call; None means "go on".

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
            return self._reject(command.error)
        try:
            result = _COMMANDS[command.verb](self, command)
        except MeshproxyError as error:
            return self._reject(error)
        self._errors = 0
        return result

    def _check_verb(self, verb: str, arguments: bytes) -> None:
        mechanism = arguments[1:].partition(b" ")[0] if verb == "AUTHENTICATE" else b""
        check_privacy(verb in LOGIN_VERBS, mechanism, self._settings, secure=self._secure)
        if verb in POST_LOGIN_VERBS:
            raise grammar.violation(replies.NOT_BEFORE_LOGIN)
        if verb not in _COMMANDS:
            raise grammar.violation(replies.UNKNOWN_COMMAND)

    # Replies.

    def _ok(self, tag: str, text: str) -> None:
        self._output += replies.imap_tagged(tag, "OK", text)

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
        return self._login_attempt(PlainCredentials(user, password))

    def _do_authenticate(self, command: _Command) -> Result:
        mechanism, initial = grammar.parse_authenticate(command.tokens)
        settings = self._settings
        exchange = start_exchange(mechanism, settings.challenge, mesh_login=settings.mesh_login)
        decoded = None if initial is None else decode_initial_response(initial)
        step = exchange.begin(decoded)
        self._exchange = exchange
        return self._sasl_step(step)


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
