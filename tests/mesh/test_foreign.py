"""Foreign servers: Dovecot (Debian's packages, unpacked privately) behind the mesh.

Accounts whose mailhost is 127.0.0.5, an address no mesh node has, are logged in on Dovecot
with the client's password (LOGIN / USER+PASS), as Courier's proxy does.  mx2 runs with
``[imap] foreign = false``, mx3 with ``foreign = true`` (the one per-node difference besides
the listen addresses), so the two can be compared.  In both directory modes: with Consul,
127.0.0.5 is no Consul node, so it is foreign too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import imaplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.mail import message, message_id

from .conftest import MeshFactory
from .dovecot import Dovecot
from .nodes import (
    FOREIGN_IP,
    Mesh,
    Node,
    common_free_port,
    imap_login,
    materialise,
    mesh_account,
    pop3_login,
    userdb_source,
)

pytestmark = pytest.mark.mesh

PROMPT = 2.0


@pytest.fixture(scope="module")
def dovecot(mesh_factory: MeshFactory, dovecot_root: Path, directory: str) -> Iterator[Dovecot]:
    """One Dovecot per directory mode (``test_foreign_server_down`` leaves it stopped)."""
    folder = mesh_factory.folder(f"dovecot-{directory}")
    ports = (common_free_port([FOREIGN_IP]), common_free_port([FOREIGN_IP]))
    server = Dovecot(folder, FOREIGN_IP, *ports, dovecot_root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def foreign_mesh(mesh_factory: MeshFactory, dovecot: Dovecot, directory: str) -> Iterator[Mesh]:
    folder = mesh_factory.folder(f"foreign-{directory}")
    accounts = {
        key: mesh_account(key, "", mailhost=FOREIGN_IP, cram=key == "dvcram")
        for key in ("dv1", "dv2", "dvcram", "dvother")
    }
    materialise(accounts.values(), folder)
    same = [(a.login, a.password) for a in accounts.values() if a.key != "dvother"]
    dovecot.set_users([*same, (accounts["dvother"].login, "not-the-same-password")])
    dovecot.start()
    source = userdb_source(folder / "userdb", accounts.values())
    overrides = {"foreign": {"imap_port": dovecot.imap_port, "pop3_port": dovecot.pop3_port}}
    per_node = {"mx3": {"imap": {"foreign": True}}}
    mesh = mesh_factory.start(
        folder,
        accounts,
        source,
        directory=directory,
        names=("mx2", "mx3"),
        overrides=overrides,
        per_node=per_node,
    )
    yield mesh
    mesh_factory.stop(mesh)


def _direct_append(dovecot: Dovecot, login: str, password: str, raw: bytes) -> None:
    client = imaplib.IMAP4(FOREIGN_IP, dovecot.imap_port, timeout=15)
    try:
        assert client.login(login, password)[0] == "OK"
        assert client.append("INBOX", "", None, raw)[0] == "OK"
    finally:
        client.logout()


def test_imap_login_and_fetch_through_the_mesh(foreign_mesh: Mesh, dovecot: Dovecot) -> None:
    account = foreign_mesh.account("dv1")
    raw = message("kept by Dovecot")
    _direct_append(dovecot, account.login, account.password, raw)
    node = foreign_mesh["mx2"]
    since = node.log_size()
    with imap_login(node, account) as client:
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, fetched = client.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", fetched
        bodies: list[bytes] = [item[1] for item in fetched if isinstance(item, tuple)]
        found = {message_id(body): body for body in bodies}
    assert found[message_id(raw)] == raw
    summary = node.wait_summary(since, user=account.login)
    assert summary["decision"] == f"foreign:{FOREIGN_IP}", summary
    assert "Login: user=<dv1@mesh.test>, method=PLAIN" in dovecot.log()


def test_pop3_user_pass_through_the_mesh(foreign_mesh: Mesh, dovecot: Dovecot) -> None:
    account = foreign_mesh.account("dv2")
    raw = message("POP3 from Dovecot")
    _direct_append(dovecot, account.login, account.password, raw)
    node = foreign_mesh["mx3"]
    since = node.log_size()
    with pop3_login(node, account) as client:
        count, _ = client.stat()
        messages = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    assert raw in messages
    summary = node.wait_summary(since, user=account.login)
    assert summary["decision"] == f"foreign:{FOREIGN_IP}", summary


def _login_lines(node: Node, login: str, password: str) -> list[bytes]:
    with node.line() as client:
        client.readline()
        client.send(f'f1 LOGIN "{login}" "{password}"\r\n'.encode())
        lines = client.tagged("f1")
        client.command("f2", "LOGOUT")
        return lines


def test_foreign_capability_after_login(foreign_mesh: Mesh) -> None:
    """With ``[imap] foreign = true`` the client learns the backend's capabilities (Dovecot's
    SNIPPET=FUZZY, which neither Courier nor meshproxy offers) after login."""
    account = foreign_mesh.account("dv1")
    with_foreign = _login_lines(foreign_mesh["mx3"], account.login, account.password)
    assert with_foreign[-1].startswith(b"f1 OK"), with_foreign
    untagged = [line for line in with_foreign if line.startswith(b"* CAPABILITY ")]
    assert untagged, with_foreign
    assert b"SNIPPET=FUZZY" in untagged[0].split()
    without = _login_lines(foreign_mesh["mx2"], account.login, account.password)
    assert without[-1].startswith(b"f1 OK"), without
    assert not [line for line in without if line.startswith(b"* CAPABILITY ")], without


def test_cram_md5_for_a_hash_only_account_gets_a_clear_no(foreign_mesh: Mesh) -> None:
    account = foreign_mesh.account("dvcram")
    node = foreign_mesh["mx2"]
    since = node.log_size()
    with node.line() as client:
        client.readline()
        client.send(b"c1 AUTHENTICATE CRAM-MD5\r\n")
        challenge = base64.b64decode(client.readline()[2:].strip())
        digest = hmac.new(account.password.encode(), challenge, hashlib.md5).hexdigest()
        client.send(base64.b64encode(f"{account.login} {digest}".encode()) + b"\r\n")
        reply = client.tagged("c1")[-1]
    assert reply.startswith(b"c1 NO"), reply
    assert b"clear password" in reply, reply
    summary = node.wait_summary(since, user=account.login)
    assert summary["decision"] == "refused", summary
    # and the same account with LOGIN works: the password reaches Dovecot
    with imap_login(node, account) as imap:
        assert imap.select("INBOX")[0] == "OK"


def test_a_password_the_foreign_server_refuses_is_a_disagreement(foreign_mesh: Mesh) -> None:
    account = foreign_mesh.account("dvother")
    node = foreign_mesh["mx2"]
    since = node.log_size()
    started = time.monotonic()
    lines = _login_lines(node, account.login, account.password)
    assert lines[-1].startswith(b"f1 NO [UNAVAILABLE]"), lines
    assert time.monotonic() - started < 5.0
    node.wait_for_log(
        r"sources disagree: foreign server 127\.0\.0\.5 refused the password", since=since
    )


def test_foreign_server_down(foreign_mesh: Mesh, dovecot: Dovecot) -> None:
    """Last in this module: Dovecot stays down."""
    dovecot.stop()
    account = foreign_mesh.account("dv1")
    node = foreign_mesh["mx2"]
    since = node.log_size()
    started = time.monotonic()
    lines = _login_lines(node, account.login, account.password)
    elapsed = time.monotonic() - started
    assert lines[-1].startswith(b"f1 NO [UNAVAILABLE]"), lines
    assert elapsed < PROMPT, elapsed
    with node.line("pop3") as client:
        client.readline()
        client.send(f"USER {account.login}\r\n".encode())
        client.readline()
        started = time.monotonic()
        client.send(f"PASS {account.password}\r\n".encode())
        reply = client.readline()
    assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    assert time.monotonic() - started < PROMPT
    node.wait_for_log(
        r"routing failure: 127\.0\.0\.5 at 127\.0\.0\.5:\d+ failed at stage connect", since=since
    )
