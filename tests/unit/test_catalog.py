"""The pure Consul pieces: index rules, backoff, health entries, the cache, registration."""

from __future__ import annotations

import random
from typing import Any

import pytest

from meshproxy.mesh.catalog import (
    AgentInfo,
    Catalog,
    Reachability,
    backoff,
    next_index,
    parse_agent,
    parse_health,
)
from meshproxy.mesh.registration import ListenerSpec, Settings, definitions, duration, safe

pytestmark = pytest.mark.unit


def check(
    node: str, status: str = "passing", check_id: str = "serfHealth", **more: Any
) -> dict[str, Any]:
    return {
        "Node": node,
        "CheckID": check_id,
        "Name": more.pop("Name", check_id),
        "Status": status,
        **more,
    }


def entry(
    node: str,
    *,
    address: str = "",
    node_address: str = "10.0.0.9",
    port: int = 143,
    checks: list[dict[str, Any]] | None = None,
    service_id: str = "",
) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": node_address},
        "Service": {
            "ID": service_id or f"meshproxy-imap-{node}",
            "Address": address,
            "Port": port,
            "Meta": None,
        },
        "Checks": [check(node)] if checks is None else checks,
    }


# -- index rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [
        (0, "5", 5),  # first answer
        (5, "5", 5),  # wait expired, nothing changed
        (5, "9", 9),  # a change
        (9, "3", 0),  # went backwards (restore, restart): reset
        (9, "0", 0),  # 0 is also backwards
        (0, "0", 1),  # never 0: a 0 would make every query answer at once
        (4, None, 0),  # no index header
        (4, "x", 0),  # unparsable
        (4, 7, 7),  # already an int
    ],
)
def test_next_index(previous: int, returned: Any, expected: int) -> None:
    assert next_index(previous, returned) == expected


def test_backoff_grows_jittered_and_caps() -> None:
    rng = random.Random(1)
    assert backoff(0) == 0.0
    first = [backoff(1, rng) for _ in range(50)]
    assert all(0.18 <= value <= 0.32 for value in first)
    assert max(backoff(40, rng) for _ in range(50)) <= 3.0 * 1.25
    assert min(backoff(3, rng) for _ in range(50)) > max(first)


# -- agent/self --------------------------------------------------------------------------------


def test_parse_agent() -> None:
    data = {
        "Config": {"NodeName": "mx1", "Datacenter": "dc1"},
        "Member": {"Name": "mx1", "Addr": "10.0.0.11"},
    }
    assert parse_agent(data) == AgentInfo("mx1", "10.0.0.11", "dc1")
    assert parse_agent({"Member": {"Name": "m2", "Addr": "::ffff:10.0.0.2"}}) == AgentInfo(
        "m2", "10.0.0.2", ""
    )
    assert parse_agent({"Config": {"NodeName": ""}}) is None
    assert parse_agent(None) is None
    assert parse_agent({"Config": {"NodeName": "n"}, "Member": {"Addr": 7}}) == AgentInfo("n")


# -- health entries ----------------------------------------------------------------------------


def test_passing_needs_every_check_passing() -> None:
    warning = check("mx3", "warning", "service:x", Name="tcp", Output="slow")
    (ok, warn) = parse_health([entry("mx2"), entry("mx3", checks=[check("mx3"), warning])])
    assert ok.passing
    assert ok.why == ""
    assert not warn.passing
    assert warn.why == "check 'tcp' warning: slow"


def test_node_checks_and_maintenance_count() -> None:
    serf = check("mx2", "critical", Name="Serf Health Status", Output="Agent not live")
    maint = check("mx3", "critical", "_service_maintenance:meshproxy-imap-mx3", Notes="draining")
    node_maint = check("mx4", "critical", "_node_maintenance", Notes="")
    (a, b, c) = parse_health(
        [
            entry("mx2", checks=[serf]),
            entry("mx3", checks=[check("mx3"), maint]),
            entry("mx4", checks=[node_maint]),
        ]
    )
    assert not a.passing
    assert "Serf Health Status" in a.why
    assert not b.passing
    assert b.why == "in maintenance (draining)"
    assert not c.passing
    assert c.why == "in maintenance (no reason)"


