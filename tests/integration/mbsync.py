"""Driving isync's mbsync against meshproxy: its configuration, a run, the local Maildir."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .mail import message_id, split_body


def mbsyncrc(
    *, host: str, port: int, login: str, password: str, local: Path, ca_file: Path | None
) -> str:
    """One channel syncing INBOX both ways; STARTTLS verified with ``ca_file``, else plaintext."""
    if ca_file is None:
        tls = "SSLType None"
    else:
        tls = f"SSLType STARTTLS\nSSLVersions TLSv1.2 TLSv1.3\nCertificateFile {ca_file}"
    return f"""\
IMAPAccount far
Host {host}
Port {port}
User {login}
Pass {password}
{tls}
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


def write_rc(folder: Path, text: str) -> Path:
    rc = folder / "mbsyncrc"
    rc.write_text(text)
    rc.chmod(0o600)  # it holds a password
    return rc


def run_mbsync(rc: Path) -> str:
    """``mbsync -V -a`` (``-V`` is verbose in isync 1.4); its output; it must exit 0."""
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
    """Message-Id -> body of every message in the local Maildir folder."""
    found: dict[str, bytes] = {}
    for sub in ("cur", "new"):
        for path in (inbox / sub).iterdir():
            raw = path.read_bytes()
            found[message_id(raw)] = split_body(raw)
    return found


def add_locally(inbox: Path, number: int, raw: bytes) -> None:
    """A new message in the local Maildir (LF line ends, as Maildir files have them)."""
    name = f"{time.time_ns()}.M{number}P{os.getpid()}.mbsync-test"
    (inbox / "new" / name).write_bytes(raw.replace(b"\r\n", b"\n"))
