"""The account-source contract through the running daemon, with real clients.

The same 300 accounts (``source_daemon.py``) live in userdb, slapd, MariaDB and PostgreSQL and,
split across the four modules of an ``authmodulelist``, in Courier's own rc files
(``courier``).  Each source gets one daemon for this module (proxying on, failed-login delay
3 s) and the same checks: every account logs in (or is refused) as stored and reaches its own
Maildir; LOGIN, AUTHENTICATE PLAIN / CRAM-MD5, USER/PASS, AUTH PLAIN / CRAM-MD5 and APOP with
imaplib, poplib and raw clients; wrong passwords, unknown users and disabled services; a missing
``mailhost`` served here with a warning; logins built to break a query or a filter.

Slow lookups and server outages are in ``test_auth_contract_faults.py``.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .accounts import deliver
from .daemon import Daemon, DaemonFactory
from .mail import append, message, message_id, pop3, split_body
from .mail import imap as imaplib_session
from .source_daemon import (
    DOMAIN,
    FAILURE_DELAY,
    SCHEMES,
    SLOW_INDEX,
    SOURCES,
    Contract,
    ContractAccount,
    Daemons,
    apop_session,
    connected,
    imap_auth_plain,
    imap_cram,
    imap_login,
    imap_markers,
    literal,
    markers_in,
    outcome,
    pop3_apop,
    pop3_auth_plain,
    pop3_cram,
    pop3_markers,
    pop3_outcome,
    pop3_user_pass,
    shared_contract,
    sweep_one,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def contract(session_dir: Path) -> Contract:
    return shared_contract(session_dir)


@pytest.fixture(scope="module")
def daemons(daemon_factory: DaemonFactory, contract: Contract) -> Iterator[Daemons]:
    cache = Daemons(daemon_factory, contract)
    yield cache
    cache.stop()


def in_parallel(jobs: list[Callable[[], object]], workers: int = 12) -> list[object]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]


def representatives(contract: Contract) -> list[ContractAccount]:
    """One account per password scheme that logs in to both services (ASCII password,
    ordinary login), for the checks that use imaplib."""
    chosen = []
    for scheme in SCHEMES:
        chosen.append(
            next(
                account
                for account in contract.usable("imap")
                if account.scheme == scheme
                and account.expected("pop3") == "ok"
                and account.ascii_password
                and account.login.startswith("c")
                and account.index != SLOW_INDEX
            )
        )
    return chosen


# --- every account, one cheap path -----------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_every_account_answers_as_stored(kind: str, daemons: Daemons, contract: Contract) -> None:
    """Even accounts log in over IMAP, odd ones over POP3, all with their right password:
    active accounts reach their own Maildir (their marker message, no other), switched-off
    ones fail, disabled services are refused."""
    daemon = daemons[kind]
    jobs = [
        (account, "imap" if account.index % 2 == 0 else "pop3") for account in contract.accounts
    ]
    assert {account.expected(service) for account, service in jobs} == {
        "ok",
        "failed",
        "disabled",
    }
    problems = in_parallel(
        [lambda a=account, s=service: sweep_one(daemon, a, s) for account, service in jobs]
    )
    assert [problem for problem in problems if problem] == []


# --- IMAP ------------------------------------------------------------------------------------


def fetch_by_id(client: imaplib.IMAP4, msgid: str) -> bytes:
    typ, data = client.noop()  # the message APPENDed to the selected mailbox shows up
    assert typ == "OK", data
    typ, data = client.search(None, "HEADER", "Message-ID", f'"{msgid}"')
    assert typ == "OK", data
    numbers = data[0].split()
    assert len(numbers) == 1, (msgid, data)
    typ, data = client.fetch(numbers[0].decode(), "(BODY.PEEK[])")
    assert typ == "OK", data
    return bytes(data[0][1])


def stored_file(account: ContractAccount, msgid: str) -> Path:
    """The message file holding ``msgid`` in the account's real Maildir."""
    found = [
        path
        for folder in ("cur", "new")
        for path in (account.maildir / folder).iterdir()
        if msgid.encode() in path.read_bytes()
    ]
    assert len(found) == 1, (account.maildir, msgid, found)
    return found[0]