def test_address_falls_back_to_the_node() -> None:
    (own, fallback, mapped) = parse_health(
        [
            entry("a", address="10.0.0.1"),
            entry("b", address=""),
            entry("c", address="::ffff:10.0.0.3"),
        ]
    )
    assert (own.address, fallback.address, mapped.address) == ("10.0.0.1", "10.0.0.9", "10.0.0.3")
    assert own.numeric
    (named,) = parse_health([entry("d", address="mx.example.com")])
    assert named.address == "mx.example.com"
    assert not named.numeric


def test_malformed_entries_are_skipped() -> None:
    assert parse_health(None) == ()
    assert parse_health({"Node": {}}) == ()
    bad = [{"Node": "x"}, {"Node": {"Node": "n"}, "Service": {"Port": "143"}}, 7, entry("ok")]
    assert [i.node for i in parse_health(bad)] == ["ok"]


def test_long_reasons_are_capped() -> None:
    noisy = check("n", "critical", "service:x", Output="x" * 1000)
    (instance,) = parse_health([entry("n", checks=[noisy])])
    assert len(instance.why) == 200
    assert instance.why.endswith("...")


# -- the cache ---------------------------------------------------------------------------------


def test_catalog_load_state_and_lookups() -> None:
    catalog = Catalog(("imap", "pop3"))
    assert not catalog.loaded("imap")
    assert not catalog.complete
    assert catalog.node("mx2", "imap") is None
    changes = catalog.update("imap", parse_health([entry("MX2", address="10.0.0.2")]), now=5.0)
    assert changes == ["node MX2 joined (passing)"]
    assert catalog.loaded("imap")
    assert not catalog.complete
    assert catalog.updated == 5.0
    view = catalog.node("mx2.", "imap")
    assert view is not None
    assert view.name == "MX2"
    assert len(view.passing) == 1
    assert catalog.node("mx2", "pop3") == type(view)("MX2", ())  # known, no pop3 instance
    assert catalog.node_at("10.0.0.2") == "MX2"
    assert catalog.node_at("10.0.0.7") is None
    catalog.update("pop3", (), now=6.0)
    assert catalog.complete


def test_catalog_reports_changes_and_departures() -> None:
    catalog = Catalog(("imap",))
    catalog.update("imap", parse_health([entry("mx2"), entry("mx3")]), now=1.0)
    critical = check("mx3", "critical", "service:x", Name="ttl", Output="TTL expired")
    changes = catalog.update(
        "imap", parse_health([entry("mx2"), entry("mx3", checks=[critical])]), now=2.0
    )
    assert changes == ["node mx3 is not passing"]
    assert catalog.nodes() == {
        "mx2": {"imap": "passing"},
        "mx3": {"imap": "check 'ttl' critical: TTL expired"},
    }
    assert catalog.update("imap", parse_health([entry("mx2")]), now=3.0) == [
        "node mx3 left the catalog"
    ]
    assert catalog.departed("MX3") == "mx3"
    assert catalog.node("mx3", "imap") is None
    catalog.update("imap", parse_health([entry("mx2"), entry("mx3")]), now=4.0)
    assert catalog.departed("mx3") is None


def test_nodes_prefers_a_passing_instance() -> None:
    catalog = Catalog(("imap",))
    critical = check("mx2", "critical", "service:x", Name="tcp")
    catalog.update(
        "imap",
        parse_health(
            [entry("mx2", checks=[critical], service_id="a"), entry("mx2", service_id="b")]
        ),
        0.0,
    )
    assert catalog.nodes() == {"mx2": {"imap": "passing"}}


# -- reachability ------------------------------------------------------------------------------


