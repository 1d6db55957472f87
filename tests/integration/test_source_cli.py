"""``meshproxy check-config`` and ``meshproxy route`` against the private slapd, MariaDB and
PostgreSQL, for each source and for Courier's rc files (the CLI runs in-process)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from meshproxy import cli
from meshproxy.sourceconfig import SourceConfig

from .source_accounts import ACCOUNTS, ldap_config, mysql_config, pgsql_config, servers
from .test_sources import write_courier_dir

pytestmark = pytest.mark.integration

SOURCES = ("ldap", "mysql", "pgsql")
WITH_MAILHOST = next(a for a in ACCOUNTS if a.active and a.mailhost == "node1" and not a.options)
WITHOUT_MAILHOST = next(a for a in ACCOUNTS if a.active and a.mailhost is None and not a.options)
INACTIVE = next(a for a in ACCOUNTS if not a.active)


def section(kind: str, **changes: object) -> SourceConfig:
    running = servers()
    if kind == "ldap":
        return ldap_config(running.slapd, **changes)
    if kind == "mysql":
        return mysql_config(running.mariadb, **changes)
    return pgsql_config(running.postgres, **changes)


def toml_table(name: str, config: SourceConfig) -> str:
    """The non-default fields of ``config`` as a TOML table."""
    lines = [f"[auth.{name}]"]
    defaults = type(config)()
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if value != getattr(defaults, spec.name):
            lines.append(f"{spec.name} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_config(folder: Path, auth: str, courier_dir: Path | None = None) -> Path:
    path = folder / "meshproxy.toml"
    path.write_text(
        f"""
[node]
name = "node0"
[imap]
listen = []
proxy = true
[pop3]
listen = []
[courier]
config_dir = "{courier_dir or folder}"
[auth]
{auth}
"""
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.mark.parametrize("kind", SOURCES)
def test_check_config_is_ok_against_the_running_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    path = write_config(tmp_path, f'source = "{kind}"\n{toml_table(kind, section(kind))}')
    assert run(capsys, "check-config", "-c", str(path))[:2] == (0, ["configuration OK"])


@pytest.mark.parametrize(
    ("kind", "changes", "message"),
    [
        ("mysql", {"password": "wrong"}, "Access denied"),
        ("mysql", {"user_table": "nosuch"}, "nosuch"),
        ("pgsql", {"uid_field": "no_column"}, "no_column"),
        ("ldap", {"bindpw": "wrong"}, "invalidCredentials"),
    ],
)
def test_check_config_warns_when_the_server_refuses(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    kind: str,
    changes: dict[str, object],
    message: str,
) -> None:
    table = toml_table(kind, section(kind, **changes))
    path = write_config(tmp_path, f'source = "{kind}"\n{table}')
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 0
    assert lines[0].startswith(f"auth.{kind}: warning: account source unavailable: {kind} ")
    assert message in lines[0]
    assert lines[1:] == ["configuration OK"]


@pytest.mark.parametrize("kind", SOURCES)
def test_route_names_the_source_and_the_mailhost(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    path = write_config(tmp_path, f'source = "{kind}"\n{toml_table(kind, section(kind))}')
    code, lines, _ = run(capsys, "route", "-c", str(path), WITH_MAILHOST.login)
    assert code == 0
    assert lines[:3] == ["account: found", f"source: {kind}", f"login: {WITH_MAILHOST.login}"]
    assert f"uid/gid: {WITH_MAILHOST.uid}/{WITH_MAILHOST.gid}" in lines
    assert "mailhost: node1" in lines
    assert lines[-2:] == ["imap: peer node1", "pop3: local (proxying off)"]
    assert WITH_MAILHOST.password not in "\n".join(lines)

    code, lines, _ = run(capsys, "route", "-c", str(path), WITHOUT_MAILHOST.login)
    assert code == 0
    assert "mailhost: (none)" in lines
    assert lines[-2] == "imap: local (no mailhost)"

    for login in (INACTIVE.login, "nobody@example.test", "*"):
        code, lines, _ = run(capsys, "route", "-c", str(path), login)
        assert (code, lines) == (2, [f"account: {login!r} not found (source {kind})"])


def test_courier_rc_files_check_and_route(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    courier = write_courier_dir(tmp_path / "courier", "authpam authmysql authpgsql authldap")
    path = write_config(tmp_path, 'source = "courier"', courier)
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 0
    assert lines == [
        f"{courier / 'authdaemonrc'}: authmodulelist: warning: authpam is not supported; skipped",
        f"{courier / 'authpgsqlrc'}: PGSQL_DATABASE: warning: unknown key (authlib ignores it too)",
        "configuration OK",
    ]
    code, lines, _ = run(capsys, "route", "-c", str(path), WITH_MAILHOST.login)
    assert code == 0
    assert lines[1] == "source: courier, module authmysql"
    assert "options: mailhost=node1,wbnodsn=1" in lines
    assert lines[-2] == "imap: peer node1"


def test_courier_rc_file_problems_name_the_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    courier = write_courier_dir(tmp_path / "courier", "authldap authmysql")
    rc = courier / "authmysqlrc"
    rc.write_text(rc.read_text().replace("MYSQL_DATABASE", "#MYSQL_DATABASE"))
    path = write_config(tmp_path, 'source = "courier"', courier)
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert (code, lines) == (1, [f"{rc}: MYSQL_DATABASE: required"])
