"""The directory interface: "who am I" and "where is node X".

A ``Directory`` answers ``whoami()`` with an ``Identity`` (the names and addresses this node
answers to) and ``resolve(host, service)`` with a ``Target``: this node, a meshproxy peer,
a foreign server, or unreachable (with the reason, for the log).  Addresses are numeric, so
dialling a target never needs DNS.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Protocol


@functools.lru_cache(maxsize=4096)
def normalize_ip(text: str) -> str | None:
    """The canonical text of a numeric IP (``::ffff:a.b.c.d`` as ``a.b.c.d``); None if not one."""
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(ip: str) -> bool:
    normal = normalize_ip(ip)
    return normal is not None and ipaddress.ip_address(normal).is_loopback


def _dns(name: str) -> str:
    """A DNS name for comparison: lower case, without the root's trailing dot."""
    return name.lower().rstrip(".")


@dataclass(frozen=True)
class Identity:
    """The names and addresses this node answers to.

    ``names`` are lower-cased (DNS names compare case-insensitively); ``addresses`` are
    canonical numeric IPs.  ``loopback`` means every loopback address reaches this node (a
    listener is bound to a wildcard address); without it only the listed ones do, since
    several nodes may share one host on 127.0.0.2, 127.0.0.3...  ``name`` is the node's own
    name, used in logs and mesh logins.
    """

    names: frozenset[str]
    addresses: frozenset[str] = frozenset()
    name: str = ""
    loopback: bool = False

    @classmethod
    def of(cls, *names: str, addresses: tuple[str, ...] = (), loopback: bool = False) -> Identity:
        """The first non-empty name is the node's own name."""
        own = next((name for name in names if name), "")
        ips = (normalize_ip(address) for address in addresses)
        return cls(
            names=frozenset(_dns(name) for name in names if name),
            addresses=frozenset(ip for ip in ips if ip is not None),
            name=own,
            loopback=loopback,
        )

    def matches(self, host: str) -> bool:
        """``host`` is one of this node's names or an address literal of this node."""
        if _dns(host) in self.names:
            return True
        return normalize_ip(host) is not None and self.matches_address(host)

    def matches_address(self, ip: str) -> bool:
        normal = normalize_ip(ip)
        if normal is None:
            return False
        return normal in self.addresses or (self.loopback and is_loopback(normal))

    @property
    def primary(self) -> str:
        """Alias of ``name`` (older callers)."""
        return self.name


@dataclass(frozen=True)
class Address:
    """A numeric IP and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SelfNode:
    """The host names this node: serve the account here."""

    name: str


@dataclass(frozen=True)
class MeshNode:
    """A meshproxy peer: log in with a mesh assertion, trying ``addresses`` in order."""

    name: str
    addresses: tuple[Address, ...] = field(default=())


@dataclass(frozen=True)
class ForeignHost:
    """A server that is not a meshproxy node: log in with the client's password."""

    name: str
    addresses: tuple[Address, ...] = field(default=())


@dataclass(frozen=True)
class Unreachable:
    """Cannot be dialled; ``reason`` goes to the log, the client gets ``[UNAVAILABLE]``."""

    name: str
    reason: str


Target = SelfNode | MeshNode | ForeignHost | Unreachable


class Directory(Protocol):
    def whoami(self) -> Identity: ...

    def resolve(self, host: str, service: str) -> Target: ...

    def close(self) -> None: ...
