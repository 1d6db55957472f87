"""The mesh in Consul mode: registration, health, routing through the cached catalog, ACLs,
a node marked critical, and a catalog that puts a peer on this node's own address.

Three nodes (mx2, mx3, mx4), each with its own agent of one fake Consul that requires the ACL
token, plus an agent for a node ``mx9`` where no meshproxy runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import consul
import consul.callback
import pytest
from fakeconsul.server import ConsulCluster
from integration.mail import append, fetch_all, message, message_id

from .conftest import MeshFactory, standard_accounts
from .consul_nodes import (
    TOKEN,
    ConsulMesh,
    all_instances,
    cluster_for,
    node_state,
    passing_instances,
    wait_until,
)
from .nodes import imap_login, login_reply, materialise, mesh_account, pop3_login, userdb_source

pytestmark = pytest.mark.mesh

PROMPT = 1.0
"""Seconds within which a refusal for an unhealthy peer must come (no dial, no delay)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[ConsulCluster]:
    fake = cluster_for(extra={"mx9": "127.0.0.9"})
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def consul_mesh(mesh_factory: MeshFactory, cluster: ConsulCluster) -> Iterator[ConsulMesh]:
    folder = mesh_factory.folder("consul")
    accounts = standard_accounts(userdb=True)
    accounts["loop9"] = mesh_account("loop9", "mx9")
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    mesh = mesh_factory.start(folder, accounts, source, directory="consul", cluster=cluster)
    assert isinstance(mesh, ConsulMesh)
    yield mesh
    mesh_factory.stop(mesh)


# -- registration and health -------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["imap", "imaps", "pop3", "pop3s"])
def test_every_node_registers_its_listeners_passing(consul_mesh: ConsulMesh, proto: str) -> None:
    entries = passing_instances(consul_mesh.cluster, f"meshproxy-{proto}")
    by_node = {entry["Node"]["Node"]: entry for entry in entries}
    assert sorted(by_node) == ["mx2", "mx3", "mx4"]
    for node in consul_mesh:
        service = by_node[node.name]["Service"]
        assert service["ID"] == f"meshproxy-{proto}-{node.name}"
        assert (service["Address"], service["Port"]) == (node.host, node.port(proto))
        assert service["Meta"] == {"version": "0.1.0", "node": node.name, "mesh_protocol": "1"}
        checks = {check["CheckID"]: check["Status"] for check in by_node[node.name]["Checks"]}
        assert checks == {"serfHealth": "passing", f"meshproxy-{proto}-{node.name}:ttl": "passing"}


def test_health_and_metrics_endpoints(consul_mesh: ConsulMesh) -> None:
    node = consul_mesh["mx3"]
    body = node.health()
    assert body["status"] == "ok"
    assert body["node"] == "mx3"
    assert body["directory"] == "consul"
    info = body["consul"]
    assert info["reachable"] is True
    assert info["agent_node"] == "mx3"  # agent/self answered: the token was sent
    assert info["registered"] is True
    assert info["catalog_loaded"] is True
    assert sorted(info["services"]) == [
        f"meshproxy-{kind}-mx3" for kind in ("imap", "imaps", "pop3", "pop3s")
    ]
    assert info["nodes"]["mx2"] == {"imap": "passing", "pop3": "passing"}
    status, metrics = node.get("/metrics")
    assert status == 200
    text = metrics.decode()
    assert 'meshproxy_info{version="0.1.0",node="mx3"} 1' in text
    assert "\nmeshproxy_consul_up 1\n" in text
    assert "\nmeshproxy_consul_registered 1\n" in text
    assert 'meshproxy_consul_instances{state="passing"} 6' in text
    assert node.get("/nothing")[0] == 404


def test_the_test_consul_requires_the_token(consul_mesh: ConsulMesh) -> None:
    """py-consul's own agent.self() sends no token: refused here, so the nodes' identities
    (agent_node above) prove meshproxy sends it."""
    with pytest.raises(consul.ACLPermissionDenied):
        consul_mesh.cluster.client("mx2").agent.self()
    with pytest.raises(consul.ACLPermissionDenied):
        consul_mesh.cluster.client("mx2", token="wrong").agent.self()
    client = consul_mesh.cluster.client("mx2", token=TOKEN)
    with pytest.raises(consul.ACLPermissionDenied):  # even with a token configured
        client.agent.self()
    data = client.http.get(
        consul.callback.CB.json(), "/v1/agent/self", headers=client.prepare_headers()
    )
    assert data["Config"]["NodeName"] == "mx2"


# -- routing through the catalog ---------------------------------------------------------------


