"""Agent endpoints: self, register/deregister, maintenance, TTL updates (§2, §7 items 3-8, 13)."""

from __future__ import annotations

import json

import consul
import pytest
from consul.exceptions import BadRequest

from .fixtures import http_request
from .server import ConsulCluster

pytestmark = pytest.mark.integration

SERVICE_DEFAULT = "Maintenance mode is enabled for this service, but no reason was provided."


def put(
    cluster: ConsulCluster, path: str, body: object = None, node: str = "mx2"
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body)
    status, _, text = http_request(cluster.url(node), "PUT", path, data)
    return status, text


def checks_of(c: consul.Consul) -> dict[str, dict[str, object]]:
    return dict(c.agent.checks())


def test_agent_self_names_its_node(consul_cluster: ConsulCluster) -> None:
    for node, address in (("mx2", "127.0.0.2"), ("mx3", "127.0.0.3")):
        me = consul_cluster.client(node).agent.self()
        assert me["Config"]["NodeName"] == node
        assert me["Member"]["Name"] == node
        assert me["Member"]["Addr"] == address
        assert me["Config"]["Datacenter"] == "dc1"
    status, headers, _ = http_request(consul_cluster.url("mx2"), "GET", "/v1/agent/self")
    assert status == 200
    assert "x-consul-index" not in headers  # agent-local endpoints carry no index


def test_py_consul_register_lower_case_keys_round_trip(c: consul.Consul) -> None:
    check = consul.Check.tcp("127.0.0.2", 1, "10s", timeout="1s", deregister="90s")
    assert c.agent.service.register(
        "imap",
        service_id="imap-mx2",
        address="127.0.0.2",
        port=1143,
        tags=["mesh"],
        meta={"version": "1"},
        check=check,
        weights={"Passing": 3, "Warning": 1},
    )
    svc = c.agent.services()["imap-mx2"]
    assert svc["Service"] == "imap"
    assert svc["Port"] == 1143
    assert svc["Meta"] == {"version": "1"}
    assert svc["Weights"] == {"Passing": 3, "Warning": 1}
    chk = c.agent.checks()["service:imap-mx2"]
    assert chk["Type"] == "tcp"
    assert chk["Interval"] == "10s"
    assert chk["Timeout"] == "1s"
    assert chk["Name"] == "Service 'imap' check"
    assert c.agent.service.deregister("imap-mx2") is True
    assert c.agent.services() == {}
    assert "service:imap-mx2" not in c.agent.checks()


def test_body_keys_are_case_insensitive(consul_cluster: ConsulCluster) -> None:
    body = {
        "NAME": "pop3",
        "id": "pop3-mx2",
        "PoRt": 1110,
        "Checks": [{"TTL": "30s", "checkid": "p-ttl", "STATUS": "passing"}],
        "enable_tag_override": True,
    }
    assert put(consul_cluster, "/v1/agent/service/register", body) == (200, b"")
    c = consul_cluster.client("mx2")
    assert c.agent.services()["pop3-mx2"]["EnableTagOverride"] is True
    assert c.agent.checks()["p-ttl"]["Status"] == "passing"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"Name": "x", "foo": 1}, 'Request decode failed: json: unknown field "foo"'),
        ({"Name": "x", "Check": {"ID": "c1", "TTL": "5s"}}, 'json: unknown field "ID"'),
        ({"Port": 1}, "Missing service name"),
        ({"Name": "x", "Address": "0.0.0.0"}, "Invalid service address"),
        ({"Name": "x", "Meta": {"bad key": "v"}}, "Invalid Service Meta: "),
        ({"Name": "x", "Meta": {"consul-x": "v"}}, "Invalid Service Meta: "),
        ({"Name": "x", "Check": {"TTL": "5s", "Interval": "5s"}}, "Invalid check: "),
        ({"Name": "x", "Check": {"TCP": "127.0.0.1:1"}}, "Invalid check: Interval must be > 0"),
        ({"Name": "x", "Checks": [{"Notes": "n"}]}, "Invalid check: TTL must be > 0"),
        (
            {"Name": "x", "Check": {"TTL": "5s", "Status": "ok"}},
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        ({"Name": "x", "Check": {"TTL": "5 parsecs"}}, "Request decode failed: time: invalid"),
    ],
)
def test_register_rejects_with_plain_400(
    consul_cluster: ConsulCluster, body: object, text: str
) -> None:
    status, headers, reply = http_request(
        consul_cluster.url("mx2"), "PUT", "/v1/agent/service/register", json.dumps(body)
    )
    assert status == 400
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert text in reply.decode()
    assert not reply.startswith(b"{")


