"""Settings of the LDAP, MySQL and PostgreSQL account sources.

One frozen dataclass per source, in the style of ``config.py``: each field carries its help
text in ``metadata["help"]`` and, when Courier has the same setting, the authlib key in
``metadata["rc"]`` (``MYSQL_SERVER``...).  Field names are those keys without their prefix,
in lower case, so ``[auth.mysql] server`` and ``MYSQL_SERVER`` mean the same thing.
Defaults are authlib's.  ``auth/authlibrc.py`` fills the same dataclasses from Courier's own
``authmysqlrc`` / ``authpgsqlrc`` / ``authldaprc``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from meshproxy.errors import ConfigError


def _opt(default: Any, help_text: str, rc: str | None = None) -> Any:
    metadata = {"help": help_text, "rc": rc} if rc else {"help": help_text}
    return field(default=default, metadata=metadata)


_TIMEOUTS = "meshproxy only: seconds"


@dataclass(frozen=True)
class MysqlConfig:
    server: str = _opt("", "MySQL/MariaDB host name or address.", "MYSQL_SERVER")
    socket: str = _opt("", "Unix socket path (instead of server).", "MYSQL_SOCKET")
    port: int = _opt(0, "TCP port; 0 means 3306.", "MYSQL_PORT")
    username: str = _opt("", "Database user (required).", "MYSQL_USERNAME")
    password: str = _opt("", "Database user's password.", "MYSQL_PASSWORD")
    database: str = _opt("", "Database name (required).", "MYSQL_DATABASE")
    character_set: str = _opt(
        "", "Connection character set; empty: utf8mb4.", "MYSQL_CHARACTER_SET"
    )
    ssl_key: str = _opt("", "TLS client key file.", "MYSQL_SSL_KEY")
    ssl_cert: str = _opt("", "TLS client certificate file.", "MYSQL_SSL_CERT")
    ssl_cacert: str = _opt(
        "", "CA file; setting it (or ssl_capath) turns TLS on.", "MYSQL_SSL_CACERT"
    )
    ssl_capath: str = _opt("", "CA directory; turns TLS on.", "MYSQL_SSL_CAPATH")
    ssl_cipher: str = _opt("", "TLS cipher list.", "MYSQL_SSL_CIPHER")
    user_table: str = _opt(
        "", "Table of accounts (required without select_clause).", "MYSQL_USER_TABLE"
    )
    login_field: str = _opt("id", "Column holding the login name.", "MYSQL_LOGIN_FIELD")
    crypt_pwfield: str = _opt("", "Column of crypt/{SCHEME} hashes.", "MYSQL_CRYPT_PWFIELD")
    clear_pwfield: str = _opt(
        "", "Column of clear passwords (needed for CRAM-MD5).", "MYSQL_CLEAR_PWFIELD"
    )
    uid_field: str = _opt("uid", "Column or expression giving the uid.", "MYSQL_UID_FIELD")
    gid_field: str = _opt("gid", "Column or expression giving the gid.", "MYSQL_GID_FIELD")
    home_field: str = _opt("home", "Column or expression giving the home.", "MYSQL_HOME_FIELD")
    maildir_field: str = _opt("", "Column or expression giving the maildir.", "MYSQL_MAILDIR_FIELD")
    auxoptions_field: str = _opt(
        "", "SQL expression giving the account options.", "MYSQL_AUXOPTIONS_FIELD"
    )
    where_clause: str = _opt("1=1", "Extra condition ANDed to the lookup.", "MYSQL_WHERE_CLAUSE")
    select_clause: str = _opt(
        "", "Whole custom query (Courier's 10 columns).", "MYSQL_SELECT_CLAUSE"
    )
    default_domain: str = _opt("", "Appended as @domain to logins without one.", "DEFAULT_DOMAIN")
    connect_timeout: float = _opt(5.0, f"{_TIMEOUTS} to connect.")
    query_timeout: float = _opt(10.0, f"{_TIMEOUTS} a lookup may take.")
    pool_size: int = _opt(10, "meshproxy only: most connections open at once.")


@dataclass(frozen=True)
class PgsqlConfig:
    connection: str = _opt(
        "", "libpq connection string (host= port= user= password= dbname=).", "PGSQL_CONNECTION"
    )
    server: str = _opt("", "meshproxy only: host, overrides the connection string's.")
    port: int = _opt(0, "meshproxy only: port; 0 keeps the connection string's.")
    username: str = _opt("", "meshproxy only: user, overrides the connection string's.")
    password: str = _opt("", "meshproxy only: password, overrides the connection string's.")
    database: str = _opt("", "meshproxy only: dbname, overrides the connection string's.")
    character_set: str = _opt("", "Client encoding; empty: UTF8.", "PGSQL_CHARACTER_SET")
    user_table: str = _opt(
        "", "Table of accounts (required without select_clause).", "PGSQL_USER_TABLE"
    )
    login_field: str = _opt("id", "Column holding the login name.", "PGSQL_LOGIN_FIELD")
    crypt_pwfield: str = _opt("", "Column of crypt/{SCHEME} hashes.", "PGSQL_CRYPT_PWFIELD")
    clear_pwfield: str = _opt(
        "", "Column of clear passwords (needed for CRAM-MD5).", "PGSQL_CLEAR_PWFIELD"
    )
    uid_field: str = _opt("uid", "Column or expression giving the uid.", "PGSQL_UID_FIELD")
    gid_field: str = _opt("gid", "Column or expression giving the gid.", "PGSQL_GID_FIELD")
    home_field: str = _opt("home", "Column or expression giving the home.", "PGSQL_HOME_FIELD")
    maildir_field: str = _opt("", "Column or expression giving the maildir.", "PGSQL_MAILDIR_FIELD")
    auxoptions_field: str = _opt(
        "", "SQL expression giving the account options.", "PGSQL_AUXOPTIONS_FIELD"
    )
    where_clause: str = _opt("1=1", "Extra condition ANDed to the lookup.", "PGSQL_WHERE_CLAUSE")
    select_clause: str = _opt(
        "", "Whole custom query (Courier's 10 columns).", "PGSQL_SELECT_CLAUSE"
    )
    default_domain: str = _opt("", "Appended as @domain to logins without one.", "DEFAULT_DOMAIN")
    connect_timeout: float = _opt(5.0, f"{_TIMEOUTS} to connect.")
    query_timeout: float = _opt(10.0, f"{_TIMEOUTS} a lookup may take (statement_timeout).")
    pool_size: int = _opt(10, "meshproxy only: most connections open at once.")


@dataclass(frozen=True)
class LdapConfig:
    uri: str = _opt("", "Server URIs, comma or space separated (required).", "LDAP_URI")
    basedn: str = _opt("", "Search base (required).", "LDAP_BASEDN")
    binddn: str = _opt("", "DN to bind as before searching; empty: anonymous.", "LDAP_BINDDN")
    bindpw: str = _opt("", "Password of binddn.", "LDAP_BINDPW")
    authbind: bool = _opt(False, "Check passwords by binding as the user.", "LDAP_AUTHBIND")
    tls: bool = _opt(False, "STARTTLS on ldap:// connections.", "LDAP_TLS")
    tls_cacert: str = _opt(
        "", "meshproxy only: CA file (PEM) verifying the server; empty: the system CA store."
    )
    timeout: float = _opt(5.0, "Seconds for connects and searches.", "LDAP_TIMEOUT")
    deref: str = _opt("", "Alias dereferencing: never, searching, finding, always.", "LDAP_DEREF")
    protocol_version: int = _opt(0, "0 or 3 (ldap3 speaks LDAPv3 only).", "LDAP_PROTOCOL_VERSION")
    mail: str = _opt("mail", "Attribute matched against the login.", "LDAP_MAIL")
    filter: str = _opt("", "Extra filter ANDed to the lookup, e.g. (objectClass=x).", "LDAP_FILTER")
    domain: str = _opt("", "Appended as @domain to logins without one.", "LDAP_DOMAIN")
    glob_uid: str = _opt("", "uid (number or user name) when the entry has none.", "LDAP_GLOB_UID")
    glob_gid: str = _opt("", "gid (number or group name) when the entry has none.", "LDAP_GLOB_GID")
    uid: str = _opt("", "Attribute giving the uid.", "LDAP_UID")
    gid: str = _opt("", "Attribute giving the gid.", "LDAP_GID")
    homedir: str = _opt(
        "homeDir", "Attribute giving the home (required in the entry).", "LDAP_HOMEDIR"
    )
    mailroot: str = _opt("", "Prefix joined before the home attribute.", "LDAP_MAILROOT")
    maildir: str = _opt("", "Attribute giving the maildir.", "LDAP_MAILDIR")
    clearpw: str = _opt("", "Attribute of clear passwords (wins over cryptpw).", "LDAP_CLEARPW")
    cryptpw: str = _opt("", "Attribute of crypt/{SCHEME} hashes.", "LDAP_CRYPTPW")
    auxoptions: str = _opt(
        "", "attr=option,... copied into the account options.", "LDAP_AUXOPTIONS"
    )
    pool_size: int = _opt(10, "meshproxy only: most connections open at once.")


SourceConfig = MysqlConfig | PgsqlConfig | LdapConfig


def rc_key(cls: type, name: str) -> str | None:
    """The authlib key of field ``name`` (``MYSQL_SERVER``), None for meshproxy-only fields."""
    for spec in dataclasses.fields(cls):
        if spec.name == name:
            rc = spec.metadata.get("rc")
            return str(rc) if rc else None
    raise KeyError(name)


def key_of(config: SourceConfig, origin: str, name: str) -> str:
    """Field ``name`` as the operator wrote it: ``auth.mysql.database`` in the TOML file,
    ``/etc/courier/authmysqlrc: MYSQL_DATABASE`` in an authlib file."""
    if origin.startswith("auth."):
        return f"{origin}.{name}"
    return f"{origin}: {rc_key(type(config), name) or name}"


def config_error(config: SourceConfig, origin: str, name: str, detail: str) -> ConfigError:
    """A ConfigError naming the key as the operator wrote it (see ``key_of``)."""
    return ConfigError(key_of(config, origin, name), detail)


def check_sql(config: MysqlConfig | PgsqlConfig, origin: str) -> None:
    """authlib's load-time checks for the SQL modules: raise the first problem."""
    for problem in sql_problems(config, origin):
        raise problem


