"""The contract accounts: the same few hundred accounts in every account source, each homed on
a real Courier Maildir, and raw clients that log in to a running daemon with them.

``Contract.build(root)`` creates everything once per session:

* system users ``mpt_src0``..``mpt_src2`` (several accounts share one, each with its own home
  owned by it) and one home per account with a Maildir made by ``maildirmake.courier`` as that
  user, holding a marker message whose subject names the account (``contract-marker 17``):
  a login that reaches the right mailbox sees its own marker and no other;
* the accounts in a ``contract`` table in MariaDB and PostgreSQL, under ``ou=contract`` in
  slapd and in a userdb file (the servers of ``source_accounts.servers()``);
* a Courier configuration directory as an operator would have it: Debian's ``imapd`` /
  ``pop3d`` files, ``authdaemonrc`` with ``authmodulelist="authldap authmysql authpgsql
  authuserdb"``, ``authldaprc``, ``authmysqlrc``, ``authpgsqlrc`` and ``userdb``; each module
  holds one shard (a quarter) of the accounts, so a login walks the chain to its module.

Every account is active or switched off in the source (``active = 0``: not found), has a
password in one of the schemes of ``source_accounts.SCHEMES`` (clear, crypt kinds,
``{SCHEME}`` hashes; some both a hash and a clear password), a ``mailhost`` of this node or
none, and sometimes ``disableimap`` / ``disablepop3``.  Passwords hold quotes, backslashes,
``%``, ``*`` and spaces; some hold non-ASCII letters.  The last logins carry quotes, ``%``,
``_``, ``*``, ``)(``, backslashes and multi-byte characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldap3.utils.dn import escape_rdn

from . import services
from .accounts import NODE_NAME, ensure_system_user, hmac_md5pw
from .clients import LineClient
from .conftest import COURIER_DIR, write_courier_config
from .daemon import Daemon, DaemonFactory
from .source_accounts import SCHEMES, Servers, hash_password, servers

DOMAIN = "contract.test"
COUNT = 300
SYSTEM_USERS = ("mpt_src0", "mpt_src1", "mpt_src2")
CONTRACT_OU = f"ou=contract,{services.LDAP_BASE}"
TABLE = "contract"
SPECIAL_LOCAL_PARTS = (
    "jürgen",
    "用户",
    "o'brien",
    "per%cent",
    "under_score",
    'dq"uote',
    "star*name",
    "paren)(name",
    "back\\slash",
    "plus+comma,dn",
)
SLOW_INDEX = 7
"""The account whose lookup sleeps two seconds in the server (custom select_clause)."""
SOURCES = ("userdb", "ldap", "mysql", "pgsql", "courier")
MODULE_OF_SHARD = ("authldap", "authmysql", "authpgsql", "authuserdb")
SERVER_OF = {"ldap": "slapd", "mysql": "mariadb", "pgsql": "postgres"}
FAILURE_DELAY = 3.0
MARKER = "contract-marker"


@dataclass(frozen=True)
class ContractAccount:
    index: int
    login: str
    password: str
    scheme: str
    crypt: str  # stored hash ("" for a clear-only account)
    clear: str  # stored clear password ("" for hash-only)
    user: str
    uid: int
    gid: int
    home: Path
    maildir_field: str | None  # what the source stores (absolute, relative or none)
    mailhost: str | None
    options: str  # disable flags only; mailhost is its own column/attribute
    active: bool

    @property
    def shard(self) -> int:
        return self.index % len(MODULE_OF_SHARD)

    @property
    def maildir(self) -> Path:
        """The real Maildir the account's sessions must reach."""
        if self.maildir_field is None:
            return self.home / "Maildir"
        return self.home / self.maildir_field

    @property
    def marker(self) -> str:
        return f"{MARKER} {self.index}"

    @property
    def dn(self) -> str:
        return f"cn={escape_rdn(self.login)},{CONTRACT_OU}"

    @property
    def ascii_password(self) -> bool:
        return self.password.isascii()

    def disabled(self, service: str) -> bool:
        return f"disable{service}=1" in self.options.split(",")

    def expected(self, service: str) -> str:
        """What a login with the right password gets: ok, failed or disabled."""
        if not self.active:
            return "failed"
        return "disabled" if self.disabled(service) else "ok"

    @property
    def all_options(self) -> str:
        parts = [part for part in self.options.split(",") if part]
        if self.mailhost:
            parts.append(f"mailhost={self.mailhost}")
        return ",".join(parts)


