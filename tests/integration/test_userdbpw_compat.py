"""Compatibility with Courier's own userdb tools (courier-authlib-userdb).

``userdbpw`` makes the hashes and ``hmac-md5pw`` secrets, ``userdb`` writes the text file,
``makeuserdb`` says whether Courier accepts it; meshproxy must verify and read all of it.
The password goes to ``userdbpw`` on stdin (no terminal: one line, no confirmation).
"""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from meshproxy.auth import authenticate, hmac_md5
from meshproxy.auth.passwords import verify, verify_cram_md5
from meshproxy.auth.userdb import UserdbSource
from meshproxy.credentials import CramCredentials, PlainCredentials
from meshproxy.errors import AuthFailed, LoginDisabled

pytestmark = pytest.mark.integration

SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

PASSWORDS = [
    "secret",
    "with space",
    "p|pe=eq",
    "pässwörd",
    "x" * 64,
    "y" * 65,
    "long-" * 30,
]
CHALLENGE = b"<31337.1700000000@meshproxy.test>"


def tool(name: str) -> str:
    path = shutil.which(name, path=SEARCH)
    assert path is not None, f"{name} not installed (Debian package courier-authlib-userdb)"
    return path


def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(argv[0]), *argv[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=30,
    )


def userdbpw(password: str, *options: str) -> str:
    result = run("userdbpw", *options, stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("password", PASSWORDS)
def test_hmac_md5pw_state_matches_and_verifies(password: str) -> None:
    state = userdbpw(password, "-hmac-md5")
    assert len(state) == 64
    assert hmac_md5.courier_state(password.encode()) == state
    digest = hmac.new(password.encode(), CHALLENGE, "md5").hexdigest()
    assert verify_cram_md5(CHALLENGE, digest, clear=None, hmac_md5_state=state)
    wrong = hmac.new(password.encode() + b"!", CHALLENGE, "md5").hexdigest()
    assert not verify_cram_md5(CHALLENGE, wrong, clear=None, hmac_md5_state=state)


@pytest.mark.parametrize("password", PASSWORDS)
def test_userdbpw_md5_crypt_verifies(password: str) -> None:
    stored = userdbpw(password, "-md5")
    assert stored.startswith("$1$")
    assert verify(stored, password)
    assert verify("{CRYPT}" + stored, password)
    assert not verify(stored, password + "!")
    assert not verify(stored, password.upper())


@pytest.mark.parametrize("password", ["secret", "pw|x=1", "short"])
def test_userdbpw_default_crypt_verifies(password: str) -> None:
    stored = userdbpw(password)
    assert verify(stored, password)
    assert not verify(stored, "wrong")


def userdb_set(path: Path, name: str, *fields: str, stdin: str = "") -> None:
    result = run("userdb", "-f", str(path), name, "set", *fields, stdin=stdin)
    assert result.returncode == 0, result.stderr


def makeuserdb(path: Path) -> subprocess.CompletedProcess[str]:
    return run("makeuserdb", "-f", str(path))


@pytest.fixture
def userdb_file(tmp_path: Path) -> Path:
    """A userdb text file written by Courier's ``userdb`` command."""
    path = tmp_path / "userdb"
    path.touch(mode=0o600)
    name = "a b@example.com"
    userdb_set(path, name, "uid=1001", "gid=1002", "home=/home/ab", "mail=/home/ab/Maildir")
    userdb_set(path, name, "options=disablepop3=1")
    userdb_set(path, name, "systempw", stdin=userdbpw("pässwörd", "-md5") + "\n")
    userdb_set(path, name, "imappw", stdin=userdbpw("imap only", "-md5") + "\n")
    userdb_set(path, name, "imap-hmac-md5pw", stdin=userdbpw("cram secret", "-hmac-md5") + "\n")
    userdb_set(path, "plain", "uid=7", "gid=7", "home=/p")
    return path


def test_file_written_by_userdb_is_valid_for_courier_and_for_us(userdb_file: Path) -> None:
    result = makeuserdb(userdb_file)
    assert result.returncode == 0, result.stdout + result.stderr
    source = UserdbSource(str(userdb_file))
    account = source.lookup("a b@example.com")
    assert source.problems == []
    assert account is not None
    assert (account.uid, account.gid, account.home) == (1001, 1002, "/home/ab")
    assert account.maildir == "/home/ab/Maildir"
    assert account.options.flag("disablepop3")
    assert source.lookup("plain") is not None


def test_passwords_from_userdb_tools_authenticate(userdb_file: Path) -> None:
    source = UserdbSource(str(userdb_file))
    name = "a b@example.com"
    good = authenticate(source, PlainCredentials(name, "imap only"), service="imap", secure=True)
    assert good.login == name
    with pytest.raises(AuthFailed):
        authenticate(source, PlainCredentials(name, "pässwörd"), service="imap", secure=True)
    with pytest.raises(LoginDisabled):
        authenticate(source, PlainCredentials(name, "pässwörd"), service="pop3", secure=True)
    digest = hmac.new(b"cram secret", CHALLENGE, "md5").hexdigest()
    cram = CramCredentials(name, CHALLENGE, digest)
    assert authenticate(source, cram, service="imap", secure=True).login == name


def test_makeuserdb_refuses_duplicates_which_we_report(tmp_path: Path) -> None:
    path = tmp_path / "userdb"
    path.write_text("dup\tuid=1|gid=1|home=/a\ndup\tuid=2|gid=2|home=/b\n", encoding="utf-8")
    path.chmod(0o600)
    result = makeuserdb(path)
    assert result.returncode != 0
    assert "dup" in result.stdout + result.stderr
    source = UserdbSource(str(path))
    account = source.lookup("dup")
    assert account is not None
    assert account.home == "/a"
    assert any("duplicate 'dup'" in problem for problem in source.problems)


def test_makeuserdb_refuses_group_permissions_which_we_report(tmp_path: Path) -> None:
    path = tmp_path / "userdb"
    path.write_text("u\tuid=1|gid=1|home=/a\n", encoding="utf-8")
    path.chmod(0o640)
    result = makeuserdb(path)
    assert result.returncode != 0
    assert "PERMISSIONS" in result.stdout + result.stderr
    source = UserdbSource(str(path))
    assert source.lookup("u") is not None
    assert any("permissions" in problem for problem in source.problems)
