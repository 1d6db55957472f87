"""meshproxy.cli: check-config, route and the argument handling, on real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trustme

from meshproxy import __version__, cli, mesh
from meshproxy.config import parse
from meshproxy.route import Refuse

pytestmark = pytest.mark.unit

USERDB = (
    "local@example.com\tuid=1001|gid=1002|home=/home/local|systempw=$1$x$y\n"
    "remote@example.com\tuid=1001|gid=1001|home=/home/remote|mail=/srv/mail/remote"
    "|options=mailhost=other.example.com,disablepop3=0\n"
    "self@example.com\tuid=1001|gid=1001|home=/home/self|options=mailhost=Node1.Example.com\n"
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A complete, valid site: Courier files, userdb, TLS cert and key, config."""
    courier_dir = tmp_path / "courier"
    courier_dir.mkdir()
    for name in ("imapd", "imapd-ssl", "pop3d", "pop3d-ssl"):
        shutil.copy(Path("/etc/courier") / name, courier_dir / name)
    userdb = tmp_path / "userdb"
    userdb.write_text(USERDB)
    userdb.chmod(0o600)
    ca = trustme.CA()
    cert = ca.issue_cert("node1.example.com")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "node.pem"))
    write_config(tmp_path)
    return tmp_path


def write_config(site: Path, extra: str = "", *, tls: str = "node.pem", courier: str = "") -> Path:
    path = site / "meshproxy.toml"
    path.write_text(
        f"""
[node]
name = "node1.example.com"
[imap]
listen = ["127.0.0.1:10143"]
tls_listen = ["127.0.0.1:10993"]
proxy = true
[pop3]
listen = ["127.0.0.1:10110"]
[tls]
cert = "{site / tls}"
key = "{site / tls}"
[courier]
config_dir = "{site / "courier"}"
{courier}
[auth.userdb]
path = "{site / "userdb"}"
{extra}
"""
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- arguments ---------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"meshproxy {__version__}\n")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "usage: meshproxy" in err


def test_route_needs_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "route", "-c", "x.toml")
    assert code == 2
    assert "USER" in err


def test_default_config_path() -> None:
    args = cli.build_parser().parse_args(["check-config"])
    assert args.config == cli.DEFAULT_CONFIG


# -- serve -------------------------------------------------------------------------------------


def test_serve_with_invalid_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[imap]\nlisten = 143\n")
    code, _, err = run(capsys, "serve", "-c", str(path))
    assert code == 1
    assert "imap.listen: must be a list of str" in err


# -- check-config ------------------------------------------------------------------------------