def _password(index: int) -> str:
    text = f"Pw{index}-{secrets.token_hex(4)}-'\"%*\\ end"
    return text + "-Ünï" if index % 10 == 9 else text


def _login(index: int) -> str:
    special = index - (COUNT - len(SPECIAL_LOCAL_PARTS))
    local = SPECIAL_LOCAL_PARTS[special] if special >= 0 else f"c{index}"
    return f"{local}@{DOMAIN}"


def build_accounts(root: Path) -> list[ContractAccount]:
    """The table (homes under ``root``); system users are created here, homes are not."""
    ids = {name: ensure_system_user(name) for name in SYSTEM_USERS}
    table = []
    for index in range(COUNT):
        special = index >= COUNT - len(SPECIAL_LOCAL_PARTS)
        scheme = SCHEMES[index % len(SCHEMES)]
        password = _password(index)
        both = index % 19 == 5
        flags = []
        if not special and index % 11 == 10:
            flags.append("disableimap=1")
        if not special and index % 13 == 12:
            flags.append("disablepop3=1")
        user = SYSTEM_USERS[index % len(SYSTEM_USERS)]
        uid, gid = ids[user]
        home = root / str(index)
        table.append(
            ContractAccount(
                index=index,
                login=_login(index),
                password=password,
                scheme=scheme,
                crypt=hash_password("sha512-crypt" if both else scheme, password),
                clear=password if scheme == "clear" or both else "",
                user=user,
                uid=uid,
                gid=gid,
                home=home,
                maildir_field=(None, f"{home}/Mail/box", "Mail/inbox")[index % 3],
                mailhost=None if index % 7 == 3 else NODE_NAME,
                options=",".join(flags),
                active=special or index % 17 != 8,
            )
        )
    return table


def marker_message(account: ContractAccount) -> bytes:
    """As a local delivery stores it: LF line ends."""
    return (
        f"From: setup@{DOMAIN}\nTo: account@{DOMAIN}\nSubject: {account.marker}\n"
        f"Message-Id: <marker-{account.index}@{DOMAIN}>\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\n\nThe account's own mailbox.\n"
    ).encode()


def make_homes(accounts: list[ContractAccount], root: Path) -> None:
    """Homes owned by each account's system user; Maildirs made by maildirmake.courier."""
    root.mkdir(parents=True)
    root.chmod(0o755)
    for account in accounts:
        account.maildir.parent.mkdir(parents=True, exist_ok=True)
        for folder in (account.home, account.maildir.parent):
            os.chown(folder, account.uid, account.gid)
            folder.chmod(0o700)
    for user in SYSTEM_USERS:
        paths = [str(account.maildir) for account in accounts if account.user == user]
        script = 'for d do maildirmake.courier "$d" || exit 1; done'
        subprocess.run(
            ["runuser", "-u", user, "--", "sh", "-c", script, "sh", *paths],
            check=True,
            timeout=120,
        )
    for account in accounts:
        stat = account.maildir.stat()
        assert (stat.st_uid, stat.st_gid) == (account.uid, account.gid), account.login
        name = f"{time.time_ns()}.M{account.index}P{os.getpid()}.contract"
        tmp = account.maildir / "tmp" / name
        tmp.write_bytes(marker_message(account))
        os.chown(tmp, account.uid, account.gid)
        tmp.rename(account.maildir / "new" / name)


# --- loading the sources -------------------------------------------------------------------

