"""The Consul edge: the catalog watch, registration, TTL heartbeats, maintenance and drain.

``ConsulRunner`` owns every Consul request the daemon makes; none happens on the login path.

* ``prime`` (at start, bounded by ``[mesh] consul_timeout``): the agent's node name and one
  read of each watched service, so that a node whose Consul is up starts with its full identity
  and catalog.  With Consul down the daemon starts anyway: local accounts are served and remote
  routes refused (``[UNAVAILABLE]``) until the catalog arrives.
* One watch greenlet per protocol keeps ``<prefix>-imap`` / ``<prefix>-pop3`` current with
  blocking queries (``index`` + ``[mesh] consul_wait``), resets the index when it goes
  backwards and after a failed call (a restarted Consul would otherwise hold a query with a
  stale, too high index for the whole wait), paces itself (at most one query per
  ``MIN_INTERVAL``) and backs off on errors.
* The registrar registers every listener (``mesh/registration.py``) once the agent answers,
  passes each TTL check every TTL/3, and registers again when the agent forgot them (restart).
* ``drain`` puts every service in maintenance; ``stop`` deregisters them.

An outage is logged once when it starts and once when it ends, per role (catalog watch,
agent registration); the last known catalog and identity stay in use meanwhile, and
``snapshot`` exposes the state to ``/health`` and ``/metrics``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from time import monotonic
from typing import Any

import gevent
from gevent import Greenlet, Timeout

from meshproxy import __version__, log
from meshproxy.config import parse_address
from meshproxy.io.state import Listener, Shared
from meshproxy.mesh import Directory, assertion
from meshproxy.mesh.catalog import AgentInfo, Reachability, backoff, next_index
from meshproxy.mesh.consul import PROTOCOLS, ConsulClient, ConsulDirectory, ConsulUnavailable
from meshproxy.mesh.registration import ListenerSpec, ServiceDefinition, Settings, definitions

_log = log.get("consul")
MIN_INTERVAL = 0.1
"""Seconds between two catalog queries of one watch, at least (Consul asks for a limit)."""
DRAIN_REASON = "meshproxy is draining (SIGTERM)"


class ConsulRunner:
    """The greenlets that keep a ``ConsulDirectory`` fed and this node registered."""

    def __init__(self, directory: ConsulDirectory) -> None:
        self.directory = directory
        self.mesh = directory.config.mesh
        self.catalog_status = Reachability()
        self.agent_status = Reachability()
        self.services: list[ServiceDefinition] = []
        self.registered = False
        self.draining = False
        self.shared: Shared | None = None
        self.specs: list[Listener] = []
        self._greenlets: list[Greenlet] = []
        self._index: dict[str, int] = {}
        self._client = directory.client()

    # -- start -------------------------------------------------------------------------------

    def prime(self) -> None:
        """The agent's name and a first catalog, each bounded; failures only logged."""
        try:
            with Timeout(self.mesh.consul_timeout + 1.0, ConsulUnavailable("no answer")):
                self._learn_agent(self._client)
        except ConsulUnavailable as exc:
            self._agent_failed("agent/self", exc)
        for protocol in PROTOCOLS:
            try:
                with Timeout(self.mesh.consul_timeout + 1.0, ConsulUnavailable("no answer")):
                    self._read(self._client, protocol, 0)
            except ConsulUnavailable as exc:
                self._catalog_failed(self.directory.watched(protocol), exc)

    def start(self, shared: Shared, specs: list[Listener]) -> None:
        """Watch the catalog, register the listeners (call once they accept)."""
        self.shared = shared
        self.specs = list(specs)
        self._apply_identity()
        for protocol in PROTOCOLS:
            self._greenlets.append(gevent.spawn(self._watch, protocol))
        self._greenlets.append(gevent.spawn(self._registrar))

    # -- the watch ---------------------------------------------------------------------------

    def _watch(self, protocol: str) -> None:
        client = self.directory.client()
        service = self.directory.watched(protocol)
        index = self._index.get(protocol, 0)
        failures = 0
        while True:
            started = monotonic()
            try:
                index = self._read(client, protocol, index, blocking=True)
                failures = 0
            except (ConsulUnavailable, ValueError, TypeError, KeyError) as exc:
                failures += 1
                index = self._index[protocol] = 0  # the next Consul may be another incarnation
                self._catalog_failed(service, _unavailable(exc))
                gevent.sleep(backoff(failures))
                continue
            gevent.sleep(max(0.0, MIN_INTERVAL - (monotonic() - started)))

    def _read(
        self, client: ConsulClient, protocol: str, index: int, *, blocking: bool = False
    ) -> int:
        service = self.directory.watched(protocol)
        wait = self.mesh.consul_wait if blocking else self.mesh.consul_timeout
        returned, entries = client.health(service, index if blocking else 0, wait)
        ended = self.catalog_status.succeeded()
        if ended is not None:
            _log.info("Consul catalog reachable again after %.1f s", monotonic() - ended)
        new = next_index(index, returned)
        _log.debug("catalog %s: index %d -> %s (next %d)", service, index, returned, new)
        if new == 0 and index > 0:
            _log.info("Consul index of %s went back (%s < %d): reset", service, returned, index)
        for change in self.directory.update(protocol, entries, monotonic()):
            _log.info("catalog %s: %s", service, change)
        self._index[protocol] = new
        return new

    # -- registration and heartbeats ---------------------------------------------------------

    def _registrar(self) -> None:
        client = self.directory.client()
        failures = 0
        while True:
            try:
                pause = self._register_or_pass(client)
                failures = 0
            except (ConsulUnavailable, ValueError, TypeError, KeyError) as exc:
                failures += 1
                self._agent_failed("registration", _unavailable(exc))
                pause = backoff(failures)
            gevent.sleep(pause)

    def _register_or_pass(self, client: ConsulClient) -> float:
        """One round; the seconds until the next."""
        if not self.registered:
            self._register(client)
            return self.mesh.check_ttl / 3
        for service in self.services:
            if not client.ttl_pass(service.ttl_check, "meshproxy alive"):
                _log.warning("Consul agent forgot %s: registering again", service.service_id)
                self.registered = False
                return 0.0
        self._agent_succeeded()
        return self.mesh.check_ttl / 3

    def _register(self, client: ConsulClient) -> None:
        agent = self._learn_agent(client)
        wanted = definitions(self._listener_specs(), agent.node, agent.address, self._settings())
        for service in wanted:
            client.register(service)
        if self.draining:
            for service in wanted:
                client.maintenance(service.service_id, enable=True, reason=DRAIN_REASON)
        self.services = wanted
        self.registered = True
        self._agent_succeeded()
        _log.info(
            "registered in Consul as node %s: %s",
            agent.node,
            ", ".join(f"{s.service_id} {s.address}:{s.port}" for s in wanted) or "no listener",
        )

    def _learn_agent(self, client: ConsulClient) -> AgentInfo:
        info = client.agent_self()
        if self.directory.set_agent(info):
            self._apply_identity()
        return info

    def _apply_identity(self) -> None:
        """Sessions read ``shared.identity`` and ``shared.dialer`` at each login."""
        identity = self.directory.whoami()
        if self.shared is not None and self.shared.identity != identity:
            self.shared.identity = identity
            self.shared.dialer = dataclasses.replace(self.shared.dialer, identity=identity)
        _log.info(
            "node %s: Consul agent node %s; names %s",
            identity.name or "-",
            self.directory.agent.node if self.directory.agent else "-",
            ",".join(sorted(identity.names)) or "-",
        )

    def _listener_specs(self) -> list[ListenerSpec]:
        found = []
        for spec in self.specs:
            host, port = parse_address(spec.address, spec.service)
            found.append(
                ListenerSpec(spec.service + ("s" if spec.implicit_tls else ""), host, port)
            )
        return found

    def _settings(self) -> Settings:
        return Settings(
            prefix=self.mesh.service,
            version=__version__,
            protocol=assertion.VERSION,
            ttl=self.mesh.check_ttl,
            tcp_interval=self.mesh.check_interval,
            deregister_after=self.mesh.deregister_after,
        )

    # -- drain and stop ----------------------------------------------------------------------

    def drain(self) -> None:
        """Maintenance on for every registered service (bounded; failures logged)."""
        self.draining = True
        self._each(
            "maintenance on", lambda c, s: c.maintenance(s, enable=True, reason=DRAIN_REASON)
        )

    def stop(self) -> None:
        """End the greenlets, then deregister (bounded; failures logged)."""
        gevent.killall(self._greenlets, block=True, timeout=2.0)
        self._greenlets.clear()
        if self.registered:
            self._each("deregistered", lambda c, s: c.deregister(s))
            self.registered = False
        self._client.close()

    def _each(self, what: str, call: Callable[[ConsulClient, str], object]) -> None:
        done = []
        try:
            with Timeout(self.mesh.consul_timeout + 1.0, ConsulUnavailable("no answer")):
                for service in self.services:
                    call(self._client, service.service_id)
                    done.append(service.service_id)
        except ConsulUnavailable as exc:
            _log.warning(
                "Consul %s failed after %d of %d services: %s",
                what,
                len(done),
                len(self.services),
                exc,
            )
        if done:
            _log.info("Consul %s: %s", what, ", ".join(done))

    # -- status --------------------------------------------------------------------------------

    def _catalog_failed(self, what: str, exc: ConsulUnavailable) -> None:
        if self.catalog_status.failed(str(exc), monotonic()):
            _log.warning(
                "Consul at %s unreachable (%s: %s); keeping the last known catalog (%s) and "
                "identity; retrying",
                self.directory.url,
                what,
                log.field(exc),
                self._catalog_age(),
            )

    def _agent_failed(self, what: str, exc: ConsulUnavailable) -> None:
        if self.agent_status.failed(str(exc), monotonic()):
            _log.warning(
                "Consul agent at %s unreachable (%s: %s); retrying",
                self.directory.url,
                what,
                log.field(exc),
            )

    def _agent_succeeded(self) -> None:
        ended = self.agent_status.succeeded()
        if ended is not None:
            _log.info("Consul agent reachable again after %.1f s", monotonic() - ended)

    def _catalog_age(self) -> str:
        updated = self.directory.catalog.updated
        return "none yet" if updated is None else f"{monotonic() - updated:.1f} s old"

    def snapshot(self) -> dict[str, Any]:
        """The state ``/health`` shows and ``/metrics`` counts."""
        now = monotonic()
        catalog = self.directory.catalog
        agent = self.directory.agent
        return {
            "url": self.directory.url,
            "reachable": bool(self.catalog_status.reachable and self.agent_status.reachable),
            "catalog": _status(self.catalog_status, now),
            "agent": _status(self.agent_status, now),
            "outages": self.catalog_status.outages + self.agent_status.outages,
            "agent_node": agent.node if agent else None,
            "catalog_loaded": catalog.complete,
            "index": dict(self._index),
            "catalog_age": None if catalog.updated is None else round(now - catalog.updated, 3),
            "registered": self.registered,
            "services": [service.service_id for service in self.services],
            "draining": self.draining,
            "nodes": catalog.nodes(),
        }


def _unavailable(exc: Exception) -> ConsulUnavailable:
    """An answer meshproxy could not use counts as a failed call (logged, retried)."""
    if isinstance(exc, ConsulUnavailable):
        return exc
    return ConsulUnavailable(f"unusable answer: {type(exc).__name__}: {exc}")


def _status(status: Reachability, now: float) -> dict[str, Any]:
    return {
        "reachable": status.reachable,
        "down_for": None if status.down_since is None else round(now - status.down_since, 3),
        "last_error": status.last_error or None,
        "outages": status.outages,
    }


def open_runner(directory: Directory) -> ConsulRunner:
    """The runner of a Consul directory, primed (identity and first catalog, bounded)."""
    if not isinstance(directory, ConsulDirectory):
        raise TypeError("[mesh] consul is set but the directory is not Consul's")
    runner = ConsulRunner(directory)
    runner.prime()
    return runner
