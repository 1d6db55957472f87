"""What a client presented to log in.  Plain data; ``auth`` checks it against an account."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlainCredentials:
    """A clear password: IMAP LOGIN, AUTHENTICATE PLAIN/LOGIN, POP3 USER+PASS, AUTH PLAIN/LOGIN.

    ``authzid`` is the PLAIN authorisation identity; meshproxy refuses one that differs from
    ``authcid`` (no master users at the client edge).
    """

    authcid: str
    password: str = field(repr=False)
    authzid: str = ""
    mechanism: str = "LOGIN"


@dataclass(frozen=True)
class CramCredentials:
    """A CRAM-MD5 answer: ``digest`` is the hex HMAC-MD5 of ``challenge`` keyed by the password."""

    authcid: str
    challenge: bytes
    digest: str
    mechanism: str = "CRAM-MD5"


@dataclass(frozen=True)
class ApopCredentials:
    """A POP3 APOP answer (RFC 1939 section 7): ``digest`` is the lower-case hex MD5 of
    ``challenge`` (the greeting's timestamp, angle brackets included) followed by the password."""

    authcid: str
    challenge: bytes
    digest: str
    mechanism: str = "APOP"


@dataclass(frozen=True)
class MeshCredentials:
    """A mesh login (``X-MESHPROXY``): a peer's signed assertion, checked by ``mesh.assertion``.

    ``blob`` is the decoded SASL payload; it names the user, so ``authcid`` is a placeholder
    for logs until the assertion is verified.  Never checked against an account source.
    """

    blob: bytes = field(repr=False)
    mechanism: str = "X-MESHPROXY"
    authcid: str = "(mesh-login)"


Credentials = PlainCredentials | CramCredentials | ApopCredentials | MeshCredentials
