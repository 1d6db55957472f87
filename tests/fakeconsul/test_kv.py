"""KV through py-consul and raw HTTP (§2 KV, §3, §7 items 2, 11, 12)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import consul
import pytest
from consul.exceptions import BadRequest

from .fixtures import http_request
from .server import ConsulCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def test_put_get_round_trip(c: consul.Consul) -> None:
    assert c.kv.put("mailmesh/config/timeouts", "timeout=30") is True
    index, entry = c.kv.get("mailmesh/config/timeouts")
    assert entry["Value"] == b"timeout=30"
    assert entry["Key"] == "mailmesh/config/timeouts"
    assert entry["Flags"] == 0
    assert "Session" not in entry
    assert int(index) == entry["ModifyIndex"] == entry["CreateIndex"]
    assert c.kv.put("mailmesh/config/timeouts", b"\x00\xff", flags=7)
    _, entry = c.kv.get("mailmesh/config/timeouts")
    assert (entry["Value"], entry["Flags"]) == (b"\x00\xff", 7)
    assert entry["ModifyIndex"] > entry["CreateIndex"]


def test_raw_shape_one_element_array_base64_and_null(
    consul_cluster: ConsulCluster, c: consul.Consul
) -> None:
    c.kv.put("a/full", "hello")
    c.kv.put("a/empty", None)
    url = consul_cluster.url("mx2")
    status, headers, body = http_request(url, "GET", "/v1/kv/a/full")
    data = json.loads(body)
    assert status == 200
    assert isinstance(data, list)
    assert len(data) == 1
    assert data[0]["Value"] == "aGVsbG8="
    assert int(headers["x-consul-index"]) == data[0]["ModifyIndex"]
    assert json.loads(http_request(url, "GET", "/v1/kv/a/empty")[2])[0]["Value"] is None
    assert c.kv.get("a/empty")[1]["Value"] is None
    status, headers, body = http_request(url, "GET", "/v1/kv/a/full?raw")
    assert (status, body) == (200, b"hello")


def test_missing_key_404_with_index(consul_cluster: ConsulCluster, c: consul.Consul) -> None:
    c.kv.put("other", "x")
    index, value = c.kv.get("missing")
    assert value is None
    assert index == c.kv.get("other")[0]  # the table index
    status, headers, body = http_request(consul_cluster.url("mx2"), "GET", "/v1/kv/missing")
    assert (status, body) == (404, b"")
    assert headers["x-consul-index"] == index


def test_recurse_is_a_plain_string_prefix(c: consul.Consul) -> None:
    for key in ("cfg/a", "cfg/b/c", "cfg2/x", "cf"):
        c.kv.put(key, key)
    _, entries = c.kv.get("cfg", recurse=True)
    assert [e["Key"] for e in entries] == ["cfg/a", "cfg/b/c", "cfg2/x"]
    assert c.kv.get("nothing/", recurse=True)[1] is None  # none -> 404


def test_keys_and_separator(consul_cluster: ConsulCluster, c: consul.Consul) -> None:
    url = consul_cluster.url("mx2")
    assert http_request(url, "GET", "/v1/kv/?keys")[::2] == (200, b"[]")  # empty root: []
    for key in ("mesh/config/a", "mesh/config/b", "mesh/peers"):
        c.kv.put(key, "x")
    assert c.kv.get("mesh/", keys=True)[1] == ["mesh/config/a", "mesh/config/b", "mesh/peers"]
    assert c.kv.get("mesh/", keys=True, separator="/")[1] == ["mesh/config/", "mesh/peers"]
    assert c.kv.get("nope/", keys=True)[1] is None  # 404


def test_cas_mismatch_is_200_false(consul_cluster: ConsulCluster, c: consul.Consul) -> None:
    assert c.kv.put("lock", "a", cas=0) is True
    assert c.kv.put("lock", "b", cas=0) is False  # only if absent
    _, entry = c.kv.get("lock")
    assert c.kv.put("lock", "c", cas=entry["ModifyIndex"] + 5) is False
    assert c.kv.put("lock", "c", cas=entry["ModifyIndex"]) is True
    status, _, body = http_request(consul_cluster.url("mx2"), "PUT", "/v1/kv/lock?cas=1", "d")
    assert (status, body) == (200, b"false")
    _, entry = c.kv.get("lock")
    assert c.kv.delete("lock", cas=entry["ModifyIndex"] + 1) is False
    assert c.kv.delete("lock", cas=0) is False
    assert c.kv.delete("lock", cas=entry["ModifyIndex"]) is True
    assert c.kv.get("lock")[1] is None


def test_delete_and_recursive_delete(c: consul.Consul) -> None:
    for key in ("t/a", "t/b", "tx"):
        c.kv.put(key, "v")
    assert c.kv.delete("t/a") is True
    assert c.kv.delete("t/a") is True  # already gone: still true
    assert c.kv.delete("t", recurse=True) is True
    assert c.kv.get("t", recurse=True)[1] is None


def test_tombstones_raise_the_recurse_index(c: consul.Consul) -> None:
    c.kv.put("p/a", "1")
    c.kv.put("p/b", "2")
    index, _ = c.kv.get("p/", recurse=True)
    c.kv.delete("p/b")
    new_index, entries = c.kv.get("p/", recurse=True)
    assert int(new_index) > int(index)  # the deletion counts, though no entry carries it
    assert [e["Key"] for e in entries] == ["p/a"]
    assert max(e["ModifyIndex"] for e in entries) < int(new_index)


def test_conflicting_flags(consul_cluster: ConsulCluster) -> None:
    url = consul_cluster.url("mx2")
    status, _, body = http_request(url, "PUT", "/v1/kv/k?cas=0&acquire=s", "v")
    assert status == 400
    assert body.startswith(b"Conflicting flags: ")
    status, _, body = http_request(url, "DELETE", "/v1/kv/k?cas=1&recurse", None)
    assert status == 400
    assert body.startswith(b"Conflicting flags: ")


def test_bad_cas_is_bad_request(c: consul.Consul) -> None:
    with pytest.raises(BadRequest):
        c.kv.put("k", "v", cas="x")  # type: ignore[arg-type]


def test_too_large_value_is_413(consul_cluster: ConsulCluster) -> None:
    status, _, body = http_request(
        consul_cluster.url("mx2"), "PUT", "/v1/kv/big", b"x" * (512 * 1024 + 1)
    )
    assert status == 413
    assert body.startswith(b"Request body")


def test_missing_key_watch_ignores_unrelated_writes(
    consul_cluster: ConsulCluster, c: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    index, value = c.kv.get("watch/me")
    assert value is None
    start = time.monotonic()
    future: Future[Any] = pool.submit(c.kv.get, "watch/me", index=index, wait="1s")
    for i in range(5):
        time.sleep(0.05)
        c.kv.put(f"unrelated/{i}", "x")
    new_index, value = future.result(timeout=5)
    elapsed = time.monotonic() - start
    assert elapsed >= 1.0  # woken by none of the unrelated writes
    assert value is None
    assert int(new_index) > int(index)  # 404 with the latest table index at the timeout


def test_missing_key_watch_wakes_when_the_key_appears(
    c: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    index, _ = c.kv.get("watch/me")
    future: Future[Any] = pool.submit(c.kv.get, "watch/me", index=index, wait="10s")
    time.sleep(0.1)
    c.kv.put("watch/me", "here")
    new_index, entry = future.result(timeout=5)
    assert entry["Value"] == b"here"
    assert int(new_index) == entry["ModifyIndex"]


def test_key_watch_wakes_on_delete(c: consul.Consul, pool: ThreadPoolExecutor) -> None:
    c.kv.put("watch/gone", "x")
    index, _ = c.kv.get("watch/gone")
    future: Future[Any] = pool.submit(c.kv.get, "watch/gone", index=index, wait="10s")
    time.sleep(0.1)
    c.kv.delete("watch/gone")
    new_index, entry = future.result(timeout=5)
    assert entry is None
    assert int(new_index) > int(index)
