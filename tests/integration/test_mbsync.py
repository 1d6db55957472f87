"""mbsync (isync) syncs a few hundred messages both ways through meshproxy (STARTTLS)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from .accounts import Account
from .daemon import Daemon
from .mail import append, fetch_all, imap_login, message, message_id, split_body

pytestmark = pytest.mark.integration

DOWN = 300
UP = 50


def mbsyncrc(daemon: Daemon, account: Account, local: Path) -> str:
    return f"""\
IMAPAccount far
Host localhost
Port {daemon.imap_port}
User {account.login}
Pass {account.password}
SSLType STARTTLS
SSLVersions TLSv1.2 TLSv1.3
CertificateFile {daemon.ca_file}
AuthMechs LOGIN
Timeout 30

IMAPStore far
Account far

MaildirStore near
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel both
Far :far:
Near :near:
Patterns INBOX
Sync All
Create Both
Expunge None
SyncState *
"""


def run_mbsync(rc: Path) -> str:
    result = subprocess.run(
        ["mbsync", "-c", str(rc), "-V", "-a"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def local_messages(inbox: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for sub in ("cur", "new"):
        for path in (inbox / sub).iterdir():
            raw = path.read_bytes()
            found[message_id(raw)] = split_body(raw)
    return found


def server_messages(daemon: Daemon, account: Account) -> dict[str, bytes]:
    with imap_login(daemon, account) as client:
        return {message_id(raw): split_body(raw) for raw in fetch_all(client)}


def test_mbsync_both_ways(daemon: Daemon, accounts: dict[str, Account], tmp_path: Path) -> None:
    account = accounts["mbsync"]
    sent: dict[str, bytes] = {}
    with imap_login(daemon, account) as client:
        for number in range(DOWN):
            body = f"Message {number} of {DOWN}.\r\n{secrets.token_hex(32)}\r\n"
            if number % 7 == 0:
                body += ".\r\nA line with a lone dot above and a long one below.\r\n"
                body += "x" * 900 + "\r\n"
            raw = message(f"down {number}", body)
            append(client, raw)
            sent[message_id(raw)] = split_body(raw)

    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(mbsyncrc(daemon, account, local))
    rc.chmod(0o600)

    run_mbsync(rc)
    inbox = local / "INBOX"
    assert local_messages(inbox) == sent

    for number in range(UP):
        raw = message(f"up {number}", f"Uploaded {number}.\r\n{secrets.token_hex(16)}\r\n")
        name = f"{time.time_ns()}.M{number}P{os.getpid()}.mpt"
        (inbox / "new" / name).write_bytes(raw.replace(b"\r\n", b"\n"))
        sent[message_id(raw)] = split_body(raw)

    run_mbsync(rc)
    # and a third run finds nothing to do
    run_mbsync(rc)

    on_server = server_messages(daemon, account)
    on_disk = local_messages(inbox)
    assert len(on_server) == DOWN + UP
    assert set(on_server) == set(sent)
    for key, expected in sent.items():
        assert on_server[key] == expected, key
        assert on_disk[key] == expected, key
