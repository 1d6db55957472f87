"""What the IMAP and POP3 pre-login cores share: the session plumbing around their commands.

``PreauthCore`` owns the receive buffer and the output, runs ``next_event()`` over the
core's reader table (``_read``: one step per call, None means "go on"), guards
``tls_started`` / ``login_failed`` / ``shutdown`` by state, counts protocol errors, and
carries a SASL exchange to its ``LoginAttempt``.

A core names its states (``_READY`` ... ``_CLOSED``, members of its own state enum), its
reply texts and renderings (``_error_reply``, ``_farewell``), and its commands.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, Generic, Protocol, TypeVar

from meshproxy.credentials import Credentials
from meshproxy.errors import MeshproxyError
from meshproxy.protocol import replies
from meshproxy.protocol.buffer import LineTooLongError, ReceiveBuffer
from meshproxy.protocol.events import NEED_DATA, Closed, LoginAttempt, NextEvent
from meshproxy.protocol.sasl import Challenge, SaslExchange, SaslStep

Result = NextEvent | None


class CoreSettings(Protocol):
    """The settings ``PreauthCore`` reads (``ImapSettings`` and ``Pop3Settings`` have them)."""

    @property
    def secure(self) -> bool: ...

    @property
    def max_line(self) -> int: ...

    @property
    def max_errors(self) -> int: ...


StateT = TypeVar("StateT", bound=Enum)
SettingsT = TypeVar("SettingsT", bound=CoreSettings)


class PreauthCore(Generic[StateT, SettingsT]):
    """One session before login, less its protocol.  The core queues its greeting."""

    _READY: StateT  # waiting for a command
    _SASL: StateT  # waiting for a SASL response line
    _TLS_PENDING: StateT  # StartTLS surfaced, waiting for tls_started()
    _LOGIN_PENDING: StateT  # LoginAttempt surfaced, waiting for login_failed()
    _CLOSED: StateT
    _LINE_TOO_LONG: ClassVar[str]
    _TOO_MANY_ERRORS: ClassVar[str]

    def __init__(self, settings: SettingsT) -> None:
        self._settings = settings
        self._buffer = ReceiveBuffer()
        self._output = bytearray()
        self._state = self._READY
        self._secure = settings.secure
        self._errors = 0
        self._exchange: SaslExchange | None = None
        self._closed_reason = ""

    # The API the edge uses.

    @property
    def state(self) -> StateT:
        return self._state

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def trailing_data(self) -> bytes:
        """Bytes received behind the pending login command ("" when none is pending)."""
        return bytes(self._buffer) if self._state is self._LOGIN_PENDING else b""

    def receive_data(self, data: bytes) -> None:
        if self._state is not self._CLOSED:
            self._buffer.feed(data)

    def data_to_send(self) -> bytes:
        data = bytes(self._output)
        self._output.clear()
        return data

    def next_event(self) -> NextEvent:
        while True:
            result = self._read()
            if result is not None:
                return result

    def tls_started(self) -> None:
        """The handshake is done: drop buffered plaintext, switch to the TLS capabilities."""
        if self._state is self._CLOSED:
            return
        if self._state is not self._TLS_PENDING:
            raise RuntimeError("tls_started() without a StartTLS event")
        self._buffer.clear()
        self._secure = True
        self._state = self._READY

    def login_failed(self, error: MeshproxyError) -> None:
        """Answer the pending login with ``error`` and read commands again."""
        if self._state is self._CLOSED:
            return
        if self._state is not self._LOGIN_PENDING:
            raise RuntimeError("login_failed() without a LoginAttempt event")
        self._output += self._error_reply(error)
        self._state = self._READY

    def shutdown(self, text: str) -> None:
        if self._state is not self._CLOSED:
            self._close(replies.REASON_SHUTDOWN, text)

    # What a core supplies.

    def _read(self) -> Result:
        """One step of reading input in the current state (the core's reader table)."""
        raise NotImplementedError

    @property
    def _tag(self) -> str:
        """The tag of the command being answered ("" where the protocol has none)."""
        return ""

    def _error_reply(self, error: MeshproxyError) -> bytes:
        raise NotImplementedError

    def _farewell(self, text: str) -> bytes:
        """The last words before closing (IMAP ``* BYE``, POP3 ``-ERR``)."""
        raise NotImplementedError

    # Reading input, one step per call; None means "go on".

    def _wait(self) -> Result:
        return NEED_DATA

    def _report_closed(self) -> Result:
        return Closed(self._closed_reason)

    def _stalled(self) -> Result:
        """No complete input: Closed if the client is gone (or the line overflowed)."""
        if self._state is not self._CLOSED and self._buffer.eof:
            self._close(replies.REASON_CLIENT_CLOSED)
        if self._state is self._CLOSED:
            return Closed(self._closed_reason)
        return NEED_DATA

    def _take_line(self) -> bytes | None:
        try:
            return self._buffer.take_line(self._settings.max_line)
        except LineTooLongError:
            self._close(replies.REASON_LINE_TOO_LONG, self._LINE_TOO_LONG)
            return None

    def _read_sasl_response(self) -> Result:
        line = self._take_line()
        if line is None:
            return self._stalled()
        assert self._exchange is not None
        self._state = self._READY
        try:
            return self._sasl_step(self._exchange.respond(line))
        except MeshproxyError as error:
            return self._reject(error)

    # Replies and state changes.

    def _reject(self, error: MeshproxyError) -> Result:
        self._output += self._error_reply(error)
        self._errors += 1
        if self._errors >= self._settings.max_errors:
            self._close(replies.REASON_TOO_MANY_ERRORS, self._TOO_MANY_ERRORS)
        return None

    def _close(self, reason: str, text: str | None = None) -> None:
        if text is not None:
            self._output += self._farewell(text)
        self._state = self._CLOSED
        self._closed_reason = reason

    def _login_attempt(self, credentials: Credentials) -> Result:
        self._state = self._LOGIN_PENDING
        self._exchange = None
        self._errors = 0
        return LoginAttempt(credentials, self._tag)

    def _sasl_step(self, step: SaslStep) -> Result:
        if isinstance(step, Challenge):
            self._output += replies.continuation(step.data)
            self._state = self._SASL
            return None
        return self._login_attempt(step)
