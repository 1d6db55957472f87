"""Self-proxying never happens: each loop guard on its own.

One mesh of three nodes, each node given one deliberate fault in its own config (the only
per-node differences besides the listen addresses):

* mx2 has ``[node] aliases = ["alias2.mesh.test"]`` (guard 1: another name of this node);
* mx3 reads a different userdb, in which ``split`` lives on mx2 while the shared one says mx3
  (guard 2: two sources disagree, each says the other);
* mx4's peers table maps the peer mx3 to 127.0.0.4, mx4's own address (guard 1 by address).

The shared peers table also names ``mx6`` at 127.0.0.6, where the test runs a TCP forwarder
to mx2 (guard 3: a "peer" that turns out to be this node).

In every case: no connection from a node to itself (``/proc/net/tcp``, TIME-WAIT included),
at most one mesh hop (the nodes' session logs), a clear answer to the client, and a log line
naming the disagreement.

Static directory only (unlike the other multi-node modules, not parametrised over
``directory``): the faults are made of ``[mesh.peers]`` tables (a per-node table that maps a
peer to this node's address, a peer ``mx6`` at a forwarder), which Consul mode forbids.  The
Consul counterpart of the peers-table guard, a catalog entry that gives a peer this node's
address, is ``test_consul_mesh.py::test_a_catalog_that_maps_a_peer_to_this_nodes_address``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from meshproxy.mesh import assertion

from .conftest import MeshFactory
from .nodes import (
    CLIENT_IP,
    Mesh,
    Node,
    imap_login,
    materialise,
    mesh_account,
    node_connections,
    userdb_source,
)

pytestmark = pytest.mark.mesh

FORWARDER_IP = "127.0.0.6"
ALIAS = "alias2.mesh.test"


@pytest.fixture(scope="module")
def loop_mesh(mesh_factory: MeshFactory) -> Iterator[Mesh]:
    folder = mesh_factory.folder("loops")
    accounts = {
        "split": mesh_account("split", "mx3"),
        "alias2": mesh_account("alias2", "mx2", mailhost=ALIAS),
        "addr2": mesh_account("addr2", "mx2", mailhost="127.0.0.2"),
        "on3": mesh_account("on3", "mx3"),
        "fwd": mesh_account("fwd", "mx2", mailhost="mx6"),
    }
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    other = dataclasses.replace(accounts["split"], options="mailhost=mx2")
    disagreeing = userdb_source(folder / "userdb-mx3", [*accounts.values(), other][1:])
    overrides = {"mesh": {"peers": {"mx6": FORWARDER_IP}}}
    per_node = {
        "mx2": {"node": {"aliases": [ALIAS]}},
        "mx3": {"auth": disagreeing},
        "mx4": {"mesh": {"peers": {"mx3": "127.0.0.4"}}},
    }
    mesh = mesh_factory.start(folder, accounts, source, overrides=overrides, per_node=per_node)
    yield mesh
    mesh_factory.stop(mesh)


Connections = dict[str, set[tuple[str, int, str, int]]]


def _connections(mesh: Mesh) -> Connections:
    return {node.name: node_connections(node) for node in mesh}


def _new(before: Connections, mesh: Mesh) -> Connections:
    after = _connections(mesh)
    return {name: after[name] - before[name] for name in after}


def _login(node: Node, login: str, password: str) -> bytes:
    with node.line() as client:
        client.readline()
        client.send(f'g1 LOGIN "{login}" "{password}"\r\n'.encode())
        reply = client.tagged("g1")[-1]
        if reply.startswith(b"g1 OK"):
            assert client.command("g2", "LOGOUT")[-1].startswith(b"g2 OK")
        return reply


def _no_self_connection(mesh: Mesh, new: Connections) -> None:
    """A node dials from 127.0.0.1 (the kernel's loopback source), so a connection to its own
    listener cannot be told from one by another node by address; these tests make sure no
    node dials the front node at all, which covers both."""
    for node in mesh:
        own = [c for c in new[node.name] if c[2] == node.host]
        assert not own, f"{node.name} connected to itself: {own}"


def test_guard1_alias_is_served_locally(loop_mesh: Mesh) -> None:
    mesh = loop_mesh
    account = mesh.account("alias2")
    offsets, before = mesh.offsets(), _connections(mesh)
    with imap_login(mesh["mx2"], account) as client:
        port = int(client.sock.getsockname()[1])
        assert client.select("INBOX")[0] == "OK"
    summary = mesh["mx2"].wait_summary(offsets["mx2"], user=account.login)
    assert summary["decision"].startswith("local"), summary
    new = _new(before, mesh)
    _no_self_connection(mesh, new)
    assert not any(new.values()), f"a node was dialled: {new}"
    assert not any(mesh.mesh_sessions(offsets).values())
    mesh["mx2"].wait_for_log(
        rf"LOGIN, user={re.escape(account.login)}, ip=\[{re.escape(CLIENT_IP)}\], port=\[{port}\]",
        since=offsets["mx2"],
    )


def test_guard1_own_address_is_served_locally(loop_mesh: Mesh) -> None:
    mesh = loop_mesh
    account = mesh.account("addr2")
    offsets, before = mesh.offsets(), _connections(mesh)
    with imap_login(mesh["mx2"], account) as client:
        assert client.select("INBOX")[0] == "OK"
    summary = mesh["mx2"].wait_summary(offsets["mx2"], user=account.login)
    assert summary["decision"].startswith("local"), summary
    new = _new(before, mesh)
    assert not any(new.values()), f"a node was dialled: {new}"
    assert not any(mesh.mesh_sessions(offsets).values())


def test_guard1_peers_table_mapping_a_peer_to_this_node_is_refused(loop_mesh: Mesh) -> None:
    mesh = loop_mesh
    account = mesh.account("on3")
    offsets, before = mesh.offsets(), _connections(mesh)
    reply = _login(mesh["mx4"], account.login, account.password)
    assert reply.startswith(b"g1 NO [UNAVAILABLE]"), reply
    new = _new(before, mesh)
    _no_self_connection(mesh, new)
    assert not any(new.values()), f"a node was dialled: {new}"
    mesh["mx4"].wait_for_log(
        r"mailhost mx3 unreachable: peers table maps mx3 to this node's own address 127\.0\.0\.4",
        since=offsets["mx4"],
    )
    assert not any(mesh.mesh_sessions(offsets).values())
    # the same account through a node with a sound table reaches mx3
    with imap_login(mesh["mx2"], account) as client:
        assert client.select("INBOX")[0] == "OK"


def test_guard2_sources_that_disagree(loop_mesh: Mesh) -> None:
    """mx2's source says split lives on mx3, mx3's says mx2: one hop, then a refusal."""
    mesh = loop_mesh
    account = mesh.account("split")
    for front, home in (("mx2", "mx3"), ("mx3", "mx2")):
        offsets, before = mesh.offsets(), _connections(mesh)
        reply = _login(mesh[front], account.login, account.password)
        assert reply.startswith(b"g1 NO [UNAVAILABLE]"), reply
        summary = mesh[front].wait_summary(offsets[front], user=account.login)
        assert summary["decision"] == "refused", summary
        mesh[home].wait_for_log(
            rf"routing disagreement between {front} \(session {summary['session']}\) and "
            rf"{home}: .*{re.escape(account.login)}.*mailhost is {front}",
            since=offsets[home],
        )
        mesh[home].wait_summary(offsets[home], decision="refused")
        new = _new(before, mesh)
        _no_self_connection(mesh, new)
        assert len(new[home]) == 1, new
        assert not new[front], f"a second hop: {new}"
        assert not new["mx4"], f"a second hop: {new}"
        hops = mesh.mesh_sessions(offsets)
        assert [len(hops[name]) for name in (home, front, "mx4")] == [1, 0, 0], hops


def test_hop_count_past_the_limit_is_refused(loop_mesh: Mesh) -> None:
    mesh = loop_mesh
    account = mesh.account("on3")
    since = mesh["mx3"].log_size()
    key = assertion.load_key(str(mesh.key_file))
    blob = assertion.issue(
        key,
        user=account.login,
        origin="mx2",
        target="mx3",
        service="imap",
        client_ip=CLIENT_IP,
        client_port=4242,
        session=secrets.token_hex(4),
        hop=2,
        now=time.time(),
        nonce=assertion.new_nonce(),
    )
    started = time.monotonic()
    with mesh["mx3"].line() as client:
        client.readline()
        client.send(b"h1 AUTHENTICATE X-MESHPROXY " + base64.b64encode(blob) + b"\r\n")
        reply = client.tagged("h1")[-1]
    assert reply.startswith(b"h1 NO [UNAVAILABLE]"), reply
    assert time.monotonic() - started < 2.0
    mesh["mx3"].wait_for_log(
        r"hop limit: mesh login from mx2 at hop 2 \(mesh.max_hops 1\)", since=since
    )


# --- guard 3: a peer that turns out to be this node ---------------------------------------------


@contextlib.contextmanager
def forwarder(listen: tuple[str, int], target: tuple[str, int]) -> Iterator[list[socket.socket]]:
    """A TCP forwarder; yields the list of connections it accepted."""
    server = socket.create_server(listen)
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    upstreams: list[socket.socket] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            upstream = socket.create_connection(target, timeout=5)
            upstreams.append(upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                threads.append(threading.Thread(target=pipe, args=(a, b), daemon=True))
                threads[-1].start()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield accepted
    finally:
        stop.set()
        acceptor.join(5)
        for thread in threads:
            thread.join(10)
        for sock in [server, *accepted, *upstreams]:
            sock.close()


def test_guard3_a_peer_that_is_this_node_is_dropped_before_login(loop_mesh: Mesh) -> None:
    mesh = loop_mesh
    account = mesh.account("fwd")
    front = mesh["mx2"]
    port = front.port("imap")
    offsets = mesh.offsets()
    with forwarder((FORWARDER_IP, port), (front.host, port)) as accepted:
        reply = _login(front, account.login, account.password)
    assert reply.startswith(b"g1 NO [UNAVAILABLE]"), reply
    assert accepted, "mx2 did not dial mx6"
    front.wait_for_log(
        rf"loop guard: {re.escape(FORWARDER_IP)}:{port} answered as mx2, which is this node; "
        "dropped before login",
        since=offsets["mx2"],
    )
    inner = [s for s in mesh.mesh_sessions(offsets)["mx2"] if s["user"] != "-"]
    assert not inner, f"the looped connection got as far as a login: {inner}"
