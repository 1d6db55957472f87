"""An existing Courier installation works unchanged: its settings and its userdb layout."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from .accounts import Account
from .conftest import StartDaemon
from .mail import capabilities, imap_login

pytestmark = pytest.mark.integration

MARKER = "XMPTCOMPAT"

CourierConfig = Callable[[Mapping[str, str]], Path]


def test_imap_capability_from_config_dir(
    meshproxy_daemon: StartDaemon,
    courier_config: CourierConfig,
    accounts: dict[str, Account],
) -> None:
    folder = courier_config(
        {
            "IMAP_CAPABILITY": f'"IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE {MARKER}"',
            "IMAP_ACL": "0",
        }
    )
    daemon = meshproxy_daemon({"courier": {"config_dir": str(folder)}})
    account = accounts["compat"]
    for tls in (False, True):
        with daemon.raw("imap", tls=tls) as client:
            pre = capabilities(client.readline())
            assert MARKER in pre
            assert "SORT" not in pre
            assert "ACL" not in pre
            reply = client.command("a1", f'LOGIN "{account.login}" "{account.password}"')
            assert reply[-1].startswith(b"a1 OK"), reply
            post = capabilities(client.command("a2", "CAPABILITY")[0])
            client.command("a3", "LOGOUT")
        assert MARKER in post
        assert "ACL" not in post
        assert "SORT" not in post


def test_imapd_settings_are_exported(
    meshproxy_daemon: StartDaemon,
    courier_config: CourierConfig,
    accounts: dict[str, Account],
) -> None:
    """IMAP_ID_FIELDS is read by imapd itself: post-login CAPABILITY then lists ID."""
    folder = courier_config({"IMAP_ID_FIELDS": "1", "IMAP_TRASHFOLDERNAME": "Bin"})
    daemon = meshproxy_daemon({"courier": {"config_dir": str(folder)}})
    with imap_login(daemon, accounts["compat"]) as client:
        typ, data = client.capability()
        assert typ == "OK"
        assert "ID" in data[0].decode().split()


def test_userdb_directory_of_files(
    meshproxy_daemon: StartDaemon,
    userdb_path: Path,
    session_dir: Path,
    accounts: dict[str, Account],
) -> None:
    """Courier's userdb may be a directory: every file in it holds accounts."""
    folder = session_dir / "userdb.d"
    folder.mkdir(mode=0o700)
    lines = userdb_path.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (folder / "first").write_text("".join(lines[:half]))
    (folder / "second").write_text("".join(lines[half:]))
    for path in folder.iterdir():
        path.chmod(0o600)
    daemon = meshproxy_daemon({"auth": {"userdb": {"path": str(folder)}}})
    first = lines[0].split("\t")[0]
    last = lines[-1].split("\t")[0]
    by_login = {account.login: account for account in accounts.values()}
    for login in (first, "compat@mpt.test"):
        account = by_login[login]
        if account.home_exists and not account.options:
            with imap_login(daemon, account) as client:
                assert client.select("INBOX")[0] == "OK"
    assert by_login[last].login == last


def test_userdb_is_reloaded_when_it_changes(
    meshproxy_daemon: StartDaemon,
    userdb_path: Path,
    session_dir: Path,
    accounts: dict[str, Account],
) -> None:
    path = session_dir / "userdb.reload"
    shutil.copy(userdb_path, path)
    path.chmod(0o600)
    daemon = meshproxy_daemon({"auth": {"userdb": {"path": str(path)}}})
    account = accounts["compat"]
    with imap_login(daemon, account):
        pass
    # drop the account: the next login must fail without a restart
    kept = [
        line
        for line in path.read_text().splitlines(keepends=True)
        if not line.startswith(account.login + "\t")
    ]
    path.write_text("".join(kept))
    with daemon.raw("imap") as client:
        client.readline()
        reply = client.command("a1", f'LOGIN "{account.login}" "{account.password}"')
        assert reply[-1].startswith(b"a1 NO [AUTHENTICATIONFAILED]"), reply
