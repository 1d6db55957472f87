"""Courier userdb, read from its text source (what ``makeuserdb`` compiles).

Format (makeuserdb, userdb.c, verified with the Debian tools):

* ``path`` is a file, or a directory whose files are read recursively; names starting with
  ``.`` are skipped (as makeuserdb does), and so are editor backups ending in ``~``.
* One account per line: ``name<TAB>field|field|...``; the name is everything before the
  first TAB (spaces included).  Empty lines and lines starting with ``#`` are comments.
  ``pw2userdb``'s reverse records (``1001=<TAB>name``) are skipped.
* A field is ``key=value`` or a bare ``key`` (empty value); the first field with a key wins.
* ``home``, ``uid`` and ``gid`` are required; uid and gid are numbers (authlib's ``atol``
  would turn a name into 0, so a non-numeric value is refused here).
* Passwords: ``<service>pw`` wins over ``systempw``; CRAM: ``<service>-hmac-md5pw`` over
  ``hmac-md5pw``.  A present but empty value is kept as a value that never matches, as in
  authlib (it does not fall back).
* makeuserdb refuses a file with the same name twice; here the first line wins and the
  duplicate is reported in ``problems``.

Lookup is case-sensitive.  The files are re-read when any of them (or a directory) changes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth.base import BackendUnavailable, SingleSource
from meshproxy.config import Config

SOURCE_NAME = "userdb"
NEVER_MATCHES = "*"
"""Stands for a present but empty secret: neither crypt nor the HMAC check accepts it."""

_Entry = tuple[str, int, int, int, int]
_Snapshot = tuple[_Entry, ...]


@dataclass(frozen=True)
class _Line:
    where: str
    text: str


class UserdbSource(SingleSource):
    """The ``userdb`` account source."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []
        self._accounts: dict[str, Account] = {}
        self._snapshot: _Snapshot | None = None

    @classmethod
    def from_config(cls, config: Config) -> UserdbSource:
        return cls(config.auth.userdb.path)

    def lookup(self, login: str, service: str = "") -> Account | None:
        del service  # per-service secrets are in the record itself
        self.refresh()
        return self._accounts.get(login)

    def close(self) -> None:
        self._accounts = {}
        self._snapshot = None

    def refresh(self) -> None:
        """Re-read the files if they changed.  Raises BackendUnavailable."""
        snapshot = self._take_snapshot()
        if snapshot == self._snapshot:
            return
        accounts, problems = self._load([entry[0] for entry in snapshot if entry[1] == 0])
        self._accounts, self.problems, self._snapshot = accounts, problems, snapshot

    def _take_snapshot(self) -> _Snapshot:
        """(path, is_dir, mtime_ns, size, inode) of the path and everything read under it."""
        try:
            snapshot = tuple(_walk(self.path))
        except OSError as exc:
            where = exc.filename or self.path
            raise BackendUnavailable(f"userdb {where}: {exc.strerror or exc}") from exc
        if not snapshot:
            raise BackendUnavailable(f"userdb {self.path}: neither a file nor a directory")
        return snapshot

    def _load(self, files: list[str]) -> tuple[dict[str, Account], list[str]]:
        accounts: dict[str, Account] = {}
        problems = _mode_problems(self.path)
        for line in _read_lines(files):
            _add_line(line, accounts, problems)
        return accounts, problems


def _walk(path: str, seen: set[tuple[int, int]] | None = None) -> Iterator[_Entry]:
    """The path, then (for a directory) every directory and regular file under it, sorted.

    Other kinds of file (fifos, sockets) are not read; a directory reached twice (a symlink
    loop) is not entered again.
    """
    info = os.stat(path)
    is_dir = stat.S_ISDIR(info.st_mode)
    if not is_dir and not stat.S_ISREG(info.st_mode):
        return
    yield (path, int(is_dir), info.st_mtime_ns, info.st_size, info.st_ino)
    seen = set() if seen is None else seen
    if not is_dir or (info.st_dev, info.st_ino) in seen:
        return
    seen.add((info.st_dev, info.st_ino))
    for name in sorted(os.listdir(path)):
        if not name.startswith(".") and not name.endswith("~"):
            yield from _walk(os.path.join(path, name), seen)


def _mode_problems(path: str) -> list[str]:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return []
    if mode & 0o077:
        return [f"{path}: group or other permissions set (makeuserdb refuses this)"]
    return []


def _read_lines(files: list[str]) -> Iterator[_Line]:
    for path in files:
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as exc:
            raise BackendUnavailable(f"userdb {path}: {exc.strerror or exc}") from exc
        text = data.decode("utf-8", "surrogateescape")
        for number, line in enumerate(text.split("\n"), start=1):
            yield _Line(f"{path}:{number}", line)


def _add_line(line: _Line, accounts: dict[str, Account], problems: list[str]) -> None:
    text = line.text
    if not text.strip() or text.startswith("#"):
        return
    name, tab, fields = text.partition("\t")
    if not tab:
        problems.append(f"{line.where}: no TAB between name and fields; line ignored")
        return
    if name[:-1].isdigit() and name.endswith("="):
        return
    if text.endswith("\r"):
        problems.append(f"{line.where}: ends with CR, kept in the last field as Courier does")
    account, reason = parse_account(name, fields)
    if account is None:
        problems.append(f"{line.where}: {reason}; {name!r} ignored")
    elif name in accounts:
        problems.append(f"{line.where}: duplicate {name!r} ignored (makeuserdb refuses it)")
    else:
        accounts[name] = account


def parse_fields(fields: str) -> dict[str, str]:
    """``key=value|key|...`` into a mapping; the first occurrence of a key wins."""
    values: dict[str, str] = {}
    for field in fields.split("|"):
        key, _, value = field.partition("=")
        values.setdefault(key, value)
    return values


def _number(values: dict[str, str], key: str) -> int | None:
    text = values.get(key)
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_account(name: str, fields: str) -> tuple[Account | None, str]:
    """One userdb record, or (None, the reason it is unusable)."""
    if not name:
        return None, "empty account name"
    values = parse_fields(fields)
    if not values.get("home"):
        return None, "missing or empty home"
    uid, gid = _number(values, "uid"), _number(values, "gid")
    if uid is None or gid is None:
        return None, "uid and gid must be present and numeric"
    account = Account(
        login=name,
        uid=uid,
        gid=gid,
        home=values["home"],
        maildir=values.get("mail") or None,
        options=Options(values.get("options", "")),
        secrets=_secrets(values),
        source=SOURCE_NAME,
    )
    return account, ""


def _secrets(values: dict[str, str]) -> Secrets:
    hashed: dict[str, str] = {}
    hmac_md5: dict[str, str] = {}
    for key, value in values.items():
        stored = value or NEVER_MATCHES
        if key == "systempw":
            hashed[""] = stored
        elif key == "hmac-md5pw":
            hmac_md5[""] = stored
        elif key.endswith("-hmac-md5pw") and key != "-hmac-md5pw":
            hmac_md5[key.removesuffix("-hmac-md5pw")] = stored
        elif key.endswith("pw") and "-" not in key and len(key) > 2:
            hashed[key.removesuffix("pw")] = stored
    return Secrets(hashed=hashed, hmac_md5=hmac_md5)
