"""The accounts of the source contract suite, and loading them into each server.

The same few hundred accounts go into MariaDB, PostgreSQL and slapd: every password scheme the
sources can store (crypt kinds, ``{SCHEME}`` hashes, clear passwords, both), options with a
``mailhost``, accounts without one, ``disable*`` options, accounts switched off in the
database (not found), and logins with quotes, ``%``, ``_`` and multi-byte characters.

Servers are started once per test process (``servers()``), loaded once, and stopped at exit.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
from contextlib import closing
from dataclasses import dataclass

import crypt_r
from ldap3.utils.dn import escape_rdn

from meshproxy.sourceconfig import LdapConfig, MysqlConfig, PgsqlConfig

from . import services

DOMAIN = "example.test"
PEOPLE = f"ou=people,{services.LDAP_BASE}"
COUNT = 300
SPECIAL_LOGINS = (
    "jürgen@example.test",
    "用户@example.test",
    "o'brien@example.test",
    "per%cent@example.test",
    "under_score@example.test",
    'dq"uote@example.test',
    "star*name@example.test",
    "paren)(name@example.test",
    "back\\slash@example.test",
    "plus+comma,dn@example.test",
)


def _salted(algorithm: str, password: bytes, salt: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, password + salt).digest() + salt).decode()


def _digest(algorithm: str, password: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, password).digest()).decode()


def hash_password(scheme: str, password: str) -> str:
    """The stored form of ``password`` under ``scheme`` ("" for clear-only)."""
    raw, salt = password.encode(), os.urandom(8)
    methods = {
        "md5-crypt": crypt_r.METHOD_MD5,
        "sha256-crypt": crypt_r.METHOD_SHA256,
        "sha512-crypt": crypt_r.METHOD_SHA512,
        "des-crypt": crypt_r.METHOD_CRYPT,
    }
    if scheme in methods:
        return str(crypt_r.crypt(password, crypt_r.mksalt(methods[scheme])))
    table = {
        "clear": lambda: "",
        "bcrypt": lambda: str(
            crypt_r.crypt(password, crypt_r.mksalt(crypt_r.METHOD_BLOWFISH, rounds=16))
        ),
        "{CRYPT}": lambda: (
            "{CRYPT}" + str(crypt_r.crypt(password, crypt_r.mksalt(crypt_r.METHOD_SHA512)))
        ),
        "{MD5}": lambda: "{MD5}" + _digest("md5", raw),
        "{MD5RAW}": lambda: "{MD5RAW}" + hashlib.md5(raw).hexdigest(),
        "{SHA}": lambda: "{SHA}" + _digest("sha1", raw),
        "{SHA256}": lambda: "{SHA256}" + _digest("sha256", raw),
        "{SHA512}": lambda: "{SHA512}" + _digest("sha512", raw),
        "{SSHA}": lambda: "{SSHA}" + _salted("sha1", raw, salt[:4]),
        "{SSHA256}": lambda: "{SSHA256}" + _salted("sha256", raw, salt),
        "{SSHA512}": lambda: "{SSHA512}" + _salted("sha512", raw, salt),
    }
    return table[scheme]()


SCHEMES = (
    "clear",
    "md5-crypt",
    "sha256-crypt",
    "sha512-crypt",
    "des-crypt",
    "bcrypt",
    "{CRYPT}",
    "{MD5}",
    "{MD5RAW}",
    "{SHA}",
    "{SHA256}",
    "{SHA512}",
    "{SSHA}",
    "{SSHA256}",
    "{SSHA512}",
)
SLAPD_SCHEMES = ("{SSHA}", "{SHA}", "{MD5}", "{CRYPT}")
"""Schemes slapd itself verifies on bind (bare crypt strings it takes as clear text)."""


@dataclass(frozen=True)
class SourceAccount:
    index: int
    login: str
    password: str
    scheme: str
    crypt: str
    clear: str
    uid: int
    gid: int
    home: str
    maildir: str | None
    mailhost: str | None
    options: str
    active: bool

    @property
    def dn(self) -> str:
        return f"cn={escape_rdn(self.login)},{PEOPLE}"


def _account(index: int, login: str) -> SourceAccount:
    scheme = SCHEMES[index % len(SCHEMES)]
    password = f"pw-{index}-Ünïcode' \"%*\\"
    both = index % 19 == 5
    flags = [
        name for name, step in (("disableimap=1", 11), ("disablepop3=1", 13)) if not index % step
    ]
    return SourceAccount(
        index=index,
        login=login,
        password=password,
        scheme=scheme,
        crypt=hash_password("sha512-crypt" if both else scheme, password),
        clear=password if scheme == "clear" or both else "",
        uid=2000 + index % 50,
        gid=3000 + index % 7,
        home=f"/srv/mail/{index}",
        maildir=f"/srv/mail/{index}/Maildir" if index % 3 else None,
        mailhost=None if index % 7 == 3 else f"node{index % 3}",
        options=",".join(flags),
        active=index % 17 != 8,
    )


def build() -> list[SourceAccount]:
    logins = [f"user{index}@{DOMAIN}" for index in range(COUNT - len(SPECIAL_LOGINS))]
    logins += SPECIAL_LOGINS
    return [_account(index, login) for index, login in enumerate(logins)]


ACCOUNTS = build()
BY_LOGIN = {account.login: account for account in ACCOUNTS}

_TABLE = """CREATE TABLE accounts (
    id VARCHAR(200) NOT NULL PRIMARY KEY, crypt VARCHAR(255), clear VARCHAR(255),
    uid INTEGER, gid INTEGER, home VARCHAR(255), maildir VARCHAR(255),
    mailhost VARCHAR(255), options VARCHAR(255), active INTEGER NOT NULL)"""
_INSERT = "INSERT INTO accounts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _row(account: SourceAccount) -> tuple[object, ...]:
    return (
        account.login,
        account.crypt or None,
        account.clear or None,
        account.uid,
        account.gid,
        account.home,
        account.maildir,
        account.mailhost,
        account.options or None,
        int(account.active),
    )


BROKEN_ROWS = [
    ("uid0@example.test", "", "pw", 0, 100, "/srv/mail/x", None, None, None, 1),
    ("gid0@example.test", "", "pw", 100, 0, "/srv/mail/x", None, None, None, 1),
    ("nohome@example.test", "", "pw", 100, 100, "", None, None, None, 1),
]
"""Rows authlib refuses: uid 0, gid 0, empty home."""


def load_sql(connection: object) -> None:
    rows = [_row(account) for account in ACCOUNTS] + BROKEN_ROWS
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("DROP TABLE IF EXISTS accounts")
        cursor.execute(_TABLE)
        cursor.executemany(_INSERT, rows)
        cursor.execute(f"GRANT SELECT ON accounts TO {services.DB_USER}")


def _ldap_attributes(account: SourceAccount) -> dict[str, object]:
    attributes: dict[str, object] = {
        "cn": account.login,
        "sn": f"n{account.index}",
        "uid": f"acct{account.index}",
        "uidNumber": account.uid,
        "gidNumber": account.gid,
        "homeDirectory": account.home,
        "courierLogin": account.login,
        "accountActive": "1" if account.active else "0",
    }
    optional = {
        "mailbox": account.maildir,
        "mailhost": account.mailhost,
        "userPassword": account.crypt,
        "clearPassword": account.clear,
        "disableimap": "1" if "disableimap" in account.options else None,
        "disablepop3": "1" if "disablepop3" in account.options else None,
    }
    attributes.update({key: value for key, value in optional.items() if value})
    return attributes


def load_ldap(slapd: services.Slapd) -> None:
    classes = ["inetOrgPerson", "posixAccount", "courierAccount"]
    connection = slapd.admin()
    connection.add(PEOPLE, ["organizationalUnit"], {"ou": "people"})
    for account in ACCOUNTS:
        connection.add(account.dn, classes, _ldap_attributes(account))
    for copy in ("a", "b"):
        twin = _ldap_attributes(ACCOUNTS[1]) | {"courierLogin": DUPLICATE, "cn": f"dup-{copy}"}
        connection.add(f"cn=dup-{copy},{PEOPLE}", classes, twin)
    connection.unbind()


DUPLICATE = "dup@example.test"
"""Two LDAP entries carry this login: authldap refuses it as unknown."""


AUX_MYSQL = "CONCAT_WS(',', options, CONCAT('mailhost=', mailhost))"
AUX_PGSQL = "concat_ws(',', options, 'mailhost=' || mailhost)"


def mysql_config(server: services.Mariadb, **changes: object) -> MysqlConfig:
    values: dict[str, object] = {
        "server": "127.0.0.1",
        "port": server.port,
        "username": services.DB_USER,
        "password": services.DB_PASSWORD,
        "database": services.DB_NAME,
        "user_table": "accounts",
        "crypt_pwfield": "crypt",
        "clear_pwfield": "clear",
        "maildir_field": "maildir",
        "auxoptions_field": AUX_MYSQL,
        "where_clause": "active = 1",
        "connect_timeout": 2.0,
        "query_timeout": 5.0,
    }
    return MysqlConfig(**{**values, **changes})  # type: ignore[arg-type]


def pgsql_config(server: services.Postgres, **changes: object) -> PgsqlConfig:
    values: dict[str, object] = {
        "connection": server.connection_string(),
        "user_table": "accounts",
        "crypt_pwfield": "crypt",
        "clear_pwfield": "clear",
        "maildir_field": "maildir",
        "auxoptions_field": AUX_PGSQL,
        "where_clause": "active = 1",
        "connect_timeout": 2.0,
        "query_timeout": 5.0,
    }
    return PgsqlConfig(**{**values, **changes})  # type: ignore[arg-type]


def ldap_config(server: services.Slapd, **changes: object) -> LdapConfig:
    values: dict[str, object] = {
        "uri": server.uri(),
        "basedn": PEOPLE,
        "binddn": services.LDAP_ADMIN,
        "bindpw": services.ADMIN_PASSWORD,
        "mail": "courierLogin",
        "filter": "(objectClass=courierAccount)(accountActive=1)",
        "uid": "uidNumber",
        "gid": "gidNumber",
        "homedir": "homeDirectory",
        "maildir": "mailbox",
        "clearpw": "clearPassword",
        "cryptpw": "userPassword",
        "timeout": 3.0,
        "auxoptions": "mailhost=mailhost,disableimap=disableimap,disablepop3=disablepop3",
    }
    return LdapConfig(**{**values, **changes})  # type: ignore[arg-type]


@dataclass
class Servers:
    slapd: services.Slapd
    mariadb: services.Mariadb
    postgres: services.Postgres


_SERVERS: list[Servers] = []


def servers() -> Servers:
    """The three servers of this test process, started and loaded on first use."""
    if not _SERVERS:
        slapd, mariadb, postgres = services.Slapd(), services.Mariadb(), services.Postgres()
        for server in (slapd, mariadb, postgres):
            atexit.register(server.destroy)
            server.start()
        slapd.create_base()
        load_ldap(slapd)
        mariadb.create_database()
        postgres.create_database()
        with mariadb.admin(services.DB_NAME) as connection:
            load_sql(connection)
        with closing(postgres.admin(services.DB_NAME)) as connection:
            load_sql(connection)
        _SERVERS.append(Servers(slapd, mariadb, postgres))
    return _SERVERS[0]