def test_check_config_ok(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    code, out, _ = run(capsys, "check-config", "-c", str(site / "meshproxy.toml"))
    assert (code, out) == (0, "configuration OK\n")


def test_check_config_invalid(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    path = write_config(site, '[log]\nlevel = "LOUD"\n')
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert out.startswith("log.level: must be one of")


def test_check_config_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "none.toml"
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert out.startswith(f"{path}: cannot read")


def test_check_config_reports_every_problem(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    (site / "courier" / "pop3d-ssl").unlink()
    (site / "courier" / "imapd").write_text("IMAP_UMASK=022\nstart_something\n")
    (site / "userdb").write_text(USERDB + "broken line without tab\n")
    (site / "userdb").chmod(0o644)
    (site / "bad.pem").write_text("not a certificate\n")
    (site / "pop3d").write_text("#!/bin/sh\n")
    (site / "pop3d").chmod(0o644)
    programs = f'imapd = "/nonexistent/imapd"\npop3d = "{site / "pop3d"}"'
    path = write_config(site, tls="bad.pem", courier=programs)
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    lines = out.splitlines()
    assert code == 1
    expected_prefixes = [
        f"courier.config_dir: {site / 'courier' / 'pop3d-ssl'} does not exist",
        f"courier.config_dir: {site / 'courier' / 'imapd'}:2: not a variable assignment",
        "courier.imapd: /nonexistent/imapd does not exist",
        f"courier.pop3d: {site / 'pop3d'} is not executable",
        f"tls.cert: cannot load {site / 'bad.pem'}",
        f"auth.userdb.path: warning: {site / 'userdb'}: group or other permissions set",
        f"auth.userdb.path: warning: {site / 'userdb'}:4: no TAB",
    ]
    assert len(lines) == len(expected_prefixes)
    for line, prefix in zip(lines, expected_prefixes, strict=True):
        assert line.startswith(prefix)
    assert "configuration OK" not in out


def test_check_config_source_warnings_are_not_fatal(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    (site / "userdb").write_text(USERDB + "local@example.com\tuid=1|gid=1|home=/\n")
    code, out, _ = run(capsys, "check-config", "-c", str(site / "meshproxy.toml"))
    assert code == 0
    assert out.splitlines() == [
        f"auth.userdb.path: warning: {site / 'userdb'}:4: duplicate 'local@example.com' ignored"
        " (makeuserdb refuses it)",
        "configuration OK",
    ]


def test_check_config_missing_tls_files_and_source(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    (site / "userdb").unlink()
    path = write_config(site, tls="missing.pem")
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"tls.cert: {site / 'missing.pem'} does not exist",
        f"tls.key: {site / 'missing.pem'} does not exist",
        f"auth.userdb.path: account source unavailable: userdb {site / 'userdb'}: "
        "No such file or directory",
    ]


def test_check_config_skips_services_without_listeners(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    for name in ("pop3d", "pop3d-ssl"):
        (site / "courier" / name).unlink()
    path = write_config(site)
    path.write_text(
        path.read_text().replace('[pop3]\nlisten = ["127.0.0.1:10110"]', "[pop3]\nlisten = []")
    )
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert (code, out) == (0, "configuration OK\n")


def test_check_config_missing_courier_dir(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    shutil.rmtree(site / "courier")
    code, out, _ = run(capsys, "check-config", "-c", str(site / "meshproxy.toml"))
    assert code == 1
    assert out.splitlines()[0] == f"courier.config_dir: {site / 'courier'} is not a directory"


# -- route -------------------------------------------------------------------------------------


def test_route_local_account(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    code, out, _ = run(capsys, "route", "-c", str(site / "meshproxy.toml"), "local@example.com")
    assert code == 0
    assert out.splitlines() == [
        "account: found",
        "source: userdb",
        "login: local@example.com",
        "home: /home/local",
        "maildir: Maildir (default)",
        "uid/gid: 1001/1002",
        "options: ",
        "mailhost: (none)",
        f"this node: {' '.join(sorted(names_of_this_node()))}",
        "imap: local (no mailhost)",
        "pop3: local (proxying off)",
    ]
    assert "$1$" not in out


def names_of_this_node() -> set[str]:
    directory = mesh.open_directory(parse({"node": {"name": "node1.example.com"}}))
    return set(directory.whoami().names)


def test_route_remote_account(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    code, out, _ = run(capsys, "route", "-c", str(site / "meshproxy.toml"), "remote@example.com")
    assert code == 0
    lines = out.splitlines()
    assert "maildir: /srv/mail/remote" in lines
    assert "mailhost: other.example.com" in lines
    assert "options: mailhost=other.example.com,disablepop3=0" in lines
    assert lines[-2:] == ["imap: peer other.example.com", "pop3: local (proxying off)"]


def test_route_mailhost_is_this_node(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    code, out, _ = run(capsys, "route", "-c", str(site / "meshproxy.toml"), "self@example.com")
    assert code == 0
    assert "imap: local (mailhost Node1.Example.com is this node)" in out.splitlines()


def test_route_default_options_apply(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    path = write_config(site, '[auth]\ndefault_options = "mailhost=elsewhere,disableimap=0"\n')
    code, out, _ = run(capsys, "route", "-c", str(path), "local@example.com")
    assert code == 0
    assert "options: mailhost=elsewhere,disableimap=0" in out.splitlines()
    assert "imap: peer elsewhere" in out.splitlines()


def test_route_unknown_user(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    code, out, _ = run(capsys, "route", "-c", str(site / "meshproxy.toml"), "LOCAL@example.com")
    assert code == 2
    assert out == "account: 'LOCAL@example.com' not found (source userdb)\n"


def test_route_source_failure(capsys: pytest.CaptureFixture[str], site: Path) -> None:
    (site / "userdb").unlink()
    code, out, err = run(capsys, "route", "-c", str(site / "meshproxy.toml"), "local@example.com")
    assert code == 1
    assert out == ""
    assert err.startswith("meshproxy: account source 'userdb' failed: userdb ")


def test_route_invalid_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[auth]\nsource = 'nis'\n")
    code, _, err = run(capsys, "route", "-c", str(path), "x")
    assert code == 1
    assert "auth.source: must be one of userdb, ldap, mysql, pgsql, courier" in err


def test_describe_refuse() -> None:
    assert cli.describe_decision(Refuse("loop")) == "refuse (loop)"


# -- check-config: the mesh ----------------------------------------------------------------------


def mesh_config(site: Path, key: Path, peers: str = "") -> Path:
    return write_config(site, f'[mesh]\nkey_file = "{key}"\n[mesh.peers]\n{peers}')


def test_check_config_reports_a_missing_mesh_key(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    path = mesh_config(site, site / "no-such.key", 'node2 = "127.0.0.3"')
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert "mesh.key_file: cannot read" in out


def test_check_config_refuses_a_group_readable_mesh_key(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    key = site / "mesh.key"
    key.write_text("k" * 40)
    key.chmod(0o640)
    path = mesh_config(site, key, 'node2 = "127.0.0.3"')
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert "accessible by group or others" in out
    key.chmod(0o600)
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert (code, out.splitlines()[-1]) == (0, "configuration OK")


def test_check_config_warns_about_a_peer_mapped_to_this_node(
    capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    key = site / "mesh.key"
    key.write_text("k" * 40)
    key.chmod(0o600)
    path = mesh_config(site, key, 'node2 = "127.0.0.1"\nnode3 = "127.0.0.3"')
    code, out, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 0
    assert "mesh.peers.node2: warning: imap:" in out
    assert "own address" in out
    assert "mesh.peers.node3" not in out
