"""The Consul directory, and the one module that imports ``consul`` (py-consul).

``ConsulClient`` wraps the few py-consul calls meshproxy makes.  They are plain blocking calls
(``requests`` underneath); the daemon's monkey patching makes them cooperative, and only the
edge (``io/consul.py``) makes them, never the login path.  Every call sends the ACL token,
``agent/self`` included (py-consul's ``agent.self()`` sends none), and every failure, a
transport error or an answer Consul refused, becomes ``ConsulUnavailable``.

``ConsulDirectory`` answers from what the edge fed it (``set_agent``, ``update``):

* ``whoami``: the static identity (``mesh/static.py``) plus the agent's node name;
* ``resolve``: this node; a Consul node, dialled at its *passing* instances, or
  ``Unreachable`` at once when it is critical, in maintenance or left the catalog; until the
  catalog is loaded every other host is ``Unreachable``; once it is, a host Consul does not
  know is foreign (DNS, as the static directory does).  A catalog entry that puts a peer on
  one of this node's own addresses is refused, never dialled (loop guard 1).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import consul
import consul.callback
import requests

from meshproxy.config import Config
from meshproxy.mesh.base import (
    Address,
    ForeignHost,
    Identity,
    MeshNode,
    SelfNode,
    Target,
    Unreachable,
)
from meshproxy.mesh.catalog import (
    AgentInfo,
    Catalog,
    Instance,
    NodeView,
    dns,
    parse_agent,
    parse_health,
)
from meshproxy.mesh.registration import ServiceDefinition, duration, service_name
from meshproxy.mesh.static import Resolver, StaticDirectory, system_resolver

PROTOCOLS = ("imap", "pop3")
DEFAULT_PORTS = {"http": 8500, "https": 8501}


class ConsulUnavailable(Exception):
    """A Consul call failed: not reachable, timed out, or refused (ACL, bad request...)."""


class ConsulClient:
    """The calls meshproxy makes, on one py-consul client (one per greenlet)."""

    def __init__(self, url: str, token: str, datacenter: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme or "http"
        self.url = url
        self._consul = consul.Consul(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or DEFAULT_PORTS.get(scheme, 8500),
            token=token or None,
            scheme=scheme,
            dc=datacenter or None,
            connections_timeout=timeout,
        )
        if token:  # the configured token wins over CONSUL_HTTP_TOKEN
            self._consul.token = token
        self._consul.http.session.trust_env = False  # the local agent: no HTTP proxy

    @property
    def token(self) -> str | None:
        value = self._consul.token
        return value if isinstance(value, str) else None

    def agent_self(self) -> AgentInfo:
        """``/v1/agent/self``, with the token."""
        c = self._consul
        data = _call(
            lambda: c.http.get(
                consul.callback.CB.json(), "/v1/agent/self", headers=c.prepare_headers()
            )
        )
        info = parse_agent(data)
        if info is None:
            raise ConsulUnavailable("agent/self did not name the node")
        return info

    def register(self, definition: ServiceDefinition) -> None:
        checks = list(definition.checks)
        ok = _call(
            lambda: self._consul.agent.service.register(
                definition.name,
                service_id=definition.service_id,
                address=definition.address,
                port=definition.port,
                meta=definition.meta,
                check=checks[0] if checks else None,
                extra_checks=checks[1:],
                replace_existing_checks=True,
            )
        )
        if ok is not True:
            raise ConsulUnavailable(f"registering {definition.service_id} failed")

    def deregister(self, service_id: str) -> bool:
        """False: the agent does not know the service (already gone)."""
        return bool(_call(lambda: self._consul.agent.service.deregister(service_id)))

    def maintenance(self, service_id: str, *, enable: bool, reason: str) -> bool:
        agent = self._consul.agent
        return bool(_call(lambda: agent.service.maintenance(service_id, enable, reason)))

    def ttl_pass(self, check_id: str, note: str) -> bool:
        """False: the agent does not know the check (restarted, reaped): register again."""
        return bool(_call(lambda: self._consul.agent.check.ttl_pass(check_id, note)))

    def health(self, service: str, index: int, wait: float) -> tuple[str | None, Any]:
        """A (blocking, when ``index`` > 0) ``/v1/health/service/<service>`` read, unfiltered."""
        health = self._consul.health
        result = _call(lambda: health.service(service, index=index or None, wait=duration(wait)))
        index_text, entries = result
        return (str(index_text) if index_text is not None else None), entries

    def close(self) -> None:
        self._consul.http.session.close()


def _call(request: Callable[[], Any]) -> Any:
    try:
        return request()
    except requests.exceptions.RequestException as exc:
        raise ConsulUnavailable(_describe(exc)) from exc
    except consul.ConsulException as exc:
        raise ConsulUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # a body that is not the JSON expected
        raise ConsulUnavailable(f"bad answer: {exc}") from exc


def _describe(exc: requests.exceptions.RequestException) -> str:
    if isinstance(exc, requests.exceptions.Timeout):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed (refused, reset or unreachable)"
    return f"{type(exc).__name__}: {exc}"


class ConsulDirectory:
    """The directory when ``[mesh] consul`` is set; fed by ``io/consul.py``."""

    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str] | None = None,
        *,
        resolver: Resolver | None = None,
        interfaces: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.config = config
        self.url = config.mesh.consul
        self.prefix = config.mesh.service
        self._static = StaticDirectory(
            config, environ, resolver=resolver or system_resolver, interfaces=interfaces
        )
        self.catalog = Catalog(PROTOCOLS)
        self.agent: AgentInfo | None = None
        self._identity = self._static.whoami()

    # -- what the edge feeds in ----------------------------------------------------------------

    def client(self) -> ConsulClient:
        mesh = self.config.mesh
        return ConsulClient(mesh.consul, mesh.token, mesh.datacenter, mesh.consul_timeout)

    def watched(self, protocol: str) -> str:
        """The Consul service a protocol's peers are found under (``<prefix>-imap``)."""
        return service_name(self.prefix, protocol)

    def set_agent(self, info: AgentInfo) -> bool:
        """Take the agent's identity; True when this node's identity changed."""
        self.agent = info
        static = self._static.whoami()
        identity = Identity(
            names=static.names | {dns(info.node)},
            addresses=static.addresses,
            name=self.config.node.name or info.node,
            loopback=static.loopback,
        )
        changed = identity != self._identity
        self._identity = identity
        return changed

    def update(self, protocol: str, entries: Any, now: float) -> list[str]:
        """A health answer for ``protocol``'s service; the changes worth a log line."""
        return self.catalog.update(protocol, parse_health(entries), now)

    # -- the Directory interface ---------------------------------------------------------------

    def whoami(self) -> Identity:
        return self._identity

    def resolve(self, host: str, service: str) -> Target:
        if service not in PROTOCOLS:
            raise ValueError(f"unknown service {service!r}")
        if self._identity.matches(host):
            return SelfNode(self._identity.name)
        view = self.catalog.node(host, service)
        if view is not None:
            return self._node_target(view, service)
        if not self.catalog.loaded(service):
            return Unreachable(host, "the Consul catalog has not been loaded yet")
        departed = self.catalog.departed(host)
        if departed is not None:
            return Unreachable(departed, f"{departed} left the Consul catalog")
        return self._foreign(host, service)

    def close(self) -> None:
        self._static.close()

    # -- helpers -------------------------------------------------------------------------------

    def _foreign(self, host: str, service: str) -> Target:
        """DNS, as the static directory does; an address of a Consul node makes it that node."""
        target = self._static.resolve(host, service)
        if not isinstance(target, ForeignHost):
            return target
        for address in target.addresses:
            node = self.catalog.node_at(address.host)
            view = self.catalog.node(node, service) if node is not None else None
            if view is not None:
                return self._node_target(view, service)
        return target

    def _node_target(self, view: NodeView, service: str) -> Target:
        passing = view.passing
        if not passing:
            if not view.instances:
                why = f"no {self.watched(service)} instance in Consul"
            else:
                why = f"not passing in Consul: {view.why()}"
            return Unreachable(view.name, f"{view.name} {why}")
        own = [i for i in passing if self._identity.matches_address(i.address)]
        if own:
            return Unreachable(
                view.name,
                f"loop guard: the Consul catalog maps {view.name} to this node's own address "
                f"{own[0].address}; not dialled",
            )
        addresses = tuple(_address(i) for i in passing if i.numeric)
        if not addresses:
            return Unreachable(view.name, f"{view.name} has no numeric address in Consul")
        return MeshNode(view.name, addresses)


def _address(instance: Instance) -> Address:
    return Address(instance.address, instance.port)
