"""POP3 through the mesh: a message appended through one node is retrieved through a third.

Both account sources, both directory modes (static and Consul); the home node's Courier logs
the real client (127.0.0.77) and the front node's summary names the peer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from integration.mail import append, message, message_id

from .nodes import CLIENT_IP, Mesh, imap_login, pop3_login

pytestmark = pytest.mark.mesh

TRIPLES = (("mx2", "mx3", "mx4"), ("mx3", "mx4", "mx2"), ("mx4", "mx2", "mx3"))
"""(home node, node the message is appended through with IMAP, node POP3 reads through)."""


@pytest.mark.parametrize(("home", "via_imap", "via_pop3"), TRIPLES)
def test_retr_through_a_third_node(mesh: Mesh, home: str, via_imap: str, via_pop3: str) -> None:
    account = mesh.account(f"a{home[2:]}")
    raw = message(f"for POP3: {home} via {via_imap} then {via_pop3}")
    with imap_login(mesh[via_imap], account) as client:
        append(client, raw)
    offsets = mesh.offsets()
    with pop3_login(mesh[via_pop3], account) as client:
        port = int(client.sock.getsockname()[1])
        count, _ = client.stat()
        messages = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    assert raw in messages, [message_id(m) for m in messages]
    summary = mesh[via_pop3].wait_summary(
        offsets[via_pop3], client=f"{CLIENT_IP}:{port}", user=account.login
    )
    assert summary["decision"] == f"peer:{home}", summary
    assert summary["listener"].startswith("pop3"), summary
    line = mesh[home].wait_for_log(
        rf"LOGIN, user={re.escape(account.login)}, ip=\[([^\]]*)\], port=\[{port}\]",
        since=offsets[home],
    )
    assert line.group(1) == CLIENT_IP
    inner = mesh[home].wait_summary(offsets[home], user=account.login, decision="local")
    assert inner["origin"] == f"{via_pop3}/{summary['session']}", inner


def test_local_pop3_on_every_node(mesh: Mesh) -> None:
    for node in mesh:
        account = mesh.account(f"a{node.name[2:]}")
        since = node.log_size()
        with pop3_login(node, account) as client:
            client.stat()
        node.wait_summary(since, user=account.login, decision="local")


def test_cram_md5_over_pop3_through_a_non_home_node(userdb_mesh: Mesh) -> None:
    mesh = userdb_mesh
    account = mesh.account("cram3")
    offsets = mesh.offsets()
    with mesh["mx4"].line("pop3") as client:
        assert client.readline().startswith(b"+OK")
        client.send(b"AUTH CRAM-MD5\r\n")
        challenge = base64.b64decode(client.readline()[2:].strip())
        digest = hmac.new(account.password.encode(), challenge, hashlib.md5).hexdigest()
        client.send(base64.b64encode(f"{account.login} {digest}".encode()) + b"\r\n")
        reply = client.readline()
        assert reply.startswith(b"+OK"), reply
        client.send(b"STAT\r\n")
        assert client.readline().startswith(b"+OK")
        client.send(b"QUIT\r\n")
        assert client.readline().startswith(b"+OK")
    summary = mesh["mx4"].wait_summary(offsets["mx4"], user=account.login)
    assert summary["decision"] == "peer:mx3", summary