_SQL_TABLE = f"""CREATE TABLE {TABLE} (
    id VARCHAR(200) NOT NULL PRIMARY KEY, crypt VARCHAR(255), clear VARCHAR(255),
    uid INTEGER, gid INTEGER, home VARCHAR(255), maildir VARCHAR(255),
    mailhost VARCHAR(255), options VARCHAR(255), active INTEGER NOT NULL,
    shard INTEGER NOT NULL)"""
_SQL_INSERT = f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _sql_row(account: ContractAccount) -> tuple[object, ...]:
    return (
        account.login,
        account.crypt or None,
        account.clear or None,
        account.uid,
        account.gid,
        str(account.home),
        account.maildir_field,
        account.mailhost,
        account.options or None,
        int(account.active),
        account.shard,
    )


def load_sql(connection: Any, accounts: Iterable[ContractAccount]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(_SQL_TABLE)
        cursor.executemany(_SQL_INSERT, [_sql_row(account) for account in accounts])
        cursor.execute(f"GRANT SELECT ON {TABLE} TO {services.DB_USER}")


def _ldap_attributes(account: ContractAccount) -> dict[str, object]:
    attributes: dict[str, object] = {
        "cn": account.login,
        "sn": f"shard{account.shard}",
        "uid": f"contract{account.index}",
        "uidNumber": account.uid,
        "gidNumber": account.gid,
        "homeDirectory": str(account.home),
        "courierLogin": account.login,
        "accountActive": "1" if account.active else "0",
    }
    optional = {
        "mailbox": account.maildir_field,
        "mailhost": account.mailhost,
        "userPassword": account.crypt,
        "clearPassword": account.clear,
        "disableimap": "1" if account.disabled("imap") else None,
        "disablepop3": "1" if account.disabled("pop3") else None,
    }
    attributes.update({key: value for key, value in optional.items() if value})
    return attributes


def load_ldap(slapd: services.Slapd, accounts: Iterable[ContractAccount]) -> None:
    classes = ["inetOrgPerson", "posixAccount", "courierAccount"]
    connection = slapd.admin()
    try:
        connection.add(CONTRACT_OU, ["organizationalUnit"], {"ou": "contract"})
        for account in accounts:
            connection.add(account.dn, classes, _ldap_attributes(account))
    finally:
        connection.unbind()


def userdb_line(account: ContractAccount) -> str:
    """userdb has no clear-password field: a clear password becomes a crypt hash for PLAIN
    and ``hmac-md5pw`` (``userdbpw -hmac-md5``) for CRAM-MD5, as Courier's tools would."""
    crypt = account.crypt or hash_password("sha512-crypt", account.password)
    fields = [
        f"uid={account.uid}",
        f"gid={account.gid}",
        f"home={account.home}",
        f"systempw={crypt}",
    ]
    if account.clear:
        fields.append(f"hmac-md5pw={hmac_md5pw(account.password)}")
    if account.maildir_field:
        fields.append(f"mail={account.maildir_field}")
    if account.all_options:
        fields.append(f"options={account.all_options}")
    return f"{account.login}\t{'|'.join(fields)}\n"


def write_userdb(path: Path, accounts: Iterable[ContractAccount]) -> None:
    """Only active accounts: a switched-off account is simply absent from userdb."""
    lines = {account.index: userdb_line(account) for account in accounts if account.active}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write("".join(lines[index] for index in sorted(lines)))


# --- configurations ----------------------------------------------------------------------

AUX_MYSQL = "CONCAT_WS(',', options, CONCAT('mailhost=', mailhost))"
AUX_PGSQL = "concat_ws(',', options, 'mailhost=' || mailhost)"
COLUMNS = "id, crypt, clear, uid, gid, home, maildir, '', ''"
WHERE = "id = '$(local_part)@$(domain)' AND active = 1 AND '$(service)' IN ('imap', 'pop3')"
SLOW_LOGIN = f"c{SLOW_INDEX}@{DOMAIN}"
SELECT_CLAUSE = {
    "mysql": f"SELECT {COLUMNS}, {AUX_MYSQL} FROM {TABLE} WHERE {WHERE} "
    f"AND IF('$(local_part)@$(domain)' = '{SLOW_LOGIN}', SLEEP(2), 0) = 0",
    "pgsql": f"SELECT {COLUMNS}, {AUX_PGSQL} FROM {TABLE} WHERE {WHERE} "
    f"AND (CASE WHEN '$(local_part)@$(domain)' = '{SLOW_LOGIN}' "
    "THEN (SELECT true FROM pg_sleep(2)) ELSE true END)",
}
"""The TOML sources use a custom select_clause (with Courier's substitutions) whose lookup of
``SLOW_LOGIN`` waits two seconds in the server; Courier's rc files use the default query."""


def ldap_settings(slapd: services.Slapd) -> dict[str, object]:
    return {
        "uri": slapd.uri(),
        "basedn": CONTRACT_OU,
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
        "auxoptions": "mailhost=mailhost,disableimap=disableimap,disablepop3=disablepop3",
        "timeout": 3.0,
    }


def mysql_settings(mariadb: services.Mariadb) -> dict[str, object]:
    return {
        "server": "127.0.0.1",
        "port": mariadb.port,
        "username": services.DB_USER,
        "password": services.DB_PASSWORD,
        "database": services.DB_NAME,
        "select_clause": SELECT_CLAUSE["mysql"],
        "connect_timeout": 2.0,
        "query_timeout": 5.0,
    }


def pgsql_settings(postgres: services.Postgres) -> dict[str, object]:
    return {
        "connection": postgres.connection_string(),
        "select_clause": SELECT_CLAUSE["pgsql"],
        "connect_timeout": 2.0,
        "query_timeout": 5.0,
    }


RC_HEAD = "##VERSION: $Id: {name} written by the meshproxy contract suite $\n#\n"

AUTHLDAPRC = """\
##NAME: LDAP_URI:0
#
# Remember to use the ldaps: URL scheme for TLS connections.

LDAP_URI\t\t{uri}

##NAME: LDAP_PROTOCOL_VERSION:0

LDAP_PROTOCOL_VERSION\t3

##NAME: LDAP_BASEDN:0
#
# Look for authentication here:

LDAP_BASEDN\t\t{basedn}

##NAME: LDAP_BINDDN:0
#
# You may or may not need to specify the following.

LDAP_INITBIND\t\t1
LDAP_BINDDN\t\t{binddn}
LDAP_BINDPW\t\t{bindpw}

##NAME: LDAP_TIMEOUT:0

LDAP_TIMEOUT\t\t3

##NAME: LDAP_MAIL:0

LDAP_MAIL\t\tcourierLogin

##NAME: LDAP_FILTER:0
#
# This module holds the accounts of the first shard only.

LDAP_FILTER\t\t(objectClass=courierAccount)(accountActive=1)(sn=shard0)

##NAME: LDAP_GLOB_IDS:0

LDAP_UID\t\tuidNumber
LDAP_GID\t\tgidNumber

##NAME: LDAP_HOMEDIR:0

LDAP_HOMEDIR\t\thomeDirectory

##NAME: LDAP_MAILDIR:0

LDAP_MAILDIR\t\tmailbox

##NAME: LDAP_FULLNAME:0

LDAP_FULLNAME\t\tcn

##NAME: LDAP_CLEARPW:0

LDAP_CLEARPW\t\tclearPassword

##NAME: LDAP_CRYPTPW:0

LDAP_CRYPTPW\t\tuserPassword

##NAME: LDAP_AUXOPTIONS:0
#
# Auxiliary options.

LDAP_AUXOPTIONS\t\tmailhost=mailhost,disableimap=disableimap,disablepop3=disablepop3

##NAME: LDAP_DEREF:0

LDAP_DEREF\t\tnever

##NAME: LDAP_TLS:0

LDAP_TLS\t\t0

##NAME: MARKER:0
#
# Do not remove this section from this configuration file. This section
# must be present at the end of this file.
"""

AUTHMYSQLRC = """\
##NAME: MYSQL_SERVER:0

MYSQL_SERVER\t\t127.0.0.1
MYSQL_USERNAME\t\t{user}
MYSQL_PASSWORD\t\t{password}

##NAME: MYSQL_PORT:0

MYSQL_PORT\t\t{port}

##NAME: MYSQL_OPT:0

MYSQL_OPT\t\t0

##NAME: MYSQL_DATABASE:0

MYSQL_DATABASE\t\t{database}

##NAME: MYSQL_CHARACTER_SET:0

MYSQL_CHARACTER_SET\tutf8mb4

##NAME: MYSQL_USER_TABLE:0

MYSQL_USER_TABLE\t{table}

##NAME: MYSQL_CRYPT_PWFIELD:0

MYSQL_CRYPT_PWFIELD\tcrypt

##NAME: MYSQL_CLEAR_PWFIELD:0

MYSQL_CLEAR_PWFIELD\tclear

##NAME: MYSQL_UID_FIELD:0

MYSQL_UID_FIELD\t\tuid
MYSQL_GID_FIELD\t\tgid

##NAME: MYSQL_LOGIN_FIELD:0

MYSQL_LOGIN_FIELD\tid

##NAME: MYSQL_HOME_FIELD:0

MYSQL_HOME_FIELD\thome

##NAME: MYSQL_NAME_FIELD:0

MYSQL_NAME_FIELD\t''

##NAME: MYSQL_MAILDIR_FIELD:0

MYSQL_MAILDIR_FIELD\tmaildir

##NAME: MYSQL_AUXOPTIONS:0
#
# (README.proxy calls it MYSQL_AUXOPTIONS; authmysqllib.cpp reads this name.)

MYSQL_AUXOPTIONS_FIELD\tCONCAT_WS(',', options, \\
\t\t\tCONCAT('mailhost=', mailhost))

##NAME: MYSQL_WHERE_CLAUSE:0
#
# This module holds the accounts of the second shard only.

MYSQL_WHERE_CLAUSE\tactive = 1 AND shard = 1

##NAME: MARKER:0
#
# Do not remove this section from this configuration file. This section
# must be present at the end of this file.
"""

AUTHPGSQLRC = """\
##NAME: PGSQL_CONNECTION:0
#
# authlib reads only the libpq connection string (not PGSQL_HOST & co.).

PGSQL_CONNECTION\t{connection}

##NAME: PGSQL_USER_TABLE:0

PGSQL_USER_TABLE\t{table}

##NAME: PGSQL_CRYPT_PWFIELD:0

PGSQL_CRYPT_PWFIELD\tcrypt

##NAME: PGSQL_CLEAR_PWFIELD:0

PGSQL_CLEAR_PWFIELD\tclear

##NAME: PGSQL_UID_FIELD:0

PGSQL_UID_FIELD\t\tuid
PGSQL_GID_FIELD\t\tgid

##NAME: PGSQL_LOGIN_FIELD:0

PGSQL_LOGIN_FIELD\tid

##NAME: PGSQL_HOME_FIELD:0

PGSQL_HOME_FIELD\thome

##NAME: PGSQL_MAILDIR_FIELD:0

PGSQL_MAILDIR_FIELD\tmaildir

##NAME: PGSQL_AUXOPTIONS_FIELD:0

PGSQL_AUXOPTIONS_FIELD\tconcat_ws(',', options, 'mailhost=' || mailhost)

##NAME: PGSQL_WHERE_CLAUSE:0
#
# This module holds the accounts of the third shard only.

PGSQL_WHERE_CLAUSE\tactive = 1 AND shard = 2

##NAME: MARKER:0
#
# Do not remove this section from this configuration file. This section
# must be present at the end of this file.
"""

COURIER_MODULES = " ".join(MODULE_OF_SHARD)


def write_courier_dir(
    folder: Path, running: Servers, accounts: list[ContractAccount], template: Path
) -> None:
    """authdaemonrc (Debian's, with our module list), the three rc files and userdb, in
    ``folder`` (which already holds Courier's imapd and pop3d files)."""
    lines = []
    for line in (template / "authdaemonrc").read_text().splitlines():
        ours = line.startswith("authmodulelist=")
        lines.append(f'authmodulelist="{COURIER_MODULES}"' if ours else line)
    assert f'authmodulelist="{COURIER_MODULES}"' in lines
    (folder / "authdaemonrc").write_text("\n".join(lines) + "\n")
    files = {
        "authldaprc": AUTHLDAPRC.format(
            uri=running.slapd.uri(),
            basedn=CONTRACT_OU,
            binddn=services.LDAP_ADMIN,
            bindpw=services.ADMIN_PASSWORD,
        ),
        "authmysqlrc": AUTHMYSQLRC.format(
            user=services.DB_USER,
            password=services.DB_PASSWORD,
            port=running.mariadb.port,
            database=services.DB_NAME,
            table=TABLE,
        ),
        "authpgsqlrc": AUTHPGSQLRC.format(
            connection=running.postgres.connection_string(), table=TABLE
        ),
    }
    for name, text in files.items():
        path = folder / name
        path.write_text(RC_HEAD.format(name=name) + text)
        path.chmod(0o660)
    write_userdb(folder / "userdb", [account for account in accounts if account.shard == 3])


@dataclass
class Contract:
    """The accounts, loaded everywhere, and how to configure a daemon for each source."""

    accounts: list[ContractAccount]
    running: Servers
    userdb: Path
    courier_dir: Path

    @classmethod
    def build(cls, root: Path, courier_files: Path, template: Path) -> Contract:
        accounts = build_accounts(root / "homes")
        make_homes(accounts, root / "homes")
        running = servers()
        with running.mariadb.admin(services.DB_NAME) as connection:
            load_sql(connection, accounts)
        with closing(running.postgres.admin(services.DB_NAME)) as connection:
            load_sql(connection, accounts)
        load_ldap(running.slapd, accounts)
        userdb = root / "userdb"
        write_userdb(userdb, accounts)
        write_courier_dir(courier_files, running, accounts, template)
        return cls(accounts, running, userdb, courier_files)

    @property
    def by_login(self) -> dict[str, ContractAccount]:
        return {account.login: account for account in self.accounts}

    def account(self, index: int) -> ContractAccount:
        return self.accounts[index]

    def usable(self, service: str = "imap") -> list[ContractAccount]:
        """Accounts that log in to ``service`` with their password."""
        return [account for account in self.accounts if account.expected(service) == "ok"]

    def module(self, kind: str, account: ContractAccount) -> str:
        """The source that holds ``account`` for a daemon of ``kind`` (Courier: its shard's)."""
        if kind != "courier":
            return kind
        return MODULE_OF_SHARD[account.shard].removeprefix("auth")

    def server(self, kind: str) -> services.Server:
        server: services.Server = getattr(self.running, SERVER_OF[kind])
        return server

    def overrides(self, kind: str) -> dict[str, Any]:
        """Daemon config overrides for source ``kind`` (proxying on: mailhost is read)."""
        auth: dict[str, Any] = {"source": kind, "failure_delay": FAILURE_DELAY}
        courier: dict[str, Any] = {}
        if kind == "userdb":
            auth["userdb"] = {"path": str(self.userdb)}
        elif kind == "ldap":
            auth["ldap"] = ldap_settings(self.running.slapd)
        elif kind == "mysql":
            auth["mysql"] = mysql_settings(self.running.mariadb)
        elif kind == "pgsql":
            auth["pgsql"] = pgsql_settings(self.running.postgres)
        else:
            assert kind == "courier", kind
            courier["config_dir"] = str(self.courier_dir)
        overrides: dict[str, Any] = {
            "imap": {"proxy": True},
            "pop3": {"proxy": True, "apop": True},
            "auth": auth,
            "limits": {"max_per_ip": 500, "login_timeout": 30.0},
        }
        if courier:
            overrides["courier"] = courier
        return overrides

    def secrets(self) -> list[str]:
        """Every password a test may type (right ones, and the wrong ``x`` + password)."""
        return [account.password for account in self.accounts]


# --- clients -------------------------------------------------------------------------------


def literal(data: bytes) -> bytes:
    """An IMAP non-synchronising literal (LITERAL+): any bytes but CR/LF/NUL, any charset."""
    return b"{%d+}\r\n" % len(data) + data


def outcome(line: bytes) -> str:
    """ok, failed, disabled, cannot, unavailable, bad or the line itself, for IMAP and POP3."""
    text = line.decode(errors="replace").strip()
    status = text.split(" ", 2)[1:] if not text.startswith(("+", "-")) else text.split(" ", 1)
    head = " ".join(status)
    table = (
        ("OK", "ok"),
        ("+OK", "ok"),
        ("NO [AUTHENTICATIONFAILED]", "failed"),
        ("NO [CONTACTADMIN]", "disabled"),
        ("NO [CANNOT]", "cannot"),
        ("NO [UNAVAILABLE]", "unavailable"),
        ("-ERR [AUTH]", "failed"),
        ("-ERR [SYS/TEMP]", "unavailable"),
        ("BAD", "bad"),
    )
    for prefix, name in table:
        if head == prefix or head.startswith(prefix + " "):
            return name
    return text


def pop3_outcome(line: bytes, expected: str) -> str:
    """POP3 answers a disabled service and a wrong password alike (``-ERR [AUTH]``)."""
    got = outcome(line)
    return "disabled" if got == "failed" and expected == "disabled" else got


@contextmanager
def connected(daemon: Daemon, proto: str, timeout: float = 20.0) -> Iterator[LineClient]:
    with daemon.raw(proto, timeout=timeout) as client:
        greeting = client.readline()
        assert greeting.startswith(b"* OK" if proto == "imap" else b"+OK"), greeting
        yield client


def imap_login(client: LineClient, login: str, password: str, tag: str = "a1") -> bytes:
    """LOGIN with both arguments as literals; the tagged reply line."""
    command = tag.encode() + b" LOGIN " + literal(login.encode())
    client.send(command + b" " + literal(password.encode()) + b"\r\n")
    return client.tagged(tag)[-1]


def imap_auth_plain(client: LineClient, login: str, password: str, tag: str = "a1") -> bytes:
    """AUTHENTICATE PLAIN with an initial response (SASL-IR)."""
    response = base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode())
    client.send(tag.encode() + b" AUTHENTICATE PLAIN " + response + b"\r\n")
    return client.tagged(tag)[-1]


