"""Health and catalog reads, several agents sharing one catalog (§2; §7 items 9, 10, 13, 16)."""

from __future__ import annotations

import consul
import pytest
from consul.exceptions import BadRequest

from .fixtures import http_request
from .server import ConsulCluster

pytestmark = pytest.mark.integration

PASSING = {"ttl": "30s", "Status": "passing"}


def register_mesh(cluster: ConsulCluster) -> None:
    for node in ("mx2", "mx3", "mx4"):
        c = cluster.client(node)
        c.agent.service.register(
            "imap",
            service_id=f"imap-{node}",
            port=1143,
            tags=["mesh", node],
            check={**PASSING, "CheckID": f"imap-{node}:ttl"},
        )


def nodes_of(entries: list[dict[str, object]]) -> list[str]:
    return sorted(str(e["Node"]["Node"]) for e in entries)  # type: ignore[index]


def test_every_agent_sees_the_shared_catalog(consul_cluster: ConsulCluster) -> None:
    register_mesh(consul_cluster)
    for node in ("mx2", "mx3", "mx4"):
        c = consul_cluster.client(node)
        _, entries = c.health.service("imap", passing=True)
        assert nodes_of(entries) == ["mx2", "mx3", "mx4"]
        assert list(c.agent.services()) == [f"imap-{node}"]  # the local view is the node's own
    entry = next(
        e
        for e in consul_cluster.client("mx2").health.service("imap")[1]
        if e["Node"]["Node"] == "mx3"
    )
    assert entry["Node"]["Address"] == "127.0.0.3"
    assert entry["Node"]["TaggedAddresses"]["lan_ipv4"] == "127.0.0.3"
    assert [x["CheckID"] for x in entry["Checks"]] == ["serfHealth", "imap-mx3:ttl"]
    serf = entry["Checks"][0]
    assert (serf["Status"], serf["Output"], serf["Name"]) == (
        "passing",
        "Agent alive and reachable",
        "Serf Health Status",
    )
    assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
    assert entry["Service"]["Proxy"] == {"Mode": "", "MeshGateway": {}, "Expose": {}}


def test_passing_counts_warning_as_failing(consul_cluster: ConsulCluster) -> None:
    register_mesh(consul_cluster)
    consul_cluster.client("mx3").agent.check.ttl_warn("imap-mx3:ttl", "slow")
    c = consul_cluster.client("mx2")
    assert nodes_of(c.health.service("imap", passing=True)[1]) == ["mx2", "mx4"]
    assert nodes_of(c.health.service("imap")[1]) == ["mx2", "mx3", "mx4"]


def test_passing_honours_node_checks(consul_cluster: ConsulCluster) -> None:
    register_mesh(consul_cluster)
    consul_cluster.set_node_health("mx4", "critical")
    c = consul_cluster.client("mx2")
    assert nodes_of(c.health.service("imap", passing=True)[1]) == ["mx2", "mx3"]
    entry = next(e for e in c.health.service("imap")[1] if e["Node"]["Node"] == "mx4")
    assert entry["Checks"][0]["Output"] == "Agent not live or unreachable"
    consul_cluster.set_node_health("mx4", "passing")
    assert nodes_of(c.health.service("imap", passing=True)[1]) == ["mx2", "mx3", "mx4"]


@pytest.mark.parametrize(
    ("value", "filtered"), [("", True), ("1", True), ("true", True), ("false", False)]
)
def test_passing_parameter_values(
    consul_cluster: ConsulCluster, value: str, filtered: bool
) -> None:
    c = consul_cluster.client("mx2")
    c.agent.service.register("imap", check=consul.Check.ttl("30s"))  # critical
    status, _, body = http_request(
        consul_cluster.url("mx2"), "GET", f"/v1/health/service/imap?passing={value}"
    )
    assert status == 200
    assert (body == b"[]") is filtered


def test_bad_passing_value_is_400(consul_cluster: ConsulCluster) -> None:
    status, _, body = http_request(
        consul_cluster.url("mx2"), "GET", "/v1/health/service/imap?passing=maybe"
    )
    assert (status, body) == (400, b"Invalid value for ?passing")


def test_tags_must_all_match(consul_cluster: ConsulCluster) -> None:
    register_mesh(consul_cluster)
    c = consul_cluster.client("mx2")
    assert nodes_of(c.health.service("imap", tag="mesh")[1]) == ["mx2", "mx3", "mx4"]
    assert nodes_of(c.health.service("imap", tag=["mesh", "mx3"])[1]) == ["mx3"]
    assert c.health.service("imap", tag=["mx2", "mx3"])[1] == []
    assert [r["Node"] for r in c.catalog.service("imap", tag="mx4")[1]] == ["mx4"]


