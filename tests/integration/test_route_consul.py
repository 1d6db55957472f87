"""``meshproxy route`` in Consul mode learns this node's name from the local agent, as
``serve`` does, and says so when the agent cannot be reached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fakeconsul.fixtures import consul_cluster_factory  # noqa: F401 -- a fixture
from fakeconsul.server import ConsulCluster

from meshproxy import cli

pytestmark = pytest.mark.integration

USERDB = "a@example.com\tuid=1001|gid=1001|home=/home/a|options=mailhost=mx3\n"


def write_site(tmp_path: Path, consul_url: str) -> Path:
    userdb = tmp_path / "userdb"
    userdb.write_text(USERDB)
    userdb.chmod(0o600)
    key = tmp_path / "mesh.key"
    key.write_text("k" * 40)
    key.chmod(0o600)
    config = tmp_path / "meshproxy.toml"
    config.write_text(
        f"""
[imap]
listen = ["127.0.0.3:10143"]
proxy = true
[pop3]
listen = ["127.0.0.3:10110"]
proxy = true
[auth.userdb]
path = "{userdb}"
[mesh]
key_file = "{key}"
consul = "{consul_url}"
"""
    )
    return config


def test_route_takes_the_agent_node_name(
    tmp_path: Path,
    consul_cluster_factory: Callable[..., ConsulCluster],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROXY_HOSTNAME", "box3")
    cluster: ConsulCluster = consul_cluster_factory({"mx3": "127.0.0.3"})
    config = write_site(tmp_path, cluster.url("mx3"))
    assert cli.main(["route", "-c", str(config), "a@example.com"]) == 0
    out = capsys.readouterr().out
    assert "mx3" in out.split("this node:")[1].splitlines()[0]
    assert "imap: local" in out
    assert "consul: unreachable" not in out


def test_route_says_when_the_agent_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXY_HOSTNAME", "box3")
    config = write_site(tmp_path, "http://127.0.0.3:9")
    assert cli.main(["route", "-c", str(config), "a@example.com"]) == 0
    out = capsys.readouterr().out
    assert "consul: unreachable" in out
    assert "imap: peer" in out
