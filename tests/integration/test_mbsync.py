"""mbsync (isync) syncs a few hundred messages both ways through meshproxy (STARTTLS)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from .accounts import Account
from .daemon import Daemon
from .mail import append, fetch_all, imap_login, message, message_id, split_body
from .mbsync import add_locally, local_messages, mbsyncrc, run_mbsync, write_rc

pytestmark = pytest.mark.integration

DOWN = 300
UP = 50


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
    rc = write_rc(
        tmp_path,
        mbsyncrc(
            host="localhost",
            port=daemon.imap_port,
            login=account.login,
            password=account.password,
            local=local,
            ca_file=daemon.ca_file,
        ),
    )

    run_mbsync(rc)
    inbox = local / "INBOX"
    assert local_messages(inbox) == sent

    for number in range(UP):
        raw = message(f"up {number}", f"Uploaded {number}.\r\n{secrets.token_hex(16)}\r\n")
        add_locally(inbox, number, raw)
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
