"""The TOML configuration: one file, byte-identical on every node.

Each section is a frozen dataclass; each field carries its help text in ``metadata["help"]``.
``load()`` reads a file, ``parse()`` a mapping; both raise ``ConfigError`` naming the key at
fault.  ``docs/configuration.md`` documents every key (a unit test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshproxy.errors import ConfigError
from meshproxy.meshconfig import ForeignConfig, MeshConfig, foreign_problems, mesh_problems
from meshproxy.sourceconfig import (
    LdapConfig,
    MysqlConfig,
    PgsqlConfig,
    ldap_problems,
    sql_problems,
)


def _opt(default: Any, help_text: str) -> Any:
    return field(default=default, metadata=_help(help_text))


def _help(help_text: str) -> dict[str, str]:
    return {"help": help_text}


@dataclass(frozen=True)
class NodeConfig:
    name: str = _opt("", "This node's name; empty: PROXY_HOSTNAME, then the host name.")
    aliases: list[str] = field(
        default_factory=list, metadata=_help("More names this node answers to (mailhost).")
    )


@dataclass(frozen=True)
class ImapConfig:
    listen: list[str] = field(
        default_factory=lambda: ["127.0.0.1:143"],
        metadata=_help("Plain/STARTTLS listeners, host:port."),
    )
    tls_listen: list[str] = field(
        default_factory=list, metadata=_help("Implicit-TLS listeners (IMAPS), host:port.")
    )
    proxy: bool = _opt(False, "Route by mailhost (Courier's IMAP_PROXY); false: serve all here.")
    foreign: bool = _opt(False, "After a foreign login, send the backend's CAPABILITY.")
    sasl_mechanisms: list[str] = field(
        default_factory=lambda: ["PLAIN", "LOGIN"],
        metadata=_help("AUTH= mechanisms advertised (PLAIN, LOGIN, CRAM-MD5)."),
    )
    greeting: str = _opt("meshproxy ready.", "Text of the untagged OK greeting.")


@dataclass(frozen=True)
class Pop3Config:
    listen: list[str] = field(
        default_factory=lambda: ["127.0.0.1:110"],
        metadata=_help("Plain/STLS listeners, host:port."),
    )
    tls_listen: list[str] = field(
        default_factory=list, metadata=_help("Implicit-TLS listeners (POP3S), host:port.")
    )
    proxy: bool = _opt(False, "Route by mailhost (Courier's POP3_PROXY); false: serve all here.")
    sasl_mechanisms: list[str] = field(
        default_factory=lambda: ["PLAIN", "LOGIN"],
        metadata=_help("SASL mechanisms listed by CAPA (PLAIN, LOGIN, CRAM-MD5)."),
    )
    greeting: str = _opt("meshproxy ready.", "Text of the +OK greeting.")
    apop: bool = _opt(
        False,
        "Offer APOP: the greeting carries a timestamp; works only for accounts whose source"
        " stores a clear password.",
    )


@dataclass(frozen=True)
class TlsConfig:
    cert: str = _opt("", "PEM certificate chain; empty disables STARTTLS/STLS and TLS listeners.")
    key: str = _opt("", "PEM private key (may be the cert file).")
    required: bool = _opt(False, "Refuse logins before TLS (LOGINDISABLED, no USER before STLS).")


@dataclass(frozen=True)
class CourierConfig:
    config_dir: str = _opt("/etc/courier", "Directory holding imapd, imapd-ssl, pop3d, pop3d-ssl.")
    imapd: str = _opt("/usr/bin/imapd", "Courier's IMAP server program.")
    pop3d: str = _opt("/usr/lib/courier/courier/courierpop3d", "Courier's POP3 server program.")
    maildir: str = _opt("Maildir", "Maildir argument when the account names none.")


@dataclass(frozen=True)
class UserdbConfig:
    path: str = _opt("/etc/courier/userdb", "Courier userdb text file or directory of files.")


@dataclass(frozen=True)
class AuthConfig:
    source: str = _opt("userdb", "Account source: userdb, ldap, mysql, pgsql or courier.")
    failure_delay: float = _opt(2.0, "Seconds before a failed login is answered.")
    default_options: str = _opt("", "Options merged into every account (DEFAULTOPTIONS).")
    userdb: UserdbConfig = field(default_factory=UserdbConfig, metadata={"help": "userdb."})
    ldap: LdapConfig = field(default_factory=LdapConfig, metadata={"help": "LDAP."})
    mysql: MysqlConfig = field(default_factory=MysqlConfig, metadata={"help": "MySQL."})
    pgsql: PgsqlConfig = field(default_factory=PgsqlConfig, metadata={"help": "PostgreSQL."})


@dataclass(frozen=True)
class LimitsConfig:
    max_connections: int = _opt(1000, "Pre-login and relayed sessions at once, all listeners.")
    max_per_ip: int = _opt(20, "Sessions at once from one client address.")
    login_timeout: float = _opt(60.0, "Seconds a client has to log in.")
    idle_timeout: float = _opt(7200.0, "Seconds a relayed session may stay silent both ways.")
    max_line: int = _opt(8192, "Longest pre-login command line, in bytes.")
    max_literal: int = _opt(8192, "Largest pre-login literal, in bytes.")
    max_errors: int = _opt(10, "Protocol errors in a row before the session is closed.")


@dataclass(frozen=True)
class LogConfig:
    level: str = _opt("INFO", "DEBUG, INFO, WARNING or ERROR.")


@dataclass(frozen=True)
class HealthConfig:
    listen: str = _opt("", "host:port of the HTTP /health and /metrics endpoint; empty: off.")


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig, metadata={"help": "This node."})
    imap: ImapConfig = field(default_factory=ImapConfig, metadata={"help": "IMAP."})
    pop3: Pop3Config = field(default_factory=Pop3Config, metadata={"help": "POP3."})
    tls: TlsConfig = field(default_factory=TlsConfig, metadata={"help": "TLS."})
    courier: CourierConfig = field(default_factory=CourierConfig, metadata={"help": "Courier."})
    auth: AuthConfig = field(default_factory=AuthConfig, metadata={"help": "Accounts."})
    limits: LimitsConfig = field(default_factory=LimitsConfig, metadata={"help": "Limits."})
    log: LogConfig = field(default_factory=LogConfig, metadata={"help": "Logging."})
    mesh: MeshConfig = field(default_factory=MeshConfig, metadata={"help": "The mesh."})
    foreign: ForeignConfig = field(
        default_factory=ForeignConfig, metadata={"help": "Foreign servers."}
    )
    health: HealthConfig = field(
        default_factory=HealthConfig, metadata={"help": "Health and metrics endpoint."}
    )


def load(path: str | Path) -> Config:
    """Read and validate a TOML file."""
    config = read(path)
    validate(config)
    return config


def read(path: str | Path) -> Config:
    """Read a TOML file without validating it (``check-config`` lists every problem)."""
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    return parse(data)


def parse(data: Mapping[str, Any]) -> Config:
    """Build a Config from a mapping; unknown keys and wrong types raise ConfigError."""
    return typing.cast(Config, _build(Config, data, ""))


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "(top)", "must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(_join(prefix, key), "unknown key")
    values: dict[str, Any] = {}
    for name in known:
        if name not in data:
            continue
        hint = hints[name]
        key = _join(prefix, name)
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type, hint), data[name], key)
        else:
            values[name] = _convert(hint, data[name], key)
    return cls(**values)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list of {item.__name__}")
        return [_convert(item, entry, key) for entry in value]
    if origin is dict:
        return _convert_table(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(key, "unsupported type")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(key, "must be an integer")
    if not isinstance(value, hint):
        raise ConfigError(key, f"must be {_type_name(hint)}, not {type(value).__name__}")
    return value


def _convert_table(hint: Any, value: Any, key: str) -> dict[str, Any]:
    """A table of operator-chosen names (``[mesh.peers]``); an entry whose type is a dataclass
    is a table, or a string when the dataclass has ``from_text(text, key)``."""
    _, item = typing.get_args(hint)
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table")
    table: dict[str, Any] = {}
    for name, entry in value.items():
        entry_key = _join(key, name)
        from_text = getattr(item, "from_text", None)
        if isinstance(entry, str) and from_text is not None:
            table[name] = from_text(entry, entry_key)
        elif dataclasses.is_dataclass(item):
            table[name] = _build(typing.cast(type, item), entry, entry_key)
        else:
            table[name] = _convert(item, entry, entry_key)
    return table


def _type_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


SOURCES = ("userdb", "ldap", "mysql", "pgsql", "courier")
SASL = ("PLAIN", "LOGIN", "CRAM-MD5")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def validate(config: Config) -> None:
    """Checks that span values: addresses, enumerations, texts (no file is opened)."""
    seen: dict[tuple[str, int], str] = {}
    for section in ("imap", "pop3"):
        proto = getattr(config, section)
        for key in ("listen", "tls_listen"):
            for address in getattr(proto, key):
                _check_unique(parse_address(address, f"{section}.{key}"), f"{section}.{key}", seen)
        for mech in proto.sasl_mechanisms:
            if mech.upper() not in SASL:
                raise ConfigError(f"{section}.sasl_mechanisms", f"unknown mechanism {mech!r}")
        if proto.tls_listen and not config.tls.cert:
            raise ConfigError(f"{section}.tls_listen", "needs tls.cert and tls.key")
        _check_text(proto.greeting, f"{section}.greeting")
    if config.tls.required and not config.tls.cert:
        raise ConfigError("tls.required", "needs tls.cert and tls.key")
    if bool(config.tls.cert) != bool(config.tls.key):
        raise ConfigError("tls.key" if config.tls.cert else "tls.cert", "cert and key go together")
    if config.auth.source not in SOURCES:
        raise ConfigError("auth.source", f"must be one of {', '.join(SOURCES)}")
    _check_source_section(config.auth)
    if config.log.level.upper() not in LEVELS:
        raise ConfigError("log.level", f"must be one of {', '.join(LEVELS)}")
    if config.auth.failure_delay < 0:
        raise ConfigError("auth.failure_delay", "must not be negative")
    for key in ("config_dir", "imapd", "pop3d", "maildir"):
        _check_text(getattr(config.courier, key), f"courier.{key}")
    _check_limits(config.limits)
    _check_mesh(config)
    _check_health(config.health, seen)


def _check_health(health: HealthConfig, seen: dict[tuple[str, int], str]) -> None:
    if health.listen:
        _check_unique(parse_address(health.listen, "health.listen"), "health.listen", seen)


def _check_unique(address: tuple[str, int], key: str, seen: dict[tuple[str, int], str]) -> None:
    if address in seen:
        raise ConfigError(key, f"{address[0]}:{address[1]} is already used by {seen[address]}")
    seen[address] = key


def _check_text(value: str, key: str) -> None:
    if not value:
        raise ConfigError(key, "must not be empty")
    if any(char in value for char in "\r\n\0"):
        raise ConfigError(key, "must not contain CR, LF or NUL")


def _check_limits(limits: LimitsConfig) -> None:
    for spec in dataclasses.fields(limits):
        if getattr(limits, spec.name) <= 0:
            raise ConfigError(f"limits.{spec.name}", "must be positive")


def _check_mesh(config: Config) -> None:
    for alias in config.node.aliases:
        if not alias or any(char.isspace() or char in ",|" for char in alias):
            raise ConfigError("node.aliases", f"{alias!r} is not a host name or address")
    if config.mesh.tls and not config.tls.cert:
        raise ConfigError("mesh.tls", "needs tls.cert and tls.key (peers offer STARTTLS)")
    own = {service: own_port(config, service) for service in ("imap", "pop3")}
    proxied = tuple(service for service in ("imap", "pop3") if getattr(config, service).proxy)
    for problem in mesh_problems(config.mesh, own, proxied):
        raise problem
    for problem in foreign_problems(config.foreign):
        raise problem


def own_port(config: Config, service: str) -> int:
    """The port of this node's first plain listener for ``service`` (0: none); peers listen
    on the same ports, since every node reads the same file."""
    listen = getattr(config, service).listen
    return parse_address(listen[0], f"{service}.listen")[1] if listen else 0


def _check_source_section(auth: AuthConfig) -> None:
    for problem in source_problems(auth):
        raise problem


def source_problems(auth: AuthConfig) -> typing.Iterator[ConfigError]:
    """Every problem of the chosen source's table (``[auth.mysql]``...), each naming its key."""
    if auth.source in ("mysql", "pgsql"):
        yield from sql_problems(getattr(auth, auth.source), f"auth.{auth.source}")
    elif auth.source == "ldap":
        yield from ldap_problems(auth.ldap, "auth.ldap")


def parse_address(text: str, key: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def iter_keys(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, str]]:
    """Every (dotted key, help) pair, for docs and their test."""
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        key = _join(prefix, spec.name)
        hint = hints[spec.name]
        if dataclasses.is_dataclass(hint):
            yield from iter_keys(typing.cast(type, hint), key)
        else:
            yield key, spec.metadata.get("help", "")