def test_an_outage_is_reported_once() -> None:
    status = Reachability()
    assert status.succeeded() is None  # first contact is no recovery
    assert status.failed("refused", now=10.0) is True
    assert status.failed("refused", now=11.0) is False
    assert status.failed("timeout", now=12.0) is False
    assert (status.failures, status.last_error, status.outages) == (3, "timeout", 1)
    assert status.succeeded() == 10.0
    assert status.succeeded() is None
    assert status.failed("refused", now=20.0) is True
    assert status.outages == 2


def test_down_from_the_start() -> None:
    status = Reachability()
    assert status.failed("refused", now=1.0) is True
    assert status.reachable is False
    assert status.down_since == 1.0


# -- registration ------------------------------------------------------------------------------

SETTINGS = Settings("meshproxy", "0.1.0", 1, ttl=15.0, tcp_interval=10.0, deregister_after=600.0)


def test_one_service_per_listener() -> None:
    listeners = [
        ListenerSpec("imap", "10.0.0.2", 143),
        ListenerSpec("imaps", "0.0.0.0", 993),
        ListenerSpec("pop3", "10.0.0.2", 110),
        ListenerSpec("pop3s", "::", 995),
        ListenerSpec("imap", "10.0.0.3", 143),
    ]
    found = definitions(listeners, "mx2", "10.0.0.20", SETTINGS)
    assert [(d.name, d.service_id, d.address, d.port) for d in found] == [
        ("meshproxy-imap", "meshproxy-imap-mx2", "10.0.0.2", 143),
        ("meshproxy-imaps", "meshproxy-imaps-mx2", "10.0.0.20", 993),
        ("meshproxy-pop3", "meshproxy-pop3-mx2", "10.0.0.2", 110),
        ("meshproxy-pop3s", "meshproxy-pop3s-mx2", "10.0.0.20", 995),
        ("meshproxy-imap", "meshproxy-imap-mx2-2", "10.0.0.3", 143),
    ]
    assert found[0].meta == {"version": "0.1.0", "node": "mx2", "mesh_protocol": "1"}


def test_checks_have_stable_ids_and_start_passing() -> None:
    (service,) = definitions([ListenerSpec("imap", "10.0.0.2", 143)], "mx2", "", SETTINGS)
    ttl, tcp = service.checks
    assert service.ttl_check == ttl["CheckID"] == "meshproxy-imap-mx2:ttl"
    assert ttl["TTL"] == "15s"
    assert ttl["Status"] == "passing"
    assert ttl["DeregisterCriticalServiceAfter"] == "600s"
    assert tcp["CheckID"] == "meshproxy-imap-mx2:tcp"
    assert (tcp["TCP"], tcp["Interval"], tcp["Timeout"]) == ("10.0.0.2:143", "10s", "5s")
    assert "Interval" not in ttl
    assert "TTL" not in tcp


def test_no_tcp_check_and_ipv6() -> None:
    settings = Settings("mp", "1", 1, ttl=1.5, tcp_interval=0.0, deregister_after=60.0)
    (service,) = definitions([ListenerSpec("pop3", "2001:db8::1", 110)], "a b", "", settings)
    assert service.service_id == "mp-pop3-a_b"
    (ttl,) = service.checks
    assert ttl["TTL"] == "1500ms"
    with_tcp = Settings("mp", "1", 1, ttl=2.0, tcp_interval=1.0, deregister_after=60.0)
    (service,) = definitions([ListenerSpec("pop3", "2001:db8::1", 110)], "n", "", with_tcp)
    assert service.checks[1]["TCP"] == "[2001:db8::1]:110"


def test_a_wildcard_without_an_agent_address_is_skipped() -> None:
    assert definitions([ListenerSpec("imap", "0.0.0.0", 143)], "mx2", "", SETTINGS) == []


def test_helpers() -> None:
    assert duration(60) == "60s"
    assert duration(0.25) == "250ms"
    assert safe("mx2.example.com") == "mx2.example.com"
    assert safe("a/b c?") == "a_b_c_"
