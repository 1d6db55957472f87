"""The mesh-internal login: a front node vouches for a user it has authenticated.

The SASL payload of ``X-MESHPROXY`` is::

    MESHPROXY1 SP <64 lower-case hex digits of the MAC> SP <payload>

``payload`` is compact JSON with sorted keys and ASCII-only escapes (so any user name
survives), holding ``v`` (1), ``user``, ``origin`` (the front node's name), ``target`` (the
home node's name, as the front node's directory knows it), ``service``, ``client_ip``,
``client_port``, ``session``, ``hop``, ``issued`` (Unix time) and ``nonce``.  The MAC is
HMAC-SHA256 keyed by the mesh key over ``LABEL`` followed by the exact payload bytes; the
verifier checks the MAC before parsing anything, then that the payload is canonical (the
same bytes as re-encoding it), then target, service, time window, hop count and replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from meshproxy.errors import AuthFailed, TempFail
from meshproxy.mesh.base import Identity
from meshproxy.mesh.key import load_key

__all__ = [
    "MeshOrigin",
    "ReplayCache",
    "issue",
    "load_key",
    "new_nonce",
    "verify",
]

VERSION = 1
PREFIX = b"MESHPROXY1 "
LABEL = b"meshproxy mesh login v1\0"
_MAC_HEX = 64
MAX_NONCE = 128


@dataclass(frozen=True)
class MeshOrigin:
    """A verified mesh login: who, from which node, for which real client."""

    user: str
    origin: str
    target: str
    service: str
    client_ip: str
    client_port: int
    session: str
    hop: int
    issued: float
    nonce: str


_FIELDS: dict[str, tuple[type, ...]] = {
    "user": (str,),
    "origin": (str,),
    "target": (str,),
    "service": (str,),
    "client_ip": (str,),
    "client_port": (int,),
    "session": (str,),
    "hop": (int,),
    "issued": (float, int),
    "nonce": (str,),
}


def new_nonce() -> str:
    """A fresh random nonce (128 bits)."""
    return secrets.token_hex(16)


def _encode(fields: dict[str, Any]) -> bytes:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode("ascii")


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, LABEL + payload, hashlib.sha256).hexdigest().encode("ascii")


def issue(
    key: bytes,
    *,
    user: str,
    origin: str,
    target: str,
    service: str,
    client_ip: str,
    client_port: int,
    session: str,
    hop: int,
    now: float,
    nonce: str,
) -> bytes:
    """The SASL payload (before base64) of a mesh login."""
    claim = MeshOrigin(
        user, origin, target, service, client_ip, client_port, session, hop, float(now), nonce
    )
    payload = _encode({"v": VERSION, **asdict(claim)})
    return PREFIX + _mac(key, payload) + b" " + payload


class ReplayCache:
    """Nonces seen in the last ``2 * window`` seconds (an assertion is valid for ``window``
    either side of its issue time).  Entries expire, so memory is bounded by the login rate."""

    def __init__(self, window: float) -> None:
        self._keep = 2 * window
        self._expiry: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    def check_and_remember(self, nonce: str, now: float) -> bool:
        """True for a nonce not seen within the window (it is remembered); False otherwise."""
        self._expire(now)
        if nonce in self._expiry:
            return False
        until = now + self._keep
        self._expiry[nonce] = until
        self._order.append((until, nonce))
        return True

    def _expire(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            until, nonce = self._order.popleft()
            if self._expiry.get(nonce) == until:
                del self._expiry[nonce]


def verify(
    blob: bytes,
    key: bytes,
    *,
    me: Identity,
    service: str,
    now: float,
    window: float,
    replay: ReplayCache,
    max_hops: int,
) -> MeshOrigin:
    """The verified origin of a mesh login; AuthFailed (forged, stale, replayed, misdirected)
    or TempFail (hop limit: a routing problem, not a wrong password)."""
    claim = _parse(_authentic_payload(blob, key))
    if not me.matches(claim.target):
        raise AuthFailed(detail=f"mesh login for {claim.target!r}, not this node ({me.name})")
    if claim.service != service:
        raise AuthFailed(detail=f"mesh login for {claim.service!r} presented to {service}")
    if abs(now - claim.issued) > window:
        raise AuthFailed(
            detail=f"mesh login from {claim.origin} issued {now - claim.issued:+.0f}s off "
            f"(window {window:g}s: check the nodes' clocks)"
        )
    if claim.hop > max_hops:
        raise TempFail(
            detail=f"hop limit: mesh login from {claim.origin} at hop {claim.hop} "
            f"(mesh.max_hops {max_hops})"
        )
    if not replay.check_and_remember(claim.nonce, now):
        raise AuthFailed(detail=f"replayed mesh login from {claim.origin} (nonce {claim.nonce})")
    return claim


def _authentic_payload(blob: bytes, key: bytes) -> bytes:
    if not blob.startswith(PREFIX):
        raise AuthFailed(detail="malformed mesh login (unknown format)")
    mac, space, payload = blob[len(PREFIX) :].partition(b" ")
    if not space or len(mac) != _MAC_HEX:
        raise AuthFailed(detail="malformed mesh login (no MAC)")
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise AuthFailed(detail="mesh login with a bad MAC (forged, or a different mesh key)")
    return payload


def _parse(payload: bytes) -> MeshOrigin:
    try:
        fields = json.loads(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise AuthFailed(detail="malformed mesh login (payload)") from None
    if not isinstance(fields, dict) or type(fields.get("v")) is not int or fields["v"] != VERSION:
        raise AuthFailed(detail="malformed mesh login (version)")
    if set(fields) != {"v", *_FIELDS} or _encode(fields) != payload:
        raise AuthFailed(detail="malformed mesh login (fields)")
    for name, kinds in _FIELDS.items():
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise AuthFailed(detail=f"malformed mesh login ({name})")
    del fields["v"]
    claim = MeshOrigin(**fields)
    _check_ranges(claim)
    return claim


def _check_ranges(claim: MeshOrigin) -> None:
    if not claim.user or not claim.origin or not claim.nonce or len(claim.nonce) > MAX_NONCE:
        raise AuthFailed(detail="malformed mesh login (empty user, origin or nonce)")
    if claim.hop < 1 or not 0 <= claim.client_port < 65536:
        raise AuthFailed(detail="malformed mesh login (hop or client port)")
