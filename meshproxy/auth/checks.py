"""What ``check-config`` asks of the account source, beyond ``config.validate``.

* Every problem of the chosen ``[auth.ldap]`` / ``[auth.mysql]`` / ``[auth.pgsql]`` table at
  once (``validate`` stops at the first), and whether the custom SQL clauses compile.
* ``source = "courier"``: ``authdaemonrc`` and the rc file of every module it lists exist and
  parse, every missing or invalid key (``/etc/courier/authmysqlrc: MYSQL_DATABASE: required``),
  modules meshproxy skips, and keys it ignores (warnings: authlib ignores unknown keys too).
* Then one lookup of a made-up login, which connects and runs the real query.  A source that
  does not answer is a *warning* for LDAP and SQL servers (``check-config`` runs before every
  start; a database that is down must not keep meshproxy down, which answers temporary
  failures meanwhile) and a problem for userdb (a local file).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meshproxy.auth import BackendUnavailable, authlibrc, open_source, sql
from meshproxy.auth.base import AuthSource
from meshproxy.config import Config
from meshproxy.errors import ConfigError, MeshproxyError
from meshproxy.sourceconfig import (
    LdapConfig,
    MysqlConfig,
    PgsqlConfig,
    SourceConfig,
    ldap_problems,
    rc_key,
    sql_problems,
)

PROBE_LOGIN = "meshproxy-check-config"
"""Looked up to prove the source answers; whether it exists does not matter."""

SOURCE_ERRORS = (BackendUnavailable, MeshproxyError, OSError, ImportError)
"""What opening or asking a source may raise: unreachable, bad settings, missing driver."""

IGNORED_KEYS: dict[str, frozenset[str]] = {
    "authmysqlrc": frozenset(
        {
            "MYSQL_OPT",
            "MYSQL_NAME_FIELD",
            "MYSQL_QUOTA_FIELD",
            "MYSQL_DEFAULTDELIVERY_FIELD",
            "MYSQL_ENUMERATE_CLAUSE",
            "MYSQL_CHPASS_CLAUSE",
        }
    ),
    "authpgsqlrc": frozenset(
        {
            "PGSQL_NAME_FIELD",
            "PGSQL_QUOTA_FIELD",
            "PGSQL_DEFAULTDELIVERY_FIELD",
            "PGSQL_ENUMERATE_CLAUSE",
            "PGSQL_CHPASS_CLAUSE",
        }
    ),
    "authldaprc": frozenset(
        {
            "LDAP_FULLNAME",
            "LDAP_MAILDIRQUOTA",
            "LDAP_DEFAULTDELIVERY",
            "LDAP_ENUMERATE_FILTER",
            "LDAP_EMAILMAP_BASEDN",
            "LDAP_EMAILMAP_ATTRIBUTE",
            "LDAP_EMAILMAP_MAIL",
            "LDAP_EMAILMAP",
        }
    ),
}
"""Keys authlib reads that play no part in a login lookup (quota, full name, password
change, enumeration); listed so that only genuinely unknown keys draw a warning."""

_RC_CLASSES: dict[str, type[SourceConfig]] = {
    "authmysqlrc": MysqlConfig,
    "authpgsqlrc": PgsqlConfig,
    "authldaprc": LdapConfig,
}
_ALSO_READ = frozenset({"LDAP_INITBIND"})
"""Read by ``authlibrc.ldap_config`` without a field of its own."""
_RC_OF_MODULE = {"authmysql": "authmysqlrc", "authpgsql": "authpgsqlrc", "authldap": "authldaprc"}


@dataclass(frozen=True)
class Finding:
    """One line of ``check-config``: ``key: detail``, or ``key: warning: detail``."""

    key: str
    detail: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.key}: {self.detail}" if self.fatal else f"{self.key}: warning: {self.detail}"

    @classmethod
    def of(cls, error: ConfigError, *, fatal: bool = True) -> Finding:
        return cls(error.key, error.text.removeprefix(f"{error.key}: "), fatal)


def source_findings(config: Config) -> list[Finding]:
    """Settings findings, then (if none is fatal) what the source says when asked."""
    findings = list(settings_findings(config))
    if not any(finding.fatal for finding in findings):
        findings += probe_findings(config)
    return findings


def settings_findings(config: Config) -> Iterator[Finding]:
    """Every problem of the source's settings, without contacting any server."""
    source = config.auth.source
    if source == "courier":
        yield from courier_findings(config.courier.config_dir)
    elif source in ("ldap", "mysql", "pgsql"):
        yield from section_findings(getattr(config.auth, source), f"auth.{source}")