def test_register_400_reaches_py_consul_as_bad_request(c: consul.Consul) -> None:
    with pytest.raises(BadRequest, match="Invalid service address"):
        c.agent.service.register("x", address="0.0.0.0")


def test_durations_as_nanoseconds_and_interval_floor(consul_cluster: ConsulCluster) -> None:
    body = {
        "Name": "x",
        "Check": {"TCP": "127.0.0.1:1", "Interval": 500_000_000, "Timeout": "1m30s"},
    }
    assert put(consul_cluster, "/v1/agent/service/register", body)[0] == 200
    chk = consul_cluster.client("mx2").agent.checks()["service:x"]
    assert chk["Interval"] == "1s"  # clamped to the 1 s minimum
    assert chk["Timeout"] == "1m30s"


def test_generated_check_ids_and_names(c: consul.Consul) -> None:
    c.agent.service.register("one", service_id="one-1", check=consul.Check.ttl("10s"))
    c.agent.service.register(
        "many",
        service_id="many-1",
        check=consul.Check.ttl("10s"),
        extra_checks=[consul.Check.ttl("10s"), {"ttl": "10s", "CheckID": "mine"}],
    )
    checks = c.agent.checks()
    assert "service:one-1" in checks
    assert {"service:many-1:1", "service:many-1:2", "mine"} <= set(checks)
    assert "service:many-1:3" not in checks
    assert checks["service:many-1:1"]["Name"] == "Service 'many' check"


def test_check_and_checks_merge_check_first(consul_cluster: ConsulCluster) -> None:
    body = {
        "Name": "m",
        "Check": {"TTL": "5s", "Notes": "first"},
        "Checks": [{"TTL": "5s", "Notes": "second"}],
    }
    put(consul_cluster, "/v1/agent/service/register", body)
    checks = consul_cluster.client("mx2").agent.checks()
    assert checks["service:m:1"]["Notes"] == "first"
    assert checks["service:m:2"]["Notes"] == "second"


def test_new_checks_start_critical_unless_status(c: consul.Consul) -> None:
    c.agent.service.register("a", check=consul.Check.ttl("10s"))
    c.agent.service.register("b", check={"ttl": "10s", "Status": "passing"})
    c.agent.service.register("w", check={"ttl": "10s", "Status": "warning"})
    checks = c.agent.checks()
    assert checks["service:a"]["Status"] == "critical"
    assert checks["service:b"]["Status"] == "passing"
    assert checks["service:w"]["Status"] == "warning"


def test_reregistration_keeps_status_and_index(c: consul.Consul) -> None:
    check = {"ttl": "10s", "CheckID": "imap-ttl"}
    c.agent.service.register("imap", service_id="imap-mx2", port=1143, check=check)
    assert c.agent.check.ttl_pass("imap-ttl", "all good")
    index, _ = c.health.service("imap")
    c.agent.service.register("imap", service_id="imap-mx2", port=1143, check=check)
    chk = c.agent.checks()["imap-ttl"]
    assert (chk["Status"], chk["Output"]) == ("passing", "all good")  # no flap to critical
    assert c.health.service("imap")[0] == index  # an identical registration changes nothing
    # even a Status in the body does not reset a known check
    c.agent.service.register(
        "imap",
        service_id="imap-mx2",
        port=1143,
        check={**check, "Status": "critical"},
        tags=["new"],
    )
    assert c.agent.checks()["imap-ttl"]["Status"] == "passing"
    assert c.agent.checks()["imap-ttl"]["ServiceTags"] == ["new"]


