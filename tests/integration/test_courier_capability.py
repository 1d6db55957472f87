"""Cross-check meshproxy.courier against the installed Courier servers.

imapd and courierpop3d are run exactly as ``exec_spec`` says (argv, environment, cwd, umask)
over a socketpair, on a fresh Maildir owned by the current user, so imapd's ownership sanity
check passes without changing users.  imapd's first line must be the tagged LOGIN completion;
its post-login CAPABILITY must equal ``imap_capabilities`` plus the login-stage tokens that
function drops on purpose (``AUTH=*``).  pop3d must greet ``+OK logged in.``, and its CAPA must
show no STLS and the SASL line ``pop3_auth_mechanisms`` predicts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from meshproxy import courier
from meshproxy.account import Account
from meshproxy.config import Config, parse
from meshproxy.courier import ExecSpec, Session, exec_spec

pytestmark = pytest.mark.integration

IMAPD = Path("/usr/bin/imapd")
POP3D = Path("/usr/lib/courier/courier/courierpop3d")
MAILDIRMAKE = Path("/usr/bin/maildirmake.courier")

SYNTHETIC_IMAPD = """\
IMAP_CAPABILITY="IMAP4rev1 UIDPLUS AUTH=CRAM-MD5 IDLE"
IMAP_CAPABILITY_TLS="IMAP4rev1 IDLE AUTH=PLAIN"
IMAP_ID_FIELDS=name
IMAP_ACL=0
OUTBOX=.Outbox
IMAP_MOVE_EXPUNGE_TO_TRASH=1
SMAP_CAPABILITY=SMAP1
IMAP_KEYWORDS=1
IMAP_STARTTLS=YES
COURIERTLS=/usr/bin/couriertls
"""
SYNTHETIC_POP3D = """\
POP3AUTH="PLAIN LOGIN CRAM-MD5"
POP3AUTH_TLS="PLAIN"
POP3_STARTTLS=YES
COURIERTLS=/usr/bin/couriertls
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    subprocess.run([str(MAILDIRMAKE), str(tmp_path / "Maildir")], check=True)
    return tmp_path


def config_dir(tmp_path: Path, kind: str) -> Path:
    """``debian``: the installed files; ``synthetic``: every capability rule; ``empty``."""
    if kind == "debian":
        return Path("/etc/courier")
    directory = tmp_path / f"courier-{kind}"
    directory.mkdir()
    if kind == "synthetic":
        (directory / "imapd").write_text(SYNTHETIC_IMAPD)
        (directory / "pop3d").write_text(SYNTHETIC_POP3D)
    return directory


def spec_for(home: Path, kind: str, session: Session) -> tuple[ExecSpec, Config]:
    config = parse(
        {
            "courier": {
                "config_dir": str(config_dir(home, kind)),
                "imapd": str(IMAPD),
                "pop3d": str(POP3D),
            }
        }
    )
    account = Account(login="tester", uid=os.getuid(), gid=os.getgid(), home=str(home))
    return exec_spec(courier.load(config), config, account, session), config


def converse(spec: ExecSpec, commands: bytes) -> tuple[list[str], int]:
    ours, theirs = socket.socketpair()
    with ours:
        process = subprocess.Popen(
            list(spec.argv),
            stdin=theirs,
            stdout=theirs,
            stderr=subprocess.DEVNULL,
            env=spec.env,
            cwd=spec.cwd,
            umask=spec.umask,
        )
        theirs.close()
        ours.sendall(commands)
        chunks = []
        while chunk := ours.recv(65536):
            chunks.append(chunk)
    code = process.wait(timeout=30)
    return b"".join(chunks).decode().split("\r\n"), code


def session(service: str, *, tls: bool) -> Session:
    tag = "a1" if service == "imap" else ""
    return Session(service, "::ffff:127.0.0.1", 40001, "127.0.0.1", 143, tls, tag=tag)


@pytest.mark.parametrize("kind", ["debian", "synthetic", "empty"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_imapd_capability_after_login(home: Path, kind: str, tls: bool) -> None:
    spec, config = spec_for(home, kind, session("imap", tls=tls))
    lines, code = converse(spec, b"a2 CAPABILITY\r\na3 LOGOUT\r\n")
    assert code == 0
    assert lines[0] == "a1 OK LOGIN Ok."
    assert lines[1].startswith("* CAPABILITY ")
    assert lines[2] == "a2 OK CAPABILITY completed"
    real = lines[1].removeprefix("* CAPABILITY ").split()
    predicted = courier.load(config).imap_capabilities(tls=tls)
    assert tuple(word for word in real if not word.upper().startswith("AUTH=")) == predicted
    assert "STARTTLS" not in real


def test_imapd_capability_synthetic_tls_literal(home: Path) -> None:
    spec, _ = spec_for(home, "synthetic", session("imap", tls=True))
    lines, _ = converse(spec, b"a2 CAPABILITY\r\na3 LOGOUT\r\n")
    assert lines[1] == (
        "* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN SMAP1 KEYWORDS ID XCOURIEROUTBOX=INBOX.Outbox"
        " XMAGICTRASH ENABLE UTF8=ACCEPT"
    )


@pytest.mark.parametrize("kind", ["debian", "synthetic", "empty"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_pop3d_capa_after_login(home: Path, kind: str, tls: bool) -> None:
    spec, config = spec_for(home, kind, session("pop3", tls=tls))
    lines, code = converse(spec, b"CAPA\r\nQUIT\r\n")
    assert code == 0
    assert lines[0] == "+OK logged in."
    capa = lines[lines.index("+OK Here's what I can do:") + 1 : lines.index(".")]
    assert "STLS" not in capa
    mechanisms = courier.load(config).pop3_auth_mechanisms(tls=tls)
    sasl = [line.removeprefix("SASL ").split() for line in capa if line.startswith("SASL")]
    assert sasl == ([list(mechanisms)] if mechanisms else [])


def test_programs_are_installed() -> None:
    assert shutil.which(str(IMAPD))
    assert shutil.which(str(POP3D))
