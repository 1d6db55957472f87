"""Identity and the embedded directory: names, addresses, peers, foreign hosts, loops."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import pytest

from meshproxy import mesh
from meshproxy.config import parse
from meshproxy.mesh import netif
from meshproxy.mesh.base import (
    Address,
    Directory,
    ForeignHost,
    Identity,
    MeshNode,
    SelfNode,
    Unreachable,
)
from meshproxy.mesh.static import StaticDirectory

pytestmark = pytest.mark.unit

KEY = {"key_file": "/etc/meshproxy/mesh.key"}
LISTEN: dict[str, Any] = {
    "imap": {"listen": ["127.0.0.2:143"], "tls_listen": ["127.0.0.2:993"]},
    "pop3": {"listen": ["127.0.0.2:110"]},
    "tls": {"cert": "c", "key": "k"},
}


class FakeDns:
    """An injected resolver: name -> addresses; unknown names fail like getaddrinfo."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host.lower() not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host.lower()]


def no_interfaces() -> Iterable[str]:
    raise AssertionError("interfaces looked up without a wildcard listener")


def directory(
    data: dict[str, Any] | None = None,
    *,
    dns: FakeDns | None = None,
    env: dict[str, str] | None = None,
    interfaces: Any = no_interfaces,
) -> StaticDirectory:
    config = parse({"node": {"name": "node1"}, **LISTEN, **(data or {})})
    return StaticDirectory(config, env or {}, resolver=dns or FakeDns({}), interfaces=interfaces)


def peers(table: dict[str, Any]) -> dict[str, Any]:
    return {"mesh": {**KEY, "peers": table}}


# -- Identity -----------------------------------------------------------------------------------


def test_identity_of_keeps_old_callers_working() -> None:
    me = Identity.of("Node1.Example.com", "", "alias")
    assert me.names == frozenset({"node1.example.com", "alias"})
    assert me.name == me.primary == "Node1.Example.com"
    assert me.matches("NODE1.example.COM")
    assert me.matches("node1.example.com.")
    assert not me.matches("node1")
    assert Identity.of().name == ""


def test_identity_matches_address_literals() -> None:
    me = Identity.of("n1", addresses=("10.0.0.1", "2001:db8::1", "not an ip"))
    assert me.addresses == frozenset({"10.0.0.1", "2001:db8::1"})
    assert me.matches("10.0.0.1")
    assert me.matches("2001:DB8:0::1")
    assert me.matches("[2001:db8::1]")
    assert me.matches_address("::ffff:10.0.0.1")
    assert not me.matches("10.0.0.2")
    assert not me.matches_address("n1")
    assert not me.matches_address("127.0.0.1")


def test_identity_loopback_flag_covers_all_of_loopback() -> None:
    me = Identity.of("n1", loopback=True)
    assert me.matches("127.0.0.9")
    assert me.matches("::1")
    assert not me.matches("10.0.0.1")


# -- who am I -----------------------------------------------------------------------------------


def test_names_come_from_config_environment_hostname_and_aliases() -> None:
    found = directory(
        {"node": {"name": "Node1", "aliases": ["mail1.example.com", "10.9.9.9"]}},
        env={"PROXY_HOSTNAME": "proxy1"},
    )
    me = found.whoami()
    assert found.name == me.name == "Node1"
    for name in ("node1", "PROXY1", "mail1.example.com", socket.gethostname(), "10.9.9.9"):
        assert me.matches(name), name
        assert found.resolve(name, "imap") == SelfNode("Node1")
    assert me.matches_address("10.9.9.9")


def test_name_falls_back_to_proxy_hostname_then_hostname() -> None:
    config = parse(LISTEN)
    env_named = StaticDirectory(config, {"PROXY_HOSTNAME": "p1"}, interfaces=no_interfaces)
    assert env_named.name == "p1"
    assert StaticDirectory(config, {}, interfaces=no_interfaces).name == socket.gethostname()


def test_own_addresses_are_the_listeners_not_all_of_loopback() -> None:
    found = directory()
    assert found.whoami().addresses == frozenset({"127.0.0.2"})
    assert found.resolve("127.0.0.2", "pop3") == SelfNode("node1")
    assert found.resolve("127.0.0.3", "imap") == ForeignHost(
        "127.0.0.3", (Address("127.0.0.3", 143),)
    )


