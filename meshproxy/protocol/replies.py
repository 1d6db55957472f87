"""Every reply text the cores send, and the rendering of errors into IMAP and POP3 replies.

Integration tests import these names instead of repeating strings.  Nothing here echoes what
the client sent, except an IMAP tag (which the grammar has already checked and bounded).
Every function returns complete lines ending in CRLF.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

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

CRLF = b"\r\n"
MAX_TEXT = 200
"""Longest reply text sent; anything longer is cut (texts come from errors and settings)."""

# Texts of ProtocolViolation raised by the grammar and the cores (sent after "BAD"/"-ERR").
SYNTAX_ERROR = "Syntax error"
UNKNOWN_COMMAND = "Unknown command"
NOT_BEFORE_LOGIN = "Command not allowed before login"
INVALID_TAG = "Invalid tag"
EMPTY_LINE = "Empty command line"
MISSING_COMMAND = "Missing command"
NUL_NOT_ALLOWED = "NUL not allowed in commands"
INVALID_UTF8 = "Invalid UTF-8"
INVALID_QUOTED = "Invalid quoted string"
INVALID_CHARACTER = "Invalid character in command"
INVALID_BASE64 = "Invalid base64"
LITERAL_TOO_LARGE = "Literal too large"
LITERAL_NOT_ALLOWED = "Literal not allowed here"
MALFORMED_PLAIN = "Malformed PLAIN message"
MALFORMED_CRAM = "Malformed CRAM-MD5 response"
MALFORMED_APOP = "APOP needs a name and a 32-digit hex digest"
NO_INITIAL_RESPONSE = "This mechanism takes no initial response"
BAD_ID = "Invalid ID parameters"
STARTTLS_UNAVAILABLE = "STARTTLS not available"
STLS_UNAVAILABLE = "STLS not available"
USER_FIRST = "USER first"
UNSUPPORTED_MECHANISM = "Unsupported authentication mechanism"
MESH_NEEDS_INITIAL_RESPONSE = "X-MESHPROXY needs an initial response"

# IMAP completion texts.
CAPABILITY_DONE = "CAPABILITY completed"
NOOP_DONE = "NOOP completed"
LOGOUT_DONE = "LOGOUT completed"
ID_DONE = "ID completed"
BEGIN_TLS = "Begin TLS negotiation now"
LOGGING_OUT = "Logging out"
LITERAL_READY = b"+ Ready for literal\r\n"
IMAP_LINE_TOO_LONG = "Line too long"
IMAP_TOO_MANY_ERRORS = "Too many protocol errors"

# POP3 texts.
PASSWORD_REQUIRED = "Password required."
CAPA_FOLLOWS = "Capability list follows"
POP3_BEGIN_TLS = "Begin TLS negotiation now."
UTF8_ENABLED = "UTF8 enabled"
POP3_BYE = "Bye"
POP3_LINE_TOO_LONG = "Line too long"
POP3_TOO_MANY_ERRORS = "Too many errors"

# Closed.reason values.
REASON_LOGOUT = "logout"
REASON_CLIENT_CLOSED = "client closed"
REASON_TOO_MANY_ERRORS = "too many errors"
REASON_LINE_TOO_LONG = "line too long"
REASON_LITERAL_TOO_LARGE = "literal too large"
REASON_SHUTDOWN = "shutdown"


class UnsupportedMechanism(ProtocolViolation):
    """AUTHENTICATE/AUTH with a mechanism meshproxy does not know: a plain ``NO`` / ``-ERR``."""

    default_text = UNSUPPORTED_MECHANISM


IMAP_ERROR_CODES: tuple[tuple[type[MeshproxyError], str, str], ...] = (
    (UnsupportedMechanism, "NO", ""),
    (ProtocolViolation, "BAD", ""),
    (AuthAborted, "BAD", ""),
    (AuthFailed, "NO", "[AUTHENTICATIONFAILED] "),
    (LoginDisabled, "NO", "[CONTACTADMIN] "),
    (PrivacyRequired, "NO", "[PRIVACYREQUIRED] "),
    (MechanismUnusable, "NO", "[CANNOT] "),
    (TempFail, "NO", "[UNAVAILABLE] "),
)
"""Error kind -> (IMAP status, response code); other kinds render ``NO [UNAVAILABLE]``."""

POP3_ERROR_CODES: tuple[tuple[type[MeshproxyError], str], ...] = (
    (ProtocolViolation, ""),
    (AuthAborted, ""),
    (AuthFailed, "[AUTH] "),
    (LoginDisabled, "[AUTH] "),
    (PrivacyRequired, "[AUTH] "),
    (MechanismUnusable, "[AUTH] "),
    (TempFail, "[SYS/TEMP] "),
)
"""Error kind -> POP3 response code (RFC 2449, 3206); other kinds render ``[SYS/TEMP]``."""


def clean_text(text: str) -> str:
    """A reply text safe to put on one line: no CR, LF or NUL, at most MAX_TEXT characters."""
    for char in "\r\n\0":
        text = text.replace(char, " ")
    return text[:MAX_TEXT]


def line(text: str) -> bytes:
    return clean_text(text).encode("utf-8") + CRLF


def continuation(challenge: bytes) -> bytes:
    """A SASL challenge: ``+ <base64>`` (``+ `` alone for an empty challenge)."""
    return b"+ " + base64.b64encode(challenge) + CRLF


# IMAP.


def imap_tagged(tag: str, status: str, text: str) -> bytes:
    return line(f"{tag} {status} {text}")


def imap_untagged(text: str) -> bytes:
    return line(f"* {text}")


def imap_bye(text: str) -> bytes:
    return imap_untagged(f"BYE {text}")


def imap_greeting(capabilities: Iterable[str], text: str) -> bytes:
    return imap_untagged(f"OK [CAPABILITY {' '.join(capabilities)}] {text}")


def imap_capability(capabilities: Iterable[str]) -> bytes:
    return imap_untagged(f"CAPABILITY {' '.join(capabilities)}")


def imap_error(tag: str, error: MeshproxyError) -> bytes:
    """The tagged reply for ``error`` (``tag`` "*" gives an untagged reply)."""
    for kind, status, code in IMAP_ERROR_CODES:
        if isinstance(error, kind):
            return imap_tagged(tag, status, code + error.text)
    return imap_tagged(tag, "NO", "[UNAVAILABLE] " + error.text)


def imap_id(fields: Iterable[tuple[str, str]]) -> bytes:
    """``* ID (...)`` from the server's fields; ``* ID NIL`` when there are none."""
    items = [f"{quote(key)} {quote(value)}" for key, value in fields]
    return imap_untagged(f"ID ({' '.join(items)})" if items else "ID NIL")


