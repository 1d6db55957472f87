"""route.decide: every branch, including sessions that arrived through a mesh login."""

from __future__ import annotations

import pytest

from meshproxy.account import Account, Options
from meshproxy.mesh.assertion import MeshOrigin
from meshproxy.mesh.base import Identity
from meshproxy.route import NO_MAILHOST, Local, Peer, Refuse, decide

pytestmark = pytest.mark.unit

ME = Identity.of("node1.example.com", "node1", addresses=("10.0.0.1",))


def account(options: str = "") -> Account:
    return Account("bob@example.com", 1000, 1000, "/home/bob", options=Options(options))


def via(origin: str = "node2.example.com") -> MeshOrigin:
    return MeshOrigin(
        user="bob@example.com",
        origin=origin,
        target="node1.example.com",
        service="imap",
        client_ip="192.0.2.7",
        client_port=40000,
        session="s1",
        hop=1,
        issued=1000.0,
        nonce="n",
    )


def test_proxying_off_is_local_whatever_the_mailhost() -> None:
    assert decide(account("mailhost=node2"), proxy=False, me=ME) == Local("proxying off")
    assert decide(account("mailhost=node2"), proxy=False, me=ME, via=via()) == Local("proxying off")


def test_no_mailhost_is_local_with_the_warning_note() -> None:
    assert decide(account(), proxy=True, me=ME) == Local(NO_MAILHOST)
    assert decide(account("mailhost="), proxy=True, me=ME) == Local(NO_MAILHOST)
    assert decide(account(), proxy=True, me=ME, via=via()) == Local(NO_MAILHOST)


@pytest.mark.parametrize(
    "mailhost", ["node1.example.com", "NODE1.Example.COM", "node1", "10.0.0.1", "node9 node1"]
)
def test_mailhost_naming_this_node_is_local(mailhost: str) -> None:
    decision = decide(account(f"mailhost={mailhost}"), proxy=True, me=ME)
    assert isinstance(decision, Local)
    assert "is this node" in decision.note


def test_mailhost_naming_this_node_is_local_for_a_mesh_login() -> None:
    decision = decide(account("mailhost=node1"), proxy=True, me=ME, via=via())
    assert isinstance(decision, Local)


def test_other_node_is_a_peer_in_order() -> None:
    decision = decide(account("mailhost=node3|node2"), proxy=True, me=ME)
    assert decision == Peer(("node3", "node2"))


def test_mesh_login_for_a_remote_account_is_refused_naming_both_nodes() -> None:
    decision = decide(account("mailhost=node3"), proxy=True, me=ME, via=via("node2"))
    assert decision == Refuse(
        "routing disagreement: node2 sent bob@example.com here (node1.example.com), "
        "but its mailhost is node3"
    )


def test_sources_that_disagree_never_proxy_twice() -> None:
    """node2 thinks bob lives on node1, node1 thinks bob lives on node2: refused, not bounced."""
    decision = decide(account("mailhost=node2"), proxy=True, me=ME, via=via("node2"))
    assert isinstance(decision, Refuse)
    assert "node2 sent bob@example.com here (node1.example.com)" in decision.reason


def test_address_of_another_host_is_a_peer() -> None:
    assert decide(account("mailhost=10.0.0.2"), proxy=True, me=ME) == Peer(("10.0.0.2",))
