"""Hypothesis over every (state, verb) pair of both cores, arbitrary input, and chunking.

Invariants: the cores never raise on client input, every output line ends in CRLF (and IMAP
lines are well-formed responses), Closed is final, and how the input is cut into chunks does
not change what the core says or surfaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshproxy.errors import AuthFailed
from meshproxy.protocol import (
    NEED_DATA,
    Closed,
    ImapPreauth,
    ImapSettings,
    ImapState,
    LoginAttempt,
    Pop3Preauth,
    Pop3Settings,
    Pop3State,
    StartTLS,
    imap,
    pop3,
)

pytestmark = pytest.mark.unit

Core = ImapPreauth | Pop3Preauth
Trace = tuple[list[object], bytes]
FAST = settings(max_examples=150, deadline=None, database=None)


def fixed_challenge() -> bytes:
    return b"<1.2@example.net>"


ROOMY_IMAP = ImapSettings(tls_available=True, challenge=fixed_challenge)
ROOMY_POP3 = Pop3Settings(tls_available=True, challenge=fixed_challenge)

IMAP_STATE_PREFIXES: dict[ImapState, bytes] = {
    ImapState.READY: b"",
    ImapState.LITERAL: b"a LOGIN {5}\r\n",
    ImapState.CONTINUATION: b"a LOGIN {1+}\r\nu",
    ImapState.SASL: b"a AUTHENTICATE LOGIN\r\n",
    ImapState.TLS_PENDING: b"a STARTTLS\r\n",
    ImapState.LOGIN_PENDING: b"a LOGIN u p\r\n",
    ImapState.CLOSED: b"a LOGOUT\r\n",
}
POP3_STATE_PREFIXES: dict[Pop3State, bytes] = {
    Pop3State.READY: b"USER bob\r\n",
    Pop3State.SASL: b"AUTH PLAIN\r\n",
    Pop3State.TLS_PENDING: b"STLS\r\n",
    Pop3State.LOGIN_PENDING: b"USER bob\r\nPASS pw\r\n",
    Pop3State.CLOSED: b"QUIT\r\n",
}

IMAP_VERBS = [*sorted(imap.COMMANDS | imap.POST_LOGIN_VERBS), "", "X-FROB", "+", "*"]
POP3_VERBS = [*sorted(pop3.COMMANDS | pop3.POST_LOGIN_VERBS), "", "APOP", "XTND"]
FRAGMENTS = [
    b" ",
    b" {3}",
    b" {3+}",
    b" {0}",
    b" {99999}",
    b" {99999+}",
    b' "q\\"x"',
    b' "open',
    b" =",
    b" *",
    b" PLAIN",
    b" LOGIN",
    b" CRAM-MD5",
    b" AGEAYg==",
    b" NIL",
    b' ("name" "x")',
    b" (",
    b")",
    b"\x00",
    b"\xff\xfe",
    b"\r",
    b"abc",
]
IMAP_LINE = re.compile(rb"(\* |\+ |[^ ]+ (OK|NO|BAD) ).*")


def imap_settings() -> st.SearchStrategy[ImapSettings]:
    return st.builds(
        ImapSettings,
        tls_available=st.booleans(),
        secure=st.booleans(),
        tls_required=st.booleans(),
        sasl_mechanisms=st.sampled_from([(), ("PLAIN",), ("PLAIN", "LOGIN", "CRAM-MD5")]),
        challenge=st.just(fixed_challenge),
        max_line=st.integers(8, 300),
        max_literal=st.integers(0, 40),
        max_errors=st.integers(1, 12),
    )


def pop3_settings() -> st.SearchStrategy[Pop3Settings]:
    return st.builds(
        Pop3Settings,
        tls_available=st.booleans(),
        secure=st.booleans(),
        tls_required=st.booleans(),
        sasl_mechanisms=st.sampled_from([(), ("PLAIN", "LOGIN", "CRAM-MD5")]),
        challenge=st.just(fixed_challenge),
        max_line=st.integers(8, 300),
        max_errors=st.integers(1, 12),
        apop=st.booleans(),
    )


def command_lines(verbs: list[str], tagged: bool) -> st.SearchStrategy[bytes]:
    verb = st.sampled_from(verbs).flatmap(
        lambda name: st.sampled_from([name, name.lower(), name.title()])
    )
    tag = st.sampled_from([b"a1 ", b"* ", b"+x ", b""]) if tagged else st.just(b"")
    arguments = st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=12), max_size=4)
    ending = st.sampled_from([b"\r\n", b"\n", b""])
    return st.builds(
        lambda t, v, a, e: t + v.encode() + b"".join(a) + e, tag, verb, arguments, ending
    )


def check_output(core: Core, output: bytes) -> None:
    if not output:
        return
    assert output.endswith(b"\r\n")
    for line in output.split(b"\r\n")[:-1]:
        assert b"\r" not in line
        assert b"\n" not in line
        if isinstance(core, ImapPreauth):
            assert IMAP_LINE.fullmatch(line), line


def run(core: Core, chunks: Iterable[bytes], *, eof: bool = False) -> Trace:
    """Feed chunks like the edge would: fail every login, complete every TLS handshake.

    Empty chunks are skipped; ``eof`` ends with ``receive_data(b"")``.
    """
    events: list[object] = []
    output = bytearray(core.data_to_send())
    for chunk in [*(chunk for chunk in chunks if chunk), *([b""] if eof else [])]:
        core.receive_data(chunk)
        if pump(core, events, output):
            break
    check_output(core, bytes(output))
    return events, bytes(output)


def pump(core: Core, events: list[object], output: bytearray) -> bool:
    """Process buffered input; True once the session is closed."""
    for _ in range(10_000):
        event = core.next_event()
        output += core.data_to_send()
        if event is NEED_DATA:
            return False
        events.append(event)
        if isinstance(event, Closed):
            assert core.next_event() == event
            return True
        if isinstance(event, LoginAttempt):
            core.login_failed(AuthFailed())
        elif isinstance(event, StartTLS):
            core.tls_started()
        else:
            raise AssertionError(f"unexpected event {event!r}")
    raise AssertionError("the core kept producing events")


def reach(core: Core, prefix: bytes) -> None:
    if prefix:
        core.receive_data(prefix)
    core.next_event()


def feed_in_state(core: Core, prefix: bytes, lines: list[bytes]) -> Trace:
    """Reach a state, feed lines without answering events, then finish like the edge."""
    reach(core, prefix)
    output = bytearray(core.data_to_send())
    for line in lines:
        if line:
            core.receive_data(line)
        core.next_event()
        output += core.data_to_send()
    if core.state in (ImapState.LOGIN_PENDING, Pop3State.LOGIN_PENDING):
        core.login_failed(AuthFailed())
    elif core.state in (ImapState.TLS_PENDING, Pop3State.TLS_PENDING):
        core.tls_started()
    events, rest = run(core, [], eof=True)
    check_output(core, bytes(output))
    return events, bytes(output) + rest


@pytest.mark.parametrize(("state", "prefix"), IMAP_STATE_PREFIXES.items())
def test_imap_prefixes_reach_their_state(state: ImapState, prefix: bytes) -> None:
    core = ImapPreauth(ROOMY_IMAP)
    reach(core, prefix)
    assert core.state is state


@pytest.mark.parametrize(("state", "prefix"), POP3_STATE_PREFIXES.items())
def test_pop3_prefixes_reach_their_state(state: Pop3State, prefix: bytes) -> None:
    core = Pop3Preauth(ROOMY_POP3)
    reach(core, prefix)
    assert core.state is state


def test_every_state_has_a_prefix() -> None:
    assert set(IMAP_STATE_PREFIXES) == set(ImapState)
    assert set(POP3_STATE_PREFIXES) == set(Pop3State)


@FAST
@given(
    state=st.sampled_from(list(ImapState)),
    lines=st.lists(command_lines(IMAP_VERBS, tagged=True), min_size=1, max_size=5),
)
def test_imap_any_verb_in_any_state(state: ImapState, lines: list[bytes]) -> None:
    core = ImapPreauth(ROOMY_IMAP)
    events, _ = feed_in_state(core, IMAP_STATE_PREFIXES[state], lines)
    assert isinstance(events[-1], Closed)


@FAST
@given(
    state=st.sampled_from(list(Pop3State)),
    lines=st.lists(command_lines(POP3_VERBS, tagged=False), min_size=1, max_size=5),
)
def test_pop3_any_verb_in_any_state(state: Pop3State, lines: list[bytes]) -> None:
    core = Pop3Preauth(ROOMY_POP3)
    events, _ = feed_in_state(core, POP3_STATE_PREFIXES[state], lines)
    assert isinstance(events[-1], Closed)


@FAST
@given(config=imap_settings(), chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_imap_arbitrary_bytes_under_any_settings(config: ImapSettings, chunks: list[bytes]) -> None:
    run(ImapPreauth(config), chunks, eof=True)


@FAST
@given(config=pop3_settings(), chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_pop3_arbitrary_bytes_under_any_settings(config: Pop3Settings, chunks: list[bytes]) -> None:
    run(Pop3Preauth(config), chunks, eof=True)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


def without_starttls(verbs: list[str]) -> list[str]:
    """STARTTLS/STLS discard buffered input, which depends on chunking by design."""
    return [verb for verb in verbs if verb not in ("STARTTLS", "STLS")]


@FAST
@given(
    config=imap_settings(),
    lines=st.lists(command_lines(without_starttls(IMAP_VERBS), tagged=True), max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_imap_chunking_does_not_matter(
    config: ImapSettings, lines: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(lines)
    whole = run(ImapPreauth(config), [data])
    assert run(ImapPreauth(config), [bytes([byte]) for byte in data]) == whole
    assert run(ImapPreauth(config), split(data, cuts)) == whole


@FAST
@given(
    config=pop3_settings(),
    lines=st.lists(command_lines(without_starttls(POP3_VERBS), tagged=False), max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_pop3_chunking_does_not_matter(
    config: Pop3Settings, lines: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(lines)
    whole = run(Pop3Preauth(config), [data])
    assert run(Pop3Preauth(config), [bytes([byte]) for byte in data]) == whole
    assert run(Pop3Preauth(config), split(data, cuts)) == whole
