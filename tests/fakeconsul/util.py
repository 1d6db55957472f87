"""Small pieces of Go/Consul behaviour: durations, ParseBool, errors, body decoding."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


class ApiError(Exception):
    """An HTTP error answer: plain-text body, as Consul's HTTP wrapper writes them."""

    def __init__(self, code: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.headers = dict(headers or {})


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds. Raises ValueError."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if not s:
        raise ValueError(text)
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None or m.end() == pos or m.group(1) in ("", "."):
            raise ValueError(text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def go_duration(seconds: float) -> str:
    """Go's Duration.String() for non-negative durations ("10s", "500ms", "1m30s")."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        for unit, scale in (("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
            value = seconds * scale
            if value >= 1:
                return f"{_trim(value)}{unit}"
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{int(hours)}h{int(minutes)}m{_trim(secs)}s"
    if minutes:
        return f"{int(minutes)}m{_trim(secs)}s"
    return f"{_trim(secs)}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_go_bool(text: str) -> bool:
    """Go's strconv.ParseBool. Raises ValueError."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(text)


def decode_duration(value: Any) -> float:
    """A duration in a request body: Go duration string or a number of nanoseconds."""
    if isinstance(value, bool):
        raise ApiError(400, "Request decode failed: json: cannot unmarshal bool into duration")
    if isinstance(value, int | float):
        return float(value) / 1e9
    if isinstance(value, str):
        if value == "":
            return 0.0
        try:
            return parse_go_duration(value)
        except ValueError:
            raise ApiError(
                400, f'Request decode failed: time: invalid duration "{value}"'
            ) from None
    raise ApiError(400, "Request decode failed: json: cannot unmarshal duration")


def is_ip_literal(text: str) -> int:
    """4 or 6 for an IP literal, 0 otherwise."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


class FieldSet:
    """Struct fields of a Go type, matched case-insensitively, plus snake_case aliases."""

    def __init__(self, fields: list[str], aliases: Mapping[str, str]) -> None:
        self.by_lower = {f.lower(): f for f in fields}
        self.aliases = dict(aliases)

    def decode(self, body: Any, what: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(
                400, f"Request decode failed: json: cannot unmarshal {_json_kind(body)} into {what}"
            )
        out: dict[str, Any] = {}
        for key, value in body.items():
            name = self.aliases.get(key) or self.by_lower.get(key.lower())
            if name is None:
                raise ApiError(400, f'Request decode failed: json: unknown field "{key}"')
            out[name] = value
        return out


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "object"


SERVICE_FIELDS = FieldSet(
    [
        "Kind",
        "ID",
        "Name",
        "Tags",
        "Address",
        "TaggedAddresses",
        "Meta",
        "Port",
        "SocketPath",
        "Check",
        "Checks",
        "Weights",
        "Token",
        "EnableTagOverride",
        "Proxy",
        "Connect",
        "Locality",
    ],
    {"enable_tag_override": "EnableTagOverride", "tagged_addresses": "TaggedAddresses"},
)

CHECK_FIELDS = FieldSet(
    [
        "CheckID",
        "Name",
        "Status",
        "Notes",
        "ScriptArgs",
        "HTTP",
        "Header",
        "Method",
        "Body",
        "DisableRedirects",
        "TCP",
        "TCPUseTLS",
        "UDP",
        "Interval",
        "AliasNode",
        "AliasService",
        "DockerContainerID",
        "Shell",
        "GRPC",
        "GRPCUseTLS",
        "H2PING",
        "H2PingUseTLS",
        "TLSServerName",
        "TLSSkipVerify",
        "Timeout",
        "TTL",
        "SuccessBeforePassing",
        "FailuresBeforeWarning",
        "FailuresBeforeCritical",
        "DeregisterCriticalServiceAfter",
        "OutputMaxSize",
        "OSService",
        "ServiceID",
    ],
    {
        "args": "ScriptArgs",
        "script_args": "ScriptArgs",
        "deregister_critical_service_after": "DeregisterCriticalServiceAfter",
        "docker_container_id": "DockerContainerID",
        "tls_server_name": "TLSServerName",
        "tls_skip_verify": "TLSSkipVerify",
        "grpc_use_tls": "GRPCUseTLS",
        "h2ping_use_tls": "H2PingUseTLS",
        "service_id": "ServiceID",
    },
)

UPDATE_FIELDS = FieldSet(["Status", "Output"], {})

META_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def validate_meta(meta: Any) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ApiError(400, "Request decode failed: json: cannot unmarshal into Meta")
    if len(meta) > 64:
        raise ApiError(
            400, "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
        )
    for key, value in meta.items():
        if not isinstance(value, str):
            raise ApiError(400, "Request decode failed: json: cannot unmarshal into Meta value")
        if not META_KEY.match(key):
            raise ApiError(400, f"Invalid Service Meta: Key contains invalid characters: {key!r}")
        if len(key) > 128:
            raise ApiError(
                400, f"Invalid Service Meta: Key is too long (limit: 128 characters): {key!r}"
            )
        if key.startswith("consul-"):
            raise ApiError(
                400,
                f"Invalid Service Meta: Key prefix 'consul-' is reserved for internal use: {key!r}",
            )
        if len(value) > 512:
            raise ApiError(
                400, f"Invalid Service Meta: Value is too long (limit: 512 characters): {key!r}"
            )
    return dict(meta)