def test_unknown_service_is_200_empty_with_index(consul_cluster: ConsulCluster) -> None:
    c = consul_cluster.client("mx2")
    index, entries = c.health.service("nothing")
    assert entries == []
    assert int(index) >= 1
    index, rows = c.catalog.service("nothing")
    assert rows == []
    for path in ("/v1/health/service/nothing", "/v1/catalog/service/nothing"):
        status, headers, body = http_request(consul_cluster.url("mx2"), "GET", path)
        assert (status, body) == (200, b"[]")
        assert int(headers["x-consul-index"]) >= 1


def test_unknown_node_is_200_null(consul_cluster: ConsulCluster) -> None:
    index, data = consul_cluster.client("mx2").catalog.node("mx9")
    assert data is None
    assert int(index) >= 1
    status, headers, body = http_request(consul_cluster.url("mx2"), "GET", "/v1/catalog/node/mx9")
    assert (status, body) == (200, b"null")
    assert "x-consul-index" in headers


def test_catalog_service_does_not_filter_on_health(consul_cluster: ConsulCluster) -> None:
    register_mesh(consul_cluster)
    consul_cluster.set_node_health("mx3", "critical")
    consul_cluster.client("mx4").agent.service.maintenance("imap-mx4", True)
    _, rows = consul_cluster.client("mx2").catalog.service("imap")
    assert sorted(r["Node"] for r in rows) == ["mx2", "mx3", "mx4"]
    row = next(r for r in rows if r["Node"] == "mx3")
    assert row["ServiceID"] == "imap-mx3"
    assert row["ServicePort"] == 1143
    assert row["Address"] == "127.0.0.3"
    assert row["ServiceMeta"] == {}
    assert row["ServiceTags"] == ["mesh", "mx3"]


def test_catalog_node_services_keyed_by_id(consul_cluster: ConsulCluster) -> None:
    c = consul_cluster.client("mx3")
    c.agent.service.register("imap", service_id="imap-mx3", port=1143)
    c.agent.service.register("imap", service_id="imap-mx3-alt", port=2143)
    _, data = consul_cluster.client("mx2").catalog.node("mx3")
    assert data["Node"]["Node"] == "mx3"
    assert data["Node"]["Address"] == "127.0.0.3"
    assert set(data["Services"]) == {"imap-mx3", "imap-mx3-alt"}
    assert data["Services"]["imap-mx3-alt"]["Port"] == 2143
    assert data["Services"]["imap-mx3"]["Service"] == "imap"


def test_catalog_services_and_nodes(consul_cluster: ConsulCluster) -> None:
    register_mesh(consul_cluster)
    c = consul_cluster.client("mx2")
    _, services = c.catalog.services()
    assert sorted(services["imap"]) == ["mesh", "mx2", "mx3", "mx4"]
    _, nodes = c.catalog.nodes()
    assert sorted((n["Node"], n["Address"]) for n in nodes) == [
        ("mx2", "127.0.0.2"),
        ("mx3", "127.0.0.3"),
        ("mx4", "127.0.0.4"),
    ]


def test_read_headers(consul_cluster: ConsulCluster) -> None:
    status, headers, _ = http_request(consul_cluster.url("mx2"), "GET", "/v1/health/service/imap")
    assert status == 200
    assert headers["x-consul-knownleader"] == "true"
    assert headers["x-consul-lastcontact"] == "0"
    assert headers["x-consul-effective-consistency"] == "leader"
    assert headers["x-consul-default-acl-policy"] == "allow"
    _, headers, _ = http_request(consul_cluster.url("mx2"), "GET", "/v1/catalog/service/imap?stale")
    assert headers["x-consul-effective-consistency"] == "stale"


def test_stale_with_consistent_is_400(consul_cluster: ConsulCluster) -> None:
    status, _, body = http_request(
        consul_cluster.url("mx2"), "GET", "/v1/catalog/service/imap?stale&consistent"
    )
    assert (status, body) == (
        400,
        b"Cannot specify ?stale with ?consistent, conflicting semantics.",
    )


def test_unknown_datacenter(consul_cluster: ConsulCluster) -> None:
    with pytest.raises(consul.ConsulException, match="500 No path to datacenter"):
        consul_cluster.client("mx2").catalog.service("imap", dc="dc9")


def test_bad_index_and_wait_are_400(consul_cluster: ConsulCluster) -> None:
    c = consul_cluster.client("mx2")
    with pytest.raises(BadRequest, match="Invalid wait time"):
        c.health.service("imap", index="1", wait="soon")
    url = consul_cluster.url("mx2")
    assert http_request(url, "GET", "/v1/health/service/imap?index=abc")[::2] == (
        400,
        b"Invalid index",
    )
