"""Records of the shared catalog and their JSON renderings (the shapes of §2)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from .util import go_duration

STATUSES = ("passing", "warning", "critical")
PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}
SERF_PASSING = "Agent alive and reachable"
SERF_CRITICAL = "Agent not live or unreachable"
SERVICE_MAINT = "_service_maintenance:"
NODE_MAINT = "_node_maintenance"
SERVICE_MAINT_NOTES = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
NODE_MAINT_NOTES = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)


def node_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name + ".node.consul"))


@dataclass
class Node:
    name: str
    address: str
    id: str
    meta: dict[str, str]
    create_index: int = 0
    modify_index: int = 0


@dataclass
class Service:
    node: str
    id: str
    name: str
    tags: list[str]
    address: str
    tagged_addresses: dict[str, dict[str, Any]]
    meta: dict[str, str]
    port: int
    weights: dict[str, int]
    enable_tag_override: bool = False
    kind: str = ""
    socket_path: str = ""
    locality: dict[str, str] | None = None
    create_index: int = 0
    modify_index: int = 0

    def same(self, other: Service) -> bool:
        return _without_indexes(self) == _without_indexes(other)


@dataclass
class Check:
    node: str
    check_id: str
    name: str
    status: str
    notes: str = ""
    output: str = ""  # the agent's (local) output
    synced_output: str = ""  # what the catalog shows: synced on status changes only
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] = field(default_factory=list)
    type: str = ""
    interval: float = 0.0
    timeout: float = 0.0
    ttl: float = 0.0
    tcp: str = ""
    http: str = ""
    deregister_after: float = 0.0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    create_index: int = 0
    modify_index: int = 0

    def same_definition(self, other: Check) -> bool:
        skip = ("status", "output", "synced_output", "create_index", "modify_index")
        mine, theirs = vars(self), vars(other)
        return all(mine[k] == theirs[k] for k in mine if k not in skip)


@dataclass
class KVEntry:
    key: str
    value: bytes
    flags: int = 0
    lock_index: int = 0
    session: str = ""
    create_index: int = 0
    modify_index: int = 0


def _without_indexes(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if k not in ("create_index", "modify_index")}


def to_record(obj: Any) -> dict[str, Any]:
    data = dict(vars(obj))
    if isinstance(obj, KVEntry):
        data["value"] = base64.b64encode(obj.value).decode()
    return data


def kv_from_record(data: dict[str, Any]) -> KVEntry:
    data = dict(data)
    data["value"] = base64.b64decode(data["value"])
    return KVEntry(**data)


# ---- renderings -------------------------------------------------------------------------


def node_tagged(node: Node) -> dict[str, str]:
    return {
        "lan": node.address,
        "lan_ipv4": node.address,
        "wan": node.address,
        "wan_ipv4": node.address,
    }


def render_node(node: Node, dc: str) -> dict[str, Any]:
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": dc,
        "TaggedAddresses": node_tagged(node),
        "Meta": dict(node.meta),
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def render_check(chk: Check, local: bool = False) -> dict[str, Any]:
    return {
        "Node": chk.node,
        "CheckID": chk.check_id,
        "Name": chk.name,
        "Status": chk.status,
        "Notes": chk.notes,
        "Output": chk.output if local else chk.synced_output,
        "ServiceID": chk.service_id,
        "ServiceName": chk.service_name,
        "ServiceTags": list(chk.service_tags),
        "Type": chk.type,
        "Interval": go_duration(chk.interval) if chk.interval else "",
        "Timeout": go_duration(chk.timeout) if chk.timeout else "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": chk.create_index,
        "ModifyIndex": chk.modify_index,
    }


def render_service(svc: Service, null_meta: bool) -> dict[str, Any]:
    """NodeService: in health entries (``Meta`` null when empty) and catalog/node."""
    out: dict[str, Any] = {
        "ID": svc.id,
        "Service": svc.name,
        "Tags": list(svc.tags),
        "Address": svc.address,
    }
    if svc.kind:
        out = {"Kind": svc.kind, **out}
    if svc.tagged_addresses:
        out["TaggedAddresses"] = svc.tagged_addresses
    out.update(
        {
            "Meta": (dict(svc.meta) if svc.meta or not null_meta else None),
            "Port": svc.port,
            "Weights": dict(svc.weights),
            "EnableTagOverride": svc.enable_tag_override,
            "Proxy": PROXY,
            "Connect": {},
            "PeerName": "",
            "CreateIndex": svc.create_index,
            "ModifyIndex": svc.modify_index,
        }
    )
    if svc.socket_path:
        out["SocketPath"] = svc.socket_path
    if svc.locality:
        out["Locality"] = svc.locality
    return out


def render_agent_service(svc: Service, dc: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": svc.id,
        "Service": svc.name,
        "Tags": list(svc.tags),
        "Meta": dict(svc.meta),
        "Port": svc.port,
        "Address": svc.address,
    }
    if svc.kind:
        out["Kind"] = svc.kind
    if svc.socket_path:
        out["SocketPath"] = svc.socket_path
    if svc.tagged_addresses:
        out["TaggedAddresses"] = svc.tagged_addresses
    out.update(
        {
            "Weights": dict(svc.weights),
            "EnableTagOverride": svc.enable_tag_override,
            "Datacenter": dc,
        }
    )
    if svc.locality:
        out["Locality"] = svc.locality
    return out


def render_service_node(node: Node, svc: Service, dc: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": dc,
        "TaggedAddresses": node_tagged(node),
        "NodeMeta": dict(node.meta),
        "ServiceKind": svc.kind,
        "ServiceID": svc.id,
        "ServiceName": svc.name,
        "ServiceTags": list(svc.tags),
        "ServiceAddress": svc.address,
        "ServiceWeights": dict(svc.weights),
        "ServiceMeta": dict(svc.meta),
        "ServicePort": svc.port,
        "ServiceSocketPath": svc.socket_path,
        "ServiceEnableTagOverride": svc.enable_tag_override,
        "ServiceProxy": PROXY,
        "ServiceConnect": {},
        "ServiceLocality": svc.locality,
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    }
    if svc.tagged_addresses:
        out["ServiceTaggedAddresses"] = svc.tagged_addresses
    return out


def render_kv(entry: KVEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "LockIndex": entry.lock_index,
        "Key": entry.key,
        "Flags": entry.flags,
        "Value": base64.b64encode(entry.value).decode() if entry.value else None,
    }
    if entry.session:
        out["Session"] = entry.session
    out["CreateIndex"] = entry.create_index
    out["ModifyIndex"] = entry.modify_index
    return out
