"""A small HTTP endpoint for operators and monitoring: ``/health`` (JSON) and ``/metrics``.

``[health] listen = "127.0.0.1:9143"`` turns it on (keep it on loopback or a management
network: it names the node and its peers).  ``/health`` answers 200 while the node serves
(``status`` ``ok``, or ``degraded`` while Consul is unreachable, with the last known catalog in
use) and 503 while it drains.  ``/metrics`` is the Prometheus text format, written here (a few
gauges need no client library).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gevent.pywsgi import WSGIServer

from meshproxy import __version__, log
from meshproxy.config import parse_address
from meshproxy.io.state import Shared

_log = log.get("health")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Snapshot = Callable[[], dict[str, Any] | None]


class HealthEndpoint:
    """The WSGI application; ``consul`` returns the Consul runner's snapshot (None: static)."""

    def __init__(self, shared: Shared, consul: Snapshot, draining: Callable[[], bool]) -> None:
        self.shared = shared
        self.consul = consul
        self.draining = draining

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start, "405 Method Not Allowed", "text/plain", b"GET only\n")
        if path == "/health":
            body = self.health()
            status = "503 Service Unavailable" if body["status"] == "draining" else "200 OK"
            data = json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"
            return _reply(start, status, "application/json", data)
        if path == "/metrics":
            text = "".join(metrics(self.health()))
            return _reply(
                start, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text.encode()
            )
        return _reply(start, "404 Not Found", "text/plain", b"try /health or /metrics\n")

    def health(self) -> dict[str, Any]:
        identity = self.shared.identity
        consul = self.consul()
        if self.draining():
            status = "draining"
        elif consul is not None and not consul["reachable"]:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "version": __version__,
            "node": identity.name,
            "names": sorted(identity.names),
            "addresses": sorted(identity.addresses),
            "sessions": len(self.shared.sessions),
            "directory": "consul" if consul is not None else "static",
            "consul": consul,
        }


def _reply(start: StartResponse, status: str, kind: str, body: bytes) -> list[bytes]:
    start(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def metrics(health: dict[str, Any]) -> Iterator[str]:
    """The Prometheus text exposition of a ``/health`` body."""
    labels = {"version": health["version"], "node": health["node"]}
    yield from _metric("meshproxy_info", "gauge", "Version and node name.", [(labels, 1)])
    yield from _gauge(
        "meshproxy_sessions", "Sessions held (pre-login and relayed).", health["sessions"]
    )
    yield from _gauge(
        "meshproxy_draining", "1 while SIGTERM drains.", health["status"] == "draining"
    )
    consul = health["consul"]
    if consul is None:
        return
    yield from _gauge(
        "meshproxy_consul_up", "1 when the last Consul calls worked.", consul["reachable"]
    )
    yield from _metric(
        "meshproxy_consul_outages_total",
        "counter",
        "Consul outages seen.",
        [({}, consul["outages"])],
    )
    yield from _gauge(
        "meshproxy_consul_catalog_loaded", "1 once the catalog was read.", consul["catalog_loaded"]
    )
    age = consul["catalog_age"]
    yield from _gauge(
        "meshproxy_consul_catalog_age_seconds",
        "Seconds since the catalog was last read.",
        -1 if age is None else age,
    )
    yield from _gauge(
        "meshproxy_consul_registered",
        "1 when this node's services are registered.",
        consul["registered"],
    )
    states = [state for node in consul["nodes"].values() for state in node.values()]
    passing = sum(1 for state in states if state == "passing")
    yield from _metric(
        "meshproxy_consul_instances",
        "gauge",
        "Mesh instances in the catalog, by health.",
        [({"state": "passing"}, passing), ({"state": "failing"}, len(states) - passing)],
    )


def _gauge(name: str, help_text: str, value: float | bool) -> Iterator[str]:
    yield from _metric(name, "gauge", help_text, [({}, value)])


def _metric(
    name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], Any]]
) -> Iterator[str]:
    yield f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
    for labels, value in samples:
        inside = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
        yield f"{name}{{{inside}}} {float(value):g}\n" if inside else f"{name} {float(value):g}\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def start(shared: Shared, consul: Snapshot, draining: Callable[[], bool]) -> WSGIServer:
    """Serve the endpoint on ``[health] listen`` (raises OSError when it cannot bind)."""
    host, port = parse_address(shared.config.health.listen, "health.listen")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(64)
    except OSError:
        listener.close()
        raise
    server = WSGIServer(
        listener, HealthEndpoint(shared, consul, draining), log=None, error_log=_log
    )
    server.start()
    _log.info("health endpoint on http://%s/health and /metrics", shared.config.health.listen)
    return server
