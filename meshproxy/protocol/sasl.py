"""Server side of the SASL mechanisms meshproxy accepts: PLAIN, LOGIN and CRAM-MD5, and
(on a mesh node) ``X-MESHPROXY``, the mesh-internal login.

An exchange is shared by IMAP AUTHENTICATE and POP3 AUTH.  ``begin`` takes the decoded
initial response (None when the client sent none) and each ``respond`` takes one raw client
line (base64, or ``*`` to cancel).  Both return the next ``Challenge`` or the finished
credentials, or raise ``ProtocolViolation`` / ``AuthAborted``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from meshproxy.credentials import CramCredentials, Credentials, MeshCredentials, PlainCredentials
from meshproxy.errors import AuthAborted, PrivacyRequired
from meshproxy.protocol import replies
from meshproxy.protocol.grammar import decode, violation

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
"""Accepted whether advertised or not, as Courier does."""
MESH_MECHANISM = "X-MESHPROXY"
"""Never advertised; accepted only when the core's settings say ``mesh_login``."""
CANCEL = b"*"
EMPTY_INITIAL_RESPONSE = b"="
USERNAME_PROMPT = b"Username:"
PASSWORD_PROMPT = b"Password:"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class Challenge:
    """What to send in the next ``+ `` continuation (before base64)."""

    data: bytes


SaslStep = Challenge | Credentials


def decode_base64(text: bytes) -> bytes:
    """Strict base64 (RFC 4648 alphabet, padding required, no whitespace)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise violation(replies.INVALID_BASE64) from None


def decode_initial_response(text: bytes) -> bytes:
    """An initial response: ``=`` is the empty one (RFC 4959, RFC 5034)."""
    if text == EMPTY_INITIAL_RESPONSE:
        return b""
    return decode_base64(text)


def cram_challenge_factory(
    hostname: str = "localhost", clock: Callable[[], float] = time.time
) -> Callable[[], bytes]:
    """A source of RFC 2195 challenges ``<random.timestamp@hostname>``."""

    def challenge() -> bytes:
        return f"<{secrets.randbits(48)}.{int(clock())}@{hostname}>".encode()

    return challenge


class SaslExchange(ABC):
    """One authentication exchange, server side."""

    @abstractmethod
    def begin(self, initial: bytes | None) -> SaslStep: ...

    @abstractmethod
    def _step(self, response: bytes) -> SaslStep: ...

    def respond(self, line: bytes) -> SaslStep:
        if line == CANCEL:
            raise AuthAborted("client cancelled")
        return self._step(decode_base64(line))


class PlainExchange(SaslExchange):
    """RFC 4616: ``authzid NUL authcid NUL passwd``."""

    def begin(self, initial: bytes | None) -> SaslStep:
        if initial is None:
            return Challenge(b"")
        return self._step(initial)

    def _step(self, response: bytes) -> SaslStep:
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise violation(replies.MALFORMED_PLAIN)
        authzid, authcid, password = (decode(part) for part in parts)
        return PlainCredentials(authcid, password, authzid, "PLAIN")


class LoginExchange(SaslExchange):
    """The LOGIN mechanism: ``Username:`` then ``Password:`` (an initial response is the name)."""

    def __init__(self) -> None:
        self._user: str | None = None

    def begin(self, initial: bytes | None) -> SaslStep:
        if initial is None:
            return Challenge(USERNAME_PROMPT)
        return self._step(initial)

    def _step(self, response: bytes) -> SaslStep:
        if self._user is None:
            self._user = decode(response)
            return Challenge(PASSWORD_PROMPT)
        return PlainCredentials(self._user, decode(response), mechanism="LOGIN")


class CramMd5Exchange(SaslExchange):
    """RFC 2195: the server challenges first; the answer is ``user SP hex-digest``."""

    def __init__(self, challenge: Callable[[], bytes]) -> None:
        self._challenge = challenge()

    def begin(self, initial: bytes | None) -> SaslStep:
        if initial is not None:
            raise violation(replies.NO_INITIAL_RESPONSE)
        return Challenge(self._challenge)

    def _step(self, response: bytes) -> SaslStep:
        user, space, digest = decode(response).rpartition(" ")
        if not space or not user or _HEX_DIGEST.fullmatch(digest) is None:
            raise violation(replies.MALFORMED_CRAM)
        return CramCredentials(user, self._challenge, digest.lower())


class MeshExchange(SaslExchange):
    """``X-MESHPROXY``: one step, the initial response is the peer's signed assertion.

    The blob is checked by the edge (``mesh.assertion.verify``), not here: the core only
    hands it over.  No challenge is ever sent, so a missing initial response is an error.
    """

    def begin(self, initial: bytes | None) -> SaslStep:
        if not initial:
            raise violation(replies.MESH_NEEDS_INITIAL_RESPONSE)
        return MeshCredentials(initial)

    def _step(self, response: bytes) -> SaslStep:
        raise violation(replies.MESH_NEEDS_INITIAL_RESPONSE)  # pragma: no cover - no challenge


def is_mesh_login(mechanism: bytes, *, mesh_login: bool) -> bool:
    """An ``X-MESHPROXY`` login on a core that accepts it."""
    return mesh_login and mechanism.upper() == MESH_MECHANISM.encode()


class LoginPolicy(Protocol):
    """The settings ``check_privacy`` reads (both cores' settings have them)."""

    @property
    def tls_required(self) -> bool: ...

    @property
    def mesh_login(self) -> bool: ...


def check_privacy(login: bool, mechanism: bytes, policy: LoginPolicy, *, secure: bool) -> None:
    """PrivacyRequired for a login command before TLS when TLS is required.

    A mesh login is exempt: it comes from a peer, carries no password, and is authenticated
    by its MAC (and the mesh may run without TLS between nodes, ``mesh.tls``).
    """
    if not login or secure or not policy.tls_required:
        return
    if not is_mesh_login(mechanism, mesh_login=policy.mesh_login):
        raise PrivacyRequired("login before TLS")


def start_exchange(
    mechanism: str, challenge: Callable[[], bytes], *, mesh_login: bool = False
) -> SaslExchange:
    """A new exchange for ``mechanism`` (any case); UnsupportedMechanism for the others
    (``X-MESHPROXY`` too, unless ``mesh_login``)."""
    name = mechanism.upper()
    if name == MESH_MECHANISM and mesh_login:
        return MeshExchange()
    if name == "PLAIN":
        return PlainExchange()
    if name == "LOGIN":
        return LoginExchange()
    if name == "CRAM-MD5":
        return CramMd5Exchange(challenge)
    raise replies.UnsupportedMechanism(name[:32])
