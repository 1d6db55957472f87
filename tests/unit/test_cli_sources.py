"""check-config and route for the LDAP/SQL sources and Courier's authlib files, without servers.

The configurations have no listeners, so only the account source is checked.  A "server" is
127.0.0.1 on a port nothing listens on: the lookup fails at once with "connection refused".
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from meshproxy import cli

pytestmark = pytest.mark.unit

USERDB = "u@example.com\tuid=1001|gid=1001|home=/home/u|systempw=$1$x$y|options=quota=1\n"
MARKER = "##NAME: MARKER:0\n"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(folder: Path, auth: str) -> Path:
    path = folder / "meshproxy.toml"
    path.write_text(
        f"""
[imap]
listen = []
[pop3]
listen = []
[courier]
config_dir = "{folder / "courier"}"
[auth]
{auth}
"""
    )
    (folder / "courier").mkdir(exist_ok=True)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def mysql_table(port: int, **changes: str) -> str:
    keys = {
        "server": "127.0.0.1",
        "username": "courier",
        "database": "mail",
        "user_table": "users",
        "crypt_pwfield": "crypt",
        **changes,
    }
    return f"[auth.mysql]\nport = {port}\n" + "".join(f'{k} = "{v}"\n' for k, v in keys.items())


# -- [auth.ldap] / [auth.mysql] / [auth.pgsql] ---------------------------------------------------


def test_every_missing_key_of_the_table_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_config(tmp_path, 'source = "mysql"\n[auth.mysql]\nserver = "db"\npool_size = 0')
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert lines == [
        "auth.mysql.username: required",
        "auth.mysql.database: required",
        "auth.mysql.user_table: required",
        "auth.mysql.crypt_pwfield: crypt_pwfield or clear_pwfield",
        "auth.mysql.pool_size: must be positive",
    ]


def test_other_errors_come_first_then_the_source_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_config(tmp_path, 'source = "ldap"\n[auth.ldap]\nuri = "ldap://h"')
    path.write_text(path.read_text().replace("[imap]\n", '[imap]\ngreeting = ""\n'))
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 1
    assert lines == ["imap.greeting: must not be empty", "auth.ldap.basedn: required"]


def test_an_unknown_key_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, 'source = "pgsql"\n[auth.pgsql]\nconection = "host=h"')
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert (code, lines) == (1, ["auth.pgsql.conection: unknown key"])


def test_a_bad_custom_query_is_a_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int
) -> None:
    table = mysql_table(closed_port, select_clause="SELECT * FROM u WHERE id = '$(user)'")
    path = write_config(tmp_path, f'source = "mysql"\n{table}')
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert (code, lines) == (1, ["auth.mysql.select_clause: unknown substitution $(user)"])


def test_an_unreachable_server_is_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int
) -> None:
    path = write_config(tmp_path, f'source = "mysql"\n{mysql_table(closed_port)}')
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 0
    assert len(lines) == 2
    assert lines[0].startswith("auth.mysql: warning: account source unavailable: mysql 127.0.0.1")
    assert "Can't connect" in lines[0]
    assert lines[1] == "configuration OK"


@pytest.mark.parametrize("source", ["mysql", "pgsql", "ldap"])
def test_route_with_an_unreachable_server_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int, source: str
) -> None:
    tables = {
        "mysql": mysql_table(closed_port),
        "pgsql": f'[auth.pgsql]\nconnection = "host=127.0.0.1 port={closed_port} dbname=m"\n'
        'user_table = "u"\nclear_pwfield = "c"\nconnect_timeout = 2.0',
        "ldap": f'[auth.ldap]\nuri = "ldap://127.0.0.1:{closed_port}"\nbasedn = "dc=x"',
    }
    path = write_config(tmp_path, f'source = "{source}"\n{tables[source]}')
    code, lines, err = run(capsys, "route", "-c", str(path), "u@example.com")
    assert (code, lines) == (1, [])
    assert err.startswith(f"meshproxy: account source {source!r} failed: {source} ")


# -- source = "courier" ------------------------------------------------------------------------


def courier_site(folder: Path, modules: str, **files: str) -> Path:
    path = write_config(folder, 'source = "courier"')
    courier = folder / "courier"
    (courier / "authdaemonrc").write_text(
        f'authmodulelist="{modules}"\nDEFAULTOPTIONS="wbnodsn=1,quota=5"\n'
    )
    (courier / "userdb").write_text(USERDB)
    (courier / "userdb").chmod(0o600)
    for name, text in files.items():
        (courier / name).write_text(text)
    return path


def test_courier_rc_problems_are_named_as_in_the_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mysql = "MYSQL_SERVR db\nMYSQL_USERNAME courier\nMYSQL_QUOTA_FIELD quota\n" + MARKER
    path = courier_site(
        tmp_path,
        "authpam authmysql authldap authpgsql authuserdb",
        authmysqlrc=mysql,
        authldaprc="LDAP_URI ldap://h\n",
    )
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    rc = tmp_path / "courier"
    assert code == 1
    assert lines == [
        f"{rc / 'authmysqlrc'}: MYSQL_DATABASE: required",
        f"{rc / 'authmysqlrc'}: MYSQL_SERVER: server or socket is required",
        f"{rc / 'authmysqlrc'}: MYSQL_USER_TABLE: required",
        f"{rc / 'authmysqlrc'}: MYSQL_CRYPT_PWFIELD: crypt_pwfield or clear_pwfield",
        f"{rc / 'authldaprc'}: no '##NAME: MARKER:' line (authlib refuses such a file)",
        f"{rc / 'authpgsqlrc'}: cannot read: No such file or directory",
        f"{rc / 'authdaemonrc'}: authmodulelist: warning: authpam is not supported; skipped",
        f"{rc / 'authmysqlrc'}: MYSQL_SERVR: warning: unknown key (authlib ignores it too)",
        f"{rc / 'authmysqlrc'}: MYSQL_QUOTA_FIELD: warning: read by authlib, not used by meshproxy",
    ]


def test_courier_without_authdaemonrc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, 'source = "courier"')
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    daemonrc = tmp_path / "courier" / "authdaemonrc"
    assert (code, lines) == (1, [f"{daemonrc}: cannot read: No such file or directory"])


def test_courier_with_no_usable_module(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = courier_site(tmp_path, "authpam authshadow")
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    daemonrc = tmp_path / "courier" / "authdaemonrc"
    assert code == 1
    assert lines[0].startswith(f"{daemonrc}: authmodulelist: names none of authuserdb")
    assert lines[1:] == [
        f"{daemonrc}: authmodulelist: warning: authpam is not supported; skipped",
        f"{daemonrc}: authmodulelist: warning: authshadow is not supported; skipped",
    ]


def test_courier_userdb_only_is_ok_and_routes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = courier_site(tmp_path, "authuserdb")
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert (code, lines) == (0, ["configuration OK"])
    code, lines, _ = run(capsys, "route", "-c", str(path), "u@example.com")
    assert code == 0
    assert lines[:3] == [
        "account: found",
        "source: courier, module authuserdb",
        "login: u@example.com",
    ]
    assert "options: quota=1,wbnodsn=1" in lines
    assert lines[-2:] == ["imap: local (proxying off)", "pop3: local (proxying off)"]


def test_courier_userdb_data_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = courier_site(tmp_path, "authuserdb")
    (tmp_path / "courier" / "userdb").write_text(USERDB + "broken\n")
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 0
    assert lines[0].startswith("courier.config_dir: warning: ")
    assert lines[0].endswith(":2: no TAB between name and fields; line ignored")


def test_courier_unreachable_module_is_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int
) -> None:
    mysql = (
        f"MYSQL_SERVER 127.0.0.1\nMYSQL_PORT {closed_port}\nMYSQL_USERNAME courier\n"
        "MYSQL_DATABASE mail\nMYSQL_USER_TABLE users\nMYSQL_CLEAR_PWFIELD clear\n" + MARKER
    )
    path = courier_site(tmp_path, "authuserdb authmysql", authmysqlrc=mysql)
    code, lines, _ = run(capsys, "check-config", "-c", str(path))
    assert code == 0
    assert lines[0].startswith("courier.config_dir: warning: account source unavailable: mysql")
    assert lines[1] == "configuration OK"
    code, lines, _ = run(capsys, "route", "-c", str(path), "u@example.com")
    assert (code, lines[1]) == (0, "source: courier, module authuserdb")
    code, lines, err = run(capsys, "route", "-c", str(path), "nobody@example.com")
    assert (code, lines) == (1, [])
    assert err.startswith("meshproxy: account source 'courier' failed: mysql 127.0.0.1")
