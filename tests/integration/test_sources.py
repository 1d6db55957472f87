"""The account-source contract: the same accounts through LDAP, MySQL and PostgreSQL.

Each source is checked with ``lookup()`` and ``meshproxy.auth.authenticate()`` for every
account, then with logins built to break a query or filter, and finally through Courier's
own rc files (``source = "courier"``), which must give the same answers.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshproxy.account import Account
from meshproxy.auth import authenticate
from meshproxy.auth.base import BackendUnavailable
from meshproxy.auth.courier_chain import CourierSource
from meshproxy.auth.ldap import LdapSource
from meshproxy.auth.mysql import MysqlSource
from meshproxy.auth.pgsql import PgsqlSource
from meshproxy.credentials import CramCredentials, PlainCredentials
from meshproxy.errors import AuthFailed, LoginDisabled, MechanismUnusable, TempFail

from . import services
from .source_accounts import (
    ACCOUNTS,
    DUPLICATE,
    SLAPD_SCHEMES,
    SourceAccount,
    ldap_config,
    mysql_config,
    pgsql_config,
    servers,
)

pytestmark = pytest.mark.integration

SOURCES = ("ldap", "mysql", "pgsql")
Source = LdapSource | MysqlSource | PgsqlSource


def open_source(kind: str, **changes: Any) -> Source:
    running = servers()
    if kind == "ldap":
        return LdapSource(ldap_config(running.slapd, **changes))
    if kind == "mysql":
        return MysqlSource(mysql_config(running.mariadb, **changes))
    return PgsqlSource(pgsql_config(running.postgres, **changes))


@pytest.fixture(scope="module", params=SOURCES)
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    opened = open_source(request.param)
    yield opened
    opened.close()


def describe(account: Account) -> tuple[object, ...]:
    flags = tuple(account.options.flag(name) for name in ("disableimap", "disablepop3"))
    return (
        account.login,
        account.uid,
        account.gid,
        account.home,
        account.maildir,
        account.mailhosts,
        flags,
    )


def expected(account: SourceAccount) -> tuple[object, ...]:
    flags = ("disableimap" in account.options, "disablepop3" in account.options)
    mailhosts = (account.mailhost,) if account.mailhost else ()
    return (
        account.login,
        account.uid,
        account.gid,
        account.home,
        account.maildir,
        mailhosts,
        flags,
    )


def test_every_account_is_found_as_stored(source: Source) -> None:
    wrong = []
    for account in ACCOUNTS:
        found = source.lookup(account.login)
        if not account.active:
            if found is not None:
                wrong.append((account.login, "inactive account found"))
        elif found is None or describe(found) != expected(account):
            wrong.append((account.login, found and describe(found), expected(account)))
    assert wrong == []


def login_outcome(source: Source, login: str, password: str, service: str) -> str:
    credentials = PlainCredentials(login, password)
    try:
        account = authenticate(source, credentials, service=service, secure=True)
    except (AuthFailed, LoginDisabled, TempFail) as exc:
        return type(exc).__name__
    return f"ok {account.login}"


def expected_outcome(account: SourceAccount, service: str, *, right: bool) -> str:
    if not account.active or not right:
        return "AuthFailed"
    if f"disable{service}" in account.options:
        return "LoginDisabled"
    return f"ok {account.login}"


def test_every_password_scheme_authenticates(source: Source) -> None:
    wrong = []
    for account in ACCOUNTS:
        for service in ("imap", "pop3"):
            got = login_outcome(source, account.login, account.password, service)
            want = expected_outcome(account, service, right=True)
            if got != want:
                wrong.append((account.login, account.scheme, service, got, want))
        # Changed at the start: DES crypt looks at the first eight characters only.
        got = login_outcome(source, account.login, "x" + account.password, "imap")
        if got != "AuthFailed":
            wrong.append((account.login, account.scheme, "wrong password", got))
    assert wrong == []


def cram(login: str, secret: str) -> CramCredentials:
    challenge = b"<1896.697170952@meshproxy.test>"
    digest = hmac.new(secret.encode(), challenge, "md5").hexdigest()
    return CramCredentials(login, challenge, digest)


def test_cram_md5_works_with_a_clear_password_only(source: Source) -> None:
    active = [account for account in ACCOUNTS if account.active and not account.options]
    with_clear = [account for account in active if account.clear][:10]
    hashed_only = [account for account in active if not account.clear][:10]
    for account in with_clear:
        found = authenticate(
            source, cram(account.login, account.password), service="imap", secure=True
        )
        assert found.login == account.login
        with pytest.raises(AuthFailed):
            authenticate(source, cram(account.login, "nope"), service="imap", secure=True)
    for account in hashed_only:
        with pytest.raises(MechanismUnusable):
            authenticate(source, cram(account.login, account.password), service="imap", secure=True)
    assert with_clear
    assert hashed_only


HOSTILE = (
    "' OR '1'='1",
    "user1@example.test' OR '1'='1",
    "user1@example.test' -- ",
    "user1@example.test'; DROP TABLE accounts; --",
    'x" OR "1"="1',
    "user1@example.test\\",
    "user1@example.test\\'",
    "%",
    "user1%",
    "user_@example.test",
    "*",
    "user1*",
    "*)(courierLogin=*",
    "user1@example.test)(|(courierLogin=*)",
    ")(",
    "user1@example.test\x00",
    "user1@example.test\x00' OR '1'='1",
    "\x00",
    "üser1@example.test",
    "USER1@EXAMPLE.TEST",
    "$(local_part)",
    "",
)


def test_hostile_logins_find_nothing(source: Source) -> None:
    results = {login: source.lookup(login) for login in HOSTILE}
    assert {login: found for login, found in results.items() if found is not None} == {}
    assert source.lookup("user1@example.test") is not None


def test_logins_with_special_characters_are_found_exactly(source: Source) -> None:
    special = [account for account in ACCOUNTS if not account.login.startswith("user")]
    for account in special:
        found = source.lookup(account.login)
        assert (describe(found) if found else None) == (
            expected(account) if account.active else None
        )
        for variant in (account.login.upper(), account.login[:-1], account.login + "x"):
            assert source.lookup(variant) is None, variant


@pytest.mark.parametrize("kind", SOURCES)
def test_default_domain_completes_bare_logins(kind: str) -> None:
    key = "domain" if kind == "ldap" else "default_domain"
    completing = open_source(kind, **{key: "example.test"})
    try:
        found = completing.lookup("user1")
        assert found is not None
        assert found.uid == ACCOUNTS[1].uid
        assert completing.lookup("user1@other.test") is None
    finally:
        completing.close()


SELECT = {
    "mysql": "SELECT id, crypt, clear, uid, gid, home, maildir, '', '', options "
    "FROM accounts WHERE id = '$(local_part)@$(domain)' AND active = 1 "
    "AND '$(service)' IN ('imap', 'pop3') AND 'a%b' LIKE 'a%%b' AND \"it's\" = 'it''s'",
    "pgsql": "SELECT id, crypt, clear, uid, gid, home, maildir, '', '', options "
    "FROM accounts WHERE id = '$(local_part)@$(domain)' AND active = 1 "
    "AND '$(service)' IN ('imap', 'pop3') AND 'a%b' LIKE 'a%%b' AND 'it''s' = 'it''s'",
}


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_custom_select_clause_substitutes_parameters(kind: str) -> None:
    custom = open_source(kind, select_clause=SELECT[kind], default_domain="example.test")
    try:
        for login in ("user2@example.test", "user2", "o'brien@example.test"):
            found = custom.lookup(login, "pop3")
            assert found is not None, login
            assert found.login.startswith(login)
        assert custom.lookup("user2@example.test", "smtp") is None
        assert custom.lookup("user2@example.test", "imap' OR '1'='1") is None
        for login in HOSTILE:
            assert custom.lookup(login, "imap") is None, login
    finally:
        custom.close()


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_where_clause_substitutes_service(kind: str) -> None:
    where = "active = 1 AND '$(service)' = 'imap' AND id LIKE '$(local_part)%'"
    custom = open_source(kind, where_clause=where)
    try:
        assert custom.lookup("user3@example.test", "imap") is not None
        assert custom.lookup("user3@example.test", "pop3") is None
    finally:
        custom.close()


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
@pytest.mark.parametrize("login", ["uid0@example.test", "gid0@example.test"])
def test_uid_or_gid_zero_is_a_source_failure(kind: str, login: str) -> None:
    sql_source = open_source(kind)
    try:
        with pytest.raises(BackendUnavailable):
            sql_source.lookup(login)
        with pytest.raises(TempFail):
            authenticate(sql_source, PlainCredentials(login, "pw"), service="imap", secure=True)
    finally:
        sql_source.close()


def test_empty_home_means_unknown_in_pgsql_and_failure_in_mysql() -> None:
    pgsql, mysql = open_source("pgsql"), open_source("mysql")
    try:
        assert pgsql.lookup("nohome@example.test") is None
        with pytest.raises(BackendUnavailable):
            mysql.lookup("nohome@example.test")
    finally:
        pgsql.close()
        mysql.close()


def test_ldap_login_on_several_entries_is_unknown() -> None:
    ldap = open_source("ldap")
    try:
        assert ldap.lookup(DUPLICATE) is None
        assert ldap.lookup(ACCOUNTS[1].login) is not None
    finally:
        ldap.close()


def test_ldap_authbind_verifies_by_binding_as_the_entry() -> None:
    binding = open_source("ldap", authbind=True)
    assert isinstance(binding, LdapSource)
    checked = 0
    try:
        for account in ACCOUNTS:
            if not account.active or account.clear or account.scheme not in SLAPD_SCHEMES:
                continue
            found = binding.lookup(account.login)
            assert found is not None
            assert binding.verify_password(found, account.password) is True, account.login
            assert binding.verify_password(found, account.password + "x") is False
            assert binding.verify_password(found, "") is False
            checked += 1
    finally:
        binding.close()
    assert checked > 20


def test_ldap_without_authbind_leaves_the_check_to_the_secrets(source: Source) -> None:
    found = source.lookup(ACCOUNTS[1].login)
    assert found is not None
    verify = getattr(source, "verify_password", None)
    assert verify is None or verify(found, ACCOUNTS[1].password) is None


RC_MYSQL = """\
MYSQL_SERVER\t\t127.0.0.1
MYSQL_PORT\t\t{port}
MYSQL_USERNAME\t\t{user}
MYSQL_PASSWORD\t\t{password}
MYSQL_DATABASE\t\t{database}
MYSQL_USER_TABLE\taccounts
MYSQL_CRYPT_PWFIELD\tcrypt
MYSQL_CLEAR_PWFIELD\tclear
MYSQL_MAILDIR_FIELD\tmaildir
MYSQL_AUXOPTIONS_FIELD\tCONCAT_WS(',', options, \\
                        CONCAT('mailhost=', mailhost))
