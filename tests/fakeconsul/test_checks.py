"""TCP checks that really dial, DeregisterCriticalServiceAfter reaping (§4, §7 item 15)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import consul
import pytest

from .probes import TcpProbe
from .server import ConsulCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.2", 0))
    yield sock
    sock.close()


def wait_for(
    c: consul.Consul, name: str, pred: Callable[[list[dict[str, object]]], bool], limit: float = 5.0
) -> list[dict[str, object]]:
    """Block on the health index until ``pred(entries)``."""
    deadline = time.monotonic() + limit
    index, entries = c.health.service(name)
    while not pred(entries):
        assert time.monotonic() < deadline, entries
        index, entries = c.health.service(name, index=index, wait="2s")
    return list(entries)


def check_of(entries: list[dict[str, object]], check_id: str) -> dict[str, object]:
    return next(x for e in entries for x in e["Checks"] if x["CheckID"] == check_id)  # type: ignore[attr-defined]


def test_tcp_check_dials_for_real(c: consul.Consul, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    c.agent.service.register(
        "imap",
        service_id="imap-mx2",
        address="127.0.0.2",
        port=port,
        check=consul.Check.tcp("127.0.0.2", port, "1s", timeout="1s"),
    )
    entries = wait_for(c, "imap", lambda e: check_of(e, "service:imap-mx2")["Status"] == "passing")
    assert (
        check_of(entries, "service:imap-mx2")["Output"] == f"TCP connect 127.0.0.2:{port}: Success"
    )
    listener.close()
    start = time.monotonic()
    entries = wait_for(c, "imap", lambda e: check_of(e, "service:imap-mx2")["Status"] == "critical")
    assert time.monotonic() - start < 2.5  # the next dial, one Interval later
    assert check_of(entries, "service:imap-mx2")["Output"] == (
        f"dial tcp 127.0.0.2:{port}: connect: connection refused"
    )


def test_first_probe_is_staggered_unless_immediate() -> None:
    firsts = [
        TcpProbe("127.0.0.1:1", 10.0, 1.0, lambda ok, out: False, False)._first for _ in range(50)
    ]
    assert all(0 <= f < 10 for f in firsts)
    assert len(set(firsts)) > 1
    assert TcpProbe("127.0.0.1:1", 10.0, 1.0, lambda ok, out: False, True)._first == 0


def test_deregister_critical_service_after_reaps_with_floor(
    consul_cluster_factory: Callable[..., ConsulCluster],
) -> None:
    # reap_scale 0.01: the 1 m floor becomes 0.6 s, the 30 s reaper 0.3 s.
    cluster = consul_cluster_factory({"mx2": "127.0.0.2"}, reap_scale=0.01)
    c = cluster.client("mx2")
    start = time.monotonic()
    c.agent.service.register("dead", check={"ttl": "30s", "DeregisterCriticalServiceAfter": "1s"})
    c.agent.service.register(
        "alive", check={"ttl": "30s", "Status": "passing", "DeregisterCriticalServiceAfter": "1s"}
    )
    time.sleep(0.45)
    assert "dead" in c.agent.services()  # 1s is below the floor: 1m (scaled: 0.6 s) applies
    index, rows = c.catalog.service("dead")
    while rows:
        index, rows = c.catalog.service("dead", index=index, wait="2s")
        assert time.monotonic() - start < 3
    assert 0.55 <= time.monotonic() - start <= 1.5
    assert set(c.agent.services()) == {"alive"}
    assert "service:dead" not in c.agent.checks()