def cram_digest(challenge_line: bytes, login: str, secret: str) -> bytes:
    """The CRAM-MD5 answer to a ``+ <base64 challenge>`` line."""
    challenge = base64.b64decode(challenge_line[2:].strip())
    digest = hmac.new(secret.encode(), challenge, "md5").hexdigest()
    return base64.b64encode(f"{login} {digest}".encode()) + b"\r\n"


def imap_cram(client: LineClient, login: str, secret: str, tag: str = "a1") -> bytes:
    client.send(tag.encode() + b" AUTHENTICATE CRAM-MD5\r\n")
    challenge = client.readline()
    assert challenge.startswith(b"+ "), challenge
    client.send(cram_digest(challenge, login, secret))
    return client.tagged(tag)[-1]


def pop3_user_pass(client: LineClient, login: str, password: str) -> bytes:
    client.send(b"USER " + login.encode() + b"\r\n")
    reply = client.readline()
    if not reply.startswith(b"+OK"):
        return reply
    client.send(b"PASS " + password.encode() + b"\r\n")
    return client.readline()


def pop3_auth_plain(client: LineClient, login: str, password: str) -> bytes:
    response = base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode())
    client.send(b"AUTH PLAIN " + response + b"\r\n")
    return client.readline()


def pop3_cram(client: LineClient, login: str, secret: str) -> bytes:
    client.send(b"AUTH CRAM-MD5\r\n")
    challenge = client.readline()
    assert challenge.startswith(b"+ "), challenge
    client.send(cram_digest(challenge, login, secret))
    return client.readline()


