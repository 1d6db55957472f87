"""Blocking queries, index rules, TTL expiry in real time (§3, §4, §7 items 2, 11, 15)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import Message
from typing import Any

import consul
import pytest

from .api import blocking_params
from .fixtures import http_request
from .server import ConsulCluster
from .web import Request

pytestmark = pytest.mark.integration

SLACK = 0.5


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def request_with(query: dict[str, list[str]]) -> Request:
    return Request("GET", "/v1/health/service/x", query, Message(), b"", "mx2")


def register_ttl(c: consul.Consul, ttl: str = "30s", status: str = "passing") -> str:
    c.agent.service.register(
        "imap", service_id="imap-mx2", check={"ttl": ttl, "CheckID": "t", "Status": status}
    )
    return str(c.health.service("imap")[0])


def test_same_index_waits_for_wait_then_returns_current_data(c: consul.Consul) -> None:
    index = register_ttl(c)
    elapsed, (new_index, entries) = timed(lambda: c.health.service("imap", index=index, wait="1s"))
    assert 1.0 <= elapsed <= 1.0 + 1 / 16 + SLACK
    assert new_index == index
    assert [e["Service"]["ID"] for e in entries] == ["imap-mx2"]


def test_returns_as_soon_as_index_exceeds(c: consul.Consul, pool: ThreadPoolExecutor) -> None:
    index = register_ttl(c, status="critical")
    start = time.monotonic()
    future: Future[Any] = pool.submit(
        c.health.service, "imap", index=index, wait="10s", passing=True
    )
    time.sleep(0.2)
    assert not future.done()
    c.agent.check.ttl_pass("t")
    new_index, entries = future.result(timeout=5)
    assert time.monotonic() - start < 2
    assert int(new_index) > int(index)
    assert len(entries) == 1


def test_timeout_may_return_an_index_below_n(c: consul.Consul) -> None:
    index = register_ttl(c)
    ahead = str(int(index) + 1000)
    elapsed, (new_index, _) = timed(lambda: c.catalog.service("imap", index=ahead, wait="1s"))
    assert elapsed >= 1.0
    assert new_index == index  # 200 with the current (lower) index, not an error


def test_wait_without_index_and_index_zero_answer_at_once(consul_cluster: ConsulCluster) -> None:
    url = consul_cluster.url("mx2")
    for query in ("wait=5s", "index=0&wait=5s"):
        elapsed, (status, _, _) = timed(
            lambda q=query: http_request(url, "GET", f"/v1/health/service/x?{q}")
        )
        assert status == 200
        assert elapsed < 0.5


def test_wait_default_cap_and_jitter() -> None:
    def waits(query: dict[str, list[str]]) -> list[float]:
        return [blocking_params(request_with(query))[1] for _ in range(200)]

    for value in waits({"index": ["5"]}) + waits({"index": ["5"], "wait": ["0s"]}):
        assert 300 <= value <= 300 + 300 / 16  # default 5m
    capped = waits({"index": ["5"], "wait": ["20m"]})
    assert all(600 <= v <= 600 + 600 / 16 for v in capped)  # clamped to 10m
    jittered = waits({"index": ["5"], "wait": ["16s"]})
    assert all(16 <= v <= 17 for v in jittered)
    assert max(jittered) - min(jittered) > 0.5  # jitter really spreads
    assert blocking_params(request_with({"index": ["7"], "wait": ["1m30s"]}))[0] == 7


def test_output_only_ttl_passes_do_not_wake(c: consul.Consul) -> None:
    register_ttl(c, status="critical")
    c.agent.check.ttl_pass("t", "first")  # a status change: synced with its output
    index = str(c.health.service("imap")[0])
    stop = threading.Event()

    def keep_passing() -> None:
        n = 0
        while not stop.wait(0.1):
            n += 1
            c.agent.check.ttl_pass("t", f"pass {n}")

    thread = threading.Thread(target=keep_passing)
    thread.start()
    try:
        elapsed, (new_index, entries) = timed(
            lambda: c.health.service("imap", index=index, wait="1s")
        )
    finally:
        stop.set()
        thread.join()
    assert elapsed >= 1.0
    assert new_index == index
    assert entries[0]["Checks"][1]["Output"] == "first"  # the catalog keeps the synced output
    assert c.agent.checks()["t"]["Output"].startswith("pass ")  # the agent's view is current


def test_ttl_expires_in_real_time(c: consul.Consul) -> None:
    register_ttl(c, ttl="1s")
    c.agent.check.ttl_pass("t")  # restarts the 1 s timer
    index, entries = c.health.service("imap", passing=True)
    assert len(entries) == 1
    elapsed, (new_index, entries) = timed(lambda: c.health.service("imap", index=index, wait="5s"))
    assert 0.8 <= elapsed <= 1.8
    assert int(new_index) > int(index)
    check = entries[0]["Checks"][1]
    assert (check["Status"], check["Output"]) == ("critical", "TTL expired")
    assert c.health.service("imap", passing=True)[1] == []


def test_ttl_expiry_keeps_last_output(c: consul.Consul) -> None:
    register_ttl(c, ttl="1s")
    c.agent.check.ttl_warn("t", "disk almost full")
    index = c.health.service("imap")[0]
    _, entries = c.health.service("imap", index=index, wait="5s")
    assert entries[0]["Checks"][1]["Output"] == (
        "TTL expired (last output before timeout follows): disk almost full"
    )


def test_filtered_view_may_wake_unchanged(
    consul_cluster: ConsulCluster, pool: ThreadPoolExecutor
) -> None:
    c2, c3 = consul_cluster.client("mx2"), consul_cluster.client("mx3")
    register_ttl(c2)
    c3.agent.service.register("imap", service_id="imap-mx3", check={"ttl": "30s", "CheckID": "t3"})
    index, entries = c2.health.service("imap", passing=True)
    assert len(entries) == 1
    future: Future[Any] = pool.submit(
        c2.health.service, "imap", index=index, wait="10s", passing=True
    )
    time.sleep(0.1)
    c3.agent.check.ttl_warn("t3")  # critical -> warning: still filtered out
    new_index, new_entries = future.result(timeout=5)
    assert int(new_index) > int(index)
    assert new_entries == entries


def test_index_regression_wakes_blocked_queries(
    consul_cluster: ConsulCluster, c: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    for i in range(10):
        c.kv.put(f"bump/{i}", "x")
    index = register_ttl(c)
    future: Future[Any] = pool.submit(c.health.service, "imap", index=index, wait="10s")
    time.sleep(0.1)
    assert not future.done()
    restored = consul_cluster.restore_index()
    elapsed_start = time.monotonic()
    new_index, entries = future.result(timeout=5)
    assert time.monotonic() - elapsed_start < 1
    assert int(new_index) == restored < int(index)  # the client must reset to 0
    assert len(entries) == 1
    # A watcher that resets (index=None) gets the current state; writes go on from there.
    reset_index, _ = c.health.service("imap")
    assert reset_index == new_index
    c.agent.check.ttl_fail("t")
    assert int(c.health.service("imap")[0]) == restored + 1


def test_index_never_zero(consul_cluster_factory: Callable[..., ConsulCluster]) -> None:
    cluster = consul_cluster_factory({"solo": "127.0.0.1"})
    c = cluster.client("solo")
    index, value = c.kv.get("nothing/here")  # empty KV table: index 0 on the wire would be 1
    assert (index, value) == ("1", None)
    cluster.restore_index(0)
    assert c.health.service("x")[0] == "1"
    assert c.catalog.node("solo")[0] == "1"


def test_blocked_query_dies_with_its_agent(
    consul_cluster: ConsulCluster, pool: ThreadPoolExecutor
) -> None:
    c = consul_cluster.client("mx3")
    index = c.health.service("imap")[0]
    future: Future[Any] = pool.submit(c.health.service, "imap", index=index, wait="10s")
    time.sleep(0.1)
    consul_cluster.stop_agent("mx3")
    with pytest.raises(Exception, match=r"Connection|connection|aborted|reset"):
        future.result(timeout=5)
    consul_cluster.start_agent("mx3")
    assert c.agent.self()["Config"]["NodeName"] == "mx3"
