"""pytest fixtures and the subprocess handle of the fake Consul.

Import the fixtures into a conftest (``from fakeconsul.fixtures import consul_cluster,
consul_cluster_factory, consul_process_factory  # noqa: F401``).  Both handles,
:class:`~fakeconsul.server.ConsulCluster` (in this process, agents in threads) and
:class:`ConsulProcess` (a ``python -m tests.fakeconsul`` child), offer the same control
methods: ``urls``, ``url(node)``, ``client(node, token)``, ``set_node_health(node, status)``,
``restore_index(index)``, ``set_leader(present)``, ``stop_agent(node, mark_critical)``,
``start_agent(node)``, ``stop()``, ``start(keep_state)``, ``dump()``.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import consul
import pytest

from .__main__ import READY
from .server import ConsulCluster

MESH_NODES = {"mx2": "127.0.0.2", "mx3": "127.0.0.3", "mx4": "127.0.0.4"}
REPO = Path(__file__).resolve().parents[2]


class ConsulProcess:
    """The fake Consul as a child process; ports are kept across ``stop()``/``start()``.

    ``start(keep_state=True)`` after ``stop()`` brings back the catalog saved at SIGTERM;
    ``keep_state=False`` starts empty (index from 1: a regression for watchers).
    ``kill()`` is SIGKILL: nothing saved since the last ``stop()`` survives.
    """

    def __init__(
        self,
        nodes: Mapping[str, str] | None = None,
        *,
        state_file: str | Path,
        port: int = 0,
        bind: str = "node",
        acl_tokens: Mapping[str, str | None] | None = None,
        acl_anonymous_rules: str = "",
        tcp_immediate: bool = False,
        reap_scale: float = 1.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.nodes = dict(nodes or MESH_NODES)
        self.state_file = Path(state_file)
        self.args = [
            "--nodes",
            ",".join(f"{k}={v}" for k, v in self.nodes.items()),
            "--port",
            str(port),
            "--bind",
            bind,
            "--state-file",
            str(self.state_file),
            "--reap-scale",
            str(reap_scale),
            *extra_args,
        ]
        if tcp_immediate:
            self.args.append("--tcp-immediate")
        for secret, rules in (acl_tokens or {}).items():
            self.args += ["--acl-token", secret if rules is None else f"{secret}={rules}"]
        if acl_anonymous_rules:
            self.args += ["--acl-anonymous", acl_anonymous_rules]
        self.urls: dict[str, str] = {}
        self.stopped: set[str] = set()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, keep_state: bool = True, timeout: float = 15.0) -> ConsulProcess:
        if not keep_state:
            self.state_file.unlink(missing_ok=True)
        args = list(self.args)
        for node, url in self.urls.items():  # same ports as before
            args += ["--agent-port", f"{node}={url.rsplit(':', 1)[1]}"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeconsul", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith(READY):
            self.kill()
            raise RuntimeError(f"fake consul did not start: {line!r}")
        self.urls = json.loads(line[len(READY) :])["agents"]
        self.stopped.clear()
        return self

    def stop(self) -> None:
        """SIGTERM: the state is saved to ``state_file``, every agent goes away."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def url(self, node: str) -> str:
        return self.urls[node]

    def client(self, node: str, token: str | None = None, **kwargs: Any) -> consul.Consul:
        host, port = self.urls[node].removeprefix("http://").rsplit(":", 1)
        return consul.Consul(host=host.strip("[]"), port=int(port), token=token, **kwargs)

    def _control(self, path: str, method: str = "PUT") -> bytes:
        live = [u for n, u in self.urls.items() if n not in self.stopped]
        if not live or self.proc is None:
            raise RuntimeError("no running agent to send a control request to")
        req = urllib.request.Request(live[0] + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bytes(resp.read())

    def set_node_health(self, node: str, status: str = "critical", output: str = "") -> None:
        query = urllib.parse.urlencode({"status": status, "output": output})
        self._control(f"/test/node/{node}/health?{query}")

    def restore_index(self, index: int | None = None) -> int:
        query = f"?index={index}" if index is not None else ""
        return int(json.loads(self._control("/test/restore-index" + query))["Index"])

    def set_leader(self, present: bool) -> None:
        self._control(f"/test/leader?present={str(present).lower()}")

    def stop_agent(self, node: str, mark_critical: bool = True) -> None:
        self._control(f"/test/stop-agent/{node}?critical={str(mark_critical).lower()}")
        self.stopped.add(node)
        _wait_refused(self.urls[node])

    def start_agent(self, node: str) -> None:
        self.stopped.discard(node)  # control goes to another agent: don't pick this one
        live = [n for n in self.urls if n not in self.stopped and n != node]
        if not live:
            raise RuntimeError("no running agent to send a control request to")
        req = urllib.request.Request(self.urls[live[0]] + f"/test/start-agent/{node}", method="PUT")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def dump(self) -> dict[str, Any]:
        return dict(json.loads(self._control("/test/state", "GET")))


def _wait_refused(url: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/v1/status/leader", timeout=1).close()
        except OSError:
            return
        time.sleep(0.02)


@pytest.fixture
def consul_cluster_factory() -> Iterator[Callable[..., ConsulCluster]]:
    """``factory(nodes={"mx2": "127.0.0.2", ...}, **ConsulCluster options)``: started
    in-process clusters, closed at the end of the test."""
    made: list[ConsulCluster] = []

    def factory(nodes: Mapping[str, str] | None = None, **kwargs: Any) -> ConsulCluster:
        cluster = ConsulCluster(nodes or MESH_NODES, **kwargs).start()
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        cluster.close()


@pytest.fixture
def consul_cluster(consul_cluster_factory: Callable[..., ConsulCluster]) -> ConsulCluster:
    """Agents of mx2/mx3/mx4 on 127.0.0.2/3/4 (ephemeral ports), no ACLs, TCP checks that
    probe at once."""
    return consul_cluster_factory(MESH_NODES, tcp_immediate=True)


@pytest.fixture
def consul_process_factory(tmp_path: Path) -> Iterator[Callable[..., ConsulProcess]]:
    """``factory(nodes, **ConsulProcess options)``: started child processes, stopped at the
    end of the test; each gets its own state file under tmp_path."""
    made: list[ConsulProcess] = []

    def factory(nodes: Mapping[str, str] | None = None, **kwargs: Any) -> ConsulProcess:
        kwargs.setdefault("state_file", tmp_path / f"consul-state-{len(made)}.json")
        proc = ConsulProcess(nodes, **kwargs).start()
        made.append(proc)
        return proc

    yield factory
    for proc in made:
        proc.stop()


def http_request(
    url: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """A raw request (for what py-consul cannot send): (status, headers, body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