APOP_TIMESTAMP = re.compile(rb"\+OK .*(<[!-;=?-~]+>)\r\n")


@contextmanager
def apop_session(daemon: Daemon) -> Iterator[tuple[LineClient, bytes]]:
    """A POP3 connection and the timestamp of its greeting (``[pop3] apop = true``)."""
    with daemon.raw("pop3", timeout=20.0) as client:
        greeting = client.readline()
        match = APOP_TIMESTAMP.fullmatch(greeting)
        assert match, greeting
        yield client, match.group(1)


def pop3_apop(client: LineClient, timestamp: bytes, login: str, secret: str) -> bytes:
    digest = hashlib.md5(timestamp + secret.encode()).hexdigest()
    client.send(b"APOP " + login.encode() + b" " + digest.encode() + b"\r\n")
    return client.readline()


def imap_markers(client: LineClient, tag: str = "m") -> list[str]:
    """The marker subjects in INBOX (EXAMINE, FETCH every subject); then LOGOUT."""
    reply = client.command(f"{tag}1", "EXAMINE INBOX")
    assert reply[-1].startswith(f"{tag}1 OK".encode()), reply
    lines = client.command(f"{tag}2", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert lines[-1].startswith(f"{tag}2 OK".encode()), lines
    client.command(f"{tag}3", "LOGOUT")
    return markers_in(lines)


def pop3_markers(client: LineClient) -> list[str]:
    """The marker subjects of every message (TOP n 0); then QUIT."""
    client.send(b"STAT\r\n")
    stat = client.readline()
    assert stat.startswith(b"+OK "), stat
    found = []
    for number in range(1, int(stat.split()[1]) + 1):
        client.send(b"TOP %d 0\r\n" % number)
        status = client.readline()
        assert status.startswith(b"+OK"), status
        found += markers_in(client.multiline())
    client.send(b"QUIT\r\n")
    client.readline()
    return found


def markers_in(lines: Iterable[bytes]) -> list[str]:
    prefix = f"Subject: {MARKER} ".encode()
    return [line.strip().decode()[len("Subject: ") :] for line in lines if line.startswith(prefix)]


def sweep_one(daemon: Daemon, account: ContractAccount, service: str) -> str | None:
    """One login with the right password; None when the answer (and, after a successful
    login, the mailbox reached) is what ``account`` demands, else a description."""
    want = account.expected(service)
    with connected(daemon, service) as client:
        if service == "imap":
            got = outcome(imap_login(client, account.login, account.password))
        else:
            got = pop3_outcome(pop3_user_pass(client, account.login, account.password), want)
        if got != want:
            return f"{account.login} {service}: {got}, want {want}"
        if got != "ok":
            return None
        markers = imap_markers(client) if service == "imap" else pop3_markers(client)
    if markers != [account.marker]:
        return f"{account.login} {service}: mailbox markers {markers}"
    return None


# --- fixtures' helpers ---------------------------------------------------------------------

_CONTRACT: list[Contract] = []


def shared_contract(session_dir: Path) -> Contract:
    """The session's contract accounts, built on first use (both contract modules share it)."""
    if not _CONTRACT:
        courier_files = write_courier_config(session_dir / "contract-courier", {})
        _CONTRACT.append(Contract.build(session_dir / "contract", courier_files, COURIER_DIR))
    return _CONTRACT[0]


class Daemons:
    """One daemon per source for a test module, started on first use."""

    def __init__(self, factory: DaemonFactory, contract: Contract) -> None:
        self.factory = factory
        self.contract = contract
        self.running: dict[str, Daemon] = {}

    def __getitem__(self, kind: str) -> Daemon:
        if kind not in self.running:
            self.running[kind] = self.factory.start(self.contract.overrides(kind))
        return self.running[kind]

    def stop(self) -> None:
        for daemon in self.running.values():
            self.factory.stop(daemon, self.contract.secrets())
