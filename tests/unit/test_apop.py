"""POP3 APOP (RFC 1939 section 7): the core's greeting and command, and the password check."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from itertools import count

import pytest

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth import APOP_NEEDS_CLEAR, authenticate, verify_apop
from meshproxy.auth.base import AuthSource, SingleSource
from meshproxy.config import parse
from meshproxy.credentials import ApopCredentials, CramCredentials, Credentials
from meshproxy.errors import AuthFailed, LoginDisabled, MechanismUnusable
from meshproxy.protocol import (
    NEED_DATA,
    LoginAttempt,
    NextEvent,
    Pop3Preauth,
    Pop3Settings,
    Pop3State,
    StartTLS,
)
from meshproxy.protocol.sasl import cram_challenge_factory

pytestmark = pytest.mark.unit

# The example of RFC 1939 section 7.
TIMESTAMP = b"<1896.697170952@dbc.mtview.ca.us>"
SECRET = "tanstaaf"
DIGEST = "c4c9334bac560ecc979e58001b3e22fb"
SETTINGS = Pop3Settings(
    tls_available=True,
    greeting="POP3 server ready",
    implementation="meshproxy 0.1",
    challenge=lambda: TIMESTAMP,
    apop=True,
)


def started(settings: Pop3Settings = SETTINGS) -> Pop3Preauth:
    core = Pop3Preauth(settings)
    core.data_to_send()
    return core


def send(core: Pop3Preauth, data: bytes) -> tuple[NextEvent, bytes]:
    core.receive_data(data)
    event = core.next_event()
    return event, core.data_to_send()


def apop(name: str, secret: str, timestamp: bytes = TIMESTAMP) -> ApopCredentials:
    digest = hashlib.md5(timestamp + secret.encode()).hexdigest()
    return ApopCredentials(name, timestamp, digest)


# -- the core ---------------------------------------------------------------------------------


def test_greeting_carries_the_timestamp() -> None:
    core = Pop3Preauth(SETTINGS)
    assert core.data_to_send() == b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    assert core.apop_timestamp == TIMESTAMP


def test_greeting_without_apop_has_no_timestamp() -> None:
    core = Pop3Preauth(replace(SETTINGS, apop=False))
    assert core.data_to_send() == b"+OK POP3 server ready\r\n"
    assert core.apop_timestamp == b""


def test_each_greeting_gets_a_fresh_timestamp_of_rfc_1939_form() -> None:
    settings = replace(SETTINGS, challenge=cram_challenge_factory("node1.example"))
    greetings = {Pop3Preauth(settings).data_to_send() for _ in range(50)}
    assert len(greetings) == 50
    for greeting in greetings:
        assert re.fullmatch(rb"\+OK POP3 server ready <\d+\.\d+@node1\.example>\r\n", greeting)


def test_a_long_greeting_never_cuts_the_timestamp() -> None:
    core = Pop3Preauth(replace(SETTINGS, greeting="x" * 400))
    assert core.data_to_send().endswith(b" " + TIMESTAMP + b"\r\n")


@pytest.mark.parametrize("bad", [b"", b"1896.697@host", b"<a\r\nb>", b"<a<b>", b"<a b>"])
def test_a_factory_giving_no_timestamp_is_a_programming_error(bad: bytes) -> None:
    with pytest.raises(ValueError, match="APOP timestamp"):
        Pop3Preauth(replace(SETTINGS, challenge=lambda: bad))


def test_rfc_1939_example() -> None:
    core = started()
    event, output = send(core, f"APOP mrose {DIGEST}\r\n".encode())
    assert output == b""
    assert event == LoginAttempt(ApopCredentials("mrose", TIMESTAMP, DIGEST))
    assert core.state is Pop3State.LOGIN_PENDING
    assert verify_apop(TIMESTAMP, DIGEST, SECRET)


def test_verb_any_case_digest_upper_case_and_pipelining() -> None:
    core = started()
    event, _ = send(core, f"apop mrose {DIGEST.upper()}\r\nSTAT\r\n".encode())
    assert isinstance(event, LoginAttempt)
    assert event.credentials == ApopCredentials("mrose", TIMESTAMP, DIGEST)
    assert core.trailing_data == b"STAT\r\n"


def test_name_is_everything_before_the_last_space_as_for_user() -> None:
    event, _ = send(started(), f"APOP jörg x {DIGEST}\r\n".encode())
    assert isinstance(event, LoginAttempt)
    assert event.credentials == ApopCredentials("jörg x", TIMESTAMP, DIGEST)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"APOP", "-ERR APOP needs a name and a 32-digit hex digest"),
        (b"APOP ", "-ERR APOP needs a name and a 32-digit hex digest"),
        (b"APOP mrose", "-ERR APOP needs a name and a 32-digit hex digest"),
        (f"APOP  {DIGEST}".encode(), "-ERR APOP needs a name and a 32-digit hex digest"),
        (f"APOP mrose {DIGEST} ".encode(), "-ERR APOP needs a name and a 32-digit hex digest"),
        (f"APOP mrose {DIGEST[:-1]}".encode(), "-ERR APOP needs a name and a 32-digit hex digest"),
        (f"APOP mrose {DIGEST}0".encode(), "-ERR APOP needs a name and a 32-digit hex digest"),
        (b"APOP mrose " + b"g" * 32, "-ERR APOP needs a name and a 32-digit hex digest"),
        (f"APOP mrose {DIGEST}\0".encode(), "-ERR NUL not allowed in commands"),
        (f"APOP \xff {DIGEST}".encode("latin-1"), "-ERR Invalid UTF-8"),
    ],
)
def test_malformed_apop(line: bytes, reply: str) -> None:
    core = started()
    assert send(core, line + b"\r\n") == (NEED_DATA, f"{reply}\r\n".encode())
    assert core.state is Pop3State.READY


def test_without_apop_it_is_an_unknown_command_even_when_tls_is_required() -> None:
    for tls_required in (False, True):
        core = started(replace(SETTINGS, apop=False, tls_required=tls_required))
        unknown = send(core, b"XYZZY mrose x\r\n")[1]
        assert send(core, f"APOP mrose {DIGEST}\r\n".encode()) == (NEED_DATA, unknown)
        assert unknown == b"-ERR Unknown command\r\n"


def test_tls_required_refuses_apop_before_stls() -> None:
    core = started(replace(SETTINGS, tls_required=True))
    line = f"APOP mrose {DIGEST}\r\n".encode()
    assert send(core, line) == (NEED_DATA, b"-ERR [AUTH] TLS required to log in.\r\n")
    assert send(core, b"STLS\r\n") == (StartTLS(), b"+OK Begin TLS negotiation now.\r\n")
    core.tls_started()
    event, _ = send(core, line)
    assert event == LoginAttempt(ApopCredentials("mrose", TIMESTAMP, DIGEST))
    assert core.apop_timestamp == TIMESTAMP


def test_implicit_tls_with_tls_required_accepts_apop() -> None:
    core = started(replace(SETTINGS, tls_required=True, secure=True))
    assert isinstance(send(core, f"APOP mrose {DIGEST}\r\n".encode())[0], LoginAttempt)


def test_capa_does_not_list_apop() -> None:
    with_apop = send(started(), b"CAPA\r\n")[1]
    without = send(started(replace(SETTINGS, apop=False)), b"CAPA\r\n")[1]
    assert with_apop == without
    assert b"APOP" not in with_apop


def test_failed_apop_answers_and_allows_another_try_with_the_same_timestamp() -> None:
    core = started()
    send(core, f"USER bob\r\nAPOP mrose {'0' * 32}\r\n".encode())
    core.login_failed(MechanismUnusable(text=APOP_NEEDS_CLEAR))
    event, output = send(core, b"PASS x\r\n")
    assert output == (
        f"-ERR [AUTH] {APOP_NEEDS_CLEAR}\r\n".encode() + b"-ERR USER first\r\n"
    )  # APOP forgot the earlier USER
    assert event is NEED_DATA
    event, _ = send(core, f"APOP mrose {DIGEST}\r\n".encode())
    assert event == LoginAttempt(ApopCredentials("mrose", TIMESTAMP, DIGEST))


def test_cram_md5_still_gets_its_own_challenge() -> None:
    values = count(1)

    def challenge() -> bytes:
        return f"<{next(values)}.0@h>".encode()

    core = started(replace(SETTINGS, challenge=challenge))
    assert core.apop_timestamp == b"<1.0@h>"
    assert send(core, b"AUTH CRAM-MD5\r\n")[1] == b"+ PDIuMEBoPg==\r\n"  # <2.0@h>


# -- the check ---------------------------------------------------------------------------------


def test_verify_apop() -> None:
    assert verify_apop(TIMESTAMP, DIGEST, SECRET)
    assert verify_apop(TIMESTAMP, DIGEST.upper(), SECRET)
    assert not verify_apop(TIMESTAMP, DIGEST, "tanstaaF")
    assert not verify_apop(b"<1896.697170953@dbc.mtview.ca.us>", DIGEST, SECRET)
    assert not verify_apop(TIMESTAMP, DIGEST[:-1], SECRET)
    assert not verify_apop(TIMESTAMP, "z" * 32, SECRET)
    assert not verify_apop(TIMESTAMP, DIGEST, None)
    assert not verify_apop(TIMESTAMP, DIGEST, "")


def test_verify_apop_with_a_utf8_password() -> None:
    digest = hashlib.md5(TIMESTAMP + "pässwörd".encode()).hexdigest()
    assert verify_apop(TIMESTAMP, digest, "pässwörd")


class Accounts(SingleSource):
    """Accounts by login; ``several`` logins have more than one candidate (a module chain)."""

    def __init__(self, *accounts: Account, bind_ok: bool | None = None) -> None:
        self.accounts: dict[str, list[Account]] = {}
        for account in accounts:
            self.accounts.setdefault(account.login, []).append(account)
        self.bind_ok = bind_ok

    def candidates(self, login: str, service: str = "") -> Iterator[Account]:
        del service
        yield from self.accounts.get(login, [])

    def verify_password(self, account: Account, password: str) -> bool | None:
        del account, password
        return self.bind_ok  # True: an LDAP authbind that would accept any bind

    def close(self) -> None:
        self.accounts = {}


def account(login: str = "u", options: str = "", **secrets: dict[str, str]) -> Account:
    return Account(
        login, 1000, 1000, "/home/u", options=Options(options), secrets=Secrets(**secrets)
    )


def login(source: AuthSource, credentials: Credentials, service: str = "pop3") -> Account:
    return authenticate(source, credentials, service=service, secure=False)


def test_a_clear_password_logs_in() -> None:
    source = Accounts(account(clear={"": SECRET}))
    assert login(source, apop("u", SECRET)).login == "u"
    assert login(source, ApopCredentials("u", TIMESTAMP, DIGEST)).login == "u"


def test_wrong_digest_is_auth_failed() -> None:
    source = Accounts(account(clear={"": SECRET}))
    with pytest.raises(AuthFailed):
        login(source, apop("u", "wrong"))
    replayed = ApopCredentials("u", b"<2.1@host>", DIGEST)  # a digest for another greeting
    with pytest.raises(AuthFailed):
        login(source, replayed)


def test_unknown_user_is_auth_failed() -> None:
    with pytest.raises(AuthFailed, match="unknown user"):
        login(Accounts(account(clear={"": SECRET})), apop("nobody", SECRET))


@pytest.mark.parametrize(
    "secrets",
    [
        {"hashed": {"": "$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0"}},
        {"hmac_md5": {"": "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"}},
        {},
    ],
    ids=["hash only", "hmac-md5 state only", "no secret"],
)
def test_no_clear_password_is_mechanism_unusable(secrets: dict[str, dict[str, str]]) -> None:
    with pytest.raises(MechanismUnusable) as caught:
        login(Accounts(Account("u", 1000, 1000, "/h", secrets=Secrets(**secrets))), apop("u", "x"))
    assert caught.value.text == APOP_NEEDS_CLEAR
    assert "clear password" in caught.value.text


def test_ldap_authbind_never_verifies_apop() -> None:
    """A source that checks passwords by binding gets no say: there is no password to bind with."""
    source = Accounts(account(hashed={"": "{SHA}x"}), bind_ok=True)
    with pytest.raises(MechanismUnusable):
        login(source, apop("u", "anything"))


def test_the_service_clear_password_wins() -> None:
    source = Accounts(account(clear={"": "general", "pop3": SECRET}))
    assert login(source, apop("u", SECRET)).login == "u"
    with pytest.raises(AuthFailed):
        login(source, apop("u", "general"))
    assert login(source, apop("u", "general"), "imap").login == "u"


def test_disabled_is_checked_after_the_digest() -> None:
    source = Accounts(account(options="disablepop3=1", clear={"": SECRET}))
    with pytest.raises(LoginDisabled):
        login(source, apop("u", SECRET))
    with pytest.raises(AuthFailed):
        login(source, apop("u", "wrong"))


def test_chain_a_wrong_digest_anywhere_is_auth_failed() -> None:
    hashed = account(hashed={"": "{SHA}x"})
    source = Accounts(hashed, account(clear={"": SECRET}))
    with pytest.raises(AuthFailed):
        login(source, apop("u", "wrong"))
    assert login(source, apop("u", SECRET)).secrets.clear_for("pop3") == SECRET


def test_chain_without_any_clear_password_is_mechanism_unusable() -> None:
    source = Accounts(account(hashed={"": "{SHA}x"}), account(hmac_md5={"": "00" * 32}))
    with pytest.raises(MechanismUnusable):
        login(source, apop("u", SECRET))


def test_cram_and_apop_digests_are_not_interchangeable() -> None:
    source = Accounts(account(clear={"": SECRET}))
    with pytest.raises(AuthFailed):
        login(source, CramCredentials("u", TIMESTAMP, DIGEST))


def test_the_apop_key_is_configured_and_defaults_off() -> None:
    assert parse({}).pop3.apop is False
    assert parse({"pop3": {"apop": True}}).pop3.apop is True
