"""The cached Consul catalog, pure: parsing health entries, index rules, reachability.

Nothing here does I/O or reads a clock: the edge (``io/consul.py``) feeds in what Consul
answered, and the time, and the directory (``mesh/consul.py``) reads the cache on the login path.

* ``parse_health`` turns a ``/v1/health/service/<name>`` answer into ``Instance`` records and
  applies ``?passing`` semantics itself (an instance passes when *every* check of the entry,
  the node's ``serfHealth`` and ``_node_maintenance`` included, is exactly ``passing``), so
  that the cache also knows the nodes that are critical or in maintenance.
* ``next_index`` is the blocking-query index rule: reset to 0 when it goes backwards.
* ``Catalog`` holds one snapshot per protocol, remembers nodes that left, and reports changes.
* ``Reachability`` tracks Consul outages so that each is logged once, not per retry.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshproxy.mesh.base import normalize_ip

PASSING = "passing"
MAINTENANCE_CHECKS = ("_node_maintenance", "_service_maintenance:")
WHY_CAP = 200
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 3.0


def dns(name: str) -> str:
    """A node name for comparison (Consul node names are DNS labels)."""
    return name.lower().rstrip(".")


# -- blocking-query index and retry pacing -----------------------------------------------------


def next_index(previous: int, returned: str | int | None) -> int:
    """The index for the next blocking query after ``returned`` came back.

    Consul's rules: an index that goes backwards (snapshot restore, agent or server restart)
    resets to 0 (the next query answers at once); a missing or unparsable one also resets; a
    returned 0 (never sent by Consul) becomes 1 so that the loop cannot spin.
    """
    try:
        index = int(returned) if returned is not None else -1
    except ValueError:
        return 0
    if index < 0 or index < previous:
        return 0
    return max(index, 1)


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failed calls in a row (jittered, capped)."""
    if failures <= 0:
        return 0.0
    base = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
    return float(base * (0.75 + 0.5 * (rng or random).random()))


# -- the local agent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentInfo:
    """What ``/v1/agent/self`` says about the local agent."""

    node: str
    address: str = ""
    datacenter: str = ""


