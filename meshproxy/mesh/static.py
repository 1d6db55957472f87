"""The embedded directory: identity from this host, peers from ``[mesh.peers]``, else DNS.

Identity: ``[node] name``, ``PROXY_HOSTNAME``, ``gethostname()`` and ``[node] aliases``, plus
the addresses this node's listeners are bound to; a listener on a wildcard address adds
every interface address of the host (and all of loopback).  Peer host names are resolved
once, here, so a login for a known peer needs no DNS.  Foreign hosts are resolved on each
``resolve`` (the only DNS on the login path).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from meshproxy.config import Config, own_port, parse_address
from meshproxy.mesh import netif
from meshproxy.mesh.base import (
    Address,
    ForeignHost,
    Identity,
    MeshNode,
    SelfNode,
    Target,
    Unreachable,
    normalize_ip,
)
from meshproxy.meshconfig import PeerConfig

Resolver = Callable[[str, int], Iterable[str]]
"""(host, port) -> numeric addresses, in order; raises OSError when the name does not resolve."""
WILDCARDS = frozenset({"", "*", "0.0.0.0", "::"})  # noqa: S104 (compared, not bound)
SERVICES = ("imap", "pop3")


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Peer:
    name: str
    ips: tuple[str, ...]
    ports: Mapping[str, int]
    error: str = ""


class StaticDirectory:
    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str] | None = None,
        *,
        resolver: Resolver | None = None,
        interfaces: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self._resolver = resolver or system_resolver
        self._foreign = config.foreign
        env = os.environ if environ is None else environ
        self._identity = _identity(config, env, self._resolver, interfaces or netif.local_addresses)
        self._peers = {
            _dns(name): self._peer(config, name, peer) for name, peer in config.mesh.peers.items()
        }
        self._by_ip = {ip: peer for peer in self._peers.values() for ip in peer.ips}

    @property
    def name(self) -> str:
        """The name this node logs and announces itself by."""
        return self._identity.name

    @property
    def peer_errors(self) -> dict[str, str]:
        """Peers whose host did not resolve at start, with the reason (for the edge's log)."""
        return {peer.name: peer.error for peer in self._peers.values() if peer.error}

    def whoami(self) -> Identity:
        return self._identity

    def resolve(self, host: str, service: str) -> Target:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}")
        if self._identity.matches(host):
            return SelfNode(self._identity.name)
        peer = self._peers.get(_dns(host))
        if peer is not None:
            return self._peer_target(peer, service)
        return self._foreign_target(host, service)

    def close(self) -> None:
        return None

    def _peer(self, config: Config, name: str, peer: PeerConfig) -> _Peer:
        ports = {service: peer.port_for(service, own_port(config, service)) for service in SERVICES}
        try:
            ips = _numeric(self._resolver, peer.host, ports["imap"] or ports["pop3"] or 143)
        except OSError as exc:
            return _Peer(name, (), ports, f"cannot resolve {peer.host}: {_why(exc)}")
        return _Peer(name, ips, ports, "" if ips else f"cannot resolve {peer.host}")

    def _peer_target(self, peer: _Peer, service: str) -> Target:
        if peer.error:
            return Unreachable(peer.name, peer.error)
        own = [ip for ip in peer.ips if self._identity.matches_address(ip)]
        if own:
            return Unreachable(
                peer.name, f"peers table maps {peer.name} to this node's own address {own[0]}"
            )
        port = peer.ports[service]
        if not port:
            return Unreachable(peer.name, f"no {service} port for peer {peer.name}")
        return MeshNode(peer.name, tuple(Address(ip, port) for ip in peer.ips))

    def _foreign_target(self, host: str, service: str) -> Target:
        port = self._foreign.port(service)
        try:
            ips = _numeric(self._resolver, host, port)
        except OSError as exc:
            return Unreachable(host, f"cannot resolve {host}: {_why(exc)}")
        if not ips:
            return Unreachable(host, f"cannot resolve {host}: no address")
        others = [ip for ip in ips if not self._identity.matches_address(ip)]
        if not others:
            return SelfNode(self._identity.name)
        peer = next((self._by_ip[ip] for ip in others if ip in self._by_ip), None)
        if peer is not None:
            return self._peer_target(peer, service)
        return ForeignHost(host, tuple(Address(ip, port) for ip in others))


def _numeric(resolver: Resolver, host: str, port: int) -> tuple[str, ...]:
    """``host`` as numeric addresses (no DNS for an address literal)."""
    literal = normalize_ip(host)
    if literal is not None:
        return (literal,)
    try:
        found = [normalize_ip(ip) for ip in resolver(host, port)]
    except UnicodeError as exc:
        raise OSError(str(exc)) from exc
    return tuple(dict.fromkeys(ip for ip in found if ip is not None))


def _dns(name: str) -> str:
    return name.lower().rstrip(".")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _identity(
    config: Config,
    env: Mapping[str, str],
    resolver: Resolver,
    interfaces: Callable[[], Iterable[str]],
) -> Identity:
    proxy_hostname = env.get("PROXY_HOSTNAME", "")
    names = (config.node.name, proxy_hostname, socket.gethostname(), *config.node.aliases)
    addresses, wildcard = _listen_addresses(config, resolver)
    addresses += tuple(alias for alias in config.node.aliases if normalize_ip(alias))
    if wildcard:
        addresses += tuple(interfaces())
    return Identity.of(*names, addresses=addresses, loopback=wildcard)


def _listen_addresses(config: Config, resolver: Resolver) -> tuple[tuple[str, ...], bool]:
    """The addresses this node's listeners are bound to, and whether one is a wildcard."""
    found: list[str] = []
    wildcard = False
    for service in SERVICES:
        for key in ("listen", "tls_listen"):
            for text in getattr(getattr(config, service), key):
                host, port = parse_address(text, f"{service}.{key}")
                if host in WILDCARDS:
                    wildcard = True
                    continue
                try:
                    found += _numeric(resolver, host, port)
                except OSError:
                    continue
    return tuple(found), wildcard