def test_replace_existing_checks_drops_others_and_maintenance(c: consul.Consul) -> None:
    c.agent.service.register("s", service_id="s1", check={"ttl": "10s", "CheckID": "old"})
    c.agent.service.maintenance("s1", True, "draining")
    c.agent.service.register("s", service_id="s1", check={"ttl": "10s", "CheckID": "new"})
    assert {"old", "new", "_service_maintenance:s1"} <= set(c.agent.checks())
    c.agent.service.register(
        "s", service_id="s1", check={"ttl": "10s", "CheckID": "new"}, replace_existing_checks=True
    )
    assert set(c.agent.checks()) == {"serfHealth", "new"}


def test_address_kept_empty_and_tagged_addresses(c: consul.Consul) -> None:
    c.agent.service.register("noaddr", port=143)
    c.agent.service.register("v4", address="127.0.0.2", port=143)
    c.agent.service.register("v6", address="::1", port=143)
    c.agent.service.register("dns", address="mx2.example.org", port=143)
    services = c.agent.services()
    assert services["noaddr"]["Address"] == ""
    assert "TaggedAddresses" not in services["noaddr"]
    assert services["v4"]["TaggedAddresses"] == {
        "lan_ipv4": {"Address": "127.0.0.2", "Port": 143},
        "wan_ipv4": {"Address": "127.0.0.2", "Port": 143},
    }
    assert set(services["v6"]["TaggedAddresses"]) == {"lan_ipv6", "wan_ipv6"}
    assert "TaggedAddresses" not in services["dns"]
    _, rows = c.catalog.service("noaddr")
    assert rows[0]["ServiceAddress"] == ""
    assert rows[0]["Address"] == "127.0.0.2"  # consumers fall back to the node's
    _, entries = c.health.service("noaddr")
    assert entries[0]["Service"]["Address"] == ""
    assert entries[0]["Service"]["Tags"] == []
    assert entries[0]["Service"]["Meta"] is None


def test_agent_services_tags_and_meta_never_null(c: consul.Consul) -> None:
    c.agent.service.register("bare")
    svc = c.agent.services()["bare"]
    assert svc["Tags"] == []
    assert svc["Meta"] == {}
    assert svc["Datacenter"] == "dc1"
    assert svc["ID"] == "bare"  # ID defaults to Name


def test_unknown_ids_are_404_and_false(consul_cluster: ConsulCluster, c: consul.Consul) -> None:
    assert c.agent.service.deregister("imap-mx2") is False
    assert c.agent.service.maintenance("imap-mx2", True) is False
    assert c.agent.check.ttl_pass("nope") is False
    assert c.agent.check.ttl_warn("nope") is False
    assert c.agent.check.ttl_fail("nope") is False
    assert put(consul_cluster, "/v1/agent/service/deregister/imap-mx2") == (
        404,
        b'Unknown service ID "imap-mx2". '
        b"Ensure that the service ID is passed, not the service name.",
    )
    assert put(consul_cluster, "/v1/agent/check/pass/x") == (
        404,
        b'Unknown check ID "x". Ensure that the check ID is passed, not the check name.',
    )


def test_ttl_pass_on_non_ttl_check_is_500(consul_cluster: ConsulCluster, c: consul.Consul) -> None:
    c.agent.service.register("t", check=consul.Check.tcp("127.0.0.1", 1, "10s"))
    with pytest.raises(consul.ConsulException, match='500 CheckID "service:t" does not have'):
        c.agent.check.ttl_pass("service:t")
    status, text = put(consul_cluster, "/v1/agent/check/pass/serfHealth")
    assert (status, text) == (500, b'CheckID "serfHealth" does not have associated TTL')


def test_ttl_pass_warn_fail_with_notes(c: consul.Consul) -> None:
    c.agent.service.register("t", check={"ttl": "10s", "CheckID": "t:ttl"})
    for call, status in (
        (c.agent.check.ttl_pass, "passing"),
        (c.agent.check.ttl_warn, "warning"),
        (c.agent.check.ttl_fail, "critical"),
    ):
        assert call("t:ttl", f"now {status}") is True
        chk = c.agent.checks()["t:ttl"]
        assert (chk["Status"], chk["Output"]) == (status, f"now {status}")


