"""Error answers: plain text, status codes, routing, leadership (§1, §7 item 1)."""

from __future__ import annotations

from collections.abc import Callable

import consul
import pytest

from .fixtures import http_request
from .server import ConsulCluster

pytestmark = pytest.mark.integration


def test_unknown_path_is_404_plain_text(consul_cluster: ConsulCluster) -> None:
    status, headers, body = http_request(consul_cluster.url("mx2"), "GET", "/v1/agent/nothing")
    assert (status, body) == (404, b"Invalid URL path: not a recognized HTTP API endpoint")
    assert headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/agent/service/register", "OPTIONS,PUT"),
        ("GET", "/v1/agent/service/deregister/x", "OPTIONS,PUT"),
        ("PUT", "/v1/health/service/x", "OPTIONS,GET"),
        ("POST", "/v1/kv/x", "OPTIONS,GET,PUT,DELETE"),
    ],
)
def test_wrong_method_is_405_with_allow(
    consul_cluster: ConsulCluster, method: str, path: str, allow: str
) -> None:
    status, headers, body = http_request(consul_cluster.url("mx2"), method, path)
    assert (status, body) == (405, f"method {method} not allowed".encode())
    assert headers["allow"] == allow
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_agent_writes_answer_200_with_empty_body(consul_cluster: ConsulCluster) -> None:
    status, _, body = http_request(
        consul_cluster.url("mx2"), "PUT", "/v1/agent/service/register", '{"Name":"x"}'
    )
    assert (status, body) == (200, b"")
    status, _, body = http_request(consul_cluster.url("mx2"), "PUT", "/v1/kv/k", "v")
    assert (status, body) == (200, b"true")


def test_bad_json_body_is_400(consul_cluster: ConsulCluster) -> None:
    status, _, body = http_request(
        consul_cluster.url("mx2"), "PUT", "/v1/agent/service/register", "{nope"
    )
    assert status == 400
    assert body.startswith(b"Request decode failed: ")


def test_no_leader(consul_cluster_factory: Callable[..., ConsulCluster]) -> None:
    cluster = consul_cluster_factory({"mx2": "127.0.0.2"}, leader=False)
    c = cluster.client("mx2")
    with pytest.raises(consul.ConsulException, match="500 No cluster leader"):
        c.health.service("imap")
    with pytest.raises(consul.ConsulException, match="500 No cluster leader"):
        c.catalog.service("imap", consistency="consistent")
    with pytest.raises(consul.ConsulException, match="500 No cluster leader"):
        c.kv.put("k", "v")
    assert c.status.leader() == ""
    status, headers, body = http_request(
        cluster.url("mx2"), "GET", "/v1/catalog/service/imap?stale"
    )
    assert (status, body) == (200, b"[]")
    assert headers["x-consul-knownleader"] == "false"
    assert c.catalog.service("imap", consistency="stale")[1] == []
    assert c.agent.service.register("imap")  # agent-local
    status, headers, body = http_request(cluster.url("mx2"), "GET", "/v1/health/service/imap")
    assert (status, headers["content-type"], body) == (
        500,
        "text/plain; charset=utf-8",
        b"No cluster leader",
    )
    cluster.set_leader(True)
    assert len(c.health.service("imap")[1]) == 1