def check_ldap(config: LdapConfig, origin: str) -> None:
    """authldaplib's load-time checks: raise the first problem."""
    for problem in ldap_problems(config, origin):
        raise problem


def sql_problems(config: MysqlConfig | PgsqlConfig, origin: str) -> Iterator[ConfigError]:
    """Every problem authlib's SQL modules would refuse to load with, plus positive timeouts."""
    if isinstance(config, MysqlConfig):
        yield from _missing(config, origin, ("username", "database"))
        if not config.server and not config.socket:
            yield config_error(config, origin, "server", "server or socket is required")
    elif not (config.connection or config.server or config.database):
        yield config_error(config, origin, "connection", "required")
    if not config.select_clause:
        yield from _missing(config, origin, ("user_table",))
        if not config.crypt_pwfield and not config.clear_pwfield:
            yield config_error(config, origin, "crypt_pwfield", "crypt_pwfield or clear_pwfield")
    yield from _not_positive(config, origin, ("connect_timeout", "query_timeout", "pool_size"))


def ldap_problems(config: LdapConfig, origin: str) -> Iterator[ConfigError]:
    """Every problem authldaplib would refuse to load with."""
    yield from _missing(config, origin, ("uri", "basedn"))
    if config.deref.lower() not in ("", "never", "searching", "finding", "always"):
        yield config_error(config, origin, "deref", "never, searching, finding or always")
    if config.protocol_version not in (0, 3):
        yield config_error(config, origin, "protocol_version", "only LDAPv3 is supported")
    yield from _not_positive(config, origin, ("timeout", "pool_size"))
    if config.tls_cacert and not os.access(config.tls_cacert, os.R_OK):
        yield config_error(config, origin, "tls_cacert", f"cannot read {config.tls_cacert}")


def _missing(config: SourceConfig, origin: str, names: tuple[str, ...]) -> Iterator[ConfigError]:
    for name in names:
        if not getattr(config, name):
            yield config_error(config, origin, name, "required")


def _not_positive(
    config: SourceConfig, origin: str, names: tuple[str, ...]
) -> Iterator[ConfigError]:
    for name in names:
        if getattr(config, name) <= 0:
            yield config_error(config, origin, name, "must be positive")
