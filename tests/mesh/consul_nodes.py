"""Meshes in Consul mode: the nodes of ``nodes.py``, each with its own agent of one fake Consul.

``tests/fakeconsul`` runs in the test process: a ``ConsulCluster`` whose agents (one per
node, each on its node's own address, e.g. ``127.0.0.2:<port>``) share one catalog, with ACLs
on (the anonymous token may do nothing, so every call must carry ``TOKEN``).  Each meshproxy
node gets ``[mesh] consul`` = its own agent's URL, no ``[mesh.peers]``, a short TTL check
(``TTL``), no TCP check (a TCP probe would show up as a node-to-node connection in the logs
these tests read), implicit-TLS listeners too (four services per node), and a ``[health]``
endpoint on its own address.

A ``ConsulMesh`` is started only once every node is registered and sees every node passing
(``wait_converged``, read from each node's ``/health``).  Built without a ``cluster`` it makes
its own (one agent per node) and closes it when it stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fakeconsul.server import ConsulCluster
from integration.daemon import deep_merge

from .nodes import NODES, Mesh, MeshAccount, build_mesh

TOKEN = "3f0b7a52-meshproxy-test-token"
TTL = 2.0
CONVERGE_TIMEOUT = 15.0
PROTOCOLS = ("imap", "pop3")
CONSUL_MESH: dict[str, Any] = {
    "service": "meshproxy",
    "token": TOKEN,
    "check_ttl": TTL,
    "check_interval": 0.0,
    "deregister_after": 60.0,
    "consul_wait": 3.0,
    "consul_timeout": 2.0,
}


def cluster_for(
    names: Iterable[str] = tuple(NODES), extra: Mapping[str, str] | None = None
) -> ConsulCluster:
    """A started fake Consul with one agent per node (plus ``extra`` name -> address)."""
    nodes = {name: NODES[name] for name in names} | dict(extra or {})
    return ConsulCluster(nodes, acl_tokens={TOKEN: None}, acl_anonymous_rules="").start()


class ConsulMesh(Mesh):
    """A mesh whose nodes find each other through ``cluster``."""

    directory = "consul"
    port_kinds = ("imap", "pop3", "imaps", "pop3s", "health")

    def __init__(self, *args: Any, cluster: ConsulCluster, owns_cluster: bool = False) -> None:
        super().__init__(*args)
        self.cluster = cluster
        self.owns_cluster = owns_cluster

    def base_config(self, source: Mapping[str, Any], tls: Mapping[str, str]) -> dict[str, Any]:
        """No ``[mesh.peers]`` (exclusive with ``[mesh] consul``): ``CONSUL_MESH`` instead."""
        config = super().base_config(source, tls)
        del config["mesh"]["peers"]
        return deep_merge(config, {"mesh": CONSUL_MESH})

    def node_config(
        self,
        name: str,
        base: Mapping[str, Any],
        ports: Mapping[str, int],
        overrides: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The static node's file plus implicit-TLS listeners, its agent, a health endpoint."""
        address = NODES[name]
        config = super().node_config(name, base, ports, overrides)
        config["imap"]["tls_listen"] = [f"{address}:{ports['imaps']}"]
        config["pop3"]["tls_listen"] = [f"{address}:{ports['pop3s']}"]
        config["mesh"]["consul"] = self.cluster.url(name)
        config["health"] = {"listen": f"{address}:{ports['health']}"}
        return config

    def wait_converged(
        self, names: Iterable[str] | None = None, timeout: float = CONVERGE_TIMEOUT
    ) -> None:
        """Every running node registered, and every one of them sees ``names`` passing."""
        wanted = list(names if names is not None else self.nodes)
        for node in self:
            if node.alive():
                node.wait_health(
                    lambda body: sees_passing(body, wanted), timeout, f"{wanted} passing"
                )

    def converge(self) -> None:
        self.wait_converged()

    def wait_peer_down(self, name: str) -> None:
        """Until every other running node sees ``name`` not passing for either protocol: a
        killed node's TTL checks expire within ``TTL`` (no one deregisters it)."""
        for node in self:
            if node.name != name and node.alive():
                node.wait_health(
                    lambda body: sees_down(body, name), TTL + 3.0, f"{name} not passing"
                )

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.owns_cluster:
                self.cluster.close()


def sees_passing(body: Mapping[str, Any], names: Iterable[str]) -> bool:
    consul = body.get("consul") or {}
    nodes = consul.get("nodes") or {}
    ready = bool(consul.get("registered")) and bool(consul.get("reachable"))
    return ready and all(
        all(nodes.get(name, {}).get(protocol) == "passing" for protocol in PROTOCOLS)
        for name in names
    )


def sees_down(body: Mapping[str, Any], name: str) -> bool:
    state = node_state(body, name)
    return all(state.get(protocol, "passing") != "passing" for protocol in PROTOCOLS)


def node_state(body: Mapping[str, Any], name: str) -> dict[str, str]:
    return dict(((body.get("consul") or {}).get("nodes") or {}).get(name, {}))


def build_consul_mesh(
    root: Path,
    accounts: Mapping[str, MeshAccount],
    source: Mapping[str, Any],
    tls: Mapping[str, str],
    ca_file: Path,
    *,
    cluster: ConsulCluster | None = None,
    names: Iterable[str] = tuple(NODES),
    **kwargs: Any,
) -> ConsulMesh:
    """A mesh (not started): the nodes of ``names``, each talking to its own agent of
    ``cluster`` (default: a new one the mesh owns).  ``kwargs`` as ``build_mesh``'s."""
    chosen = tuple(names)
    owned = cluster_for(chosen) if cluster is None else None
    try:
        mesh = build_mesh(
            root,
            accounts,
            source,
            tls,
            ca_file,
            mesh_class=ConsulMesh,
            names=chosen,
            cluster=cluster or owned,
            owns_cluster=owned is not None,
            **kwargs,
        )
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    assert isinstance(mesh, ConsulMesh)
    return mesh


def passing_instances(
    cluster: ConsulCluster, service: str, via: str = "mx2"
) -> list[dict[str, Any]]:
    """``?passing`` entries of ``service`` through py-consul, with the token."""
    _, entries = cluster.client(via, token=TOKEN).health.service(service, passing=True)
    return list(entries)


def all_instances(cluster: ConsulCluster, service: str, via: str = "mx2") -> list[dict[str, Any]]:
    _, entries = cluster.client(via, token=TOKEN).health.service(service)
    return list(entries)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


__all__ = ["ConsulMesh", "build_consul_mesh", "cluster_for"]
