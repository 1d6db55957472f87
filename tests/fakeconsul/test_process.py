"""The fake as a child process and its control API (what the mesh tests drive)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from .fixtures import ConsulProcess, http_request

pytestmark = pytest.mark.integration

NODES = {"mx2": "127.0.0.2", "mx3": "127.0.0.3"}


def test_process_agents_share_a_catalog(
    consul_process_factory: Callable[..., ConsulProcess],
) -> None:
    proc = consul_process_factory(NODES)
    assert set(proc.urls) == {"mx2", "mx3"}
    assert proc.url("mx2").startswith("http://127.0.0.2:")
    proc.client("mx2").agent.service.register(
        "imap", service_id="imap-mx2", port=1143, check={"ttl": "30s", "Status": "passing"}
    )
    c3 = proc.client("mx3")
    assert c3.agent.self()["Config"]["NodeName"] == "mx3"
    assert [e["Service"]["ID"] for e in c3.health.service("imap", passing=True)[1]] == ["imap-mx2"]
    proc.set_node_health("mx2", "critical")
    assert c3.health.service("imap", passing=True)[1] == []
    proc.set_node_health("mx2", "passing")
    assert len(c3.health.service("imap", passing=True)[1]) == 1
    services = proc.dump()["services"]
    assert [(s["node"], s["id"]) for s in services] == [("mx2", "imap-mx2")]


def test_stop_and_start_one_agent(consul_process_factory: Callable[..., ConsulProcess]) -> None:
    proc = consul_process_factory(NODES)
    c2, c3 = proc.client("mx2"), proc.client("mx3")
    c2.agent.service.register(
        "imap", service_id="imap-mx2", check={"ttl": "30s", "Status": "passing"}
    )
    proc.stop_agent("mx2")
    with pytest.raises(requests.exceptions.ConnectionError):
        c2.agent.self()
    assert c3.health.service("imap", passing=True)[1] == []  # serfHealth critical: dead node
    proc.start_agent("mx2")
    assert c2.agent.self()["Config"]["NodeName"] == "mx2"
    assert len(c3.health.service("imap", passing=True)[1]) == 1


def test_restart_keeping_or_losing_state(
    consul_process_factory: Callable[..., ConsulProcess],
) -> None:
    proc = consul_process_factory(NODES)
    c2 = proc.client("mx2")
    c2.agent.service.register(
        "imap", service_id="imap-mx2", check={"ttl": "30s", "Status": "passing"}
    )
    c2.kv.put("mesh/x", "1")
    index, _ = c2.health.service("imap")
    urls = dict(proc.urls)
    proc.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        c2.health.service("imap")
    proc.start()  # keep_state=True: same ports, same catalog
    assert proc.urls == urls
    again, entries = c2.health.service("imap", passing=True)
    assert (again, len(entries)) == (index, 1)
    assert c2.kv.get("mesh/x")[1]["Value"] == b"1"
    proc.stop()
    proc.start(keep_state=False)
    fresh, entries = c2.health.service("imap")
    assert entries == []
    assert int(fresh) < int(index)  # an index regression for every watcher
    assert c2.kv.get("mesh/x")[1] is None


def test_control_api_over_http(consul_process_factory: Callable[..., ConsulProcess]) -> None:
    proc = consul_process_factory(NODES, acl_tokens={"mgmt": None})
    c = proc.client("mx3", token="mgmt")
    for i in range(6):
        c.kv.put(f"k{i}", "v")
    status, _, body = http_request(proc.url("mx2"), "PUT", "/test/restore-index?index=3")
    assert (status, body) == (200, b'{"Index": 3}')
    assert c.kv.get("k5")[0] == "3"
    assert proc.restore_index() == 1
    proc.set_leader(False)
    assert c.status.leader() == ""
    proc.set_leader(True)
    assert c.status.leader() == "127.0.0.1:8300"
    status, _, _ = http_request(proc.url("mx2"), "GET", "/v1/agent/self")
    assert status == 403  # --acl-token turned ACLs on
