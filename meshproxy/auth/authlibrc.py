"""Courier authlib's own configuration files, read as authlib reads them.

``authmysqlrc`` / ``authpgsqlrc`` / ``authldaprc`` (authlib's ``config_file`` class,
authconfigfile.cpp):

* A line whose first non-blank character is ``#``, or a blank line, is a comment.  The file
  must contain a line starting (in column 0) with ``##NAME: MARKER:``; without it authlib
  refuses the whole file ("probably forgot to run sysconftool").
* Otherwise the line is ``KEY<blanks>value``: the key runs to the first blank; the value is the
  rest without its leading and trailing blanks.  A value ending in ``\\`` continues on the next
  line: the backslash becomes a space and the next line, stripped, is appended (a continuation
  line is never a comment).  A key with no value is present with an empty value.
* The first definition of a key wins.

``authdaemonrc`` is read by authdaemond's own ``readconfig()``: ``#`` starts a comment anywhere,
every other non-blank line must be ``name=value``, a value starting with ``"`` ends at the next
``"``, and the last definition wins.  ``DEFAULTOPTIONS`` reaches authdaemond through the
environment (its start script sources the file), so it is read with shell quoting.
"""

from __future__ import annotations

import dataclasses
import grp
import pwd
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from meshproxy.errors import ConfigError
from meshproxy.sourceconfig import LdapConfig, MysqlConfig, PgsqlConfig, rc_key

MARKER = "##NAME: MARKER:"
BLANKS = " \t\n\v\f\r"
SUPPORTED_MODULES = ("authuserdb", "authldap", "authmysql", "authpgsql")
_T = TypeVar("_T", MysqlConfig, PgsqlConfig, LdapConfig)
_MODULE_NAME_MAX = 31
"""authdaemond copies each module name into a 32-byte buffer."""


@dataclass(frozen=True)
class RcFile:
    """The settings of one authlib rc file."""

    path: str
    values: Mapping[str, str]

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)


@dataclass(frozen=True)
class AuthdaemonSettings:
    modules: tuple[str, ...]
    default_options: str = ""


def parse_rc(text: str, path: str = "(text)") -> RcFile:
    """Parse the text of an authlib rc file; ConfigError when the marker line is missing."""
    lines = text.split("\n")
    values: dict[str, str] = {}
    seen_marker = False
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        body = line.lstrip(BLANKS)
        if not body or body.startswith("#"):
            seen_marker = seen_marker or line.startswith(MARKER)
            continue
        name, rest = _split_key(body)
        setting, index = _read_value(rest, lines, index)
        values.setdefault(name, setting)
    if not seen_marker:
        raise ConfigError(path, f"no {MARKER!r} line (authlib refuses such a file)")
    return RcFile(path, values)


def _split_key(body: str) -> tuple[str, str]:
    for position, char in enumerate(body):
        if char in BLANKS:
            return body[:position], body[position:]
    return body, ""


def _read_value(rest: str, lines: list[str], index: int) -> tuple[str, int]:
    setting = ""
    while True:
        chunk = rest.strip(BLANKS)
        if not chunk:
            return setting, index
        if not chunk.endswith("\\"):
            return setting + chunk, index
        setting += chunk[:-1] + " "
        rest = lines[index] if index < len(lines) else ""
        index += 1


def read_rc(path: str) -> RcFile:
    return parse_rc(_read_text(path), path)


def parse_authdaemonrc(text: str, path: str = "(text)") -> AuthdaemonSettings:
    """``authmodulelist`` and ``DEFAULTOPTIONS`` of an authdaemonrc text."""
    modules = ""
    default_options = ""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0]
        if not line.strip(BLANKS):
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise ConfigError(f"{path}:{number}", "bad line (authdaemond wants name=value)")
        if name == "authmodulelist":
            modules = _daemon_value(value)
        elif name == "DEFAULTOPTIONS":
            default_options = _shell_value(raw.partition("=")[2], path, number)
    names = tuple(item[:_MODULE_NAME_MAX] for item in modules.split())
    return AuthdaemonSettings(names, default_options)


def _daemon_value(value: str) -> str:
    value = value.lstrip(BLANKS)
    if value.startswith('"'):
        value = value[1:].split('"', 1)[0]
    return value


def _shell_value(value: str, path: str, number: int) -> str:
    try:
        return " ".join(shlex.split(value, comments=True))
    except ValueError as exc:
        raise ConfigError(f"{path}:{number}", f"DEFAULTOPTIONS: {exc}") from exc


def read_authdaemonrc(path: str) -> AuthdaemonSettings:
    return parse_authdaemonrc(_read_text(path), path)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as stream:
            return stream.read()
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from exc


def mysql_config(rc: RcFile) -> MysqlConfig:
    return _fill(MysqlConfig, rc)


def pgsql_config(rc: RcFile) -> PgsqlConfig:
    return _fill(PgsqlConfig, rc)


def ldap_config(rc: RcFile) -> LdapConfig:
    """authldaprc as authldaplib reads it; ``LDAP_BINDDN`` counts only with ``LDAP_INITBIND``."""
    unsupported = [key for key in ("LDAP_EMAILMAP",) if rc.get(key)]
    if unsupported:
        raise ConfigError(f"{rc.path}: {unsupported[0]}", "not supported by meshproxy")
    config = _fill(LdapConfig, rc)
    if not _atoi(rc.get("LDAP_INITBIND", "0")):
        config = dataclasses.replace(config, binddn="", bindpw="")
    return config


def _fill(cls: type[_T], rc: RcFile) -> _T:
    values: dict[str, object] = {}
    for spec in dataclasses.fields(cls):
        key = rc_key(cls, spec.name)
        if key is None or key not in rc.values:
            continue
        values[spec.name] = _convert(spec.type, rc.values[key], f"{rc.path}: {key}")
    return cls(**cast(dict[str, Any], values))


def _convert(hint: object, text: str, where: str) -> object:
    if hint in (bool, "bool"):
        return _atoi(text) != 0
    if hint in (int, "int"):
        try:
            return int(text.strip(BLANKS) or "0")
        except ValueError as exc:
            raise ConfigError(where, f"{text!r} is not a number") from exc
    if hint in (float, "float"):
        try:
            return float(text.strip(BLANKS) or "0")
        except ValueError as exc:
            raise ConfigError(where, f"{text!r} is not a number") from exc
    return text


def _atoi(text: str) -> int:
    digits = ""
    for index, char in enumerate(text.lstrip(BLANKS)):
        if not (char.isdigit() or (index == 0 and char in "+-")):
            break
        digits += char
    try:
        return int(digits)
    except ValueError:
        return 0


def resolve_uid(text: str) -> int | None:
    """LDAP_GLOB_UID: a number, or a user name looked up in the passwd database."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ConfigError("glob_uid", f"no user {text!r}") from None


def resolve_gid(text: str) -> int | None:
    """LDAP_GLOB_GID: a number, or a group name looked up in the group database."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ConfigError("glob_gid", f"no group {text!r}") from None
