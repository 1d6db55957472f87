"""Test accounts: system users, home directories with Courier Maildirs, and a userdb file.

Every account gets its own system user ``mpt_<key>`` (created once, kept between runs) and a
fresh home under the session's directory.  Passwords are random per session, so that a grep
of the daemon log for each of them proves no secret was logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import crypt_r

NODE_NAME = "mpt-node1"
OTHER_NODE = "mpt-other.invalid"
DOMAIN = "mpt.test"


@dataclass
class Account:
    """One userdb account as the tests see it."""

    key: str
    password: str
    scheme: str = "$6$"
    options: str = ""
    imap_password: str | None = None  # imappw (service-specific)
    pop3_password: str | None = None  # pop3pw (service-specific)
    cram: bool = False  # store hmac-md5pw
    home_exists: bool = True
    login: str = ""
    user: str = ""
    uid: int = -1
    gid: int = -1
    home: Path = field(default_factory=Path)

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"

    def secrets(self) -> list[str]:
        return [p for p in (self.password, self.imap_password, self.pop3_password) if p]


def _pw(key: str) -> str:
    return f"Pw-{key}-{secrets.token_hex(5)}"


# scheme -> account key; the key also names the system user (mpt_<key>)
HASH_SCHEMES = {
    "$6$": "sha512c",
    "$y$": "yescrypt",
    "$5$": "sha256c",
    "$1$": "md5c",
    "$2b$": "bcrypt",
    "{SHA}": "ldapsha",
    "{SSHA}": "ldapssha",
    "{MD5}": "ldapmd5",
    "{SHA256}": "ldapsha256",
    "{SHA512}": "ldapsha512",
}


def build_accounts() -> dict[str, Account]:
    """The account table (not yet materialised on disk)."""
    accounts: list[Account] = [
        Account(key, _pw(key), scheme=scheme) for scheme, key in HASH_SCHEMES.items()
    ]
    # accounts with a purpose: each test file mutates only its own mailboxes
    accounts += [
        Account(key, _pw(key))
        for key in (
            "imap",
            "idle",
            "pop3",
            "pop3dele",
            "utf8",
            "mbsync",
            "tls",
            "limits",
            "logs",
            "compat",
            "badinput",
        )
    ]
    accounts += [
        Account("cram", _pw("cram"), cram=True),
        Account(
            "services",
            _pw("services-system"),
            imap_password=_pw("services-imap"),
            pop3_password=_pw("services-pop3"),
        ),
        Account("noimap", _pw("noimap"), options="disableimap=1"),
        Account("nopop3", _pw("nopop3"), options="disablepop3=1"),
        Account("noinsecure", _pw("noinsecure"), options="disableinsecureimap=1"),
        Account("here", _pw("here"), options=f"mailhost={NODE_NAME}"),
        Account("elsewhere", _pw("elsewhere"), options=f"mailhost={OTHER_NODE}"),
        Account("nohome", _pw("nohome"), home_exists=False),
    ]
    for account in accounts:
        account.login = f"{account.key}@{DOMAIN}"
        account.user = f"mpt_{account.key}"
    return {account.key: account for account in accounts}


# --- password hashes ----------------------------------------------------------------------

_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def hash_password(scheme: str, password: str) -> str:
    """A stored secret in ``scheme`` that Courier's authlib would accept for ``password``."""
    data = password.encode()
    if scheme == "$6$":
        return crypt_r.crypt(password, crypt_r.mksalt(crypt_r.METHOD_SHA512))
    if scheme == "$5$":
        return crypt_r.crypt(password, crypt_r.mksalt(crypt_r.METHOD_SHA256))
    if scheme == "$1$":
        return crypt_r.crypt(password, crypt_r.mksalt(crypt_r.METHOD_MD5))
    if scheme == "$2b$":
        return crypt_r.crypt(password, crypt_r.mksalt(crypt_r.METHOD_BLOWFISH, rounds=16))
    if scheme == "$y$":
        salt = "".join(secrets.choice(_SALT_CHARS) for _ in range(16))
        value = crypt_r.crypt(password, f"$y$j9T${salt}")
        assert value.startswith("$y$"), value
        return value
    if scheme == "{SHA}":
        return "{SHA}" + base64.b64encode(hashlib.sha1(data).digest()).decode()
    if scheme == "{SSHA}":
        salt_bytes = os.urandom(4)
        digest = hashlib.sha1(data + salt_bytes).digest()
        return "{SSHA}" + base64.b64encode(digest + salt_bytes).decode()
    if scheme == "{MD5}":
        return "{MD5}" + base64.b64encode(hashlib.md5(data).digest()).decode()
    if scheme == "{SHA256}":
        return "{SHA256}" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    if scheme == "{SHA512}":
        return "{SHA512}" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    raise ValueError(scheme)