def test_check_update_body_and_old_get_form(
    consul_cluster: ConsulCluster, c: consul.Consul
) -> None:
    c.agent.service.register("t", check={"ttl": "10s", "CheckID": "u"})
    assert (
        put(consul_cluster, "/v1/agent/check/update/u", {"Status": "passing", "Output": "ok"})[0]
        == 200
    )
    assert c.agent.checks()["u"]["Output"] == "ok"
    assert put(consul_cluster, "/v1/agent/check/update/u", {"Status": "fine"}) == (
        400,
        b"Invalid check status: 'fine'",
    )
    status, headers, text = http_request(consul_cluster.url("mx2"), "GET", "/v1/agent/check/pass/u")
    assert (status, text, headers["allow"]) == (405, b"method GET not allowed", "OPTIONS,PUT")


def test_service_maintenance_py_spelling_and_health_view(
    consul_cluster: ConsulCluster, c: consul.Consul
) -> None:
    c.agent.service.register(
        "imap", service_id="imap-mx2", check={"ttl": "10s", "Status": "passing"}
    )
    assert c.agent.service.maintenance("imap-mx2", True) is True  # enable=True
    _, [entry] = c.health.service("imap")
    maint = next(x for x in entry["Checks"] if x["CheckID"] == "_service_maintenance:imap-mx2")
    assert maint["Status"] == "critical"
    assert maint["Name"] == "Service Maintenance Mode"
    assert maint["Notes"].startswith(SERVICE_DEFAULT)
    assert (maint["ServiceID"], maint["ServiceName"]) == ("imap-mx2", "imap")
    assert c.health.service("imap", passing=True)[1] == []
    assert c.agent.service.maintenance("imap-mx2", True, "second") is True  # idempotent
    assert c.agent.checks()["_service_maintenance:imap-mx2"]["Notes"] == SERVICE_DEFAULT + (
        " This is a default message."
    )
    assert c.agent.service.maintenance("imap-mx2", False) is True  # enable=False
    assert len(c.health.service("imap", passing=True)[1]) == 1
    for value in ("1", "t", "TRUE", "True"):
        assert (
            put(consul_cluster, f"/v1/agent/service/maintenance/imap-mx2?enable={value}&reason=r")[
                0
            ]
            == 200
        )
    assert c.agent.checks()["_service_maintenance:imap-mx2"]["Notes"] == "r"


def test_maintenance_enable_parameter_errors(
    consul_cluster: ConsulCluster, c: consul.Consul
) -> None:
    c.agent.service.register("imap", service_id="imap-mx2")
    base = "/v1/agent/service/maintenance/imap-mx2"
    assert put(consul_cluster, base) == (400, b"Missing value for enable")
    assert put(consul_cluster, base + "?enable=yes") == (400, b'Invalid value for enable: "yes"')
    assert put(consul_cluster, "/v1/agent/maintenance?enable=x") == (
        400,
        b'Invalid value for enable: "x"',
    )


def test_node_maintenance_drops_every_service_of_the_node(consul_cluster: ConsulCluster) -> None:
    c2, c3 = consul_cluster.client("mx2"), consul_cluster.client("mx3")
    for c, node in ((c2, "mx2"), (c3, "mx3")):
        for name in ("imap", "pop3"):
            c.agent.service.register(
                name, service_id=f"{name}-{node}", check={"ttl": "10s", "Status": "passing"}
            )
    assert c2.agent.maintenance(True, "reboot") is True
    for name in ("imap", "pop3"):
        _, entries = c3.health.service(name, passing=True)
        assert [e["Node"]["Node"] for e in entries] == ["mx3"]
        _, entries = c3.health.service(name)
        maint = [x for e in entries for x in e["Checks"] if x["CheckID"] == "_node_maintenance"]
        assert len(maint) == 1
        assert (maint[0]["Name"], maint[0]["ServiceID"], maint[0]["Notes"]) == (
            "Node Maintenance Mode",
            "",
            "reboot",
        )
    assert c2.agent.maintenance(False) is True
    assert len(c3.health.service("imap", passing=True)[1]) == 2