def section_findings(section: SourceConfig, origin: str) -> Iterator[Finding]:
    """All problems of one source's settings; ``origin`` is ``auth.mysql`` or an rc path."""
    if isinstance(section, LdapConfig):
        problems = list(ldap_problems(section, origin))
    else:
        problems = list(sql_problems(section, origin))
        if not problems:
            problems += _clause_problems(section, origin)
    for problem in problems:
        yield Finding.of(problem)


def _clause_problems(section: MysqlConfig | PgsqlConfig, origin: str) -> list[ConfigError]:
    dialect: sql.Dialect = "mysql" if isinstance(section, MysqlConfig) else "pgsql"
    try:
        sql.build_query(section, dialect, origin)
    except ConfigError as exc:
        return [exc]
    return []


def courier_findings(config_dir: str) -> Iterator[Finding]:
    """authdaemonrc and the rc file of every module it lists, as authdaemond would load them."""
    path = os.path.join(config_dir, "authdaemonrc")
    try:
        settings = authlibrc.read_authdaemonrc(path)
    except ConfigError as exc:
        yield Finding.of(exc)
        return
    supported = [name for name in settings.modules if name in authlibrc.SUPPORTED_MODULES]
    if not supported:
        names = ", ".join(authlibrc.SUPPORTED_MODULES)
        yield Finding(f"{path}: authmodulelist", f"names none of {names}")
    for name in settings.modules:
        if name not in authlibrc.SUPPORTED_MODULES:
            yield Finding(f"{path}: authmodulelist", f"{name} is not supported; skipped", False)
        elif name in _RC_OF_MODULE:
            yield from rc_findings(os.path.join(config_dir, _RC_OF_MODULE[name]))


def rc_findings(path: str) -> Iterator[Finding]:
    """One authlib rc file: readable, marker line, every key valid, required keys present."""
    name = os.path.basename(path)
    try:
        rc = authlibrc.read_rc(path)
        section = _RC_READERS[name](rc)
    except ConfigError as exc:
        yield Finding.of(exc)
        return
    yield from _unknown_keys(rc, _RC_CLASSES[name], IGNORED_KEYS[name])
    yield from section_findings(section, path)


def _unknown_keys(
    rc: authlibrc.RcFile, cls: type[SourceConfig], ignored: frozenset[str]
) -> Iterator[Finding]:
    known = {rc_key(cls, spec.name) for spec in dataclasses.fields(cls)} | _ALSO_READ
    for key in rc.values:
        if key in ignored:
            yield Finding(f"{rc.path}: {key}", "read by authlib, not used by meshproxy", False)
        elif key not in known:
            yield Finding(f"{rc.path}: {key}", "unknown key (authlib ignores it too)", False)


_RC_READERS: dict[str, Callable[[authlibrc.RcFile], SourceConfig]] = {
    "authmysqlrc": authlibrc.mysql_config,
    "authpgsqlrc": authlibrc.pgsql_config,
    "authldaprc": authlibrc.ldap_config,
}


def probe_findings(config: Config) -> list[Finding]:
    """Open the source and look a made-up login up; data warnings of userdb files."""
    key = source_key(config)
    try:
        source = open_source(config)
    except SOURCE_ERRORS as exc:
        return [Finding(key, f"account source unavailable: {exc}")]
    try:
        source.lookup(PROBE_LOGIN)
        problems = list(data_problems(source))
    except SOURCE_ERRORS as exc:
        fatal = config.auth.source == "userdb"
        return [Finding(key, f"account source unavailable: {exc}", fatal)]
    finally:
        source.close()
    return [Finding(key, problem, False) for problem in problems]


def data_problems(source: AuthSource) -> Iterator[str]:
    """What a source (or each module of Courier's chain) reports about its data."""
    for module in getattr(source, "modules", ()):
        yield from data_problems(module.source)
    yield from (str(problem) for problem in getattr(source, "problems", ()))


def source_key(config: Config) -> str:
    """The key ``check-config`` names for the source as a whole."""
    source = config.auth.source
    if source == "userdb":
        return "auth.userdb.path"
    if source == "courier":
        return "courier.config_dir"
    return f"auth.{source}"
