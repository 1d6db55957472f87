"""auth.authenticate with several candidates (Courier's module chain), a source's own password
check (LDAP authbind) and a source's default options (authdaemonrc DEFAULTOPTIONS)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator

import pytest

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth import authenticate
from meshproxy.auth.base import AuthSource, BackendUnavailable, SingleSource
from meshproxy.credentials import CramCredentials, Credentials, MeshCredentials, PlainCredentials
from meshproxy.errors import AuthFailed, LoginDisabled, MechanismUnusable, TempFail

pytestmark = pytest.mark.unit

MD5_SECRET = "$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0"  # echo secret | userdbpw -md5
CHALLENGE = b"<12345.67890@meshproxy.example>"


class Module(SingleSource):
    """One authlib module in miniature: a dictionary of accounts, optionally its own check."""

    def __init__(
        self,
        name: str,
        *accounts: Account,
        bind_password: str | None = None,
        down: bool = False,
        bind_down: bool = False,
    ) -> None:
        self.name = name
        self.accounts = {account.login: account for account in accounts}
        self.bind_password = bind_password
        self.down = down
        self.bind_down = bind_down
        self.binds: list[str] = []

    def lookup(self, login: str, service: str = "") -> Account | None:
        del service
        if self.down:
            raise BackendUnavailable(f"{self.name}: server down")
        return self.accounts.get(login)

    def verify_password(self, account: Account, password: str) -> bool | None:
        """None without ``bind_password`` (the secrets decide), else whether it matches."""
        if self.bind_password is None:
            return None
        self.binds.append(account.login)
        if self.bind_down:
            raise BackendUnavailable(f"{self.name}: bind failed, server down")
        return password == self.bind_password

    def close(self) -> None:
        self.accounts = {}


class Chain:
    """The AuthSource contract as Courier's chain implements it: each module's account in turn;
    a module that fails ends the iteration with BackendUnavailable."""

    def __init__(self, *modules: Module, default_options: str = "") -> None:
        self.modules = modules
        self.default_options = default_options

    def lookup(self, login: str, service: str = "") -> Account | None:
        return next(self.candidates(login, service), None)

    def candidates(self, login: str, service: str = "") -> Iterator[Account]:
        for module in self.modules:
            account = module.lookup(login, service)
            if account is not None:
                yield account

    def verify_password(self, account: Account, password: str) -> bool | None:
        for module in self.modules:
            if module.name == account.source:
                return module.verify_password(account, password)
        return None

    def close(self) -> None:
        for module in self.modules:
            module.close()


def account(source: str, uid: int, *, options: str = "", **secrets: dict[str, str]) -> Account:
    home = f"/home/{source}"
    return Account(
        "u", uid, uid, home, options=Options(options), secrets=Secrets(**secrets), source=source
    )


def login(
    source: AuthSource, credentials: Credentials, service: str = "imap", **kwargs: str
) -> Account:
    return authenticate(source, credentials, service=service, secure=True, **kwargs)


def plain(password: str) -> PlainCredentials:
    return PlainCredentials("u", password)


def cram(secret: bytes) -> CramCredentials:
    return CramCredentials("u", CHALLENGE, hmac.new(secret, CHALLENGE, "md5").hexdigest())


def test_chain_satisfies_the_protocol() -> None:
    source: AuthSource = Chain(Module("a"))
    assert source.lookup("u") is None


# --- the chain ------------------------------------------------------------------------------


def test_a_rejected_password_passes_to_the_next_module() -> None:
    first = Module("ldap", account("ldap", 1, clear={"": "ldap-pw"}))
    second = Module("mysql", account("mysql", 2, hashed={"": MD5_SECRET}))
    chain = Chain(first, second)
    assert login(chain, plain("secret")).source == "mysql"
    assert login(chain, plain("ldap-pw")).source == "ldap"


def test_the_first_module_that_accepts_wins() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, clear={"": "same"})),
        Module("mysql", account("mysql", 2, clear={"": "same"})),
    )
    found = login(chain, plain("same"))
    assert (found.source, found.uid) == ("ldap", 1)


def test_mechanism_unusable_in_one_module_success_in_the_next() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, hashed={"": MD5_SECRET})),
        Module("mysql", account("mysql", 2, clear={"": "secret"})),
    )
    assert login(chain, cram(b"secret")).source == "mysql"


@pytest.mark.parametrize("order", ["unusable first", "wrong first"])
def test_a_wrong_answer_anywhere_is_auth_failed(order: str) -> None:
    unusable = Module("ldap", account("ldap", 1, hashed={"": MD5_SECRET}))
    wrong = Module("mysql", account("mysql", 2, clear={"": "other"}))
    modules = (unusable, wrong) if order == "unusable first" else (wrong, unusable)
    with pytest.raises(AuthFailed, match="CRAM-MD5 digest mismatch"):
        login(Chain(*modules), cram(b"secret"))


def test_mechanism_unusable_when_no_module_can_check() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, hashed={"": MD5_SECRET})),
        Module("mysql"),
        Module("pgsql", account("pgsql", 3)),
    )
    with pytest.raises(MechanismUnusable):
        login(chain, cram(b"secret"))


def test_every_module_rejecting_is_auth_failed() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, clear={"": "a"})),
        Module("mysql", account("mysql", 2, clear={"": "b"})),
    )
    with pytest.raises(AuthFailed, match="password mismatch"):
        login(chain, plain("c"))


def test_no_module_knowing_the_login_is_unknown_user() -> None:
    with pytest.raises(AuthFailed, match="unknown user"):
        login(Chain(Module("ldap"), Module("mysql")), plain("secret"))


def test_a_module_down_after_a_rejection_is_temp_fail() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, clear={"": "other"})),
        Module("mysql", down=True),
        Module("pgsql", account("pgsql", 3, clear={"": "secret"})),
    )
    with pytest.raises(TempFail, match="mysql: server down"):
        login(chain, plain("secret"))


def test_a_module_down_after_a_success_is_never_asked() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, clear={"": "secret"})),
        Module("mysql", down=True),
    )
    assert login(chain, plain("secret")).source == "ldap"


def test_a_disabled_account_does_not_fall_through() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, options="disableimap=1", clear={"": "secret"})),
        Module("mysql", account("mysql", 2, clear={"": "secret"})),
    )
    with pytest.raises(LoginDisabled):
        login(chain, plain("secret"))


# --- the source's own password check ----------------------------------------------------------


def test_verify_password_true_accepts_without_stored_secrets() -> None:
    module = Module("ldap", account("ldap", 1), bind_password="bound")
    assert login(module, plain("bound")).uid == 1
    assert module.binds == ["u"]


def test_verify_password_false_rejects_even_a_matching_stored_hash() -> None:
    module = Module("ldap", account("ldap", 1, hashed={"": MD5_SECRET}), bind_password="other")
    with pytest.raises(AuthFailed, match="password mismatch"):
        login(module, plain("secret"))


@pytest.mark.parametrize(("password", "accepted"), [("secret", True), ("wrong", False)])
def test_verify_password_none_leaves_it_to_the_secrets(password: str, accepted: bool) -> None:
    module = Module("mysql", account("mysql", 2, hashed={"": MD5_SECRET}))
    if accepted:
        assert login(module, plain(password)).uid == 2
    else:
        with pytest.raises(AuthFailed):
            login(module, plain(password))


def test_verify_password_is_not_asked_for_an_empty_password() -> None:
    module = Module("ldap", account("ldap", 1), bind_password="")
    with pytest.raises(AuthFailed, match="empty password"):
        login(module, plain(""))
    assert module.binds == []


def test_verify_password_failing_is_temp_fail() -> None:
    module = Module("ldap", account("ldap", 1), bind_password="bound", bind_down=True)
    with pytest.raises(TempFail, match="bind failed"):
        login(module, plain("bound"))
    chain = Chain(Module("mysql", account("mysql", 2, clear={"": "other"})), module)
    with pytest.raises(TempFail, match="bind failed"):
        login(chain, plain("bound"))


def test_verify_password_is_asked_of_the_module_that_found_the_account() -> None:
    ldap = Module("ldap", account("ldap", 1), bind_password="bound")
    mysql = Module("mysql", account("mysql", 2, clear={"": "secret"}))
    chain = Chain(ldap, mysql)
    assert login(chain, plain("secret")).source == "mysql"
    assert login(chain, plain("bound")).source == "ldap"
    assert ldap.binds == ["u", "u"]


# --- default options --------------------------------------------------------------------------


def test_source_defaults_then_config_defaults_account_values_win() -> None:
    found = login(
        Chain(
            Module("ldap", account("ldap", 1, options="disableimap=0", clear={"": "pw"})),
            default_options="disableimap=1,quota=5",
        ),
        plain("pw"),
        default_options="quota=9,x=1",
    )
    assert found.options == Options("disableimap=0,quota=5,x=1")


def test_source_defaults_can_disable() -> None:
    chain = Chain(
        Module("ldap", account("ldap", 1, clear={"": "pw"})), default_options="disablepop3=1"
    )
    with pytest.raises(LoginDisabled):
        login(chain, plain("pw"), "pop3")
    assert login(chain, plain("pw"), "imap").options == Options("disablepop3=1")


def test_a_mesh_assertion_is_never_checked_by_a_source() -> None:
    module = Module("ldap", account("ldap", 1), bind_password="bound")
    with pytest.raises(AuthFailed, match="X-MESHPROXY"):
        login(module, MeshCredentials(b"u\0bound"))
    assert module.binds == []
