"""Start and stop a real ``meshproxy serve`` process for the integration tests."""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .clients import LineClient

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for our config: nested tables of scalars and lists."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    text = ""
    if prefix and lines:
        text += f"[{prefix[:-1]}]\n"
    if lines:
        text += "\n".join(lines) + "\n\n"
    for name, table in tables:
        text += to_toml(table, f"{name}.")
    return text


def _first_port(addresses: list[str]) -> int | None:
    if not addresses:
        return None
    return int(addresses[0].rpartition(":")[2])


class Daemon:
    """One running ``meshproxy serve``; ports come from its config."""

    def __init__(self, config: dict[str, Any], workdir: Path, ca_file: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.ca_file = ca_file
        self.config_path = workdir / "meshproxy.toml"
        self.log_path = workdir / "meshproxy.log"
        self.host = HOST
        self.imap_port = _first_port(config["imap"]["listen"])
        self.imaps_port = _first_port(config["imap"].get("tls_listen", []))
        self.pop3_port = _first_port(config["pop3"]["listen"])
        self.pop3s_port = _first_port(config["pop3"].get("tls_listen", []))
        self.proc: subprocess.Popen[bytes] | None = None

    # -- process ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.config_path.write_text(to_toml(self.config))
        env = {k: v for k, v in os.environ.items() if k != "PROXY_HOSTNAME"}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meshproxy", "serve", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop(check=False)
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for address, tls in self.listeners():
            host, _, port = address.rpartition(":")
            while True:
                if not self.alive():
                    raise AssertionError(
                        f"meshproxy exited with {self.proc and self.proc.returncode} "
                        f"during start-up; log:\n{self.log()}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"meshproxy did not greet on {address} within {START_TIMEOUT} s; "
                        f"log:\n{self.log()}"
                    )
                try:
                    with LineClient(
                        host, int(port), tls=self.client_context() if tls else None, timeout=2
                    ) as client:
                        greeting = client.readline()
                    if greeting.startswith((b"* OK", b"+OK")):
                        break
                except (OSError, TimeoutError):
                    time.sleep(0.05)

    def listeners(self) -> Iterable[tuple[str, bool]]:
        for proto in ("imap", "pop3"):
            for address in self.config[proto]["listen"]:
                yield address, False
            for address in self.config[proto].get("tls_listen", []):
                yield address, True

    def stop(self, *, check: bool = True) -> None:
        """SIGTERM, wait (bounded), then check the log for tracebacks."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
                if check:
                    raise AssertionError(
                        f"meshproxy ignored SIGTERM for {STOP_TIMEOUT} s; log:\n{self.log()}"
                    ) from None
        if check:
            self.check_log()

    def check_log(self, secrets: Iterable[str] = ()) -> None:
        text = self.log()
        assert "Traceback" not in text, f"traceback in the daemon log:\n{text}"
        for secret in secrets:
            assert secret not in text, f"a password appears in the daemon log {self.log_path}"

    # -- log -------------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as stream:
            stream.seek(offset)
            return stream.read().decode(errors="replace")

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        *,
        since: int = 0,
        timeout: float = 10.0,
        predicate: Callable[[re.Match[str]], bool] | None = None,
    ) -> re.Match[str]:
        """Wait until a log line (after byte ``since``) matches ``pattern``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            for match in regex.finditer(self.log_since(since)):
                if predicate is None or predicate(match):
                    return match
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no log line matching {regex.pattern!r} within {timeout} s; log since "
                    f"{since}:\n{self.log_since(since)}"
                )
            time.sleep(0.05)

    # -- resources -------------------------------------------------------------------------

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def open_fds(self) -> list[str]:
        folder = f"/proc/{self.pid}/fd"
        found = []
        for name in os.listdir(folder):
            try:
                found.append(os.readlink(f"{folder}/{name}"))
            except FileNotFoundError:
                continue
        return sorted(found)

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(pid) for pid in text.split()]

    # -- clients ---------------------------------------------------------------------------

    def client_context(self, **kwargs: Any) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for key, value in kwargs.items():
            setattr(context, key, value)
        return context

    def raw(self, proto: str = "imap", *, tls: bool = False, timeout: float = 10) -> LineClient:
        port = {
            ("imap", False): self.imap_port,
            ("imap", True): self.imaps_port,
            ("pop3", False): self.pop3_port,
            ("pop3", True): self.pop3s_port,
        }[(proto, tls)]
        assert port is not None, f"no {proto} {'TLS ' if tls else ''}listener"
        return LineClient(
            self.host, port, tls=self.client_context() if tls else None, timeout=timeout
        )


class DaemonFactory:
    """Builds configs from a base plus overrides and keeps track of running daemons."""

    def __init__(self, root: Path, base: dict[str, Any], ca_file: Path) -> None:
        self.root = root
        self.base = base
        self.ca_file = ca_file
        self.count = 0
        self.running: list[Daemon] = []

    def config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        config = deep_merge(self.base, overrides or {})
        for proto in ("imap", "pop3"):
            section = config[proto]
            if section.get("listen") is None:
                section["listen"] = [f"{HOST}:{free_port()}"]
            if section.get("tls_listen") is None:
                section["tls_listen"] = [f"{HOST}:{free_port()}"]
        return config

    def start(self, overrides: Mapping[str, Any] | None = None) -> Daemon:
        self.count += 1
        workdir = self.root / f"daemon{self.count}"
        workdir.mkdir(parents=True)
        daemon = Daemon(self.config(overrides), workdir, self.ca_file)
        daemon.start()
        self.running.append(daemon)
        return daemon

    def stop(self, daemon: Daemon, secrets: Iterable[str] = ()) -> None:
        if daemon in self.running:
            self.running.remove(daemon)
        daemon.stop()
        daemon.check_log(secrets)
