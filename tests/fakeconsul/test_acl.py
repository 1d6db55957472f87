"""ACL tokens: precedence, errors, filtering, agent/self (§5, §6, §7 item 14)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from consul.callback import CB
from consul.exceptions import ACLDisabled, ACLPermissionDenied

from .fixtures import http_request
from .server import ConsulCluster

pytestmark = pytest.mark.integration

TOKENS: dict[str, str | None] = {
    "mgmt": None,
    "reader": "service::read,node::read",
    "imap-writer": "service:imap:write,node::read",
}
ANON_SELF = (
    "Permission denied: anonymous token lacks permission 'agent:read' on \"mx2\". The anonymous "
    "token is used implicitly when a request does not specify a token."
)


@pytest.fixture
def acl_cluster(consul_cluster_factory: Callable[..., ConsulCluster]) -> ConsulCluster:
    cluster = consul_cluster_factory(acl_tokens=TOKENS)
    mgmt = cluster.client("mx2", token="mgmt")
    mgmt.agent.service.register(
        "imap", service_id="imap-mx2", check={"ttl": "30s", "Status": "passing"}
    )
    mgmt.agent.service.register(
        "pop3", service_id="pop3-mx2", check={"ttl": "30s", "Status": "passing"}
    )
    mgmt.kv.put("secret/a", "1")
    mgmt.kv.put("secret/b", "2")
    return cluster


def get(
    cluster: ConsulCluster, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    status, _, body = http_request(cluster.url("mx2"), "GET", path, headers=headers)
    return status, body


def test_token_precedence(acl_cluster: ConsulCluster) -> None:
    bearer_mgmt = {"Authorization": "Bearer mgmt"}
    assert get(acl_cluster, "/v1/agent/self", bearer_mgmt)[0] == 200
    assert get(acl_cluster, "/v1/agent/self", {"X-Consul-Token": "mgmt"})[0] == 200
    assert get(acl_cluster, "/v1/agent/self?token=mgmt")[0] == 200
    # ?token= beats the header, the header beats Bearer
    assert get(acl_cluster, "/v1/agent/self?token=bogus", {"X-Consul-Token": "mgmt"}) == (
        403,
        b"ACL not found",
    )
    assert get(acl_cluster, "/v1/agent/self?token=mgmt", {"X-Consul-Token": "bogus"})[0] == 200
    assert get(acl_cluster, "/v1/agent/self", {"X-Consul-Token": "bogus", **bearer_mgmt}) == (
        403,
        b"ACL not found",
    )
    assert (
        get(
            acl_cluster,
            "/v1/agent/self",
            {"X-Consul-Token": "mgmt", "Authorization": "Bearer bogus"},
        )[0]
        == 200
    )


def test_unknown_token_is_403_acl_not_found(acl_cluster: ConsulCluster) -> None:
    c = acl_cluster.client("mx2", token="bogus")
    with pytest.raises(ACLPermissionDenied, match="ACL not found"):
        c.health.service("imap")
    with pytest.raises(ACLPermissionDenied, match="ACL not found"):
        c.agent.service.register("x")


def test_agent_self_needs_agent_read_and_py_consul_sends_no_token(
    acl_cluster: ConsulCluster,
) -> None:
    assert get(acl_cluster, "/v1/agent/self") == (403, ANON_SELF.encode())
    c = acl_cluster.client("mx2", token="mgmt")
    with pytest.raises(ACLPermissionDenied, match="anonymous token lacks permission 'agent:read'"):
        c.agent.self()  # py-consul 1.8.0 does not send the configured token here
    me = c.http.get(CB.json(), "/v1/agent/self", headers=c.prepare_headers())
    assert me["Config"]["NodeName"] == "mx2"


def test_default_token_serves_tokenless_calls(
    consul_cluster_factory: Callable[..., ConsulCluster],
) -> None:
    cluster = consul_cluster_factory(acl_tokens=TOKENS, acl_default_token="mgmt")
    assert cluster.client("mx2").agent.self()["Config"]["NodeName"] == "mx2"


def test_writes_denied_with_accessor_in_text(acl_cluster: ConsulCluster) -> None:
    with pytest.raises(
        ACLPermissionDenied, match="anonymous token lacks permission 'service:write'"
    ):
        acl_cluster.client("mx2").agent.service.register("imap")
    reader = acl_cluster.client("mx2", token="reader")
    with pytest.raises(
        ACLPermissionDenied,
        match=r"token with AccessorID '[0-9a-f-]{36}' lacks permission 'service:write' on \"imap\"",
    ):
        reader.agent.service.register("imap")
    writer = acl_cluster.client("mx2", token="imap-writer")
    assert writer.agent.service.register("imap", service_id="imap-2")
    assert writer.agent.service.maintenance("imap-mx2", True)
    with pytest.raises(ACLPermissionDenied, match="Permission denied"):
        writer.agent.service.deregister("pop3-mx2")
    with pytest.raises(ACLPermissionDenied, match="'node:write'"):
        writer.agent.maintenance(True)


def test_catalog_and_health_reads_are_filtered_not_refused(acl_cluster: ConsulCluster) -> None:
    anon = acl_cluster.client("mx2")
    assert anon.health.service("imap", passing=True)[1] == []
    assert anon.catalog.service("imap")[1] == []
    assert anon.catalog.node("mx2")[1] is None
    assert anon.agent.services() == {}
    status, headers, body = http_request(acl_cluster.url("mx2"), "GET", "/v1/health/service/imap")
    assert (status, body) == (200, b"[]")
    assert "x-consul-results-filtered-by-acls" not in headers  # not for the anonymous token
    writer = acl_cluster.client("mx2", token="imap-writer")
    assert len(writer.health.service("imap")[1]) == 1
    assert writer.health.service("pop3")[1] == []
    assert set(writer.catalog.node("mx2")[1]["Services"]) == {"imap-mx2"}
    assert set(writer.agent.services()) == {"imap-mx2"}
    _, headers, _ = http_request(
        acl_cluster.url("mx2"),
        "GET",
        "/v1/health/service/pop3",
        headers={"X-Consul-Token": "imap-writer"},
    )
    assert headers["x-consul-results-filtered-by-acls"] == "true"
    reader = acl_cluster.client("mx3", token="reader")
    assert len(reader.health.service("pop3", passing=True)[1]) == 1


def test_kv_denied_and_recurse_filtered(acl_cluster: ConsulCluster) -> None:
    with pytest.raises(ACLPermissionDenied, match="'key:read' on \"secret/a\""):
        acl_cluster.client("mx2").kv.get("secret/a")
    with pytest.raises(ACLPermissionDenied, match="'key:write'"):
        acl_cluster.client("mx2", token="reader").kv.put("secret/a", "x")
    assert acl_cluster.client("mx2", token="reader").kv.get("secret/", recurse=True)[1] is None
    _, entries = acl_cluster.client("mx2", token="mgmt").kv.get("secret/", recurse=True)
    assert [e["Key"] for e in entries] == ["secret/a", "secret/b"]


def test_policy_headers_and_disabled_acls(
    consul_cluster: ConsulCluster, acl_cluster: ConsulCluster
) -> None:
    _, headers, _ = http_request(acl_cluster.url("mx2"), "GET", "/v1/status/leader")
    assert headers["x-consul-default-acl-policy"] == "deny"
    status, headers, _ = http_request(
        consul_cluster.url("mx2"), "GET", "/v1/agent/self?token=bogus"
    )
    assert (status, headers["x-consul-default-acl-policy"]) == (200, "allow")  # tokens ignored
    with pytest.raises(ACLDisabled, match="ACL support disabled"):
        consul_cluster.client("mx2", token="x").acl.token.read_self()
    info = acl_cluster.client("mx2", token="mgmt").acl.token.read_self()
    assert info["SecretID"] == "mgmt"


def test_status_endpoints_need_no_token(acl_cluster: ConsulCluster) -> None:
    c = acl_cluster.client("mx2")
    assert c.status.leader() == "127.0.0.1:8300"
    assert c.status.peers() == ["127.0.0.1:8300"]
