"""Faults: a peer killed during a session, a peer down between sessions, replayed and forged
mesh logins; in both directory modes (static ``[mesh.peers]`` and Consul).

The module's own mesh has ``failure_delay = 5``: a refused wrong password waits 5 s, so an
answer within 2 s proves a down peer is not treated as a wrong password.

A killed node, as a user sees it, is the same in both modes: logins for its accounts get
``[UNAVAILABLE]`` / ``[SYS/TEMP]`` at once, from the first login on.  Behind that the modes
differ.  The static table never learns that a peer is down: every login dials it and fails at
``connect``.  Consul learns it when the killed node's TTL check expires (``consul_nodes.TTL``):
until then the front node dials and fails at ``connect`` as in static mode, afterwards it
refuses without dialling (``mx4 not passing in Consul``).  The tests check the first login
(whichever of the two happened) and, once ``Mesh.wait_peer_down`` says the directory knows,
a later one with the mode's own log line.
"""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshproxy.mesh import assertion

from .conftest import MeshFactory
from .nodes import (
    CLIENT_IP,
    NODES,
    Mesh,
    MeshAccount,
    Node,
    imap_login,
    login_reply,
    materialise,
    mesh_account,
    userdb_source,
)

pytestmark = pytest.mark.mesh

FAILURE_DELAY = 5.0
PROMPT = 2.0


@pytest.fixture(scope="module")
def fault_mesh(mesh_factory: MeshFactory, directory: str) -> Iterator[Mesh]:
    folder = mesh_factory.folder(f"faults-{directory}")
    accounts = {f"f{n}": mesh_account(f"f{n}", f"mx{n}") for n in (2, 3, 4)}
    accounts["k3"] = mesh_account("k3", "mx3")
    accounts["l3"] = mesh_account("l3", "mx3", mailhost="mx4,mx3")
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    source["failure_delay"] = FAILURE_DELAY
    mesh = mesh_factory.start(folder, accounts, source, directory=directory)
    yield mesh
    mesh_factory.stop(mesh)


def _dial_failed(name: str) -> str:
    """The front node's log line when it dialled killed peer ``name`` and failed."""
    return rf"routing failure: {name} at {re.escape(NODES[name])}:\d+ failed at stage connect"


def _not_passing(name: str) -> str:
    """The front node's log line when Consul says ``name`` is not passing (no dial)."""
    return rf"routing failure: mailhost {name} unreachable: {name} not passing in Consul"


def _first_failure(mesh: Mesh, name: str) -> str:
    """Right after the kill: a failed dial; with Consul, the TTL may have expired already."""
    if mesh.directory == "consul":
        return rf"{_dial_failed(name)}|{_not_passing(name)}"
    return _dial_failed(name)


def _known_down(mesh: Mesh, front: Node, name: str, since: int) -> None:
    """After ``mesh.wait_peer_down(name)``: how ``front`` logged the logins since ``since``."""
    if mesh.directory == "consul":
        front.wait_for_log(_not_passing(name), since=since)
        log = front.log_since(since)
        assert not re.search(_dial_failed(name), log), f"{name} was dialled:\n{log}"
    else:
        front.wait_for_log(_dial_failed(name), since=since)


def _refused_at_once(front: Node, account: MeshAccount) -> None:
    """IMAP and POP3 logins of ``account`` get a temporary failure within PROMPT, never the
    failed-login delay, and are not logged as failed logins."""
    since = front.log_size()
    reply, elapsed = login_reply(front, account.login, account.password)
    assert reply.startswith(b"l1 NO [UNAVAILABLE]"), reply
    assert elapsed < PROMPT, f"IMAP answered after {elapsed:.2f} s"
    reply, elapsed = login_reply(front, account.login, account.password, "pop3")
    assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    assert elapsed < PROMPT, f"POP3 answered after {elapsed:.2f} s"
    failed = [line for line in front.log_since(since).splitlines() if "login failed" in line]
    assert not [line for line in failed if account.login in line], failed


def test_peer_killed_during_a_relayed_session(fault_mesh: Mesh) -> None:
    mesh = fault_mesh
    account = mesh.account("k3")
    front, home = mesh["mx2"], mesh["mx3"]
    since = front.log_size()
    try:
        with front.line() as client:
            client.readline()
            client.send(f'k1 LOGIN "{account.login}" "{account.password}"\r\n'.encode())
            assert client.tagged("k1")[-1].startswith(b"k1 OK")
            assert client.command("k2", "SELECT INBOX")[-1].startswith(b"k2 OK")
            home.kill()
            started = time.monotonic()
            client.send(b"k3 NOOP\r\n")
            with pytest.raises((EOFError, ConnectionResetError, BrokenPipeError)):
                client.tagged("k3", timeout=10)
            elapsed = time.monotonic() - started
        assert elapsed < PROMPT, f"the client waited {elapsed:.1f} s for the end"
        summary = front.wait_summary(since, user=account.login)
        assert summary["decision"] == "peer:mx3", summary
    finally:
        if not home.alive():
            mesh.restart(home)


