"""Helpers of the mesh tests: nodes on 127.0.0.x, their accounts, clients and log readers.

A mesh is a few ``meshproxy serve`` processes on one machine, one per loopback address
(127.0.0.2, 127.0.0.3, 127.0.0.4), all on the same ports.  Each node learns its name (mx2,
mx3, mx4) from the ``PROXY_HOSTNAME`` environment variable, as a real node would learn it
from its host; the config files differ only in their listen addresses (see ``node_config``).
The nodes find each other through a directory: ``Mesh`` is the embedded one (a static
``[mesh.peers]`` table), ``consul_nodes.ConsulMesh`` the Consul one; ``build_mesh`` builds
either.

Accounts are Courier accounts homed on one node each (``mailhost=mxN``): a system user
``mpm_<key>`` and a Maildir under that node's own directory (``<mesh>/<node>/home/<key>``),
so the home paths of different nodes never meet.  One account source serves the whole mesh:
a userdb file, or a PostgreSQL table (``SqlAccounts``).

Clients bind to ``CLIENT_IP`` (127.0.0.77) and readiness probes to ``PROBE_IP``, so every
other client address a node logs is a node-to-node connection (nodes dial from 127.0.0.1,
the kernel's source address for loopback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import json
import os
import poplib
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration.accounts import Account, ensure_system_user, make_home, write_userdb
from integration.clients import LineClient
from integration.daemon import Daemon, deep_merge, to_toml

NODES = {"mx2": "127.0.0.2", "mx3": "127.0.0.3", "mx4": "127.0.0.4"}
CLIENT_IP = "127.0.0.77"
PROBE_IP = "127.0.0.99"
FOREIGN_IP = "127.0.0.5"
DOMAIN = "mesh.test"
START_TIMEOUT = 20.0
TIMEOUT = 15.0
MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5"]
_FOREIGN_ENV = ("PROXY_HOSTNAME", "CONSUL_HTTP_TOKEN")
"""Environment variables a node must not inherit from the test run."""

SUMMARY = re.compile(
    r"session (?P<session>\S+) end client=(?P<client>\S+) listener=(?P<listener>\S+) "
    r"user=(?P<user>.*?) decision=(?P<decision>\S+) pid=(?P<pid>\S+)(?: origin=(?P<origin>\S+))? "
    r"in=(?P<inb>\d+) "
    r"out=(?P<outb>\d+) duration=(?P<duration>[\d.]+)s reason=(?P<reason>.*)"
)


# --- accounts -------------------------------------------------------------------------------


@dataclass
class MeshAccount(Account):
    """A Courier account homed on ``node`` (its mailhost), or on a foreign ``mailhost``."""

    node: str = ""
    mailhost: str = ""


def mesh_account(key: str, node: str, *, mailhost: str = "", **kwargs: Any) -> MeshAccount:
    account = MeshAccount(key, f"Pw-{key}-{secrets.token_hex(5)}", **kwargs)
    account.node = node
    account.mailhost = mailhost or node
    account.options = ",".join(filter(None, [f"mailhost={account.mailhost}", account.options]))
    account.login = f"{key}@{DOMAIN}"
    account.user = f"mpm_{key}"
    return account


def materialise(accounts: Iterable[MeshAccount], root: Path) -> None:
    """System users and homes: ``root/<node>/home/<key>`` with a Courier Maildir."""
    for account in accounts:
        account.uid, account.gid = ensure_system_user(account.user)
        homes = root / (account.node or "foreign") / "home"
        homes.mkdir(parents=True, exist_ok=True)
        for folder in (root, homes.parent, homes):
            folder.chmod(0o755)
        make_home(account, homes)


def common_free_port(addresses: Iterable[str]) -> int:
    """A port free on every one of ``addresses`` (same ports on every node)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((CLIENT_IP, 0))
            port = int(probe.getsockname()[1])
        try:
            with contextlib.ExitStack() as stack:
                for address in addresses:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((address, port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on every node address")


# --- nodes ----------------------------------------------------------------------------------


class Node(Daemon):
    """One mesh node: a ``meshproxy serve`` on its own address.

    It starts with ``PROXY_HOSTNAME`` = ``proxy_hostname`` (default: its name), as a real node
    learns its name from its host; ``CONSUL_HTTP_TOKEN`` is kept out of its environment (the
    token must come from the config).  With ``[health] listen`` configured, ``health()`` and
    ``get()`` read the endpoint.
    """

    def __init__(
        self,
        name: str,
        address: str,
        config: dict[str, Any],
        workdir: Path,
        ca_file: Path,
        *,
        proxy_hostname: str = "",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(config, workdir, ca_file)
        self.name = name
        self.host = address
        self.proxy_hostname = proxy_hostname or name
        health = config.get("health", {}).get("listen", "")
        self.health_port = int(health.rpartition(":")[2]) if health else None

    def start(self) -> None:
        assert not self.alive(), f"{self.name} is already running"
        self.config_path.write_text(to_toml(self.config))
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
        env.update(PYTHONUNBUFFERED="1", PROXY_HOSTNAME=self.proxy_hostname)
        command = [sys.executable, "-m", "meshproxy", "serve", "-c", str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop(check=False)
            raise

    def _wait_ready(self) -> None:
        """Every listener greets (the implicit-TLS ones over TLS), probed from PROBE_IP."""
        deadline = time.monotonic() + START_TIMEOUT
        for address, tls in self.listeners():
            host, _, port = address.rpartition(":")
            context = self.client_context() if tls else None
            while not self._greets(host, int(port), context):
                if not self.alive():
                    raise AssertionError(
                        f"{self.name} exited with {self.proc and self.proc.returncode}; "
                        f"log:\n{self.log()}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready on {address}:\n{self.log()}")
                time.sleep(0.05)

    @staticmethod
    def _greets(host: str, port: int, context: ssl.SSLContext | None) -> bool:
        try:
            with LineClient(host, port, tls=context, timeout=2, source=PROBE_IP) as client:
                return client.readline().startswith((b"* OK", b"+OK"))
        except (OSError, TimeoutError, EOFError):
            return False

    def terminate(self) -> None:
        """SIGTERM without waiting (the drain tests watch what happens meanwhile)."""
        assert self.proc is not None
        self.proc.terminate()

    def kill(self) -> list[int]:
        """SIGKILL the daemon and every child it started (the host dies); their pids."""
        assert self.proc is not None
        victims = [self.pid, *self.children()]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        return victims

    # -- log -------------------------------------------------------------------------------

    def summaries(self, since: int = 0) -> list[dict[str, str]]:
        """Every session summary line after byte ``since``."""
        return [
            {key: value or "" for key, value in match.groupdict().items()}
            for match in SUMMARY.finditer(self.log_since(since))
        ]

    def wait_summary(self, since: int = 0, timeout: float = TIMEOUT, **want: str) -> dict[str, str]:
        """The first summary line after ``since`` whose fields start with ``want``'s values."""
        deadline = time.monotonic() + timeout
        while True:
            for summary in self.summaries(since):
                if all(summary[key].startswith(value) for key, value in want.items()):
                    return summary
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no summary with {want} within {timeout} s; log:\n"
                    f"{self.log_since(since)}"
                )
            time.sleep(0.05)

    # -- clients ---------------------------------------------------------------------------

    def port(self, kind: str) -> int:
        """The port of the first listener of ``kind`` (imap, pop3, imaps, pop3s)."""
        port = {
            "imap": self.imap_port,
            "pop3": self.pop3_port,
            "imaps": self.imaps_port,
            "pop3s": self.pop3s_port,
        }[kind]
        assert port is not None, f"{self.name} has no {kind} listener"
        return port

    def line(self, proto: str = "imap", timeout: float = TIMEOUT) -> LineClient:
        """A raw client bound to CLIENT_IP."""
        return LineClient(self.host, self.port(proto), timeout=timeout, source=CLIENT_IP)

    # -- the health endpoint ([health] listen) ---------------------------------------------

    def get(self, path: str) -> tuple[int, bytes]:
        assert self.health_port is not None, f"{self.name} has no [health] listen"
        url = f"http://{self.host}:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def health(self) -> dict[str, Any]:
        _, body = self.get("/health")
        return dict(json.loads(body))

    def wait_health(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = TIMEOUT,
        what: str = "",
    ) -> dict[str, Any]:
        """The first /health body ``predicate`` accepts (bounded)."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                body = self.health()
            except OSError:
                body = {}
            if body and predicate(body):
                return body
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name}: /health never showed {what or predicate}: {body}\n{self.log()}"
        )


def login_reply(node: Node, login: str, password: str, proto: str = "imap") -> tuple[bytes, float]:
    """(the reply to a LOGIN / USER+PASS through ``node``, seconds it took)."""
    with node.line(proto) as client:
        client.readline()
        started = time.monotonic()
        if proto == "imap":
            client.send(f'l1 LOGIN "{login}" "{password}"\r\n'.encode())
            reply = client.tagged("l1", timeout=15)[-1]
        else:
            client.send(f"USER {login}\r\n".encode())
            assert client.readline().startswith(b"+OK")
            client.send(f"PASS {password}\r\n".encode())
            reply = client.readline(timeout=15)
        return reply, time.monotonic() - started


# --- meshes ---------------------------------------------------------------------------------


class Mesh:
    """Nodes sharing one account source and one mesh key; this class is the embedded
    directory (``[mesh.peers]``), ``consul_nodes.ConsulMesh`` the Consul one.

    The directory-specific parts are ``directory``, ``port_kinds``, ``base_config``,
    ``node_config`` (how ``build_mesh`` writes the nodes' files) and ``converge`` /
    ``wait_peer_down`` (what a test waits for after a node's state changes).
    """

    directory = "static"
    port_kinds: tuple[str, ...] = ("imap", "pop3")

    def __init__(
        self, root: Path, accounts: Mapping[str, MeshAccount], key_file: Path, ca_file: Path
    ) -> None:
        self.root = root
        self.accounts = dict(accounts)
        self.key_file = key_file
        self.ca_file = ca_file
        self.nodes: dict[str, Node] = {}

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def account(self, key: str) -> MeshAccount:
        return self.accounts[key]

    def offsets(self) -> dict[str, int]:
        """Each node's log size now (``since`` for later reads)."""
        return {name: node.log_size() for name, node in self.nodes.items()}

    # -- configuration ---------------------------------------------------------------------

    def base_config(self, source: Mapping[str, Any], tls: Mapping[str, str]) -> dict[str, Any]:
        """The file every node shares (before ``node_config``): peers from ``[mesh.peers]``."""
        config = base_config(source, self.key_file, tls, self.ca_file)
        config["mesh"]["peers"] = dict(NODES)
        return config

    def node_config(
        self,
        name: str,
        base: Mapping[str, Any],
        ports: Mapping[str, int],
        overrides: Mapping[str, Any],
    ) -> dict[str, Any]:
        return node_config(base, NODES[name], ports, overrides)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        for node in self:
            node.start()
        self.converge()

    def converge(self) -> None:
        """Wait until every running node routes to every running peer: nothing to wait for
        with a static peers table (a node is ready once its listeners greet)."""

    def restart(self, node: Node) -> None:
        """Start ``node`` again (after ``kill`` or ``stop``) and wait until the mesh knows."""
        node.start()
        self.converge()

    def wait_peer_down(self, name: str) -> None:
        """Wait until the directory of every other running node knows that ``name`` (killed)
        is down: the static table never learns it (each login dials and fails)."""

    def stop(self) -> None:
        """Stop every node, then check every log (the first problem is raised)."""
        for node in self:
            node.stop(check=False)
        secrets_ = [account.password for account in self.accounts.values()]
        for node in self:
            node.check_log(secrets_)

    def mesh_sessions(self, offsets: Mapping[str, int]) -> dict[str, list[dict[str, str]]]:
        """Per node: sessions accepted since ``offsets`` from neither a client nor a probe
        (that is, connections from other nodes, or from itself)."""
        return {
            name: [
                s
                for s in node.summaries(offsets.get(name, 0))
                if not s["client"].startswith((f"{CLIENT_IP}:", f"{PROBE_IP}:"))
            ]
            for name, node in self.nodes.items()
        }


def node_config(
    base: Mapping[str, Any], address: str, ports: Mapping[str, int], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """``base`` with this node's listeners.

    The files of a real mesh are byte-identical (a wildcard listener on each host); here the
    nodes share one machine, so each must bind its own loopback address, and that is the only
    difference (plus ``overrides`` a test gives one node on purpose, such as a loop guard's
    disagreeing source).
    """
    config = deep_merge(dict(base), overrides)
    config["imap"]["listen"] = [f"{address}:{ports['imap']}"]
    config["pop3"]["listen"] = [f"{address}:{ports['pop3']}"]
    return config


def base_config(
    source: Mapping[str, Any], key_file: Path, tls: Mapping[str, str], ca_file: Path
) -> dict[str, Any]:
    """What every mesh's file has, whatever its directory."""
    return {
        "imap": {"listen": [], "proxy": True, "sasl_mechanisms": MECHANISMS},
        "pop3": {"listen": [], "proxy": True, "sasl_mechanisms": MECHANISMS},
        "tls": dict(tls),
        "courier": {"config_dir": "/etc/courier"},
        "auth": {"failure_delay": 0.2, **source},
        "limits": {"login_timeout": 30.0, "max_per_ip": 200},
        "log": {"level": "INFO"},
        "mesh": {
            "key_file": str(key_file),
            "ca_file": str(ca_file),
            "connect_timeout": 2.0,
            "login_timeout": 5.0,
        },
    }


def write_key(path: Path) -> Path:
    """A mesh key as docs/mesh.md says to make one (32 random bytes, base64), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(secrets.token_urlsafe(32) + "\n")
    return path


def build_mesh(
    root: Path,
    accounts: Mapping[str, MeshAccount],
    source: Mapping[str, Any],
    tls: Mapping[str, str],
    ca_file: Path,
    *,
    mesh_class: Callable[..., Mesh] = Mesh,
    names: Iterable[str] = tuple(NODES),
    overrides: Mapping[str, Any] | None = None,
    per_node: Mapping[str, Mapping[str, Any]] | None = None,
    hostnames: Mapping[str, str] | None = None,
    **mesh_kwargs: Any,
) -> Mesh:
    """A mesh (not started) of ``names``, every node with the same ports; ``mesh_class``
    (given ``mesh_kwargs``) chooses the directory.  ``hostnames``: a node's PROXY_HOSTNAME
    when it is not its name."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = write_key(root / "mesh.key")
    mesh = mesh_class(root, accounts, key_file, ca_file, **mesh_kwargs)
    chosen = list(names)
    addresses = [NODES[name] for name in chosen]
    ports = {kind: common_free_port(addresses) for kind in mesh.port_kinds}
    base = deep_merge(mesh.base_config(source, tls), overrides or {})
    for name in chosen:
        config = mesh.node_config(name, base, ports, (per_node or {}).get(name, {}))
        mesh.nodes[name] = Node(
            name,
            NODES[name],
            config,
            root / name,
            ca_file,
            proxy_hostname=(hostnames or {}).get(name, ""),
        )
    return mesh


def userdb_source(path: Path, accounts: Iterable[MeshAccount]) -> dict[str, Any]:
    write_userdb(path, accounts)
    return {"source": "userdb", "userdb": {"path": str(path)}}


# --- clients bound to CLIENT_IP -------------------------------------------------------------


class BoundIMAP4(imaplib.IMAP4):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(CLIENT_IP, 0)
        )


class BoundPOP3(poplib.POP3):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(CLIENT_IP, 0)
        )


@contextlib.contextmanager
def imap_login(node: Node, account: Account) -> Iterator[imaplib.IMAP4]:
    client = BoundIMAP4(node.host, node.port("imap"), timeout=TIMEOUT)
    try:
        typ, data = client.login(account.login, account.password)
        assert typ == "OK", data
        yield client
    finally:
        if client.state != "LOGOUT":
            try:
                client.logout()
            except (imaplib.IMAP4.error, OSError):
                client.shutdown()


@contextlib.contextmanager
def pop3_login(node: Node, account: Account) -> Iterator[poplib.POP3]:
    client = BoundPOP3(node.host, node.port("pop3"), timeout=TIMEOUT)
    try:
        client.user(account.login)
        reply = client.pass_(account.password)
        assert reply.startswith(b"+OK"), reply
        yield client
        client.quit()
    finally:
        client.close()


def client_port(client: imaplib.IMAP4 | poplib.POP3) -> int:
    sock = client.sock
    return int(sock.getsockname()[1])


# --- sockets --------------------------------------------------------------------------------


def tcp_connections() -> list[tuple[str, int, str, int, str]]:
    """Every IPv4 TCP socket in /proc/net/tcp (TIME-WAIT included):
    (local ip, local port, remote ip, remote port, state hex)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        (lip, lport), (rip, rport) = (_addr(fields[1]), _addr(fields[2]))
        found.append((lip, lport, rip, rport, fields[3]))
    return found


def _addr(text: str) -> tuple[str, int]:
    ip_hex, port_hex = text.split(":")
    raw = bytes.fromhex(ip_hex)[::-1]
    return ".".join(str(b) for b in raw), int(port_hex, 16)


LISTEN = "0A"


def connections_at(address: str, ports: Iterable[int]) -> set[tuple[str, int, str, int]]:
    """TCP connections (any state but LISTEN, TIME-WAIT included) with one end on
    ``address:port``: (that address, port, other ip, other port), from either side's socket."""
    wanted = set(ports)
    found = set()
    for lip, lport, rip, rport, state in tcp_connections():
        if state == LISTEN:
            continue
        if lip == address and lport in wanted:
            found.add((lip, lport, rip, rport))
        if rip == address and rport in wanted:
            found.add((rip, rport, lip, lport))
    return found


def node_connections(node: Node) -> set[tuple[str, int, str, int]]:
    """Connections to ``node``'s listeners from anything but a test client or a probe."""
    ports = (node.port("imap"), node.port("pop3"))
    return {c for c in connections_at(node.host, ports) if c[2] not in (CLIENT_IP, PROBE_IP)}


def replace(account: MeshAccount, **changes: Any) -> MeshAccount:
    return dataclasses.replace(account, **changes)
