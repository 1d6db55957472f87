"""Consul mode over time: a killed node, SIGTERM (drain, maintenance, deregistration), Consul
stopped and restarted under a running mesh, and a node named only by its agent.

Every test leaves the mesh as it found it (nodes restarted, Consul up, all passing).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fakeconsul.server import ConsulCluster

from .conftest import MeshFactory
from .consul_nodes import (
    CONSUL_MESH,
    TTL,
    ConsulMesh,
    all_instances,
    cluster_for,
    node_state,
    passing_instances,
    wait_until,
)
from .nodes import Node, imap_login, login_reply, materialise, mesh_account, userdb_source
from .test_consul_mesh import PROMPT

pytestmark = pytest.mark.mesh

DRAIN = 4.0
RECOVERY = 6.0
"""Seconds after Consul's restart by which every node is registered and sees every node
(the retry backoff is capped at 3 s)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[ConsulCluster]:
    fake = cluster_for()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def life_mesh(mesh_factory: MeshFactory, cluster: ConsulCluster) -> Iterator[ConsulMesh]:
    """mx3 starts with PROXY_HOSTNAME=box3: only its agent calls it mx3."""
    folder = mesh_factory.folder("consul-life")
    accounts = {f"c{n}": mesh_account(f"c{n}", f"mx{n}") for n in (2, 3, 4)}
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    mesh = mesh_factory.start(
        folder,
        accounts,
        source,
        directory="consul",
        cluster=cluster,
        overrides={"mesh": {"drain_timeout": DRAIN}},
        hostnames={"mx3": "box3"},
    )
    assert isinstance(mesh, ConsulMesh)
    yield mesh
    mesh_factory.stop(mesh)


def refused_fast(node: Node, login: str, password: str) -> None:
    reply, took = login_reply(node, login, password)
    assert reply.startswith(b"l1 NO [UNAVAILABLE]"), reply
    assert took < PROMPT, f"refusal took {took:.2f} s"


# -- identity ----------------------------------------------------------------------------------


def test_a_node_named_only_by_its_agent_serves_its_accounts(life_mesh: ConsulMesh) -> None:
    mesh = life_mesh
    node = mesh["mx3"]
    body = node.health()
    assert body["node"] == "mx3"
    assert "box3" in body["names"]
    account = mesh.account("c3")
    offsets = mesh.offsets()
    with imap_login(node, account) as client:
        assert client.select("INBOX")[0] == "OK"
    node.wait_summary(offsets["mx3"], user=account.login, decision="local")
    with imap_login(mesh["mx2"], account) as client:
        assert client.select("INBOX")[0] == "OK"
    front = mesh["mx2"].wait_summary(offsets["mx2"], user=account.login)
    assert front["decision"] == "peer:mx3", front


# -- a killed node -----------------------------------------------------------------------------


def test_a_killed_node_turns_critical_and_is_refused(life_mesh: ConsulMesh) -> None:
    mesh = life_mesh
    victim, front = mesh["mx4"], mesh["mx2"]
    account = mesh.account("c4")
    victim.kill()
    killed = time.monotonic()
    try:
        front.wait_health(
            lambda body: node_state(body, "mx4").get("imap", "passing") != "passing",
            TTL + 3.0,
            "mx4 critical",
        )
        assert time.monotonic() - killed < TTL + 2.0
        assert "TTL expired" in node_state(front.health(), "mx4")["imap"]
        offsets = mesh.offsets()
        refused_fast(front, account.login, account.password)
        front.wait_for_log(
            r"mailhost mx4 unreachable: mx4 not passing in Consul", since=offsets["mx2"]
        )
    finally:
        mesh.restart(victim)
    with imap_login(front, account) as client:
        assert client.select("INBOX")[0] == "OK"


# -- SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_drains_in_maintenance_then_deregisters(life_mesh: ConsulMesh) -> None:
    """mx4 relays a session for c3 when SIGTERM comes: its services go into maintenance (mx2
    stops routing to it at once), the session goes on until the client leaves, then mx4
    deregisters and exits."""
    mesh, cluster = life_mesh, life_mesh.cluster
    node, front = mesh["mx4"], mesh["mx2"]
    since = node.log_size()
    try:
        with imap_login(node, mesh.account("c3")) as client:
            assert client.select("INBOX")[0] == "OK"
            node.terminate()
            wait_until(lambda: _in_maintenance(cluster, "mx4"), 3.0, "mx4 in maintenance")
            front.wait_health(
                lambda body: "maintenance" in node_state(body, "mx4").get("imap", ""), 3.0
            )
            refused_fast(front, mesh.account("c4").login, mesh.account("c4").password)
            assert node.alive(), "mx4 did not wait for its session"
            assert client.noop()[0] == "OK"  # the relayed session still works
        assert node.proc is not None
        assert node.proc.wait(DRAIN + 5) == 0
        log = node.log_since(since)
        services = (
            r"meshproxy-imap-mx4, meshproxy-pop3-mx4, meshproxy-imaps-mx4, meshproxy-pop3s-mx4"
        )
        assert re.search(rf"Consul maintenance on: {services}", log), log
        assert "drained: every session ended" in log
        assert re.search(rf"Consul deregistered: {services}", log), log
        for kind in ("imap", "imaps", "pop3", "pop3s"):
            nodes = {e["Node"]["Node"] for e in all_instances(cluster, f"meshproxy-{kind}")}
            assert "mx4" not in nodes
        front.wait_health(lambda body: "mx4" not in body["consul"]["nodes"], 3.0, "mx4 gone")
        refused_fast(front, mesh.account("c4").login, mesh.account("c4").password)
        front.wait_for_log(r"mailhost mx4 unreachable: mx4 left the Consul catalog", since=0)
    finally:
        mesh.restart(node)