def test_peer_down_between_sessions(fault_mesh: Mesh) -> None:
    mesh = fault_mesh
    down, front = mesh["mx4"], mesh["mx2"]
    victim = mesh.account("f4")
    since = front.log_size()
    down.kill()
    try:
        _refused_at_once(front, victim)
        front.wait_for_log(_first_failure(mesh, "mx4"), since=since)
        # other accounts are unaffected: one homed on another peer, one local
        for key in ("f3", "f2"):
            with imap_login(front, mesh.account(key)) as client:
                assert client.select("INBOX")[0] == "OK"
        # the delay a down peer does not get is real: a wrong password waits for it
        reply, elapsed = login_reply(front, victim.login, "Wrong-" + secrets.token_hex(4))
        assert reply.startswith(b"l1 NO"), reply
        assert elapsed >= FAILURE_DELAY - 0.1, elapsed
        # later, once the directory knows (Consul: the TTL expired): still at once
        mesh.wait_peer_down("mx4")
        later = front.log_size()
        _refused_at_once(front, victim)
        _known_down(mesh, front, "mx4", later)
    finally:
        if not down.alive():
            mesh.restart(down)
    with imap_login(front, victim) as client:
        assert client.select("INBOX")[0] == "OK"


def test_a_mailhost_list_is_tried_in_order(fault_mesh: Mesh) -> None:
    """``mailhost=mx4,mx3``: with mx4 down the front node goes on to mx3 at once, right after
    the kill and once the directory knows."""
    mesh = fault_mesh
    down, front = mesh["mx4"], mesh["mx2"]
    account = mesh.account("l3")

    def served_by_mx3(since: int) -> None:
        started = time.monotonic()
        with imap_login(front, account) as client:
            assert client.select("INBOX")[0] == "OK"
        assert time.monotonic() - started < PROMPT
        summary = front.wait_summary(since, user=account.login)
        assert summary["decision"] == "peer:mx3", summary

    since = front.log_size()
    down.kill()
    try:
        served_by_mx3(since)
        front.wait_for_log(_first_failure(mesh, "mx4"), since=since)
        mesh.wait_peer_down("mx4")
        later = front.log_size()
        served_by_mx3(later)
        _known_down(mesh, front, "mx4", later)
    finally:
        if not down.alive():
            mesh.restart(down)


# --- hand-made mesh logins (the session userdb mesh: small failure delay) ---------------------


def _assertion(key: bytes, user: str, target: str, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "user": user,
        "origin": "mx2",
        "target": target,
        "service": "imap",
        "client_ip": CLIENT_IP,
        "client_port": 4242,
        "session": secrets.token_hex(4),
        "hop": 1,
        "now": time.time(),
        "nonce": assertion.new_nonce(),
    }
    fields.update(changes)
    return assertion.issue(key, **fields)  # type: ignore[arg-type]


def _mesh_key(mesh: Mesh) -> bytes:
    return assertion.load_key(str(mesh.key_file))


def _present(node: Node, blob: bytes, proto: str = "imap") -> bytes:
    payload = base64.b64encode(blob)
    with node.line(proto) as client:
        client.readline()
        if proto == "imap":
            client.send(b"m1 AUTHENTICATE X-MESHPROXY " + payload + b"\r\n")
            reply = client.tagged("m1")[-1]
            if reply.startswith(b"m1 OK"):
                assert client.command("m2", "LOGOUT")[-1].startswith(b"m2 OK")
        else:
            client.send(b"AUTH X-MESHPROXY " + payload + b"\r\n")
            reply = client.readline()
            if reply.startswith(b"+OK"):
                client.send(b"QUIT\r\n")
                client.readline()
    return reply


def test_replayed_mesh_login_is_refused(userdb_mesh: Mesh) -> None:
    mesh = userdb_mesh
    account = mesh.account("a3")
    since = mesh["mx3"].log_size()
    blob = _assertion(_mesh_key(mesh), account.login, "mx3")
    assert _present(mesh["mx3"], blob).startswith(b"m1 OK"), "a fresh mesh login was refused"
    reply = _present(mesh["mx3"], blob)
    assert reply.startswith(b"m1 NO"), reply
    mesh["mx3"].wait_for_log(r"replayed mesh login from mx2", since=since)


def test_forged_mesh_login_is_refused(userdb_mesh: Mesh) -> None:
    mesh = userdb_mesh
    account = mesh.account("a3")
    since = mesh["mx3"].log_size()
    forged = _assertion(secrets.token_bytes(32), account.login, "mx3")
    assert _present(mesh["mx3"], forged).startswith(b"m1 NO")
    pop3 = _assertion(secrets.token_bytes(32), account.login, "mx3", service="pop3")
    assert _present(mesh["mx3"], pop3, "pop3").startswith(b"-ERR")
    log = mesh["mx3"].wait_for_log(r"mesh login with a bad MAC", since=since)
    assert log


def test_stale_or_misdirected_mesh_login_is_refused(userdb_mesh: Mesh) -> None:
    mesh = userdb_mesh
    account = mesh.account("a3")
    key = _mesh_key(mesh)
    since = mesh["mx3"].log_size()
    stale = _assertion(key, account.login, "mx3", now=time.time() - 3600)
    assert _present(mesh["mx3"], stale).startswith(b"m1 NO")
    elsewhere = _assertion(key, account.login, "mx4")
    assert _present(mesh["mx3"], elsewhere).startswith(b"m1 NO")
    mesh["mx3"].wait_for_log(r"issued \+3600s off", since=since)
    mesh["mx3"].wait_for_log(r"mesh login for 'mx4', not this node", since=since)


def test_a_group_readable_key_file_is_refused(tmp_path: Path, userdb_mesh: Mesh) -> None:
    """The key file must be private: a node refuses to start with a group-readable copy."""
    node = userdb_mesh["mx2"]
    shared = tmp_path / "mesh.key"
    shared.write_bytes(userdb_mesh.key_file.read_bytes())
    shared.chmod(0o640)
    text = node.config_path.read_text().replace(str(userdb_mesh.key_file), str(shared))
    config = tmp_path / "meshproxy.toml"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "meshproxy", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "mesh.key_file" in result.stdout + result.stderr