def quote(text: str) -> str:
    """An IMAP quoted string."""
    escaped = clean_text(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def imap_capabilities(
    offered: Iterable[str],
    mechanisms: Iterable[str],
    *,
    tls_available: bool,
    tls_required: bool,
    secure: bool,
) -> tuple[str, ...]:
    """The pre-login CAPABILITY list (see docs/architecture.md: the AUTH= list is ours)."""
    owned_by_login = ("AUTH=", "STARTTLS", "LOGINDISABLED")
    kept = [cap for cap in offered if not cap.upper().startswith(owned_by_login)]
    if not any(cap.upper() == "IMAP4REV1" for cap in kept):
        kept.insert(0, "IMAP4rev1")
    for extra in ("SASL-IR", "ID"):
        if not any(cap.upper() == extra for cap in kept):
            kept.append(extra)
    if tls_available and not secure:
        kept.append("STARTTLS")
    if tls_required and not secure:
        kept.append("LOGINDISABLED")
    else:
        kept.extend(f"AUTH={mech.upper()}" for mech in mechanisms)
    return tuple(kept)


# POP3.


def pop3_ok(text: str = "") -> bytes:
    return line(f"+OK {text}" if text else "+OK")


def pop3_greeting(text: str, timestamp: bytes = b"") -> bytes:
    """``+OK text``, then the APOP timestamp (RFC 1939 section 7) when there is one: it is
    never cut by MAX_TEXT, since the client's digest covers it (the core checks its form)."""
    if not timestamp:
        return pop3_ok(text)
    return b"+OK " + clean_text(text).encode("utf-8") + b" " + timestamp + CRLF


def pop3_err(text: str) -> bytes:
    return line(f"-ERR {text}")


def pop3_error(error: MeshproxyError) -> bytes:
    for kind, code in POP3_ERROR_CODES:
        if isinstance(error, kind):
            return pop3_err(code + error.text)
    return pop3_err("[SYS/TEMP] " + error.text)


def pop3_multiline(first: str, lines: Iterable[str]) -> bytes:
    """``+OK first``, the lines (dot-stuffed), then the terminating ``.``."""
    body = b"".join(line("." + text if text.startswith(".") else text) for text in lines)
    return pop3_ok(first) + body + b"." + CRLF


POP3_CAPABILITIES = ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8 USER")
"""What pop3d offers, less the entries the login stage owns (the default CAPA base)."""


def pop3_capabilities(
    offered: Iterable[str],
    mechanisms: Iterable[str],
    *,
    implementation: str,
    tls_available: bool,
    tls_required: bool,
    secure: bool,
) -> tuple[str, ...]:
    """The CAPA lines before login (RFC 2449, 2595, 5034, 6856)."""
    owned_by_login = ("USER", "STLS", "SASL", "IMPLEMENTATION")
    kept = [cap for cap in offered if cap.upper().split(" ")[0] not in owned_by_login]
    kept.append(f"IMPLEMENTATION {implementation}")
    login_allowed = secure or not tls_required
    if login_allowed:
        kept.append("USER")
    if tls_available and not secure:
        kept.append("STLS")
    advertised = " ".join(mech.upper() for mech in mechanisms)
    if login_allowed and advertised:
        kept.append(f"SASL {advertised}")
    return tuple(kept)
