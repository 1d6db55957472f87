"""What a node registers in Consul: one service per listener, with stable IDs and checks.

Pure: ``definitions`` builds the records from the listeners, the agent's node name and
address and the ``[mesh]`` settings; ``io/consul.py`` sends them with ``mesh/consul.py``.

* Service names: ``<prefix>-imap``, ``<prefix>-imaps``, ``<prefix>-pop3``, ``<prefix>-pop3s``.
* Service IDs: ``<name>-<node>`` (``-2``, ``-3``... for a second listener of one kind), made of
  Consul's safe characters only.
* Address/Port: the listener's; a wildcard bind registers the agent's node address.
* Meta: ``version``, ``node`` and ``mesh_protocol``.
* Checks, with stable CheckIDs: ``<id>:ttl``, a TTL check the daemon passes every TTL/3 (it
  proves the daemon runs, not just the port), registered passing because the listener is up
  when registration happens; and ``<id>:tcp``, Consul's own TCP connect check, unless
  ``check_interval`` is 0.  Both carry ``DeregisterCriticalServiceAfter``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshproxy.mesh.base import normalize_ip

WILDCARDS = frozenset({"", "*", "0.0.0.0", "::"})  # noqa: S104 (compared, not bound)
KINDS = ("imap", "imaps", "pop3", "pop3s")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class ListenerSpec:
    """One listener: ``kind`` is imap, imaps, pop3 or pop3s."""

    kind: str
    host: str
    port: int


@dataclass(frozen=True)
class Settings:
    prefix: str
    version: str
    protocol: int
    ttl: float
    tcp_interval: float
    deregister_after: float


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    service_id: str
    address: str
    port: int
    meta: dict[str, str]
    checks: tuple[dict[str, Any], ...] = field(default=())

    @property
    def ttl_check(self) -> str:
        return f"{self.service_id}:ttl"


def safe(text: str) -> str:
    """``text`` with every character Consul IDs should not hold replaced by ``_``."""
    return _UNSAFE.sub("_", text)


def duration(seconds: float) -> str:
    """A Go duration string (``15s``, ``1500ms``)."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def service_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}"


def definitions(
    listeners: Iterable[ListenerSpec], node: str, agent_address: str, settings: Settings
) -> list[ServiceDefinition]:
    """One definition per listener (wildcards need ``agent_address``, else they are skipped)."""
    found: list[ServiceDefinition] = []
    seen: dict[str, int] = {}
    for listener in listeners:
        address = _address(listener.host, agent_address)
        if not address:
            continue
        name = service_name(settings.prefix, listener.kind)
        seen[name] = seen.get(name, 0) + 1
        suffix = f"-{seen[name]}" if seen[name] > 1 else ""
        service_id = safe(f"{name}-{node}{suffix}")
        found.append(
            ServiceDefinition(
                name=name,
                service_id=service_id,
                address=address,
                port=listener.port,
                meta={
                    "version": settings.version,
                    "node": node,
                    "mesh_protocol": str(settings.protocol),
                },
                checks=_checks(service_id, address, listener.port, settings),
            )
        )
    return found


def _address(host: str, agent_address: str) -> str:
    if host.strip("[]") in WILDCARDS:
        return normalize_ip(agent_address) or ""
    return normalize_ip(host) or host


def _checks(
    service_id: str, address: str, port: int, settings: Settings
) -> tuple[dict[str, Any], ...]:
    reap = duration(settings.deregister_after)
    ttl = {
        "CheckID": f"{service_id}:ttl",
        "Name": "meshproxy daemon alive",
        "TTL": duration(settings.ttl),
        "Status": "passing",
        "Notes": "passed by the daemon every TTL/3",
        "DeregisterCriticalServiceAfter": reap,
    }
    if not settings.tcp_interval:
        return (ttl,)
    host = f"[{address}]" if ":" in address else address
    tcp = {
        "CheckID": f"{service_id}:tcp",
        "Name": "meshproxy listener accepts",
        "TCP": f"{host}:{port}",
        "Interval": duration(settings.tcp_interval),
        "Timeout": duration(min(settings.tcp_interval, 5.0)),
        "Status": "passing",
        "DeregisterCriticalServiceAfter": reap,
    }
    return (ttl, tcp)
