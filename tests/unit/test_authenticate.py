"""auth.authenticate: every outcome, and open_source."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth import SOURCES, authenticate, open_source
from meshproxy.auth.base import AuthSource, SingleSource
from meshproxy.auth.userdb import UserdbSource
from meshproxy.config import parse
from meshproxy.credentials import CramCredentials, Credentials, PlainCredentials
from meshproxy.errors import (
    AuthFailed,
    ConfigError,
    LoginDisabled,
    MechanismUnusable,
    MeshproxyError,
    TempFail,
)

pytestmark = pytest.mark.unit

MD5_SECRET = "$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0"  # echo secret | userdbpw -md5
SHA_IMAP = (
    "{SHA}30tLHm2E9GFN6UN64IHUSHlcH6A="  # printf imapsecret | openssl dgst -sha1 -binary | base64
)
STATE_SECRET = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
CHALLENGE = b"<12345.67890@meshproxy.example>"

USERDB = f"""\
alice\tuid=1001|gid=1001|home=/home/alice|systempw={MD5_SECRET}|imappw={SHA_IMAP}
bob\tuid=1002|gid=1002|home=/home/bob|systempw={MD5_SECRET}|hmac-md5pw={STATE_SECRET}
carol\tuid=1003|gid=1003|home=/home/carol|systempw={MD5_SECRET}|options=disableimap=1
dave\tuid=1004|gid=1004|home=/home/dave|systempw={MD5_SECRET}|options=disableinsecurepop3=y
erin\tuid=1005|gid=1005|home=/home/erin|options=mailhost=b
frank\tuid=1006|gid=1006|home=/home/frank|systempw={MD5_SECRET}|options=disableimap=0,x=1
"""


class ClearSource(SingleSource):
    """A source with clear passwords (as SQL/LDAP clear fields are)."""

    def __init__(self, *accounts: Account, default_options: str = "") -> None:
        self.accounts = {account.login: account for account in accounts}
        self.default_options = default_options

    def lookup(self, login: str, service: str = "") -> Account | None:
        del service
        return self.accounts.get(login)

    def close(self) -> None:
        self.accounts = {}


@pytest.fixture
def source(tmp_path: Path) -> AuthSource:
    path = tmp_path / "userdb"
    path.write_text(USERDB, encoding="utf-8")
    path.chmod(0o600)
    return UserdbSource(str(path))


def login(
    source: AuthSource,
    credentials: Credentials,
    service: str = "imap",
    *,
    secure: bool = True,
    default_options: str = "",
) -> Account:
    return authenticate(
        source, credentials, service=service, secure=secure, default_options=default_options
    )


def plain(user: str, password: str, authzid: str = "") -> PlainCredentials:
    return PlainCredentials(user, password, authzid, "PLAIN")


def cram(user: str, key: bytes, challenge: bytes = CHALLENGE) -> CramCredentials:
    return CramCredentials(user, challenge, hmac.new(key, challenge, "md5").hexdigest())


def test_right_password_returns_the_account(source: AuthSource) -> None:
    account = login(source, plain("alice", "secret"), "pop3")
    assert account.login == "alice"
    assert account.uid == 1001
    assert account.source == "userdb"


def test_service_password_wins_for_its_service_only(source: AuthSource) -> None:
    assert login(source, plain("alice", "imapsecret"), "imap").login == "alice"
    with pytest.raises(AuthFailed):
        login(source, plain("alice", "secret"), "imap")
    with pytest.raises(AuthFailed):
        login(source, plain("alice", "imapsecret"), "pop3")


@pytest.mark.parametrize("password", ["wrong", "Secret", "", "secret\x00"])
def test_wrong_password_is_auth_failed(source: AuthSource, password: str) -> None:
    with pytest.raises(AuthFailed, match="password mismatch"):
        login(source, plain("alice", password), "pop3")


def test_unknown_user_is_auth_failed_with_the_same_client_text(source: AuthSource) -> None:
    with pytest.raises(AuthFailed) as unknown:
        login(source, plain("nobody", "secret"))
    with pytest.raises(AuthFailed) as wrong:
        login(source, plain("alice", "wrong"), "pop3")
    assert unknown.value.text == wrong.value.text == AuthFailed.default_text
    assert "unknown user" in unknown.value.detail


def test_lookup_is_case_sensitive(source: AuthSource) -> None:
    with pytest.raises(AuthFailed):
        login(source, plain("Alice", "secret"), "pop3")


def test_account_without_any_password_refuses_plain(source: AuthSource) -> None:
    with pytest.raises(AuthFailed):
        login(source, plain("erin", "secret"))
    with pytest.raises(AuthFailed):
        login(source, plain("erin", ""))


def test_foreign_authzid_is_refused_even_with_the_right_password(source: AuthSource) -> None:
    with pytest.raises(AuthFailed, match="authzid"):
        login(source, plain("alice", "secret", authzid="bob"), "pop3")


def test_authzid_equal_to_authcid_is_accepted(source: AuthSource) -> None:
    assert login(source, plain("alice", "secret", authzid="alice"), "pop3").login == "alice"


def test_unavailable_source_is_temp_fail(tmp_path: Path) -> None:
    source = UserdbSource(str(tmp_path / "missing"))
    with pytest.raises(TempFail, match="missing") as caught:
        login(source, plain("alice", "secret"))
    assert caught.value.text == TempFail.default_text


def test_clear_password_sources() -> None:
    account = Account("u", 1, 1, "/h", secrets=Secrets(clear={"": "clearpw", "pop3": "poppw"}))
    source = ClearSource(account)
    assert login(source, plain("u", "clearpw"), "imap").login == "u"
    assert login(source, plain("u", "poppw"), "pop3").login == "u"
    with pytest.raises(AuthFailed):
        login(source, plain("u", "clearpw"), "pop3")
    with pytest.raises(AuthFailed):
        login(source, plain("u", "CLEARPW"), "imap")


def test_a_stored_hash_wins_over_a_clear_password() -> None:
    secrets = Secrets(hashed={"": MD5_SECRET}, clear={"": "clearpw"})
    source = ClearSource(Account("u", 1, 1, "/h", secrets=secrets))
    assert login(source, plain("u", "secret")).login == "u"
    with pytest.raises(AuthFailed):
        login(source, plain("u", "clearpw"))


# --- CRAM-MD5 -------------------------------------------------------------------------------


def test_cram_with_the_userdb_hmac_state(source: AuthSource) -> None:
    assert login(source, cram("bob", b"secret")).login == "bob"


def test_cram_wrong_answer_is_auth_failed(source: AuthSource) -> None:
    with pytest.raises(AuthFailed, match="CRAM-MD5"):
        login(source, cram("bob", b"wrong"))
    with pytest.raises(AuthFailed):
        login(source, CramCredentials("bob", CHALLENGE, "not hex"))


def test_cram_without_usable_secret_is_mechanism_unusable(source: AuthSource) -> None:
    with pytest.raises(MechanismUnusable):
        login(source, cram("alice", b"secret"))


def test_cram_unknown_user_is_auth_failed(source: AuthSource) -> None:
    with pytest.raises(AuthFailed):
        login(source, cram("nobody", b"secret"))


def test_cram_with_a_clear_password() -> None:
    source = ClearSource(Account("u", 1, 1, "/h", secrets=Secrets(clear={"": "clearpw"})))
    assert login(source, cram("u", b"clearpw")).login == "u"
    with pytest.raises(AuthFailed):
        login(source, cram("u", b"secret"))


def test_cram_service_state_wins() -> None:
    secrets = Secrets(hmac_md5={"": STATE_SECRET, "pop3": "00" * 32})
    source = ClearSource(Account("u", 1, 1, "/h", secrets=secrets))
    assert login(source, cram("u", b"secret"), "imap").login == "u"
    with pytest.raises(AuthFailed):
        login(source, cram("u", b"secret"), "pop3")


# --- options --------------------------------------------------------------------------------


def test_default_options_are_merged_account_values_win(source: AuthSource) -> None:
    account = login(source, plain("frank", "secret"), default_options="disableimap=1,quota=5")
    assert account.options == Options("disableimap=0,x=1,quota=5")


def test_disabled_service_is_login_disabled_after_a_right_password(source: AuthSource) -> None:
    with pytest.raises(LoginDisabled):
        login(source, plain("carol", "secret"), "imap")
    assert login(source, plain("carol", "secret"), "pop3").login == "carol"


def test_disabled_account_with_a_wrong_password_is_auth_failed(source: AuthSource) -> None:
    with pytest.raises(AuthFailed):
        login(source, plain("carol", "wrong"), "imap")


def test_disable_insecure_depends_on_tls(source: AuthSource) -> None:
    with pytest.raises(LoginDisabled):
        login(source, plain("dave", "secret"), "pop3", secure=False)
    assert login(source, plain("dave", "secret"), "pop3", secure=True).login == "dave"
    assert login(source, plain("dave", "secret"), "imap", secure=False).login == "dave"


def test_default_options_can_disable(source: AuthSource) -> None:
    with pytest.raises(LoginDisabled):
        login(source, plain("alice", "secret"), "pop3", default_options="disablepop3=1")


def test_disabled_applies_to_cram_too() -> None:
    secrets = Secrets(hmac_md5={"": STATE_SECRET})
    account = Account("u", 1, 1, "/h", options=Options("disableimap=1"), secrets=secrets)
    with pytest.raises(LoginDisabled):
        login(ClearSource(account), cram("u", b"secret"))


# --- no password in any message -------------------------------------------------------------

SENSITIVE = "Sup3r-S3cret-Passw0rd"


@pytest.mark.parametrize(
    ("user", "authzid", "options"),
    [("nobody", "", ""), ("u", "", ""), ("u", "other", ""), ("u", "", "disableimap=1")],
)
def test_no_error_carries_the_password(user: str, authzid: str, options: str) -> None:
    secrets = Secrets(clear={"": SENSITIVE})
    source = ClearSource(Account("u", 1, 1, "/h", options=Options(options), secrets=secrets))
    password = SENSITIVE if options else SENSITIVE + "x"
    with pytest.raises(MeshproxyError) as caught:
        login(source, plain(user, password, authzid))
    error = caught.value
    for text in (str(error), error.detail, error.text, repr(error.args)):
        assert SENSITIVE not in text


# --- open_source ----------------------------------------------------------------------------


def test_open_source_rejects_an_unknown_name() -> None:
    with pytest.raises(ConfigError, match=r"auth\.source"):
        open_source(parse({"auth": {"source": "nosuch"}}))


def test_open_source_checks_the_source_table() -> None:
    with pytest.raises(ConfigError, match=r"auth\.ldap\.uri: required"):
        open_source(parse({"auth": {"source": "ldap"}}))


def test_source_map_is_lazy_module_class_strings() -> None:
    assert SOURCES == {
        "userdb": "meshproxy.auth.userdb:UserdbSource",
        "ldap": "meshproxy.auth.ldap:LdapSource",
        "mysql": "meshproxy.auth.mysql:MysqlSource",
        "pgsql": "meshproxy.auth.pgsql:PgsqlSource",
        "courier": "meshproxy.auth.courier_chain:CourierSource",
    }