def test_a_wildcard_listener_adds_the_interfaces_and_loopback() -> None:
    found = directory(
        {"imap": {"listen": ["0.0.0.0:143"]}}, interfaces=lambda: ["192.0.2.2", "fd00::2"]
    )
    me = found.whoami()
    assert {"192.0.2.2", "fd00::2", "127.0.0.2"} <= me.addresses
    for host in ("192.0.2.2", "fd00::2", "127.0.0.1", "127.0.0.3", "::1"):
        assert found.resolve(host, "imap") == SelfNode("node1"), host


def test_ipv6_and_named_listeners() -> None:
    dns = FakeDns({"localhost": ["127.0.0.5"]})
    found = directory(
        {"imap": {"listen": ["[::1]:143", "localhost:1143"]}, "pop3": {"listen": []}}, dns=dns
    )
    assert found.whoami().addresses == frozenset({"::1", "127.0.0.5"})
    assert found.resolve("[::1]", "imap") == SelfNode("node1")


# -- peers --------------------------------------------------------------------------------------


def test_peer_by_name_uses_this_nodes_listen_ports() -> None:
    found = directory(peers({"node2": "127.0.0.3", "Node3.Example.com": "127.0.0.4"}))
    assert found.resolve("NODE2", "imap") == MeshNode("node2", (Address("127.0.0.3", 143),))
    assert found.resolve("node2.", "imap") == MeshNode("node2", (Address("127.0.0.3", 143),))
    assert found.resolve("node2", "pop3") == MeshNode("node2", (Address("127.0.0.3", 110),))
    assert found.resolve("node3.example.com", "imap") == MeshNode(
        "Node3.Example.com", (Address("127.0.0.4", 143),)
    )


def test_peer_inline_table_and_host_port_forms() -> None:
    found = directory(
        {
            **peers({"node2": {"host": "127.0.0.3", "imap": 1143}, "node4": "[::2]:2110"}),
            "imap": {"listen": []},
            "tls": {},
        }
    )
    assert found.resolve("node2", "imap") == MeshNode("node2", (Address("127.0.0.3", 1143),))
    assert found.resolve("node2", "pop3") == MeshNode("node2", (Address("127.0.0.3", 110),))
    assert found.resolve("node4", "pop3") == MeshNode("node4", (Address("::2", 2110),))


def test_peer_names_resolve_once_at_start() -> None:
    dns = FakeDns({"node2.example.com": ["10.0.0.2", "10.0.0.22"]})
    found = directory(peers({"node2": "node2.example.com"}), dns=dns)
    assert dns.asked == [("node2.example.com", 143)]
    for _ in range(3):
        target = found.resolve("node2", "imap")
        assert target == MeshNode("node2", (Address("10.0.0.2", 143), Address("10.0.0.22", 143)))
    assert dns.asked == [("node2.example.com", 143)]


def test_peer_whose_name_does_not_resolve_is_unreachable() -> None:
    found = directory(peers({"node2": "gone.example.com"}))
    target = found.resolve("node2", "imap")
    assert isinstance(target, Unreachable)
    assert target.reason == "cannot resolve gone.example.com: Name or service not known"
    assert found.peer_errors == {"node2": target.reason}


def test_peer_mapped_to_this_nodes_own_address_is_never_dialled() -> None:
    found = directory(peers({"node2": "127.0.0.2"}))
    assert found.resolve("node2", "imap") == Unreachable(
        "node2", "peers table maps node2 to this node's own address 127.0.0.2"
    )


def test_peer_mapped_to_an_own_interface_address_with_a_wildcard_listener() -> None:
    dns = FakeDns({"node2.example.com": ["192.0.2.2"]})
    found = directory(
        {**peers({"node2": "node2.example.com"}), "pop3": {"listen": ["[::]:110"]}},
        dns=dns,
        interfaces=lambda: ["192.0.2.2"],
    )
    target = found.resolve("node2", "pop3")
    assert isinstance(target, Unreachable)
    assert "own address 192.0.2.2" in target.reason


def test_one_shared_table_on_every_node() -> None:
    """Each node of 127.0.0.2/.3 reads the same table, which lists both."""
    table = peers({"node1": "127.0.0.2", "node2": "127.0.0.3"})
    config = parse({**LISTEN, **table})
    node1 = StaticDirectory(config, {"PROXY_HOSTNAME": "node1"}, interfaces=no_interfaces)
    assert node1.resolve("node1", "imap") == SelfNode("node1")
    assert node1.resolve("node2", "imap") == MeshNode("node2", (Address("127.0.0.3", 143),))
    unnamed = StaticDirectory(config, {}, interfaces=no_interfaces)
    assert isinstance(unnamed.resolve("node1", "imap"), Unreachable)