@pytest.mark.parametrize("kind", SOURCES)
def test_imap_login_select_append_fetch_for_every_scheme(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    daemon = daemons[kind]
    for account in representatives(contract):
        raw = message(subject=f"contract {kind} {account.scheme}")
        msgid = message_id(raw)
        with imaplib_session(daemon) as client:
            typ, data = client.login(account.login, account.password)
            assert typ == "OK", (account.login, data)
            typ, data = client.select("INBOX")
            assert typ == "OK", data
            append(client, raw)
            fetched = fetch_by_id(client, msgid)
            typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK", data
            subjects = [line for item in data if isinstance(item, tuple) for line in item[1:]]
        assert split_body(fetched) == split_body(raw)
        assert markers_in(b"".join(subjects).splitlines()) == [account.marker]
        stored = stored_file(account, msgid)
        assert (stored.stat().st_uid, stored.stat().st_gid) == (account.uid, account.gid)


def special_accounts(contract: Contract) -> list[ContractAccount]:
    """Logins with quotes, %, _, *, )(, backslashes, multi-byte characters; and accounts whose
    passwords have non-ASCII letters."""
    special = [account for account in contract.accounts if not account.login.startswith("c")]
    unicode_pw = [
        account
        for account in contract.usable("imap")
        if not account.ascii_password and account.expected("pop3") == "ok"
    ][:3]
    assert len(special) == 10
    assert unicode_pw
    return special + unicode_pw


def imaplib_plain(client: imaplib.IMAP4, account: ContractAccount) -> str:
    response = b"\0" + account.login.encode() + b"\0" + account.password.encode()
    typ, data = client.authenticate("PLAIN", lambda _challenge: response)
    return f"{typ} {data}"


def imaplib_markers(client: imaplib.IMAP4) -> list[str]:
    typ, data = client.select("INBOX", readonly=True)
    assert typ == "OK", data
    typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    lines = [line for item in data if isinstance(item, tuple) for line in item[1].splitlines()]
    return markers_in(lines)


@pytest.mark.parametrize("kind", SOURCES)
def test_special_logins_and_passwords_every_mechanism(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    """imaplib AUTHENTICATE PLAIN, raw IMAP LOGIN (literals) and POP3 USER/PASS for logins
    with quotes, wildcards, backslashes and multi-byte characters, and non-ASCII passwords."""
    daemon = daemons[kind]
    problems = []
    for account in special_accounts(contract):
        with imaplib_session(daemon) as client:
            answer = imaplib_plain(client, account)
            if not answer.startswith("OK"):
                problems.append((account.login, "AUTHENTICATE PLAIN", answer))
                continue
            markers = imaplib_markers(client)
            if markers != [account.marker]:
                problems.append((account.login, "AUTHENTICATE PLAIN", markers))
        problems += [
            problem
            for service in ("imap", "pop3")
            if (problem := sweep_one(daemon, account, service))
        ]
    assert problems == []


APOP_NEEDS_CLEAR = b"-ERR [AUTH] APOP needs a clear password"


@pytest.mark.parametrize("kind", SOURCES)
def test_cram_md5_and_apop_where_a_clear_password_is_stored(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    """CRAM-MD5 works for accounts with a clear password (userdb: hmac-md5pw) over IMAP and
    POP3; accounts with only a hash answer NO [CANNOT] / -ERR [AUTH], not a wrong password.
    APOP works where the source stores the clear password itself (not userdb's HMAC state);
    elsewhere it says it needs one."""
    daemon = daemons[kind]
    usable = [account for account in contract.usable("imap") if account.expected("pop3") == "ok"]
    clear = [account for account in usable if account.clear and account.ascii_password][:4]
    hashed = [account for account in usable if not account.clear][:4]
    assert any(account.crypt for account in clear)  # hash and clear password: CRAM still works
    assert len({account.scheme for account in hashed}) == 4
    for account in clear:
        with imaplib_session(daemon) as client:
            typ, data = client.login_cram_md5(account.login, account.password)
            assert typ == "OK", (account.login, data)
            assert imaplib_markers(client) == [account.marker]
        with connected(daemon, "pop3") as raw:
            reply = pop3_cram(raw, account.login, account.password)
            assert outcome(reply) == "ok", (account.login, reply)
            assert pop3_markers(raw) == [account.marker]
        with apop_session(daemon) as (raw, timestamp):
            reply = pop3_apop(raw, timestamp, account.login, account.password)
            if "userdb" in (kind, contract.module(kind, account)):
                assert reply.startswith(APOP_NEEDS_CLEAR), (account.login, reply)
            else:
                assert outcome(reply) == "ok", (account.login, reply)
                assert pop3_markers(raw) == [account.marker]
    for account in hashed:
        with connected(daemon, "imap") as raw:
            reply = imap_cram(raw, account.login, account.password)
            assert outcome(reply) == "cannot", (account.login, reply)
            assert outcome(imap_login(raw, account.login, account.password, "a2")) == "ok"
        with connected(daemon, "pop3") as raw:
            reply = pop3_cram(raw, account.login, account.password)
            assert reply.startswith(b"-ERR [AUTH]"), (account.login, reply)
        with apop_session(daemon) as (raw, timestamp):
            reply = pop3_apop(raw, timestamp, account.login, account.password)
            assert reply.startswith(APOP_NEEDS_CLEAR), (account.login, reply)
            assert outcome(pop3_user_pass(raw, account.login, account.password)) == "ok"


# --- POP3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_pop3_user_pass_and_auth_plain_stat_retr(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    daemon = daemons[kind]
    special = special_accounts(contract)
    chosen = representatives(contract)[::3] + special[:2] + special[-1:]
    for account in chosen:
        raw = message(subject=f"contract pop3 {kind} {account.index}")
        # a local delivery stores LF line ends; pop3d sends them as CRLF
        deliver(account, raw.replace(b"\r\n", b"\n"))  # type: ignore[arg-type]
        with pop3(daemon) as client:
            assert client.user(account.login).startswith(b"+OK")
            assert client.pass_(account.password).startswith(b"+OK"), account.login
            count, _ = client.stat()
            retrieved = [b"\r\n".join(client.retr(number)[1]) for number in range(1, count + 1)]
            client.quit()
        ours = [item for item in retrieved if message_id(item) == message_id(raw)]
        assert len(ours) == 1, account.login
        assert split_body(ours[0]).strip() == split_body(raw).strip()
        assert markers_in(b"\n".join(retrieved).splitlines()) == [account.marker]
        with connected(daemon, "pop3") as client:
            reply = pop3_auth_plain(client, account.login, account.password)
            assert outcome(reply) == "ok", (account.login, reply)
            client.send(b"STAT\r\n")
            assert client.readline().split()[:2] == [b"+OK", str(count).encode()]
            client.send(b"QUIT\r\n")
            client.readline()


# --- refusals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    what: str
    service: str
    mechanism: str  # login (IMAP LOGIN / POP3 USER+PASS), plain, cram
    login: str
    password: str
    want: str

    def run(self, daemon: Daemon) -> tuple[str, bytes, float]:
        started = time.monotonic()
        with connected(daemon, self.service) as client:
            if self.service == "imap":
                action = {"login": imap_login, "plain": imap_auth_plain, "cram": imap_cram}
            else:
                action = {
                    "login": pop3_user_pass,
                    "plain": pop3_auth_plain,
                    "cram": pop3_cram,
                }
            reply = action[self.mechanism](client, self.login, self.password)
        if self.service == "pop3":
            return pop3_outcome(reply, self.want), reply, time.monotonic() - started
        return outcome(reply), reply, time.monotonic() - started


def run_attempts(
    daemon: Daemon, attempts: list[Attempt]
) -> list[tuple[Attempt, str, bytes, float]]:
    results = in_parallel(
        [lambda a=attempt: a.run(daemon) for attempt in attempts], workers=len(attempts)
    )
    return [(attempt, *result) for attempt, result in zip(attempts, results, strict=True)]  # type: ignore[misc]


def refusal_attempts(contract: Contract) -> list[Attempt]:
    usable = [account for account in contract.usable("imap") if account.expected("pop3") == "ok"]
    inactive = next(account for account in contract.accounts if not account.active)
    no_imap = next(
        account
        for account in contract.accounts
        if account.expected("imap") == "disabled" and account.expected("pop3") == "ok"
    )
    no_pop3 = next(
        account
        for account in contract.accounts
        if account.expected("pop3") == "disabled" and account.expected("imap") == "ok"
    )
    clear = next(account for account in usable if account.clear)
    attempts = []
    for account in [*usable[:2], usable[-1]]:
        wrong = "x" + account.password
        attempts += [
            Attempt("wrong password", "imap", "login", account.login, wrong, "failed"),
            Attempt("wrong password", "imap", "plain", account.login, wrong, "failed"),
            Attempt("wrong password", "pop3", "login", account.login, wrong, "failed"),
            Attempt("wrong password", "pop3", "plain", account.login, wrong, "failed"),
        ]
    for login in (f"nobody@{DOMAIN}", f"c{10**6}@{DOMAIN}", "c1"):
        attempts += [
            Attempt("unknown user", "imap", "login", login, usable[0].password, "failed"),
            Attempt("unknown user", "pop3", "login", login, usable[0].password, "failed"),
        ]
    attempts += [
        Attempt("switched off", "imap", "login", inactive.login, inactive.password, "failed"),
        Attempt("switched off", "pop3", "plain", inactive.login, inactive.password, "failed"),
        Attempt("disableimap", "imap", "login", no_imap.login, no_imap.password, "disabled"),
        Attempt("disableimap", "imap", "plain", no_imap.login, no_imap.password, "disabled"),
        Attempt("disableimap", "pop3", "login", no_imap.login, no_imap.password, "ok"),
        Attempt("disablepop3", "pop3", "login", no_pop3.login, no_pop3.password, "disabled"),
        Attempt("disablepop3", "pop3", "plain", no_pop3.login, no_pop3.password, "disabled"),
        Attempt("disablepop3", "imap", "login", no_pop3.login, no_pop3.password, "ok"),
        Attempt(
            "disabled, wrong", "imap", "login", no_imap.login, "x" + no_imap.password, "failed"
        ),
        Attempt("wrong CRAM", "imap", "cram", clear.login, "x" + clear.password, "failed"),
        Attempt("wrong CRAM", "pop3", "cram", clear.login, "x" + clear.password, "failed"),
    ]
    return attempts


@pytest.mark.parametrize("kind", SOURCES)
def test_wrong_password_unknown_user_and_disabled_services(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    """Wrong passwords and unknown users get the same NO [AUTHENTICATIONFAILED] / -ERR [AUTH]
    after the failed-login delay; a disabled service is NO [CONTACTADMIN] / -ERR [AUTH] (only
    after the right password) without the delay; the other service of that account works."""
    daemon = daemons[kind]
    offset = daemon.log_size()
    wrong = []
    for attempt, got, reply, seconds in run_attempts(daemon, refusal_attempts(contract)):
        delayed = seconds >= FAILURE_DELAY - 0.1
        if got != attempt.want or delayed != (got == "failed"):
            wrong.append((attempt, reply, round(seconds, 2)))
    assert wrong == []
    log = daemon.log_since(offset)
    assert "source failure" not in log
    assert len(re.findall(r"login failed .*user=c1 ", log)) == 2, log


# --- mailhost --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_account_without_mailhost_is_served_here_with_a_warning(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    daemon = daemons[kind]
    both = [account for account in contract.usable("imap") if account.expected("pop3") == "ok"]
    without = [account for account in both if account.mailhost is None][:2]
    with_host = [account for account in both if account.mailhost][:2]
    offset = daemon.log_size()
    for account, service in zip(without + with_host, ("imap", "pop3") * 2, strict=True):
        assert sweep_one(daemon, account, service) is None
    for account in without:
        daemon.wait_for_log(
            re.compile(r"proxying is on but (\S+) has no mailhost; serving it here"),
            since=offset,
            predicate=lambda match, login=account.login: match.group(1) == login,
        )
    warned = re.findall(r"but (\S+) has no mailhost", daemon.log_since(offset))
    assert sorted(warned) == sorted(account.login for account in without)


# --- injection -------------------------------------------------------------------------------

TARGET = 1
"""The account the hostile logins aim at; each is tried with its password."""


def hostile_logins(target: str) -> list[str]:
    local = target.partition("@")[0]
    return [
        "' OR '1'='1",
        f"{target}' OR '1'='1",
        f"{target}' -- ",
        f"{target}'; DROP TABLE contract; --",
        f'{target}" OR "1"="1',
        'x" OR "1"="1',
        f"{target}\\",
        f"{target}\\'",
        f"{local}\\@{DOMAIN}",
        "%",
        f"{local}%",
        f"%@{DOMAIN}",
        f"c_@{DOMAIN}",
        "*",
        f"{local}*",
        f"*@{DOMAIN}",
        "*)(courierLogin=*",
        f"{target})(|(courierLogin=*)",
        f"*))(|(courierLogin={target}",
        ")(",
        f"{target})(",
        "$(local_part)@$(domain)",
        target.upper(),
        f"ç{local[1:]}@{DOMAIN}",
        f"{local}\u0301@{DOMAIN}",
        f"{target}用户",
        f"{local}@{DOMAIN}.",
        f"{local}@@{DOMAIN}",
    ]


@pytest.mark.parametrize("kind", SOURCES)
def test_injection_logins_are_a_plain_no(kind: str, daemons: Daemons, contract: Contract) -> None:
    """Logins built to change an SQL query or an LDAP filter, each with the password of the
    account they aim at: a plain NO [AUTHENTICATIONFAILED] / -ERR [AUTH], never a login and
    never a source failure; NUL (where the protocol carries it) too."""
    daemon = daemons[kind]
    target = contract.account(TARGET)
    assert target.expected("imap") == target.expected("pop3") == "ok"
    offset = daemon.log_size()
    attempts = []
    for login in hostile_logins(target.login):
        attempts += [
            Attempt(login, "imap", "login", login, target.password, "failed"),
            Attempt(login, "pop3", "login", login, target.password, "failed"),
            Attempt(login, "imap", "plain", login, target.password, "failed"),
        ]
    wrong = [
        (attempt.login, attempt.service, attempt.mechanism, reply)
        for attempt, got, reply, _ in run_attempts(daemon, attempts)
        if got != attempt.want
    ]
    assert wrong == []
    nul_replies = nul_logins(daemon, target)
    assert all(not reply.startswith((b"a1 OK", b"+OK")) for reply in nul_replies), nul_replies
    assert all(b"UNAVAILABLE" not in r and b"SYS/TEMP" not in r for r in nul_replies)
    log = daemon.log_since(offset)
    failed = re.findall(r"login failed .* reason=([A-Za-z]+)", log)
    assert len(failed) >= len(attempts), log
    assert set(failed) == {"AuthFailed"}, failed
    for sign in ("source failure", "rror", "syntax", "Traceback", "filter", "SQL"):
        assert sign not in log, (sign, log)
    assert sweep_one(daemon, target, "imap") is None


def nul_logins(daemon: Daemon, target: ContractAccount) -> list[bytes]:
    """A NUL after the login: inside an IMAP literal, in a POP3 USER line and as an extra
    field of AUTHENTICATE PLAIN (where it would split the login)."""
    login, password = target.login.encode(), target.password.encode()
    replies = []
    with connected(daemon, "imap") as client:
        client.send(b"a1 LOGIN " + literal(login + b"\0x") + b" " + literal(password) + b"\r\n")
        replies.append(client.tagged("a1")[-1])
    with connected(daemon, "pop3") as client:
        client.send(b"USER " + login + b"\0' OR '1'='1\r\n")
        first = client.readline()
        replies.append(first)
        if first.startswith(b"+OK"):
            client.send(b"PASS " + password + b"\r\n")
            replies.append(client.readline())
    return replies


def near_misses(target: str) -> list[str]:
    """The login with spaces around it, a tab, a no-break space or a full-width letter."""
    return [f"{target} ", f" {target}", f"{target}\t", f"{target}\u00a0", f"\uff43{target[1:]}"]


@pytest.mark.parametrize("kind", SOURCES)
def test_near_miss_logins_never_reach_another_account(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    """Near misses of a login never open another account: with another account's password
    they fail, and with the target's own password they either fail or reach the target's
    own Maildir (slapd's and MariaDB's own matching rules may ignore spaces or fold
    full-width letters)."""
    daemon = daemons[kind]
    target, other = contract.account(TARGET), contract.account(TARGET + 1)
    assert other.expected("imap") == "ok"

    def with_own_password(login: str) -> tuple[str, str, list[str]]:
        with connected(daemon, "imap") as client:
            got = outcome(imap_login(client, login, target.password))
            return login, got, imap_markers(client) if got == "ok" else [target.marker]

    logins = near_misses(target.login)
    attempts = [Attempt(name, "imap", "login", name, other.password, "failed") for name in logins]
    with ThreadPoolExecutor(max_workers=len(logins)) as pool:
        own_futures = [pool.submit(with_own_password, login) for login in logins]
        foreign = run_attempts(daemon, attempts)
        own = [future.result() for future in own_futures]
    wrong: list[object] = [
        result
        for result in own
        if result[1] not in ("ok", "failed") or result[2] != [target.marker]  # type: ignore[index]
    ]
    wrong += [(attempt.login, got, reply) for attempt, got, reply, _ in foreign if got != "failed"]
    assert wrong == []


@pytest.mark.parametrize("kind", ["userdb", "ldap", "pgsql"])
def test_near_miss_logins_are_refused_where_the_login_is_exact(
    kind: str, daemons: Daemons, contract: Contract
) -> None:
    """userdb and PostgreSQL compare logins exactly; slapd's matching rule ignores spaces and
    folds full-width letters, so the LDAP source checks the entry's own value: a near miss
    fails even with the target's own password (MariaDB's padding collation is the exception:
    its trailing-space variant reaches the same row, see the test above)."""
    daemon = daemons[kind]
    target = contract.account(TARGET)
    logins = near_misses(target.login)
    attempts = [Attempt(name, "imap", "login", name, target.password, "failed") for name in logins]
    wrong = [(a.login, got, reply) for a, got, reply, _ in run_attempts(daemon, attempts)]
    assert [item for item in wrong if item[1] != "failed"] == []