MYSQL_WHERE_CLAUSE\tactive = 1
MYSQL_WHERE_CLAUSE\tthis second definition is ignored
#MYSQL_SELECT_CLAUSE\tSELECT nonsense
##NAME: MARKER:0
"""
RC_PGSQL = """\
PGSQL_CONNECTION\t{connection}
PGSQL_DATABASE\t\tignored_by_authlib
PGSQL_USER_TABLE\taccounts
PGSQL_CRYPT_PWFIELD\tcrypt
PGSQL_CLEAR_PWFIELD\tclear
PGSQL_MAILDIR_FIELD\tmaildir
PGSQL_AUXOPTIONS_FIELD\tconcat_ws(',', options, 'mailhost=' || mailhost)
PGSQL_WHERE_CLAUSE\tactive = 1
##NAME: MARKER:0
"""
RC_LDAP = """\
LDAP_URI\t\t{uri}
LDAP_BASEDN\t\t{basedn}
LDAP_INITBIND\t\t1
LDAP_BINDDN\t\t{binddn}
LDAP_BINDPW\t\t{bindpw}
LDAP_TIMEOUT\t\t3
LDAP_MAIL\t\tcourierLogin
LDAP_FILTER\t\t(objectClass=courierAccount)(accountActive=1)
LDAP_UID\t\tuidNumber
LDAP_GID\t\tgidNumber
LDAP_HOMEDIR\t\thomeDirectory
LDAP_MAILDIR\t\tmailbox
LDAP_CLEARPW\t\tclearPassword
LDAP_CRYPTPW\t\tuserPassword
LDAP_AUXOPTIONS\t\tmailhost=mailhost,disableimap=disableimap,disablepop3=disablepop3
##NAME: MARKER:0
"""
MODULES = {"ldap": "authldap", "mysql": "authmysql", "pgsql": "authpgsql"}


def write_courier_dir(folder: Path, modules: str) -> Path:
    running = servers()
    ldap = ldap_config(running.slapd)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "authdaemonrc").write_text(
        f'authmodulelist="{modules}"\nauthmodulelistorig="authuserdb authpam"\n'
        'DEFAULTOPTIONS="wbnodsn=1"\ndaemons=5\n'
    )
    (folder / "authmysqlrc").write_text(
        RC_MYSQL.format(
            port=running.mariadb.port,
            user=services.DB_USER,
            password=services.DB_PASSWORD,
            database=services.DB_NAME,
        )
    )
    (folder / "authpgsqlrc").write_text(
        RC_PGSQL.format(connection=running.postgres.connection_string())
    )
    (folder / "authldaprc").write_text(
        RC_LDAP.format(uri=ldap.uri, basedn=ldap.basedn, binddn=ldap.binddn, bindpw=ldap.bindpw)
    )
    return folder


@pytest.fixture(scope="module")
def courier_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    base = tmp_path_factory.mktemp("courier")
    return lambda modules: write_courier_dir(base / modules.replace(" ", "-"), modules)


@pytest.mark.parametrize("kind", SOURCES)
def test_courier_rc_files_give_the_same_answers(
    kind: str, courier_dir: Callable[[str], Path]
) -> None:
    chain = CourierSource(str(courier_dir(f"authpam {MODULES[kind]}")))
    direct = open_source(kind)
    try:
        assert chain.default_options == "wbnodsn=1"
        for account in ACCOUNTS:
            mine, theirs = chain.lookup(account.login), direct.lookup(account.login)
            assert (mine and describe(mine)) == (theirs and describe(theirs)), account.login
            assert login_outcome(chain, account.login, account.password, "imap") == (
                expected_outcome(account, "imap", right=True)
            )
    finally:
        chain.close()
        direct.close()


def test_courier_chain_tries_modules_in_order(courier_dir: Callable[[str], Path]) -> None:
    chain = CourierSource(str(courier_dir("authldap authmysql authpgsql")))
    try:
        login = ACCOUNTS[4].login
        sources = [account.source for account in chain.candidates(login)]
        assert sources == ["ldap", "mysql", "pgsql"]
        found = chain.lookup(login)
        assert found is not None
        assert found.source == "ldap"
        assert chain.lookup("nobody@example.test") is None
    finally:
        chain.close()


def test_courier_chain_stops_at_a_temporary_failure(courier_dir: Callable[[str], Path]) -> None:
    """authmysql refuses an empty home as a temporary failure: authdaemond's TEMPFAIL ends
    the search although authpgsql, later in the list, would answer "unknown"."""
    chain = CourierSource(str(courier_dir("authldap authmysql authpgsql")))
    reversed_chain = CourierSource(str(courier_dir("authpgsql authldap")))
    try:
        with pytest.raises(BackendUnavailable):
            chain.lookup("nohome@example.test")
        assert reversed_chain.lookup("nohome@example.test") is None
    finally:
        chain.close()
        reversed_chain.close()