def test_a_name_of_this_node_wins_over_a_peer_entry() -> None:
    found = directory(peers({"node1": "127.0.0.3"}))
    assert found.resolve("node1", "imap") == SelfNode("node1")


# -- foreign hosts ------------------------------------------------------------------------------


def test_foreign_host_via_dns_on_the_foreign_port() -> None:
    dns = FakeDns({"mail.other.org": ["198.51.100.7", "2001:db8::7"]})
    found = directory(dns=dns)
    assert found.resolve("mail.other.org", "imap") == ForeignHost(
        "mail.other.org", (Address("198.51.100.7", 143), Address("2001:db8::7", 143))
    )
    assert found.resolve("mail.other.org", "pop3").addresses[0].port == 110  # type: ignore[union-attr]
    assert dns.asked == [("mail.other.org", 143), ("mail.other.org", 110)]


@pytest.mark.parametrize(
    ("foreign", "imap", "pop3"),
    [
        ({"tls": "implicit"}, 993, 995),
        ({"tls": "starttls"}, 143, 110),
        ({"imap_port": 1143, "pop3_port": 1110}, 1143, 1110),
    ],
)
def test_foreign_ports(foreign: dict[str, Any], imap: int, pop3: int) -> None:
    found = directory({"foreign": foreign}, dns=FakeDns({"x.org": ["198.51.100.7"]}))
    assert found.resolve("x.org", "imap") == ForeignHost("x.org", (Address("198.51.100.7", imap),))
    assert found.resolve("x.org", "pop3") == ForeignHost("x.org", (Address("198.51.100.7", pop3),))


def test_foreign_name_resolving_to_this_node_is_served_here() -> None:
    found = directory(dns=FakeDns({"mail.example.com": ["127.0.0.2", "::ffff:127.0.0.2"]}))
    assert found.resolve("mail.example.com", "imap") == SelfNode("node1")


def test_own_addresses_are_dropped_from_a_foreign_host() -> None:
    found = directory(dns=FakeDns({"mail.example.com": ["127.0.0.2", "198.51.100.7"]}))
    assert found.resolve("mail.example.com", "imap") == ForeignHost(
        "mail.example.com", (Address("198.51.100.7", 143),)
    )


def test_foreign_name_resolving_to_a_peer_is_that_peer() -> None:
    dns = FakeDns({"imap.node2.example.com": ["127.0.0.3"]})
    found = directory(peers({"node2": "127.0.0.3"}), dns=dns)
    assert found.resolve("imap.node2.example.com", "imap") == MeshNode(
        "node2", (Address("127.0.0.3", 143),)
    )


@pytest.mark.parametrize("table", [{}, {"empty.org": []}])
def test_unresolvable_foreign_host_is_unreachable(table: dict[str, list[str]]) -> None:
    target = directory(dns=FakeDns(table)).resolve("empty.org", "imap")
    assert isinstance(target, Unreachable)
    assert target.reason.startswith("cannot resolve empty.org")


def test_foreign_address_literal_needs_no_dns() -> None:
    dns = FakeDns({})
    found = directory(dns=dns)
    assert found.resolve("198.51.100.9", "imap") == ForeignHost(
        "198.51.100.9", (Address("198.51.100.9", 143),)
    )
    assert dns.asked == []


def test_unknown_service_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="smtp"):
        directory().resolve("x", "smtp")


def test_open_directory_is_a_directory() -> None:
    found: Directory = mesh.open_directory(parse({"node": {"name": "n1"}}))
    assert found.whoami().name == "n1"
    assert found.resolve("n1", "imap") == SelfNode("n1")
    found.close()


def test_address_renders_for_logs() -> None:
    assert str(Address("10.0.0.1", 143)) == "10.0.0.1:143"
    assert str(Address("::1", 143)) == "[::1]:143"


# -- interface addresses from /proc -------------------------------------------------------------

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     |-- 192.0.2.2
        /32 host LOCAL
     |-- 192.0.2.9
        /32 host LOCAL
"""
IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
bogus line
"""


def test_proc_parsers() -> None:
    assert netif.ipv4_from_fib_trie(FIB_TRIE) == {"127.0.0.1", "192.0.2.2", "192.0.2.9"}
    assert netif.ipv6_from_if_inet6(IF_INET6) == {"::1", "fe80::fc:ff:fe00:1"}
    assert netif.ipv4_from_fib_trie("") == frozenset()


def test_local_addresses_reads_this_host() -> None:
    assert "127.0.0.1" in netif.local_addresses()