def hmac_md5pw(password: str) -> str:
    """Courier's CRAM-MD5 secret, as ``userdbpw -hmac-md5`` prints it."""
    result = subprocess.run(
        ["userdbpw", "-hmac-md5"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    value = result.stdout.strip()
    assert len(value) == 64, result
    return value


# --- system users, homes, Maildirs ---------------------------------------------------------


def ensure_system_user(name: str) -> tuple[int, int]:
    """Create ``name`` (no home, no shell) unless it exists; return (uid, gid)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name],
            check=True,
            timeout=60,
        )
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def make_home(account: Account, root: Path) -> None:
    """A home owned by the account with a Maildir made by maildirmake.courier as that user."""
    if not account.home_exists:
        account.home = root / "missing" / account.key
        return
    account.home = root / account.key
    account.home.mkdir(parents=True)
    os.chown(account.home, account.uid, account.gid)
    account.home.chmod(0o700)
    subprocess.run(
        ["runuser", "-u", account.user, "--", "maildirmake.courier", str(account.maildir)],
        check=True,
        timeout=60,
    )
    stat = account.maildir.stat()
    assert (stat.st_uid, stat.st_gid) == (account.uid, account.gid)


def userdb_line(account: Account) -> str:
    fields = [f"uid={account.uid}", f"gid={account.gid}", f"home={account.home}"]
    fields.append(f"systempw={hash_password(account.scheme, account.password)}")
    if account.imap_password:
        fields.append(f"imappw={hash_password('$6$', account.imap_password)}")
    if account.pop3_password:
        fields.append(f"pop3pw={hash_password('$6$', account.pop3_password)}")
    if account.cram:
        fields.append(f"hmac-md5pw={hmac_md5pw(account.password)}")
    if account.options:
        fields.append(f"options={account.options}")
    return f"{account.login}\t{'|'.join(fields)}\n"


def write_userdb(path: Path, accounts: Iterable[Account]) -> None:
    """Courier's userdb text format, mode 0600 as makeuserdb insists."""
    text = "".join(userdb_line(account) for account in accounts)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    path.chmod(0o600)


def materialise(accounts: dict[str, Account], root: Path) -> None:
    """Create users and homes for every account."""
    for account in accounts.values():
        account.uid, account.gid = ensure_system_user(account.user)
        make_home(account, root)


def deliver(account: Account, message: bytes, *, name: str | None = None) -> Path:
    """Put ``message`` into the account's Maildir/new as a local delivery would."""
    name = name or f"{time.time_ns()}.M{secrets.token_hex(4)}P{os.getpid()}.mpt"
    tmp = account.maildir / "tmp" / name
    tmp.write_bytes(message)
    os.chown(tmp, account.uid, account.gid)
    final = account.maildir / "new" / name
    tmp.rename(final)
    return final


# Wrong passwords used by tests; the daemon-log secret check greps for these too.
EXTRA_SECRETS: list[str] = []


def wrong_password() -> str:
    """A fresh wrong password, registered for the no-secret-in-the-log check."""
    value = f"Wrong-{secrets.token_hex(6)}"
    EXTRA_SECRETS.append(value)
    return value
