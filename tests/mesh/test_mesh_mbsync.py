"""mbsync (isync) through a non-home node syncs a mailbox of a few hundred messages completely.

The account lives on mx4; mbsync talks to mx2 (plaintext: isync matches certificate names but
not IP addresses, and the nodes have only addresses), which relays to mx4.  Messages go
down (delivered into mx4's Maildir: Courier's APPEND takes ~45 ms each, even locally) and up
(new files in the local Maildir), and both sides are
compared message by message.  Once per directory mode (static and Consul).
"""

from __future__ import annotations

import imaplib
import secrets
from pathlib import Path

import pytest
from integration.accounts import deliver
from integration.mail import message, message_id, split_body
from integration.mbsync import add_locally, local_messages, mbsyncrc, run_mbsync, write_rc

from .nodes import Mesh, imap_login

pytestmark = pytest.mark.mesh

DOWN = 300
UP = 40


def server_messages(client: imaplib.IMAP4) -> dict[str, bytes]:
    """Every message of INBOX.  Courier may announce a large new/ in several EXISTS
    responses; the last one counts."""
    typ, data = client.select("INBOX")
    assert typ == "OK", data
    count = int(data[-1] or 0)
    typ, fetched = client.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK", fetched
    found: list[bytes] = [item[1] for item in fetched if isinstance(item, tuple)]
    assert len(found) == count, (len(found), count)
    return {message_id(raw): split_body(raw) for raw in found}


def test_mbsync_through_a_non_home_node(userdb_mesh: Mesh, tmp_path: Path) -> None:
    mesh = userdb_mesh
    account = mesh.account("mbsync4")
    sent: dict[str, bytes] = {}
    for number in range(DOWN):
        body = f"Message {number} of {DOWN}.\r\n{secrets.token_hex(32)}\r\n"
        if number % 7 == 0:
            body += ".\r\nA lone dot above, a long line below.\r\n" + "y" * 900 + "\r\n"
        raw = message(f"down {number}", body)
        deliver(account, raw.replace(b"\r\n", b"\n"))  # Maildir files end lines in LF
        sent[message_id(raw)] = split_body(raw)

    local = tmp_path / "mail"
    local.mkdir()
    front = mesh["mx2"]
    rc = write_rc(
        tmp_path,
        mbsyncrc(
            host=front.host,
            port=front.port("imap"),
            login=account.login,
            password=account.password,
            local=local,
            ca_file=None,
        ),
    )
    since = mesh["mx2"].log_size()
    run_mbsync(rc)
    inbox = local / "INBOX"
    assert local_messages(inbox) == sent

    for number in range(UP):
        raw = message(f"up {number}", f"Uploaded {number}.\r\n{secrets.token_hex(16)}\r\n")
        add_locally(inbox, number, raw)
        sent[message_id(raw)] = split_body(raw)
    run_mbsync(rc)

    with imap_login(mesh["mx4"], account) as client:
        on_server = server_messages(client)
    assert len(on_server) == DOWN + UP
    assert set(on_server) == set(sent)
    for key, expected in sent.items():
        assert on_server[key] == expected, key
    assert local_messages(inbox) == sent
    summaries = [s for s in mesh["mx2"].summaries(since) if s["user"] == account.login]
    assert summaries, "mbsync's sessions are not in mx2's log"
    assert {s["decision"] for s in summaries} == {"peer:mx4"}, summaries
