"""IMAP through the mesh: every node reaches every account's mailbox, with both sources,
in both directory modes (static ``[mesh.peers]`` and Consul).

Clients bind to 127.0.0.77; the home node's Courier must log that address (passed in the mesh
login), not the front node's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator

import pytest
from integration.mail import append, fetch_all, message, message_id

from .conftest import MeshFactory
from .nodes import (
    CLIENT_IP,
    Mesh,
    Node,
    imap_login,
    materialise,
    mesh_account,
    pop3_login,
    userdb_source,
)

pytestmark = pytest.mark.mesh

ROTATION = (("mx2", "mx3"), ("mx3", "mx4"), ("mx4", "mx2"))
"""(node the message is appended through, node it is fetched through)."""


def _home_key(node: str) -> str:
    return f"a{node[2:]}"


def test_each_node_serves_its_own_accounts(mesh: Mesh) -> None:
    for node in mesh:
        account = mesh.account(_home_key(node.name))
        since = node.log_size()
        raw = message(f"local on {node.name}")
        with imap_login(node, account) as client:
            append(client, raw)
            assert message_id(raw) in {message_id(m) for m in fetch_all(client)}
        node.wait_summary(since, user=account.login, decision="local")


@pytest.mark.parametrize("home", ["mx2", "mx3", "mx4"])
def test_append_through_one_node_fetch_through_another(mesh: Mesh, home: str) -> None:
    account = mesh.account(_home_key(home))
    for via_append, via_fetch in ROTATION:
        raw = message(f"{home} appended via {via_append}, fetched via {via_fetch}")
        with imap_login(mesh[via_append], account) as client:
            append(client, raw)
        with imap_login(mesh[via_fetch], account) as client:
            found = {message_id(m): m for m in fetch_all(client)}
        assert found[message_id(raw)] == raw


def _courier_login(node: Node, since: int, login: str, port: int) -> str:
    match = node.wait_for_log(
        re.compile(rf"LOGIN, user={re.escape(login)}, ip=\[([^\]]*)\], port=\[{port}\]"),
        since=since,
    )
    return match.group(1)


@pytest.mark.parametrize(("front", "home"), [("mx2", "mx3"), ("mx4", "mx2"), ("mx3", "mx4")])
def test_home_node_sees_the_real_client(mesh: Mesh, front: str, home: str) -> None:
    account = mesh.account(_home_key(home))
    offsets = mesh.offsets()
    with imap_login(mesh[front], account) as client:
        port = int(client.sock.getsockname()[1])
        typ, _ = client.select("INBOX", readonly=True)
        assert typ == "OK"
    assert _courier_login(mesh[home], offsets[home], account.login, port) == CLIENT_IP
    summary = mesh[front].wait_summary(
        offsets[front], client=f"{CLIENT_IP}:{port}", user=account.login
    )
    assert summary["decision"] == f"peer:{home}", summary
    inner = mesh[home].wait_summary(offsets[home], user=account.login, decision="local")
    assert inner["origin"] == f"{front}/{summary['session']}", inner
    assert not inner["client"].startswith(f"{CLIENT_IP}:"), "the home node saw a mesh connection"
    mesh[home].wait_for_log(
        rf"mesh login user={re.escape(account.login)} origin={front}/{summary['session']} "
        rf"client={re.escape(CLIENT_IP)}:{port} hop=1",
        since=offsets[home],
    )


def test_pipelined_commands_and_the_clients_tag_survive(mesh: Mesh) -> None:
    account = mesh.account("a3")
    with mesh["mx2"].line() as client:
        assert client.readline().startswith(b"* OK")
        client.send(
            f'x1 LOGIN "{account.login}" "{account.password}"\r\n'
            "x2 SELECT INBOX\r\nx3 LOGOUT\r\n".encode()
        )
        assert client.tagged("x1")[-1].startswith(b"x1 OK")
        assert client.tagged("x2")[-1].startswith(b"x2 OK")
        assert client.tagged("x3")[-1].startswith(b"x3 OK")


def test_cram_md5_through_a_non_home_node(userdb_mesh: Mesh) -> None:
    """cram3 stores only a crypt hash and hmac-md5pw: Courier's proxy cannot log it in on
    another server (it needs the clear password); the mesh login needs none."""
    mesh = userdb_mesh
    account = mesh.account("cram3")
    offsets = mesh.offsets()
    with mesh["mx2"].line() as client:
        assert client.readline().startswith(b"* OK")
        client.send(b"c1 AUTHENTICATE CRAM-MD5\r\n")
        challenge = base64.b64decode(client.readline()[2:].strip())
        digest = hmac.new(account.password.encode(), challenge, hashlib.md5).hexdigest()
        client.send(base64.b64encode(f"{account.login} {digest}".encode()) + b"\r\n")
        assert client.tagged("c1")[-1].startswith(b"c1 OK"), "CRAM-MD5 through mx2 refused"
        assert client.command("c2", "SELECT INBOX")[-1].startswith(b"c2 OK")
        assert client.command("c3", "LOGOUT")[-1].startswith(b"c3 OK")
    summary = mesh["mx2"].wait_summary(offsets["mx2"], user=account.login)
    assert summary["decision"] == "peer:mx3", summary
    mesh["mx3"].wait_summary(offsets["mx3"], user=account.login, decision="local")


@pytest.fixture(scope="module")
def tls_mesh(mesh_factory: MeshFactory, directory: str) -> Iterator[Mesh]:
    """Two nodes with ``[mesh] tls = true``: STARTTLS between peers, verified by node name
    (the ``[mesh.peers]`` name, or the Consul node name)."""
    folder = mesh_factory.folder(f"mesh-tls-{directory}")
    accounts = {"t3": mesh_account("t3", "mx3")}
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    mesh = mesh_factory.start(
        folder,
        accounts,
        source,
        directory=directory,
        names=("mx2", "mx3"),
        overrides={"mesh": {"tls": True}},
    )
    yield mesh
    mesh_factory.stop(mesh)


def test_verified_tls_between_peers(tls_mesh: Mesh) -> None:
    account = tls_mesh.account("t3")
    offsets = tls_mesh.offsets()
    raw = message("over TLS between peers")
    with imap_login(tls_mesh["mx2"], account) as client:
        append(client, raw)
        assert raw in fetch_all(client)
    with pop3_login(tls_mesh["mx2"], account) as client:
        assert client.stat()[0] == 1
    tls_mesh["mx2"].wait_summary(offsets["mx2"], listener="pop3", user=account.login)
    tls_mesh["mx3"].wait_summary(offsets["mx3"], listener="pop3", decision="local")
    summaries = tls_mesh["mx2"].summaries(offsets["mx2"])
    assert [s["decision"] for s in summaries if s["user"] == account.login] == ["peer:mx3"] * 2
    inner = tls_mesh.mesh_sessions(offsets)["mx3"]
    assert len(inner) == 2, inner
    assert all(s["decision"] == "local-relay" for s in inner), inner
