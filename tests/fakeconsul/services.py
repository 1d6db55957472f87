"""Decoding and validation of PUT /v1/agent/service/register bodies (§2)."""

from __future__ import annotations

from typing import Any

from .model import STATUSES, Check, Service
from .util import (
    CHECK_FIELDS,
    SERVICE_FIELDS,
    ApiError,
    decode_duration,
    is_ip_literal,
    validate_meta,
)

INTERVAL_KINDS = (
    ("ScriptArgs", "script"),
    ("HTTP", "http"),
    ("TCP", "tcp"),
    ("UDP", "udp"),
    ("GRPC", "grpc"),
    ("H2PING", "h2ping"),
    ("OSService", "os_service"),
)
MIN_INTERVAL = 1.0
DEFAULT_TIMEOUT = 10.0


def _typed(value: Any, kind: type | tuple[type, ...], field: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiError(400, f"Request decode failed: json: cannot unmarshal into field {field}")
    return value


def _ci(obj: Any, *names: str) -> dict[str, Any]:
    """Case-insensitive picks out of a small nested object (Weights, ServiceAddress)."""
    if not isinstance(obj, dict):
        raise ApiError(400, "Request decode failed: json: cannot unmarshal into object")
    lower = {k.lower(): v for k, v in obj.items()}
    return {n: lower[n.lower()] for n in names if n.lower() in lower}


def parse_check(raw: Any) -> dict[str, Any]:
    c = CHECK_FIELDS.decode(raw, "structs.CheckType")
    interval = decode_duration(c.get("Interval", 0))
    ttl = decode_duration(c.get("TTL", 0))
    c["Interval"], c["TTL"] = interval, ttl
    c["Timeout"] = decode_duration(c.get("Timeout", 0))
    c["DeregisterCriticalServiceAfter"] = decode_duration(
        c.get("DeregisterCriticalServiceAfter", 0)
    )
    kind = next((k for f, k in INTERVAL_KINDS if c.get(f)), "")
    alias = bool(c.get("AliasNode") or c.get("AliasService"))
    if interval > 0 and ttl > 0:
        raise ApiError(400, "Invalid check: Interval and TTL cannot both be specified")
    if kind and interval <= 0:
        raise ApiError(
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks",
        )
    if not kind and not alias and ttl <= 0:
        raise ApiError(400, "Invalid check: TTL must be > 0 for TTL checks")
    c["_type"] = kind or ("alias" if alias else "ttl")
    return c


def parse_registration(node: str, body: Any) -> tuple[Service, list[Check]]:
    f = SERVICE_FIELDS.decode(body, "structs.ServiceDefinition")
    name = _typed(f.get("Name"), str, "Name") or ""
    if not name:
        raise ApiError(400, "Missing service name")
    sid = _typed(f.get("ID"), str, "ID") or name
    meta = validate_meta(f.get("Meta"))
    raw_checks: list[Any] = []
    single = f.get("Check")
    if isinstance(single, dict):
        if any(v not in (None, "", 0, False, [], {}) for v in single.values()):
            raw_checks.append(single)
    elif single is not None:
        raw_checks.append(single)  # not an object: decoding fails with 400
    raw_checks.extend(_typed(f.get("Checks"), list, "Checks") or [])
    parsed = [parse_check(r) for r in raw_checks]
    for c in parsed:
        status = c.get("Status") or ""
        if status and status not in STATUSES:
            raise ApiError(400, "Status for checks must 'passing', 'warning', 'critical'")
    address = _typed(f.get("Address"), str, "Address") or ""
    if address in ("0.0.0.0", "::", "[::]"):
        raise ApiError(400, "Invalid service address")
    port = _typed(f.get("Port"), int, "Port") or 0
    tags = [str(t) for t in (_typed(f.get("Tags"), list, "Tags") or [])]
    weights = {"Passing": 1, "Warning": 1}
    if f.get("Weights"):
        weights.update(_ci(f["Weights"], "Passing", "Warning"))
    tagged: dict[str, dict[str, Any]] = {}
    for k, v in (_typed(f.get("TaggedAddresses"), dict, "TaggedAddresses") or {}).items():
        picked = _ci(v, "Address", "Port")
        tagged[k] = {"Address": picked.get("Address", ""), "Port": picked.get("Port", 0)}
    version = is_ip_literal(address)
    if version:
        for scope in ("lan", "wan"):
            tagged.setdefault(f"{scope}_ipv{version}", {"Address": address, "Port": port})
    svc = Service(
        node=node,
        id=sid,
        name=name,
        tags=tags,
        address=address,
        tagged_addresses=tagged,
        meta=meta,
        port=port,
        weights=weights,
        enable_tag_override=bool(f.get("EnableTagOverride")),
        kind=f.get("Kind") or "",
        socket_path=f.get("SocketPath") or "",
        locality=f.get("Locality") or None,
    )
    checks = []
    for i, c in enumerate(parsed):
        cid = c.get("CheckID") or (
            f"service:{sid}" if len(parsed) == 1 else f"service:{sid}:{i + 1}"
        )
        kind = c["_type"]
        interval = max(MIN_INTERVAL, c["Interval"]) if kind not in ("ttl", "alias") else 0.0
        timeout = (
            (c["Timeout"] or DEFAULT_TIMEOUT) if kind in ("tcp", "http", "grpc", "udp") else 0.0
        )
        fbc = int(c.get("FailuresBeforeCritical") or 0)
        checks.append(
            Check(
                node=node,
                check_id=cid,
                name=c.get("Name") or f"Service '{name}' check",
                status=c.get("Status") or "critical",
                notes=c.get("Notes") or "",
                service_id=sid,
                service_name=name,
                service_tags=list(tags),
                type=kind,
                interval=interval,
                timeout=timeout,
                ttl=c["TTL"],
                tcp=c.get("TCP") or "",
                http=c.get("HTTP") or "",
                deregister_after=c["DeregisterCriticalServiceAfter"],
                success_before_passing=int(c.get("SuccessBeforePassing") or 0),
                failures_before_warning=int(c.get("FailuresBeforeWarning") or fbc),
                failures_before_critical=fbc,
            )
        )
    return svc, checks