def _in_maintenance(cluster: ConsulCluster, node: str) -> bool:
    for entry in all_instances(cluster, "meshproxy-imap"):
        if entry["Node"]["Node"] == node:
            return any(c["CheckID"].startswith("_service_maintenance:") for c in entry["Checks"])
    return False


# -- Consul stopped and restarted --------------------------------------------------------------


def test_consul_down_and_back(life_mesh: ConsulMesh) -> None:
    mesh, cluster = life_mesh, life_mesh.cluster
    front = mesh["mx2"]
    offsets = mesh.offsets()
    cluster.stop()
    try:
        front.wait_health(lambda body: body["status"] == "degraded", 5.0, "degraded")
        status, metrics = front.get("/metrics")
        assert status == 200
        assert "\nmeshproxy_consul_up 0\n" in metrics.decode()
        for _ in range(3):  # known peers keep working from the last catalog
            with imap_login(front, mesh.account("c3")) as client:
                assert client.select("INBOX")[0] == "OK"
        time.sleep(TTL)  # several retry rounds (the log must not grow with them)
        log = front.log_since(offsets["mx2"])
        assert len(re.findall(r"Consul at \S+ unreachable", log)) == 1, log
        assert len(re.findall(r"Consul agent at \S+ unreachable", log)) <= 1, log
        # meanwhile the catalog changes: Consul comes back with its data lost (index reset)
    finally:
        restarted = time.monotonic()
        cluster.start(keep_state=False)
    mesh.wait_converged()
    took = time.monotonic() - restarted
    assert took < RECOVERY, f"the mesh took {took:.1f} s to register and see everyone again"
    for node in mesh:
        assert node.health()["status"] == "ok"
    log = front.log_since(offsets["mx2"])
    assert re.search(r"Consul catalog reachable again after [\d.]+ s", log), log
    assert re.search(r"Consul agent forgot meshproxy-(imap|pop3)-mx2: registering again", log), log
    assert len(passing_instances(cluster, "meshproxy-imap")) == 3
    with imap_login(front, mesh.account("c4")) as client:
        assert client.select("INBOX")[0] == "OK"


def test_an_index_that_goes_backwards_is_reset(life_mesh: ConsulMesh) -> None:
    """A snapshot restore: every index drops.  A blocked query answers at once with the lower
    index; one sent just after the drop waits out its ``wait`` (as with a real Consul), then
    answers with the lower index.  Either way the watch resets and goes on."""
    mesh, cluster = life_mesh, life_mesh.cluster
    for node in mesh:  # every watch has read since Consul's last restart
        node.wait_health(lambda body: body["consul"]["index"].get("imap", 0) > 1, what="an index")
    offsets = mesh.offsets()
    cluster.restore_index(1)
    for node in mesh:
        node.wait_for_log(
            r"Consul index of meshproxy-imap went back \(\d+ < \d+\): reset",
            since=offsets[node.name],
            timeout=CONSUL_MESH["consul_wait"] + 5.0,
        )
    cluster.set_node_health("mx3", "critical")  # later changes still arrive
    try:
        mesh["mx2"].wait_health(lambda body: node_state(body, "mx3").get("imap") != "passing", 3.0)
    finally:
        cluster.set_node_health("mx3", "passing")
    mesh.wait_converged()


def test_consul_down_at_start_serves_local_and_refuses_remote(life_mesh: ConsulMesh) -> None:
    """A node started while its agent is down: local accounts work, remote ones are refused
    until the catalog arrives; then it registers and routes."""
    mesh, cluster = life_mesh, life_mesh.cluster
    node = mesh["mx2"]
    node.stop()
    cluster.stop_agent("mx2", mark_critical=False)
    try:
        node.start()
        body = node.health()
        assert body["status"] == "degraded"
        assert body["consul"]["catalog_loaded"] is False
        with imap_login(node, mesh.account("c2")) as client:
            assert client.select("INBOX")[0] == "OK"
        refused_fast(node, mesh.account("c3").login, mesh.account("c3").password)
        node.wait_for_log(r"catalog has not been loaded yet", since=0)
    finally:
        cluster.start_agent("mx2")
    mesh.wait_converged()
    with imap_login(node, mesh.account("c3")) as client:
        assert client.select("INBOX")[0] == "OK"