def parse_agent(data: Any) -> AgentInfo | None:
    """``Config.NodeName`` (else ``Member.Name``), ``Member.Addr``, ``Config.Datacenter``."""
    if not isinstance(data, dict):
        return None
    config = _table(data.get("Config"))
    member = _table(data.get("Member"))
    node = config.get("NodeName") or member.get("Name")
    if not isinstance(node, str) or not node:
        return None
    address = member.get("Addr")
    return AgentInfo(
        node=node,
        address=normalize_ip(address) or "" if isinstance(address, str) else "",
        datacenter=str(config.get("Datacenter") or ""),
    )


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -- health entries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One registered listener of a node, with its health as Consul sees it."""

    node: str
    service_id: str
    address: str  # canonical numeric IP, or the text Consul gave when it is not numeric
    port: int
    passing: bool
    why: str = ""  # why it is not passing ("" when it is)
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return dns(self.node)

    @property
    def numeric(self) -> bool:
        return normalize_ip(self.address) is not None


def parse_health(entries: Any) -> tuple[Instance, ...]:
    """``/v1/health/service`` entries as instances; malformed entries are skipped."""
    if not isinstance(entries, list):
        return ()
    found = (_instance(entry) for entry in entries if isinstance(entry, dict))
    return tuple(instance for instance in found if instance is not None)


def _instance(entry: Mapping[str, Any]) -> Instance | None:
    node, service = entry.get("Node"), entry.get("Service")
    if not isinstance(node, dict) or not isinstance(service, dict):
        return None
    name = node.get("Node")
    port = service.get("Port")
    if not isinstance(name, str) or not name or not isinstance(port, int):
        return None
    address = str(service.get("Address") or node.get("Address") or "")
    checks = entry.get("Checks") or []
    failing = [check for check in checks if isinstance(check, dict) and not _passes(check)]
    meta = service.get("Meta") or {}
    return Instance(
        node=name,
        service_id=str(service.get("ID") or ""),
        address=normalize_ip(address) or address,
        port=port,
        passing=not failing and isinstance(checks, list),
        why=_why(failing),
        meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
    )


def _passes(check: Mapping[str, Any]) -> bool:
    return check.get("Status") == PASSING


def _why(failing: list[dict[str, Any]]) -> str:
    """The failing checks in a log-friendly line; maintenance first."""
    maintenance = [c for c in failing if str(c.get("CheckID", "")).startswith(MAINTENANCE_CHECKS)]
    parts = [f"in maintenance ({c.get('Notes') or 'no reason'})" for c in maintenance]
    for check in failing:
        if check in maintenance:
            continue
        output = str(check.get("Output") or "").strip().replace("\n", " ")
        described = f"check {check.get('Name') or check.get('CheckID')!r} {check.get('Status')}"
        parts.append(f"{described}: {output}" if output else described)
    text = "; ".join(parts)
    return text if len(text) <= WHY_CAP else text[: WHY_CAP - 3] + "..."


# -- the cache ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """What the cache says about one node for one protocol."""

    name: str
    instances: tuple[Instance, ...]

    @property
    def passing(self) -> tuple[Instance, ...]:
        return tuple(instance for instance in self.instances if instance.passing)

    def why(self) -> str:
        reasons = [instance.why for instance in self.instances if instance.why]
        return reasons[0] if reasons else "no passing instance"


class Catalog:
    """One snapshot of instances per protocol ("imap", "pop3"), replaced on each update."""

    def __init__(self, protocols: Iterable[str]) -> None:
        self._snapshots: dict[str, tuple[Instance, ...] | None] = dict.fromkeys(protocols)
        self._departed: dict[str, str] = {}
        self.updated: float | None = None  # monotonic time of the last update
        self.generation = 0

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self._snapshots)

    def loaded(self, protocol: str) -> bool:
        return self._snapshots.get(protocol) is not None

    @property
    def complete(self) -> bool:
        return all(snapshot is not None for snapshot in self._snapshots.values())

    def update(self, protocol: str, instances: tuple[Instance, ...], now: float) -> list[str]:
        """Replace one protocol's snapshot; the changes worth a log line."""
        before = self._states()
        self._snapshots[protocol] = instances
        self.updated = now
        self.generation += 1
        after = self._states()
        for key in before.keys() - after.keys():
            self._departed[key] = before[key][0]
        for key in after:
            self._departed.pop(key, None)
        return _changes(before, after)

    def node(self, name: str, protocol: str) -> NodeView | None:
        """The node's instances for ``protocol``; None when Consul does not know the node."""
        key = dns(name)
        if not self.known(key):
            return None
        snapshot = self._snapshots.get(protocol) or ()
        mine = tuple(instance for instance in snapshot if instance.key == key)
        display = mine[0].node if mine else self._display(key)
        return NodeView(display, mine)

    def known(self, name: str) -> bool:
        key = dns(name)
        return any(i.key == key for snapshot in self._live() for i in snapshot)

    def departed(self, name: str) -> str | None:
        """The node's name if it was in the catalog earlier and has left it."""
        return self._departed.get(dns(name))

    def node_at(self, ip: str) -> str | None:
        """The node one of whose instances listens on ``ip``."""
        normal = normalize_ip(ip)
        for snapshot in self._live():
            for instance in snapshot:
                if normal is not None and instance.address == normal:
                    return instance.node
        return None

    def nodes(self) -> dict[str, dict[str, str]]:
        """node -> protocol -> "passing" or why not (for /health and the tests)."""
        table: dict[str, dict[str, str]] = {}
        for protocol, snapshot in self._snapshots.items():
            for instance in snapshot or ():
                state = "passing" if instance.passing else instance.why or "critical"
                current = table.setdefault(instance.node, {}).get(protocol)
                if current != "passing":
                    table[instance.node][protocol] = state
        return table

    def _live(self) -> list[tuple[Instance, ...]]:
        return [snapshot for snapshot in self._snapshots.values() if snapshot]

    def _display(self, key: str) -> str:
        for snapshot in self._live():
            for instance in snapshot:
                if instance.key == key:
                    return instance.node
        return key

    def _states(self) -> dict[str, tuple[str, bool]]:
        """node key -> (display name, passing for every loaded protocol it has)."""
        states: dict[str, tuple[str, bool]] = {}
        for snapshot in self._live():
            for instance in snapshot:
                _, ok = states.get(instance.key, (instance.node, True))
                states[instance.key] = (instance.node, ok and instance.passing)
        return states


def _changes(
    before: Mapping[str, tuple[str, bool]], after: Mapping[str, tuple[str, bool]]
) -> list[str]:
    lines = []
    for key in sorted(after.keys() - before.keys()):
        name, ok = after[key]
        lines.append(f"node {name} joined ({'passing' if ok else 'not passing'})")
    for key in sorted(before.keys() - after.keys()):
        lines.append(f"node {before[key][0]} left the catalog")
    for key in sorted(after.keys() & before.keys()):
        if before[key][1] != after[key][1]:
            name, ok = after[key]
            lines.append(f"node {name} is {'passing' if ok else 'not passing'}")
    return lines


# -- reachability ------------------------------------------------------------------------------


@dataclass
class Reachability:
    """Consul's reachability as the edge saw it; each outage is reported once."""

    reachable: bool | None = None  # None: not tried yet
    down_since: float | None = None
    last_error: str = ""
    outages: int = 0
    failures: int = 0  # calls failed in a row

    def failed(self, error: str, now: float) -> bool:
        """Record a failed call; True when this starts an outage (log it)."""
        self.failures += 1
        self.last_error = error
        if self.reachable is False:
            return False
        self.reachable = False
        self.down_since = now
        self.outages += 1
        return True

    def succeeded(self) -> float | None:
        """Record a good call; the outage's start time when this ends one (log it)."""
        self.failures = 0
        ended = self.down_since if self.reachable is False else None
        self.reachable = True
        self.down_since = None
        return ended