@pytest.mark.parametrize("home", ["mx2", "mx3", "mx4"])
def test_append_through_one_node_fetch_through_another(consul_mesh: ConsulMesh, home: str) -> None:
    account = consul_mesh.account(f"a{home[2:]}")
    for via_append, via_fetch in (("mx2", "mx3"), ("mx3", "mx4"), ("mx4", "mx2")):
        raw = message(f"{home} appended via {via_append}, fetched via {via_fetch} (Consul)")
        with imap_login(consul_mesh[via_append], account) as client:
            append(client, raw)
        with imap_login(consul_mesh[via_fetch], account) as client:
            found = {message_id(m): m for m in fetch_all(client)}
        assert found[message_id(raw)] == raw


def test_pop3_through_a_non_home_node(consul_mesh: ConsulMesh) -> None:
    account = consul_mesh.account("a4")
    offsets = consul_mesh.offsets()
    with imap_login(consul_mesh["mx4"], account) as client:
        append(client, message("for POP3 through mx2"))
    with pop3_login(consul_mesh["mx2"], account) as client:
        assert client.stat()[0] >= 1
    summary = consul_mesh["mx2"].wait_summary(offsets["mx2"], listener="pop3", user=account.login)
    assert summary["decision"] == "peer:mx4", summary
    inner = consul_mesh["mx4"].wait_summary(offsets["mx4"], listener="pop3", decision="local")
    assert inner["origin"].startswith("mx2/"), inner


def test_a_node_marked_critical_is_refused_at_once(consul_mesh: ConsulMesh) -> None:
    mesh, cluster = consul_mesh, consul_mesh.cluster
    account = mesh.account("a3")
    front, home = mesh["mx2"], mesh["mx3"]
    offsets = mesh.offsets()
    cluster.set_node_health("mx3", "critical", "Agent not live or unreachable")
    try:
        marked = time.monotonic()
        front.wait_health(
            lambda body: node_state(body, "mx3").get("imap", "passing") != "passing", 2.0
        )
        noticed = time.monotonic() - marked
        for proto, refusal in (("imap", b"l1 NO [UNAVAILABLE]"), ("pop3", b"-ERR [SYS/TEMP]")):
            reply, took = login_reply(front, account.login, account.password, proto)
            assert reply.startswith(refusal), reply
            assert took < PROMPT, f"{proto} refusal took {took:.2f} s"
        assert noticed < 2.0
        front.wait_for_log(
            r"routing failure: mailhost mx3 unreachable: mx3 not passing in Consul: "
            r"check .Serf Health",
            since=offsets["mx2"],
        )
        assert home.alive()
        assert mesh.mesh_sessions(offsets)["mx3"] == [], "mx3 was dialled"
        # other accounts are unaffected
        with imap_login(front, mesh.account("a4")) as client:
            assert client.select("INBOX")[0] == "OK"
    finally:
        cluster.set_node_health("mx3", "passing")
        mesh.wait_converged()
    with imap_login(front, account) as client:
        assert client.select("INBOX")[0] == "OK"


# -- loop guard --------------------------------------------------------------------------------


def test_a_catalog_that_maps_a_peer_to_this_nodes_address(consul_mesh: ConsulMesh) -> None:
    """mx9's agent registers meshproxy services at mx2's address: mx2 never dials itself."""
    mesh, cluster = consul_mesh, consul_mesh.cluster
    front = mesh["mx2"]
    agent = cluster.client("mx9", token=TOKEN).agent
    for proto in ("imap", "pop3"):
        agent.service.register(
            f"meshproxy-{proto}",
            service_id=f"meshproxy-{proto}-mx9",
            address=front.host,
            port=front.port(proto),
            check={"CheckID": f"meshproxy-{proto}-mx9:ttl", "TTL": "300s", "Status": "passing"},
        )
    try:
        front.wait_health(lambda body: node_state(body, "mx9").get("pop3") == "passing", what="mx9")
        account = mesh.account("loop9")
        offsets = mesh.offsets()
        for proto, refusal in (("imap", b"l1 NO [UNAVAILABLE]"), ("pop3", b"-ERR [SYS/TEMP]")):
            reply, took = login_reply(front, account.login, account.password, proto)
            assert reply.startswith(refusal), reply
            assert took < PROMPT
        front.wait_for_log(
            r"loop guard: the Consul catalog maps mx9 to this node's own address 127\.0\.0\.2",
            since=offsets["mx2"],
        )
        assert mesh.mesh_sessions(offsets)["mx2"] == [], "mx2 dialled itself"
    finally:
        for proto in ("imap", "pop3"):
            agent.service.deregister(f"meshproxy-{proto}-mx9")
    wait_until(
        lambda: (
            not any(e["Node"]["Node"] == "mx9" for e in all_instances(cluster, "meshproxy-imap"))
        ),
        5.0,
        "mx9 deregistered",
    )
