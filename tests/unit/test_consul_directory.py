"""The Consul directory fed by hand: identity from agent/self, routing from the cached catalog."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from meshproxy import mesh
from meshproxy.config import parse, validate
from meshproxy.errors import ConfigError
from meshproxy.mesh.base import Address, ForeignHost, MeshNode, SelfNode, Unreachable
from meshproxy.mesh.catalog import AgentInfo
from meshproxy.mesh.consul import ConsulClient, ConsulDirectory

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "imap": {"listen": ["127.0.0.2:143"], "proxy": True},
    "pop3": {"listen": ["127.0.0.2:110"], "proxy": True},
    "mesh": {"key_file": "/k", "consul": "http://127.0.0.1:8500", "token": "s3cret"},
}


class FakeDns:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host.lower() not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host.lower()]


def directory(
    data: dict[str, Any] | None = None,
    *,
    dns: FakeDns | None = None,
    env: dict[str, str] | None = None,
) -> ConsulDirectory:
    config = parse({**BASE, **(data or {})})
    validate(config)
    return ConsulDirectory(
        config, {"PROXY_HOSTNAME": "box7"} if env is None else env, resolver=dns or FakeDns({})
    )


def check(
    node: str, status: str = "passing", check_id: str = "serfHealth", **more: Any
) -> dict[str, Any]:
    return {"Node": node, "CheckID": check_id, "Name": check_id, "Status": status, **more}


def entry(
    node: str, address: str, port: int = 143, *, status: str = "passing", **more: Any
) -> dict[str, Any]:
    checks = [check(node), check(node, status, f"meshproxy-imap-{node}:ttl", **more)]
    return {
        "Node": {"Node": node, "Address": address},
        "Service": {"ID": f"meshproxy-imap-{node}", "Address": address, "Port": port},
        "Checks": checks,
    }


def loaded(
    d: ConsulDirectory, imap: list[dict[str, Any]], pop3: list[dict[str, Any]] | None = None
) -> ConsulDirectory:
    d.update("imap", imap, now=1.0)
    d.update("pop3", pop3 or [], now=1.0)
    return d


# -- selection and identity --------------------------------------------------------------------


def test_open_directory_picks_consul_only_when_configured() -> None:
    assert isinstance(mesh.open_directory(parse(BASE)), ConsulDirectory)
    static = {**BASE, "mesh": {"key_file": "/k"}}
    assert isinstance(mesh.open_directory(parse(static)), mesh.StaticDirectory)


def test_identity_gains_the_agent_node_name() -> None:
    d = directory()
    before = d.whoami()
    assert before.name == "box7"
    assert not before.matches("mx3")
    assert d.set_agent(AgentInfo("MX3", "10.0.0.3", "dc1")) is True
    me = d.whoami()
    assert me.matches("mx3")
    assert me.matches("box7")
    assert me.matches("127.0.0.2")
    assert me.name == "MX3"
    assert d.set_agent(AgentInfo("MX3", "10.0.0.3", "dc1")) is False
    assert d.resolve("mx3", "imap") == SelfNode("MX3")


def test_a_configured_node_name_stays_the_name() -> None:
    d = directory({"node": {"name": "front"}})
    d.set_agent(AgentInfo("mx3"))
    assert d.whoami().name == "front"
    assert d.whoami().matches("mx3")


# -- routing from the catalog ------------------------------------------------------------------


def test_nothing_remote_routes_before_the_catalog_arrives() -> None:
    dns = FakeDns({"mail.example.net": ["192.0.2.7"]})
    d = directory(dns=dns)
    target = d.resolve("mx3", "imap")
    assert isinstance(target, Unreachable)
    assert "not been loaded" in target.reason
    assert isinstance(d.resolve("mail.example.net", "imap"), Unreachable)
    assert dns.asked == []
    assert d.resolve("box7", "imap") == SelfNode("box7")


def test_a_passing_node_is_a_mesh_peer_without_dns() -> None:
    dns = FakeDns({})
    d = loaded(directory(dns=dns), [entry("mx3", "127.0.0.3"), entry("mx4", "127.0.0.4", 1143)])
    assert d.resolve("MX3", "imap") == MeshNode("mx3", (Address("127.0.0.3", 143),))
    assert d.resolve("mx4.", "imap") == MeshNode("mx4", (Address("127.0.0.4", 1143),))
    assert dns.asked == []


def test_a_critical_node_is_unreachable_at_once() -> None:
    d = loaded(directory(), [entry("mx3", "127.0.0.3", status="critical", Output="TTL expired")])
    target = d.resolve("mx3", "imap")
    assert isinstance(target, Unreachable)
    assert "not passing in Consul" in target.reason
    assert "TTL expired" in target.reason


def test_maintenance_is_unreachable() -> None:
    maint = check("mx3", "critical", "_service_maintenance:meshproxy-imap-mx3", Notes="draining")
    e = entry("mx3", "127.0.0.3")
    e["Checks"].append(maint)
    target = loaded(directory(), [e]).resolve("mx3", "imap")
    assert isinstance(target, Unreachable)
    assert "in maintenance (draining)" in target.reason


def test_known_node_without_the_protocol() -> None:
    d = loaded(directory(), [entry("mx3", "127.0.0.3")])
    target = d.resolve("mx3", "pop3")
    assert isinstance(target, Unreachable)
    assert "no meshproxy-pop3 instance" in target.reason


def test_a_node_that_left_is_unreachable_not_foreign() -> None:
    dns = FakeDns({"mx3": ["127.0.0.3"]})
    d = loaded(directory(dns=dns), [entry("mx3", "127.0.0.3")])
    d.update("imap", [], now=2.0)
    target = d.resolve("mx3", "imap")
    assert isinstance(target, Unreachable)
    assert "left the Consul catalog" in target.reason
    assert dns.asked == []


def test_unknown_hosts_are_foreign_through_dns() -> None:
    dns = FakeDns({"mail.example.net": ["192.0.2.7"], "alias.example.net": ["127.0.0.3"]})
    d = loaded(directory(dns=dns), [entry("mx3", "127.0.0.3")])
    assert d.resolve("mail.example.net", "imap") == ForeignHost(
        "mail.example.net", (Address("192.0.2.7", 143),)
    )
    # a name DNS resolves to a Consul node's address is that node
    assert d.resolve("alias.example.net", "imap") == MeshNode("mx3", (Address("127.0.0.3", 143),))
    unknown = d.resolve("nowhere.example.net", "imap")
    assert isinstance(unknown, Unreachable)
    assert "cannot resolve" in unknown.reason


def test_loop_guard_a_peer_at_this_nodes_address_is_never_dialled() -> None:
    d = loaded(directory(), [entry("mx9", "127.0.0.2")])
    target = d.resolve("mx9", "imap")
    assert isinstance(target, Unreachable)
    assert "loop guard" in target.reason
    assert "127.0.0.2" in target.reason


def test_loop_guard_my_own_name_is_served_here_even_with_another_address() -> None:
    d = loaded(directory(), [entry("mx3", "127.0.0.9")])
    d.set_agent(AgentInfo("mx3"))
    assert d.resolve("mx3", "imap") == SelfNode("mx3")


def test_only_passing_numeric_instances_are_dialled() -> None:
    named = entry("mx3", "mx3.example.net")
    d = loaded(directory(), [named])
    target = d.resolve("mx3", "imap")
    assert isinstance(target, Unreachable)
    assert "no numeric address" in target.reason
    second = entry("mx4", "127.0.0.4")
    second["Service"]["ID"] = "meshproxy-imap-mx4-2"
    d = loaded(directory(), [entry("mx4", "127.0.0.44", status="critical"), second])
    assert d.resolve("mx4", "imap") == MeshNode("mx4", (Address("127.0.0.4", 143),))


def test_unknown_service_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        directory().resolve("mx3", "smtp")


# -- the client and the settings ---------------------------------------------------------------


def test_client_sends_the_configured_token_even_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    client = ConsulClient("https://consul.example:8501", "s3cret", "dc2", 3.0)
    assert client.token == "s3cret"
    client.close()
    client = ConsulClient("http://127.0.0.1", "", "", 3.0)
    assert client.token == "from-env"
    client.close()


def test_directory_names_the_watched_services() -> None:
    d = directory({"mesh": {**BASE["mesh"], "service": "mail"}})
    assert d.watched("imap") == "mail-imap"
    assert d.watched("pop3") == "mail-pop3"


@pytest.mark.parametrize(
    ("mesh_keys", "key"),
    [
        ({"consul": "127.0.0.1:8500"}, "mesh.consul"),
        ({"consul": "ftp://x"}, "mesh.consul"),
        ({"peers": {"mx3": "127.0.0.3"}}, "mesh.peers"),
        ({"key_file": ""}, "mesh.key_file"),
        ({"service": "mesh proxy"}, "mesh.service"),
        ({"datacenter": "dc/1"}, "mesh.datacenter"),
        ({"check_ttl": 0}, "mesh.check_ttl"),
        ({"check_interval": 0.5}, "mesh.check_interval"),
        ({"deregister_after": 30}, "mesh.deregister_after"),
        ({"consul_wait": 0}, "mesh.consul_wait"),
        ({"consul_timeout": -1}, "mesh.consul_timeout"),
        ({"drain_timeout": -1}, "mesh.drain_timeout"),
    ],
)
def test_consul_settings_are_checked(mesh_keys: dict[str, Any], key: str) -> None:
    config = parse({**BASE, "mesh": {**BASE["mesh"], **mesh_keys}})
    with pytest.raises(ConfigError) as caught:
        validate(config)
    assert caught.value.key == key


def test_health_listen_is_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        validate(parse({**BASE, "health": {"listen": "127.0.0.2:143"}}))
    assert caught.value.key == "health.listen"
    validate(parse({**BASE, "health": {"listen": "127.0.0.1:9143"}}))
