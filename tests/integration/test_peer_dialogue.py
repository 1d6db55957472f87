"""io/peer against real servers: a front node, a home node, a foreign server, misbehaving peers.

Nodes (separate ``meshproxy serve`` processes, one mesh key, module-scoped):

* ``front`` (mpt-front, 127.0.0.2): proxy on; peers mpt-home, mpt-down (nothing listens),
  mpt-alias (a daemon that calls itself mpt-front: loop guard 3) and mpt-fake (a scripted
  server in a thread, for what no real server does: garbage, silence, refusals);
* ``home`` (mpt-home, 127.0.0.3): proxy on, serves the accounts whose mailhost is mpt-home;
  its userdb says ``pdisagree`` lives on mpt-front (the front's says mpt-home);
* ``foreign`` (127.0.0.4): proxy off, plain LOGIN / USER+PASS target;
* ``twin`` (127.0.0.5): also named mpt-front.

Clients bind to 127.0.0.77 so that the home node's logs can be checked for the real client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshproxy.mesh import assertion

from .accounts import Account, materialise, userdb_line
from .clients import LineClient
from .conftest import TlsFiles
from .daemon import Daemon, DaemonFactory, free_port
from .mail import message

pytestmark = pytest.mark.integration

FRONT, HOME, TWIN = "mpt-front", "mpt-home", "mpt-alias"
CLIENT_IP = "127.0.0.77"
KEYS = ("pimap", "ppop3", "pcram", "pforeign", "pquote", "p8bit", "pdown", "ploop", "pfake")
MAILHOSTS = {"pdown": "mpt-down", "ploop": TWIN, "pfake": "mpt-fake"}
MAILHOSTS |= dict.fromkeys(("pforeign", "pquote", "p8bit"), "127.0.0.4")
PASSWORDS = {"pquote": 'q"uo\\te"', "p8bit": "pässwört\u00e9"}


# -- a scripted peer, for misbehaviour a real server cannot produce ---------------------------


class FakePeer:
    """IMAP and POP3 listeners in threads; ``mode`` picks the script of the next sessions:
    garbage, silent, or a peer that names itself and refuses the login with IMAP code ``mode``.
    """

    def __init__(self, host: str) -> None:
        self.mode = "garbage"
        self.socks = {proto: socket.create_server((host, 0)) for proto in ("imap", "pop3")}
        self.ports = {proto: sock.getsockname()[1] for proto, sock in self.socks.items()}
        for proto, sock in self.socks.items():
            threading.Thread(target=self._accept, args=(sock, proto), daemon=True).start()

    def _accept(self, sock: socket.socket, proto: str) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, proto), daemon=True).start()

    def _script(self, proto: str) -> list[bytes]:
        if self.mode in ("garbage", "silent"):
            return [b"HELLO I AM NOT A MAIL SERVER\r\n"] if self.mode == "garbage" else []
        if proto == "pop3":
            capa = b"+OK\r\nX-MESHPROXY-NODE mpt-fake\r\n.\r\n"
            return [b"+OK fake\r\n", capa, b"-ERR [SYS/TEMP] refused\r\n"]
        node = b'* ID ("x-meshproxy-node" "mpt-fake")\r\n{tag} OK ID done\r\n'
        return [b"* OK fake\r\n", node, b"{tag} NO [%s] refused\r\n" % self.mode.encode()]

    def _serve(self, conn: socket.socket, proto: str) -> None:
        conn.settimeout(20)
        with conn, conn.makefile("rwb") as stream:
            try:
                for index, reply in enumerate(self._script(proto)):
                    tag = stream.readline().split(b" ", 1)[0] if index else b""
                    stream.write(reply.replace(b"{tag}", tag))
                    stream.flush()
                stream.read()  # until the dialler hangs up
            except OSError:
                pass

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer_accounts(session_dir: Path) -> dict[str, Account]:
    table = {}
    for key in (*KEYS, "pdisagree"):
        mailhost = MAILHOSTS.get(key, HOME)
        password = PASSWORDS.get(key, "") + f"Pw-{key}-{secrets.token_hex(5)}"
        table[key] = Account(
            key,
            password,
            cram=key == "pcram",
            options=f"mailhost={mailhost}",
        )
        table[key].login = f"{key}@mpt.test"
        table[key].user = f"mpt_{key}"
    homes = session_dir / "peerhomes"
    homes.mkdir()
    homes.chmod(0o755)
    materialise(table, homes)
    return table


def _userdb(path: Path, accounts: dict[str, Account], disagree_on: str) -> str:
    lines = [userdb_line(account) for key, account in accounts.items() if key != "pdisagree"]
    account = accounts["pdisagree"]
    saved, account.options = account.options, f"mailhost={disagree_on}"
    lines.append(userdb_line(account))
    account.options = saved
    path.write_text("".join(lines))
    path.chmod(0o600)
    return str(path)


def _listen(host: str) -> dict[str, Any]:
    return {"listen": [f"{host}:{free_port(host)}"], "tls_listen": [], "proxy": True}


def _node(name: str, host: str, userdb: str, key: str, **more: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "node": {"name": name},
        "imap": _listen(host),
        "pop3": _listen(host),
        "auth": {"userdb": {"path": userdb}},
        "mesh": {"key_file": key, "connect_timeout": 1.0, "login_timeout": 1.5},
    }
    for section, values in more.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def _cert(tls_files: TlsFiles, folder: Path, name: str) -> dict[str, str]:
    """A certificate naming the node (what a peer with ``[mesh] tls`` verifies)."""
    issued = tls_files.authority.issue_cert(name)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    issued.private_key_pem.write_to_path(str(key))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    return {"cert": str(cert), "key": str(key)}


def _port(config: dict[str, Any], proto: str) -> int:
    return int(config[proto]["listen"][0].rpartition(":")[2])


def _peer(
    host: str, config: dict[str, Any] | None = None, ports: dict[str, int] | None = None
) -> dict[str, Any]:
    if config is not None:
        ports = {proto: _port(config, proto) for proto in ("imap", "pop3")}
    assert ports is not None
    return {"host": host, "imap": ports["imap"], "pop3": ports["pop3"]}


class Mesh:
    def __init__(self, nodes: list[Daemon], fake: FakePeer, key: bytes) -> None:
        self.foreign, self.home, self.twin, self.front, self.secure = nodes
        self.fake, self.key = fake, key

    def client(self, node: Daemon, proto: str = "imap") -> LineClient:
        port = node.imap_port if proto == "imap" else node.pop3_port
        assert port is not None
        return LineClient(node.host, port, timeout=10, source=CLIENT_IP)


@pytest.fixture(scope="module")
def mesh(
    daemon_factory: DaemonFactory,
    session_dir: Path,
    peer_accounts: dict[str, Account],
    tls_files: TlsFiles,
) -> Iterator[Mesh]:
    folder = session_dir / "peer-dialogue"
    folder.mkdir()
    key_path = folder / "mesh.key"
    key_path.write_bytes(base64.b64encode(secrets.token_bytes(32)) + b"\n")
    key_path.chmod(0o600)
    key = key_path.read_bytes().strip()
    front_db = _userdb(folder / "front.userdb", peer_accounts, HOME)
    home_db = _userdb(folder / "home.userdb", peer_accounts, FRONT)
    fake = FakePeer("127.0.0.6")
    foreign = _node("mpt-foreign", "127.0.0.4", front_db, "")
    foreign["imap"]["proxy"] = foreign["pop3"]["proxy"] = False
    del foreign["mesh"]
    home = _node(HOME, "127.0.0.3", home_db, str(key_path), tls=_cert(tls_files, folder, HOME))
    twin = _node(FRONT, "127.0.0.5", home_db, str(key_path))
    front = _node(
        FRONT,
        "127.0.0.2",
        front_db,
        str(key_path),
        auth={"failure_delay": 2.5},
        imap={"foreign": True},
        foreign={"imap_port": _port(foreign, "imap"), "pop3_port": _port(foreign, "pop3")},
    )
    front["mesh"]["peers"] = {
        HOME: _peer("127.0.0.3", home),
        "mpt-down": _peer(
            "127.0.0.9", ports={"imap": free_port("127.0.0.9"), "pop3": free_port("127.0.0.9")}
        ),
        TWIN: _peer("127.0.0.5", twin),
        "mpt-fake": _peer("127.0.0.6", ports=fake.ports),
    }
    home["mesh"]["peers"] = {FRONT: _peer("127.0.0.2", front)}
    secure = _node("mpt-secure", "127.0.0.7", front_db, str(key_path))
    secure["mesh"] |= {"tls": True, "ca_file": str(tls_files.ca)}
    secure["mesh"]["peers"] = {HOME: front["mesh"]["peers"][HOME], TWIN: _peer("127.0.0.5", twin)}
    started: list[Daemon] = []
    secrets_ = [account.password for account in peer_accounts.values()]
    try:
        for config, host in (
            (foreign, "127.0.0.4"),
            (home, "127.0.0.3"),
            (twin, "127.0.0.5"),
            (front, "127.0.0.2"),
            (secure, "127.0.0.7"),
        ):
            node = daemon_factory.start(config)
            node.host = host
            started.append(node)
        yield Mesh(started, fake, key)
    finally:
        fake.close()
        for node in started:
            daemon_factory.stop(node, secrets_)


# -- helpers ----------------------------------------------------------------------------------


def login(client: LineClient, account: Account, tag: str = "a1", extra: bytes = b"") -> list[bytes]:
    assert client.readline().startswith(b"* OK")
    client.send(f'{tag} LOGIN "{account.login}" "{account.password}"\r\n'.encode() + extra)
    return client.tagged(tag)


def pop3_login(client: LineClient, account: Account, extra: bytes = b"") -> bytes:
    assert client.readline().startswith(b"+OK")
    client.send(f"USER {account.login}\r\nPASS {account.password}\r\n".encode() + extra)
    assert client.readline().startswith(b"+OK")
    return client.readline()


def mesh_blob(mesh: Mesh, account: Account, *, key: bytes | None = None, hop: int = 1) -> str:
    blob = assertion.issue(
        key or mesh.key,
        user=account.login,
        origin=FRONT,
        target=HOME,
        service="imap",
        client_ip=CLIENT_IP,
        client_port=4242,
        session="t" + secrets.token_hex(3),
        hop=hop,
        now=time.time(),
        nonce=assertion.new_nonce(),
    )
    return base64.b64encode(blob).decode()


def direct_mesh_login(mesh: Mesh, blob: str) -> bytes:
    with mesh.client(mesh.home) as client:
        assert client.readline().startswith(b"* OK")
        reply = client.command("m1", f"AUTHENTICATE X-MESHPROXY {blob}")[-1]
        client.send(b"m2 LOGOUT\r\n")
        return reply


# -- the mesh login ---------------------------------------------------------------------------


def test_imap_login_reaches_the_home_node(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    account = peer_accounts["pimap"]
    since = mesh.home.log_size()
    raw = message("through the mesh")
    with mesh.client(mesh.front) as client:
        reply = login(client, account, "x7", extra=b"x8 NOOP\r\n")
        assert reply[-1].startswith(b"x7 OK LOGIN"), reply
        assert client.tagged("x8")[-1].startswith(b"x8 OK"), "pipelined NOOP unanswered"
        assert client.command("x9", "SELECT INBOX")[-1].startswith(b"x9 OK")
        client.send(b"x10 APPEND INBOX {%d}\r\n" % len(raw))
        assert client.readline().startswith(b"+")
        client.send(raw + b"\r\n")
        assert client.tagged("x10")[-1].startswith(b"x10 OK")
        client.command("x11", "LOGOUT")
    with mesh.client(mesh.front) as client:
        assert login(client, account, "y1")[-1].startswith(b"y1 OK")
        assert client.command("y2", "SELECT INBOX")[-1].startswith(b"y2 OK")
        fetched = client.command("y3", "FETCH 1:* (BODY.PEEK[])")
        assert raw in b"".join(fetched)
        client.command("y4", "LOGOUT")
    mesh.home.wait_for_log(
        rf"mesh login user=pimap@mpt\.test origin={FRONT}/\w+ client={CLIENT_IP}:\d+", since=since
    )
    mesh.home.wait_for_log(rf"ip=\[(::ffff:)?{CLIENT_IP}\]", since=since)
    mesh.home.wait_for_log(rf"decision=local-\S+ pid=\d+ origin={FRONT}/\w+", since=since)
    mesh.front.wait_for_log(rf"user=pimap@mpt\.test decision=peer:{HOME} ")


def test_pop3_login_reaches_the_home_node(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    since = mesh.home.log_size()
    with mesh.client(mesh.front, "pop3") as client:
        reply = pop3_login(client, peer_accounts["ppop3"], extra=b"STAT\r\n")
        assert reply.startswith(b"+OK logged in."), reply
        assert client.readline().startswith(b"+OK"), "pipelined STAT unanswered"
        client.send(b"QUIT\r\n")
    mesh.home.wait_for_log(rf"mesh login user=ppop3@mpt\.test origin={FRONT}/", since=since)


def test_cram_md5_for_an_hmac_only_account(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    account = peer_accounts["pcram"]
    with mesh.client(mesh.front) as client:
        client.readline()
        client.send(b"c1 AUTHENTICATE CRAM-MD5\r\n")
        challenge = base64.b64decode(client.readline()[2:].strip())
        digest = hmac.new(account.password.encode(), challenge, hashlib.md5).hexdigest()
        client.send(base64.b64encode(f"{account.login} {digest}".encode()) + b"\r\n")
        assert client.tagged("c1")[-1].startswith(b"c1 OK LOGIN")
        assert client.command("c2", "SELECT INBOX")[-1].startswith(b"c2 OK")


def test_foreign_server_gets_a_plain_login(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    with mesh.client(mesh.front) as client:
        reply = login(client, peer_accounts["pforeign"], "f1")
        assert reply[0].startswith(b"* CAPABILITY IMAP4rev1"), reply  # [imap] foreign
        assert reply[-1].startswith(b"f1 OK"), reply
        assert client.command("f2", "SELECT INBOX")[-1].startswith(b"f2 OK")
    with mesh.client(mesh.front, "pop3") as client:
        assert pop3_login(client, peer_accounts["pforeign"], b"STAT\r\n").startswith(b"+OK")
        assert client.readline().startswith(b"+OK")
    mesh.front.wait_for_log(r"user=pforeign@mpt\.test decision=foreign:127\.0\.0\.4 ")


@pytest.mark.parametrize("key", ["pquote", "p8bit"])
def test_foreign_login_quotes_and_literals(
    mesh: Mesh, peer_accounts: dict[str, Account], key: str
) -> None:
    """A password with quote and backslash goes quoted, one with 8-bit text as a literal."""
    account = peer_accounts[key]
    token = base64.b64encode(f"\0{account.login}\0{account.password}".encode()).decode()
    with mesh.client(mesh.front) as client:
        client.readline()
        reply = client.command("q1", f"AUTHENTICATE PLAIN {token}")
        assert reply[-1].startswith(b"q1 OK"), reply
    mesh.foreign.wait_for_log(rf"user={key}@mpt\.test decision=local-")


def test_mesh_tls_verifies_the_peer(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    """[mesh] tls: STARTTLS to the home node, its certificate checked against its node name;
    a peer whose certificate names something else is not logged in to."""
    with mesh.client(mesh.secure) as client:
        assert login(client, peer_accounts["pimap"], "t1")[-1].startswith(b"t1 OK LOGIN")
        assert client.command("t2", "SELECT INBOX")[-1].startswith(b"t2 OK")
    with mesh.client(mesh.secure, "pop3") as client:
        assert pop3_login(client, peer_accounts["ppop3"]).startswith(b"+OK logged in.")
    with mesh.client(mesh.secure) as client:
        assert login(client, peer_accounts["ploop"])[-1].startswith(b"a1 NO [UNAVAILABLE]")
    mesh.secure.wait_for_log(rf"{TWIN} at 127\.0\.0\.5:\d+ failed at stage tls: CERTIFICATE_VERIFY")


# -- failures are quick and honest ------------------------------------------------------------


def test_unreachable_peer_answers_unavailable_at_once(
    mesh: Mesh, peer_accounts: dict[str, Account]
) -> None:
    with mesh.client(mesh.front) as client:
        started = time.monotonic()
        reply = login(client, peer_accounts["pdown"])
        elapsed = time.monotonic() - started
    assert reply[-1].startswith(b"a1 NO [UNAVAILABLE]"), reply
    assert elapsed < 2.0, f"took {elapsed:.2f} s (failure_delay is 2.5 s)"
    mesh.front.wait_for_log(
        r"routing failure: mpt-down at 127\.0\.0\.9:\d+ failed at stage connect"
    )
    with mesh.client(mesh.front, "pop3") as client:
        assert pop3_login(client, peer_accounts["pdown"]).startswith(b"-ERR [SYS/TEMP]")


@pytest.mark.parametrize(
    ("mode", "stage", "code"),
    [
        ("garbage", "greeting", b"[UNAVAILABLE]"),
        ("silent", "greeting", b"[UNAVAILABLE]"),
        ("UNAVAILABLE", "login", b"[UNAVAILABLE]"),
        ("CONTACTADMIN", "login", b"[CONTACTADMIN]"),
    ],
)
def test_misbehaving_peer(
    mesh: Mesh, peer_accounts: dict[str, Account], mode: str, stage: str, code: bytes
) -> None:
    mesh.fake.mode = mode
    since = mesh.front.log_size()
    with mesh.client(mesh.front) as client:
        started = time.monotonic()
        reply = login(client, peer_accounts["pfake"])
        elapsed = time.monotonic() - started
    assert reply[-1].startswith(b"a1 NO " + code), reply
    assert elapsed < 2.5, f"took {elapsed:.2f} s (login_timeout is 1.5 s)"
    mesh.front.wait_for_log(rf"mpt-fake at 127\.0\.0\.6:\d+ failed at stage {stage}", since=since)
    with mesh.client(mesh.front, "pop3") as client:
        assert pop3_login(client, peer_accounts["pfake"]).startswith(b"-ERR [SYS/TEMP]")


def test_loop_guard_drops_a_peer_that_is_this_node(
    mesh: Mesh, peer_accounts: dict[str, Account]
) -> None:
    since = mesh.twin.log_size()
    for proto in ("imap", "pop3"):
        with mesh.client(mesh.front, proto) as client:
            if proto == "imap":
                assert login(client, peer_accounts["ploop"])[-1].startswith(b"a1 NO [UNAVAILABLE]")
            else:
                assert pop3_login(client, peer_accounts["ploop"]).startswith(b"-ERR [SYS/TEMP]")
        mesh.front.wait_for_log(rf"loop guard: 127\.0\.0\.5:\d+ answered as {FRONT}")
    assert "mesh login" not in mesh.twin.log_since(since)


def test_routing_disagreement(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    since = mesh.home.log_size()
    with mesh.client(mesh.front) as client:
        assert login(client, peer_accounts["pdisagree"])[-1].startswith(b"a1 NO [UNAVAILABLE]")
    mesh.home.wait_for_log(
        rf"routing disagreement between {FRONT} \(session \w+\) and {HOME}: {FRONT} sent "
        r"pdisagree@mpt\.test here",
        since=since,
    )


# -- forged, replayed and over-hopped mesh logins ---------------------------------------------


def test_forged_mesh_login_refused(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    since = mesh.home.log_size()
    blob = mesh_blob(mesh, peer_accounts["pimap"], key=secrets.token_bytes(32))
    assert direct_mesh_login(mesh, blob).startswith(b"m1 NO [AUTHENTICATIONFAILED]")
    mesh.home.wait_for_log(r"mesh login refused: mesh login with a bad MAC", since=since)


def test_replayed_mesh_login_refused(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    since = mesh.home.log_size()
    blob = mesh_blob(mesh, peer_accounts["pimap"])
    assert direct_mesh_login(mesh, blob).startswith(b"m1 OK")
    assert direct_mesh_login(mesh, blob).startswith(b"m1 NO [AUTHENTICATIONFAILED]")
    mesh.home.wait_for_log(r"mesh login refused: replayed mesh login", since=since)


def test_hop_limit(mesh: Mesh, peer_accounts: dict[str, Account]) -> None:
    since = mesh.home.log_size()
    blob = mesh_blob(mesh, peer_accounts["pimap"], hop=2)
    assert direct_mesh_login(mesh, blob).startswith(b"m1 NO [UNAVAILABLE]")
    mesh.home.wait_for_log(r"hop limit", since=since)
