"""Meshes in Consul mode: the nodes of ``nodes.py``, each with its own agent of one fake Consul.

``tests/fakeconsul`` runs in the test process: a ``ConsulCluster`` whose agents (one per
node, each on its node's own address, e.g. ``127.0.0.2:<port>``) share one catalog, with ACLs
on (the anonymous token may do nothing, so every call must carry ``TOKEN``).  Each meshproxy
node gets ``[mesh] consul`` = its own agent's URL, no ``[mesh.peers]``, a short TTL check
(``TTL``), no TCP check (a TCP probe would show up as a node-to-node connection in the logs
these tests read), implicit-TLS listeners too (four services per node), and a ``[health]``
endpoint on its own address.

``ConsulNode.proxy_hostname`` is the ``PROXY_HOSTNAME`` a node starts with (default: its
name); the identity test starts one whose name comes only from its agent.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fakeconsul.server import ConsulCluster
from integration.clients import LineClient
from integration.daemon import deep_merge, to_toml

from .nodes import (
    NODES,
    PROBE_IP,
    START_TIMEOUT,
    Mesh,
    MeshAccount,
    Node,
    base_config,
    common_free_port,
    node_config,
    write_key,
)

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


class ConsulNode(Node):
    """A mesh node in Consul mode, with a health endpoint."""

    def __init__(
        self, *args: Any, health_port: int, proxy_hostname: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.health_port = health_port
        self.proxy_hostname = proxy_hostname or self.name

    def start(self) -> None:
        self.config_path.write_text(to_toml(self.config))
        env = {
            k: v for k, v in os.environ.items() if k not in ("PROXY_HOSTNAME", "CONSUL_HTTP_TOKEN")
        }
        env.update(PYTHONUNBUFFERED="1", PROXY_HOSTNAME=self.proxy_hostname)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meshproxy", "serve", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop(check=False)
            raise

    def _wait_ready(self) -> None:
        """Every listener greets (the implicit-TLS ones over TLS), probed from PROBE_IP."""
        deadline = time.monotonic() + START_TIMEOUT
        for address, tls in self.listeners():
            host, _, port = address.rpartition(":")
            context = self.client_context() if tls else None
            while not self._greets(host, int(port), context):
                if not self.alive() or time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready on {address}:\n{self.log()}")
                time.sleep(0.05)

    @staticmethod
    def _greets(host: str, port: int, context: ssl.SSLContext | None) -> bool:
        try:
            with LineClient(host, port, tls=context, timeout=2, source=PROBE_IP) as client:
                return client.readline().startswith((b"* OK", b"+OK"))
        except (OSError, TimeoutError, EOFError):
            return False

    def port_for(self, kind: str) -> int:
        """The port of the first listener of ``kind`` (imap, imaps, pop3, pop3s)."""
        proto, key = (kind[:-1], "tls_listen") if kind.endswith("s") else (kind, "listen")
        return int(self.config[proto][key][0].rpartition(":")[2])

    def terminate(self) -> None:
        """SIGTERM without waiting (the drain tests watch what happens meanwhile)."""
        assert self.proc is not None
        self.proc.terminate()

    # -- the health endpoint ---------------------------------------------------------------

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://{self.host}:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def health(self) -> dict[str, Any]:
        _, body = self.get("/health")
        return dict(json.loads(body))

    def wait_health(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = CONVERGE_TIMEOUT,
        what: str = "",
    ) -> dict[str, Any]:
        """The first /health body ``predicate`` accepts (bounded)."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                body = self.health()
            except OSError:
                body = {}
            if body and predicate(body):
                return body
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name}: /health never showed {what or predicate}: {body}\n{self.log()}"
        )


class ConsulMesh(Mesh):
    """A mesh whose nodes find each other through ``cluster``."""

    cluster: ConsulCluster

    def __getitem__(self, name: str) -> ConsulNode:
        node = self.nodes[name]
        assert isinstance(node, ConsulNode)
        return node

    def consul_nodes(self) -> list[ConsulNode]:
        return [self[name] for name in self.nodes]

    def wait_converged(
        self, names: Iterable[str] | None = None, timeout: float = CONVERGE_TIMEOUT
    ) -> None:
        """Every running node registered, and every one of them sees ``names`` passing."""
        wanted = list(names if names is not None else self.nodes)
        for node in self.consul_nodes():
            if node.alive():
                node.wait_health(
                    lambda body: sees_passing(body, wanted), timeout, f"{wanted} passing"
                )

    def start(self) -> None:
        super().start()
        self.wait_converged()


def sees_passing(body: Mapping[str, Any], names: Iterable[str]) -> bool:
    consul = body.get("consul") or {}
    nodes = consul.get("nodes") or {}
    ready = bool(consul.get("registered")) and bool(consul.get("reachable"))
    return ready and all(
        all(nodes.get(name, {}).get(protocol) == "passing" for protocol in PROTOCOLS)
        for name in names
    )


def node_state(body: Mapping[str, Any], name: str) -> dict[str, str]:
    return dict(((body.get("consul") or {}).get("nodes") or {}).get(name, {}))


def build_consul_mesh(
    root: Path,
    accounts: Mapping[str, MeshAccount],
    source: Mapping[str, Any],
    tls: Mapping[str, str],
    ca_file: Path,
    cluster: ConsulCluster,
    *,
    names: Iterable[str] = tuple(NODES),
    overrides: Mapping[str, Any] | None = None,
    hostnames: Mapping[str, str] | None = None,
) -> ConsulMesh:
    """A mesh (not started): the nodes of ``names``, each talking to its own agent."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = write_key(root / "mesh.key")
    mesh = ConsulMesh(root, accounts, key_file, ca_file)
    mesh.cluster = cluster
    chosen = list(names)
    addresses = [NODES[name] for name in chosen]
    kinds = ("imap", "pop3", "imaps", "pop3s", "health")
    ports = {kind: common_free_port(addresses) for kind in kinds}
    base = base_config(source, key_file, tls, ca_file)
    del base["mesh"]["peers"]
    base = deep_merge(base, {"mesh": CONSUL_MESH})
    base = deep_merge(base, overrides or {})
    for name in chosen:
        address = NODES[name]
        config = node_config(base, address, ports, {})
        config["imap"]["tls_listen"] = [f"{address}:{ports['imaps']}"]
        config["pop3"]["tls_listen"] = [f"{address}:{ports['pop3s']}"]
        config["mesh"]["consul"] = cluster.url(name)
        config["health"] = {"listen": f"{address}:{ports['health']}"}
        mesh.nodes[name] = ConsulNode(
            name,
            address,
            config,
            root / name,
            ca_file,
            health_port=ports["health"],
            proxy_hostname=(hostnames or {}).get(name, ""),
        )
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


__all__ = ["ConsulMesh", "ConsulNode", "build_consul_mesh", "cluster_for"]
