"""[node] aliases, [mesh], [mesh.peers] and [foreign]: parsing, defaults and validation."""

from __future__ import annotations

from typing import Any

import pytest

from meshproxy.config import Config, own_port, parse, validate
from meshproxy.errors import ConfigError
from meshproxy.meshconfig import ForeignConfig, MeshConfig, PeerConfig

pytestmark = pytest.mark.unit

KEY = "/etc/meshproxy/mesh.key"


def check(data: dict[str, Any]) -> Config:
    config = parse(data)
    validate(config)
    return config


def with_peers(table: Any, **mesh: Any) -> dict[str, Any]:
    return {"mesh": {"key_file": KEY, "peers": table, **mesh}}


def refused(data: dict[str, Any], key: str, match: str | None = None) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        check(data)
    assert caught.value.key == key


def test_defaults() -> None:
    config = check({})
    assert config.node.aliases == []
    assert config.mesh == MeshConfig(
        key_file="",
        tls=False,
        ca_file="",
        max_hops=1,
        clock_skew=30.0,
        connect_timeout=5.0,
        login_timeout=10.0,
        peers={},
    )
    assert config.foreign == ForeignConfig("none", "", True, 0, 0)


def test_full_sections_parse() -> None:
    config = check(
        {
            "tls": {"cert": "c.pem", "key": "k.pem"},
            "node": {"aliases": ["mail1", "10.0.0.1"]},
            "mesh": {
                "key_file": KEY,
                "tls": True,
                "ca_file": "/etc/ssl/mesh-ca.pem",
                "max_hops": 2,
                "clock_skew": 10,
                "connect_timeout": 1.5,
                "login_timeout": 3,
                "peers": {
                    "node2": "10.0.0.2",
                    "node3.example.com": {"host": "node3.example.com", "imap": 1143},
                    "node4": "[2001:db8::4]",
                    "node5": "2001:db8::5",
                },
            },
            "foreign": {"tls": "implicit", "verify": False, "imap_port": 9993},
        }
    )
    assert config.node.aliases == ["mail1", "10.0.0.1"]
    assert config.mesh.clock_skew == 10.0
    assert config.mesh.peers == {
        "node2": PeerConfig("10.0.0.2"),
        "node3.example.com": PeerConfig("node3.example.com", imap=1143),
        "node4": PeerConfig("2001:db8::4"),
        "node5": PeerConfig("2001:db8::5"),
    }
    assert config.foreign.port("imap") == 9993
    assert config.foreign.port("pop3") == 995


def test_peer_ports_default_to_this_nodes_listen_ports() -> None:
    config = check({**with_peers({"n2": "10.0.0.2"}), "imap": {"listen": ["0.0.0.0:1143"]}})
    peer = config.mesh.peers["n2"]
    assert own_port(config, "imap") == 1143
    assert peer.port_for("imap", own_port(config, "imap")) == 1143
    assert peer.port_for("pop3", own_port(config, "pop3")) == 110


def test_host_port_is_accepted_when_one_protocol_is_served() -> None:
    config = check({**with_peers({"n2": "10.0.0.2:1143"}), "pop3": {"listen": []}})
    assert config.mesh.peers["n2"] == PeerConfig("10.0.0.2", port=1143)
    assert config.mesh.peers["n2"].port_for("imap", 143) == 1143


def test_host_port_is_ambiguous_when_both_protocols_are_served() -> None:
    refused(with_peers({"n2": "10.0.0.2:1143"}), "mesh.peers.n2", "ambiguous")


@pytest.mark.parametrize("text", ["10.0.0.2:0", "10.0.0.2:x", "h:99999", "[::1", "[::1]x"])
def test_bad_peer_strings(text: str) -> None:
    refused(with_peers({"n2": text}), "mesh.peers.n2")


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"host": ""}, "mesh.peers.n2"),
        ({"host": "a b"}, "mesh.peers.n2"),
        ({"host": "h", "imap": 70000}, "mesh.peers.n2.imap"),
        ({"host": "h", "imap": "143"}, "mesh.peers.n2.imap"),
        ({"host": "h", "smtp": 25}, "mesh.peers.n2.smtp"),
        (143, "mesh.peers.n2"),
        (["h"], "mesh.peers.n2"),
    ],
)
def test_bad_peer_entries_name_their_key(entry: Any, key: str) -> None:
    refused(with_peers({"n2": entry}), key)


def test_peers_must_be_a_table() -> None:
    refused(with_peers(["n2"]), "mesh.peers", "table")


@pytest.mark.parametrize("name", ["a b", "a,b", "a|b"])
def test_bad_peer_names(name: str) -> None:
    refused(with_peers({name: "10.0.0.2"}), f"mesh.peers.{name}", "peer name")


def test_peer_names_are_case_insensitive_and_unique() -> None:
    refused(with_peers({"Node2": "10.0.0.2", "node2": "10.0.0.3"}), "mesh.peers.node2", "same")


def test_mesh_tls_needs_a_certificate() -> None:
    refused({"mesh": {"tls": True}}, "mesh.tls", "needs tls.cert")
    check({"mesh": {"tls": True}, "tls": {"cert": "c.pem", "key": "k.pem"}})


def test_peers_need_the_mesh_key() -> None:
    refused({"mesh": {"peers": {"n2": "10.0.0.2"}}}, "mesh.key_file", "must be set")


def test_a_proxied_service_needs_a_peer_port() -> None:
    data = {**with_peers({"n2": "10.0.0.2"}), "imap": {"listen": [], "proxy": True}}
    refused(data, "mesh.peers.n2", "no imap port")
    data["mesh"]["peers"] = {"n2": {"host": "10.0.0.2", "imap": 143}}
    check(data)


@pytest.mark.parametrize(
    ("mesh", "key"),
    [
        ({"max_hops": 0}, "mesh.max_hops"),
        ({"clock_skew": 0}, "mesh.clock_skew"),
        ({"connect_timeout": -1}, "mesh.connect_timeout"),
        ({"login_timeout": 0.0}, "mesh.login_timeout"),
        ({"tls": "yes"}, "mesh.tls"),
        ({"max_hops": 1.5}, "mesh.max_hops"),
        ({"keyfile": "x"}, "mesh.keyfile"),
    ],
)
def test_bad_mesh_values(mesh: dict[str, Any], key: str) -> None:
    refused({"mesh": mesh}, key)


@pytest.mark.parametrize(
    ("foreign", "key"),
    [
        ({"tls": "ssl"}, "foreign.tls"),
        ({"imap_port": 65536}, "foreign.imap_port"),
        ({"pop3_port": -1}, "foreign.pop3_port"),
        ({"verify": "no"}, "foreign.verify"),
    ],
)
def test_bad_foreign_values(foreign: dict[str, Any], key: str) -> None:
    refused({"foreign": foreign}, key)


@pytest.mark.parametrize("alias", ["", "a b", "a,b"])
def test_bad_aliases(alias: str) -> None:
    refused({"node": {"aliases": [alias]}}, "node.aliases")


def test_foreign_standard_ports() -> None:
    assert ForeignConfig().port("imap") == 143
    assert ForeignConfig().port("pop3") == 110
    assert ForeignConfig(tls="implicit").port("imap") == 993
    assert ForeignConfig(tls="starttls", pop3_port=2110).port("pop3") == 2110
