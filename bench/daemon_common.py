"""Shared by the daemon benches: a config in a temp dir, the foreign backend, the real daemon.

``Bench`` writes a userdb with one foreign account (``options=mailhost=127.0.0.66``: not a mesh
node, so its sessions are logged in on the backend and relayed), optionally a local Courier
account, and a meshproxy config (``[imap] proxy = true``, limits 20,000, ``[health]`` on for
``/metrics``), starts ``bench/foreign_imap.py`` on 127.0.0.66 and ``python -m meshproxy serve``
(or ``bench/daemon_probe.py`` for a debug pass).  All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FOREIGN_HOST = "127.0.0.66"
USER, PASSWORD = "bench@foreign.test", "bench-secret"
CRYPT_USER = "crypt@foreign.test"
"""The same foreign account with a sha512-crypt ($6$, 5,000 rounds) hash instead of {SHA256}."""
LOCAL_USER, LOCAL_PASSWORD = "local@bench.test", "local-secret"
LOCAL_SYSTEM_USERS = ("mpt_imap", "mpt_compat", "mpt_sha512c")
"""Existing test users (tests/integration/accounts.py makes them) a local account may run as."""


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _sha256(password: str) -> str:
    return "{SHA256}" + base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_nofile(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    return "?"


def settled_rss(pid: int, *, limit: float = 15.0, step: float = 0.5) -> int:
    """VmRSS once three readings in a row agree within 64 KiB (at most ``limit`` s)."""
    deadline = time.monotonic() + limit
    readings = [proc_rss_kib(pid)]
    while time.monotonic() < deadline:
        time.sleep(step)
        readings.append(proc_rss_kib(pid))
        last = readings[-3:]
        if len(last) == 3 and max(last) - min(last) <= 64:
            break
    return readings[-1]


class Bench:
    """The temp dir, the foreign backend and one daemon at a time."""

    def __init__(self, *, local: bool = False, log_level: str = "INFO") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="meshproxy-bench-"))
        self.dir.chmod(0o755)
        self.backend = subprocess.Popen(
            [sys.executable, str(HERE / "foreign_imap.py"), FOREIGN_HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.backend.stdout is not None
        word, port = self.backend.stdout.readline().split()
        assert word == "ready"
        self.backend_port = int(port)
        self.local_user = self._local_account() if local else None
        self.imap_port = free_port()
        self.health_port = free_port()
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.probe_out = self.dir / "probe.json"

    def _local_account(self) -> str | None:
        """A Courier account on this node, run as an existing test user (None: none exists)."""
        for name in LOCAL_SYSTEM_USERS:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            home = self.dir / "local-home"
            home.mkdir()
            os.chown(home, entry.pw_uid, entry.pw_gid)
            subprocess.run(
                ["runuser", "-u", name, "--", "maildirmake.courier", str(home / "Maildir")],
                check=True,
                timeout=60,
            )
            self._local = (entry.pw_uid, entry.pw_gid, home)
            return name
        return None

    def write_config(self) -> Path:
        lines = [
            f"{USER}\tuid=65534|gid=65534|home=/nonexistent|systempw={_sha256(PASSWORD)}"
            f"|options=mailhost={FOREIGN_HOST}\n"
        ]
        import crypt_r  # noqa: PLC0415 -- the tests' dependency, only needed here

        sha512c = crypt_r.crypt(PASSWORD, crypt_r.mksalt(crypt_r.METHOD_SHA512))
        lines.append(
            f"{CRYPT_USER}\tuid=65534|gid=65534|home=/nonexistent|systempw={sha512c}"
            f"|options=mailhost={FOREIGN_HOST}\n"
        )
        if self.local_user is not None:
            uid, gid, home = self._local
            lines.append(
                f"{LOCAL_USER}\tuid={uid}|gid={gid}|home={home}|systempw={_sha256(LOCAL_PASSWORD)}\n"
            )
        userdb = self.dir / "userdb"
        fd = os.open(userdb, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write("".join(lines))
        config = self.dir / "meshproxy.toml"
        config.write_text(
            f"""[node]
name = "bench-node"

[imap]
listen = ["127.0.0.1:{self.imap_port}"]
proxy = true

[pop3]
listen = []

[courier]
config_dir = "/etc/courier"

[auth]
source = "userdb"
failure_delay = 0.05

[auth.userdb]
path = "{userdb}"

[limits]
max_connections = 20000
max_per_ip = 20000
login_timeout = 60.0

[foreign]
imap_port = {self.backend_port}

[health]
listen = "127.0.0.1:{self.health_port}"

[log]
level = "{self.log_level}"
"""
        )
        return config

    def start(self, *, probe: bool = False, trace: bool = False, profile: bool = False) -> int:
        """Start the daemon (a probe run: bench/daemon_probe.py); wait for its greeting."""
        config = self.write_config()
        env = {k: v for k, v in os.environ.items() if k != "PROXY_HOSTNAME"}
        env["PYTHONPATH"] = str(ROOT)
        if trace:
            env["BENCH_TRACEMALLOC"] = "1"
        if profile:
            env["BENCH_PROFILE"] = "1"
        if probe:
            command = [sys.executable, str(HERE / "daemon_probe.py"), str(self.probe_out)]
        else:
            command = [sys.executable, "-m", "meshproxy"]
        with open(self.dir / "meshproxy.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "serve", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"meshproxy exited during start-up:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=2) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"meshproxy did not greet:\n{self.log()}")
            time.sleep(0.1)
        return self.proc.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return (self.dir / "meshproxy.log").read_text(errors="replace")

    def sessions(self) -> int:
        """``meshproxy_sessions`` from ``/metrics``."""
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("meshproxy_sessions "):
                    return int(float(line.split()[1]))
        raise RuntimeError("no meshproxy_sessions in /metrics")

    def probe(self) -> dict[str, object]:
        """Ask a probe run for its report (SIGUSR1, then wait for the file)."""
        import json  # noqa: PLC0415

        self.probe_out.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while not self.probe_out.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no probe report")
            time.sleep(0.2)
        report: dict[str, object] = json.loads(self.probe_out.read_text())
        return report

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        assert self.backend.stdin is not None
        self.backend.stdin.close()
        self.backend.wait(10)
        assert self.backend.stdout is not None
        self.backend.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- clients ------------------------------------------------------------------------------------


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """Read until ``marker`` followed by a line end is in the data."""
    while True:
        at = data.find(marker)
        if at >= 0 and data.find(b"\r\n", at) >= 0:
            return data
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed while waiting for {marker!r}: {data!r}")
        data += chunk


def connect(port: int) -> socket.socket:
    """No bind() first: a bind to port 0 searches the whole ephemeral range and fails once
    TIME_WAIT sockets fill it; connect() picks a port per destination."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect(("127.0.0.1", port))
    return sock


def login_batch(port: int, count: int, user: str = USER, password: str = PASSWORD) -> list:
    """``count`` sessions logged in, concurrently: connect all, then greet, LOGIN, wait OK."""
    socks = [connect(port) for _ in range(count)]
    for sock in socks:
        read_until(sock, b"* OK")
    for sock in socks:
        sock.sendall(f'a1 LOGIN "{user}" "{password}"\r\n'.encode())
    for sock in socks:
        reply = read_until(sock, b"a1 ")
        if b"a1 OK" not in reply:
            raise RuntimeError(f"login failed: {reply!r}")
    return socks


def noop_batch(socks: list) -> None:
    """One command each way through every session (relay state allocated on first traffic)."""
    for sock in socks:
        sock.sendall(b"a2 NOOP\r\n")
    for sock in socks:
        read_until(sock, b"a2 OK")
