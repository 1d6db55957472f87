"""Settings of the mesh: ``[mesh]``, ``[mesh.peers]`` and ``[foreign]``.

In the style of ``config.py``: frozen dataclasses whose fields carry their help text.  A
``[mesh.peers]`` entry is either a string (``"host"`` or ``"host:port"``) or an inline table
``{ host = "...", imap = 143, pop3 = 110 }``; ``PeerConfig.from_text`` reads the string form.
``mesh_problems`` yields every problem, each naming its key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshproxy.errors import ConfigError

SERVICES = ("imap", "pop3")
FOREIGN_TLS = ("none", "starttls", "implicit")
STANDARD_PORTS = {
    ("imap", False): 143,
    ("imap", True): 993,
    ("pop3", False): 110,
    ("pop3", True): 995,
}
"""(service, implicit TLS) -> port."""


def _opt(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class PeerConfig:
    """One ``[mesh.peers]`` entry.  Port 0: ``port``, then this node's own first listen port."""

    host: str = _opt("", "IP address or DNS name of the peer.")
    imap: int = _opt(0, "IMAP port of the peer; 0: port, then this node's imap.listen port.")
    pop3: int = _opt(0, "POP3 port of the peer; 0: port, then this node's pop3.listen port.")
    port: int = _opt(0, "Port for the one protocol this mesh serves ('host:port' form).")

    @classmethod
    def from_text(cls, text: str, key: str) -> PeerConfig:
        """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; a bare IPv6 address is a host."""
        host, port = text.strip(), ""
        if host.startswith("["):
            inside, bracket, rest = host[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigError(key, f"{text!r} is not host, host:port or [v6]:port")
            host, port = inside, rest[1:]
        elif host.count(":") == 1:
            host, _, port = host.partition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(key, f"{text!r}: bad port")
        return cls(host=host, port=int(port) if port else 0)

    def port_for(self, service: str, own_port: int) -> int:
        """The port to dial for ``service`` (0: none known)."""
        explicit = self.imap if service == "imap" else self.pop3
        return explicit or self.port or own_port


@dataclass(frozen=True)
class MeshConfig:
    key_file: str = _opt("", "File holding the mesh key; empty: mesh logins disabled.")
    tls: bool = _opt(False, "STARTTLS to peers, verified against ca_file.")
    ca_file: str = _opt("", "CA bundle that verifies peers' certificates; empty: system CAs.")
    max_hops: int = _opt(1, "Mesh hops a session may take (an assertion with more is refused).")
    clock_skew: float = _opt(30.0, "Seconds a mesh login may be old or early (clock skew).")
    connect_timeout: float = _opt(5.0, "Seconds to connect to a peer or foreign server.")
    login_timeout: float = _opt(10.0, "Seconds for the greeting and login on a peer/foreign.")
    peers: dict[str, PeerConfig] = field(
        default_factory=dict,
        metadata={"help": 'Peer name -> "host", "host:port" or { host, imap, pop3 }.'},
    )
    consul: str = _opt("", "URL of the local Consul agent; empty: the embedded directory.")
    token: str = _opt("", "Consul ACL token, sent on every call (agent/self included).")
    service: str = _opt("meshproxy", "Prefix of the Consul service names (<service>-imap...).")
    datacenter: str = _opt("", "Consul datacenter of the catalog reads; empty: the agent's.")
    check_ttl: float = _opt(15.0, "Seconds of the TTL check the daemon passes (every TTL/3).")
    check_interval: float = _opt(10.0, "Seconds between Consul's TCP checks; 0: no TCP check.")
    deregister_after: float = _opt(600.0, "Seconds critical before Consul removes a service.")
    consul_wait: float = _opt(60.0, "Seconds a blocking catalog query waits for a change.")
    consul_timeout: float = _opt(5.0, "Seconds for a non-blocking Consul call.")
    drain_timeout: float = _opt(0.0, "Seconds SIGTERM lets sessions finish; 0: end them at once.")


@dataclass(frozen=True)
class ForeignConfig:
    tls: str = _opt("none", "none, starttls or implicit: TLS to foreign servers.")
    ca_file: str = _opt("", "CA bundle for foreign servers' certificates; empty: system CAs.")
    verify: bool = _opt(True, "Verify foreign servers' certificates and names.")
    imap_port: int = _opt(0, "IMAP port of foreign servers; 0: 143, or 993 with implicit.")
    pop3_port: int = _opt(0, "POP3 port of foreign servers; 0: 110, or 995 with implicit.")

    def port(self, service: str) -> int:
        explicit = self.imap_port if service == "imap" else self.pop3_port
        return explicit or STANDARD_PORTS[(service, self.tls == "implicit")]


def mesh_problems(
    mesh: MeshConfig, own_ports: Mapping[str, int], proxied: Iterator[str] | tuple[str, ...]
) -> Iterator[ConfigError]:
    """Problems of ``[mesh]``; ``own_ports`` maps each service to this node's first plain
    listen port (0: none), ``proxied`` lists the services with ``proxy = true``."""
    if mesh.max_hops < 1:
        yield ConfigError("mesh.max_hops", "must be at least 1")
    for name in ("clock_skew", "connect_timeout", "login_timeout"):
        if getattr(mesh, name) <= 0:
            yield ConfigError(f"mesh.{name}", "must be positive")
    if mesh.peers and not mesh.key_file:
        yield ConfigError("mesh.key_file", "must be set when mesh.peers lists peers")
    yield from _consul_problems(mesh)
    served = tuple(service for service in SERVICES if own_ports.get(service))
    wanted = tuple(proxied)
    seen: dict[str, str] = {}
    for name, peer in mesh.peers.items():
        yield from _peer_problems(name, peer, served, wanted, own_ports)
        if name.lower() in seen:
            yield ConfigError(f"mesh.peers.{name}", f"same name as {seen[name.lower()]}")
        seen[name.lower()] = name


CONSUL_SCHEMES = ("http", "https")
MIN_DEREGISTER = 60.0
"""Consul's floor for DeregisterCriticalServiceAfter."""


def _consul_problems(mesh: MeshConfig) -> Iterator[ConfigError]:
    if mesh.drain_timeout < 0:
        yield ConfigError("mesh.drain_timeout", "must not be negative")
    if not mesh.consul:
        return
    scheme, sep, rest = mesh.consul.partition("://")
    if not sep or scheme not in CONSUL_SCHEMES or not rest.strip("/"):
        yield ConfigError("mesh.consul", "must be a URL such as http://127.0.0.1:8500")
    if mesh.peers:
        yield ConfigError("mesh.peers", "must be empty with mesh.consul (peers come from Consul)")
    if not mesh.key_file:
        yield ConfigError("mesh.key_file", "must be set with mesh.consul")
    if not mesh.service or not all(c.isalnum() or c == "-" for c in mesh.service):
        yield ConfigError("mesh.service", "letters, digits and '-' only")
    if any(c.isspace() or c in "/?&#" for c in mesh.datacenter):
        yield ConfigError("mesh.datacenter", "not a datacenter name")
    for name in ("check_ttl", "consul_wait", "consul_timeout"):
        if getattr(mesh, name) <= 0:
            yield ConfigError(f"mesh.{name}", "must be positive")
    if mesh.check_interval < 0 or 0 < mesh.check_interval < 1:
        yield ConfigError("mesh.check_interval", "must be 0 (no TCP check) or at least 1")
    if mesh.deregister_after < MIN_DEREGISTER:
        yield ConfigError("mesh.deregister_after", f"must be at least {MIN_DEREGISTER:g} (Consul)")


def _peer_problems(
    name: str,
    peer: PeerConfig,
    served: tuple[str, ...],
    proxied: tuple[str, ...],
    own_ports: Mapping[str, int],
) -> Iterator[ConfigError]:
    key = f"mesh.peers.{name}"
    if not name or any(char.isspace() or char in ",|" for char in name):
        yield ConfigError(key, "a peer name must not be empty or hold spaces, ',' or '|'")
    if not peer.host or any(char.isspace() for char in peer.host):
        yield ConfigError(key, "host must be an address or a DNS name")
    for field_name in ("imap", "pop3", "port"):
        if not 0 <= getattr(peer, field_name) < 65536:
            yield ConfigError(f"{key}.{field_name}", "must be a port (1-65535) or 0")
    if peer.port and len(served) > 1 and not (peer.imap and peer.pop3):
        yield ConfigError(
            key,
            "'host:port' is ambiguous when both IMAP and POP3 are served: use "
            "{ host = ..., imap = PORT, pop3 = PORT }",
        )
    for service in proxied:
        if not peer.port_for(service, own_ports.get(service, 0)):
            yield ConfigError(key, f"no {service} port: {service}.listen is empty; set {service}")


def foreign_problems(foreign: ForeignConfig) -> Iterator[ConfigError]:
    if foreign.tls not in FOREIGN_TLS:
        yield ConfigError("foreign.tls", f"must be one of {', '.join(FOREIGN_TLS)}")
    for name in ("imap_port", "pop3_port"):
        if not 0 <= getattr(foreign, name) < 65536:
            yield ConfigError(f"foreign.{name}", "must be a port (1-65535) or 0")
