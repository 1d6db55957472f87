"""Replays the conversations in tests/transcripts/{imap,pop3}/*.txt through the cores.

Transcript format, one directive per line (the first two characters pick it):

    # text            comment; blank lines are ignored too
    @ key = value     a setting of ImapSettings/Pop3Settings, before anything else:
                      booleans yes/no, integers, tuples comma-separated, "challenge" a
                      string (the fixed CRAM-MD5 challenge), anything else a string
    C: text           client line: text + CRLF
    C+ text           client octets without CRLF (literal contents, partial lines)
    S: text           the next line the server sends (CRLF implied)
    E: Kind k=v ...   the next event: LoginAttempt, StartTLS or Closed; each k=v is
                      compared with the event or its credentials (tag, authcid, password,
                      authzid, mechanism, digest, challenge, reason); others are not checked
    T: text           core.trailing_data right now
    A: action         what the edge does: tls_started | login_failed Kind [text] |
                      shutdown text | eof

C:, C+, S:, T: and E: values take the escapes \\r \\n \\0 \\\\ \\xHH (write a trailing
space as \\x20).  Consecutive C:/C+ lines go to the core in one receive_data() call, as a
pipelining client would send them.  After each delivery and each A: the runner calls
next_event() until NEED_DATA or Closed, queueing events; S: and E: lines consume those
queues in order, and at the end of the file both queues must be empty.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pytest

from meshproxy import errors
from meshproxy.protocol import (
    NEED_DATA,
    Closed,
    ImapPreauth,
    ImapSettings,
    Pop3Preauth,
    Pop3Settings,
)

pytestmark = pytest.mark.unit

TRANSCRIPTS = Path(__file__).parent.parent / "transcripts"
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rn0\\])")
_SIMPLE_ESCAPES = {b"r": b"\r", b"n": b"\n", b"0": b"\0", b"\\": b"\\"}


def unescape(text: str) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        return bytes([int(code[1:], 16)]) if code.startswith(b"x") else _SIMPLE_ESCAPES[code]

    return _ESCAPE.sub(one, text.encode("utf-8"))


def setting_value(current: Any, text: str) -> Any:
    if isinstance(current, bool):
        return {"yes": True, "no": False}[text]
    if isinstance(current, int):
        return int(text)
    if isinstance(current, tuple):
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def constant(value: bytes) -> Callable[[], bytes]:
    return lambda: value


def build_settings(kind: str, pairs: list[tuple[str, str]]) -> ImapSettings | Pop3Settings:
    base: ImapSettings | Pop3Settings = ImapSettings() if kind == "imap" else Pop3Settings()
    values: dict[str, Any] = {}
    names = {spec.name for spec in fields(base)}
    for key, text in pairs:
        assert key in names, f"unknown setting {key}"
        if key == "challenge":
            values[key] = constant(text.encode())
        else:
            values[key] = setting_value(getattr(base, key), text)
    return replace(base, **values)


@dataclass
class Replay:
    core: ImapPreauth | Pop3Preauth
    where: str = ""
    pending: bytearray = field(default_factory=bytearray)
    output: deque[bytes] = field(default_factory=deque)
    events: deque[object] = field(default_factory=deque)
    closed: bool = False

    def collect_output(self) -> None:
        data = self.core.data_to_send()
        assert not data or data.endswith(b"\r\n"), f"{self.where}: output not CRLF-terminated"
        self.output.extend(data.split(b"\r\n")[:-1])

    def pump(self) -> None:
        if self.pending:
            self.core.receive_data(bytes(self.pending))
            self.pending.clear()
        if self.closed:
            assert isinstance(self.core.next_event(), Closed), self.where
            self.collect_output()
            return
        while True:
            event = self.core.next_event()
            self.collect_output()
            if event is NEED_DATA:
                return
            self.events.append(event)
            if isinstance(event, Closed):
                self.closed = True
                return

    def expect_line(self, text: str) -> None:
        self.pump()
        assert self.output, f"{self.where}: expected {text!r}, the server said nothing more"
        assert self.output.popleft() == unescape(text), self.where

    def expect_event(self, text: str) -> None:
        self.pump()
        kind, *pairs = text.split(" ")
        assert self.events, f"{self.where}: expected {kind}, no event"
        event = self.events.popleft()
        assert type(event).__name__ == kind, f"{self.where}: got {event!r}"
        for pair in pairs:
            key, _, value = pair.partition("=")
            holder = event if hasattr(event, key) else getattr(event, "credentials", None)
            actual = getattr(holder, key)
            actual = actual if isinstance(actual, bytes) else str(actual).encode("utf-8")
            assert actual == unescape(value), f"{self.where}: {key}={actual!r}"

    def act(self, text: str) -> None:
        self.pump()
        action, _, argument = text.partition(" ")
        if action == "tls_started":
            self.core.tls_started()
        elif action == "login_failed":
            kind, _, message = argument.partition(" ")
            error_class = getattr(errors, kind)
            self.core.login_failed(error_class(text=message) if message else error_class())
        elif action == "shutdown":
            self.core.shutdown(argument)
        elif action == "eof":
            self.core.receive_data(b"")
        else:
            raise AssertionError(f"{self.where}: unknown action {action!r}")
        self.collect_output()
        self.pump()


def replay(path: Path) -> None:
    kind = path.parent.name
    directives = [
        (number, line)
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    settings_pairs = [
        tuple(part.strip() for part in line[2:].split("=", 1))
        for _, line in directives
        if line.startswith("@ ")
    ]
    settings = build_settings(kind, [(key, value) for key, value in settings_pairs])
    session = Replay(
        ImapPreauth(settings) if isinstance(settings, ImapSettings) else Pop3Preauth(settings)
    )
    session.collect_output()
    for number, line in directives:
        session.where = f"{path.name}:{number}"
        run_directive(session, line)
    session.pump()
    assert not session.output, f"{path.name}: unexpected output {list(session.output)}"
    assert not session.events, f"{path.name}: unexpected events {list(session.events)}"


def run_directive(session: Replay, line: str) -> None:
    prefix, payload = line[:2], line[3:]
    if prefix == "@ ":
        return
    if prefix == "C:":
        session.pending += unescape(payload) + b"\r\n"
    elif prefix == "C+":
        session.pending += unescape(payload)
    elif prefix == "S:":
        session.expect_line(payload)
    elif prefix == "E:":
        session.expect_event(payload)
    elif prefix == "T:":
        session.pump()
        assert session.core.trailing_data == unescape(payload), session.where
    elif prefix == "A:":
        session.act(payload)
    else:
        raise AssertionError(f"{session.where}: unknown directive {line!r}")


def transcript_files() -> list[Path]:
    return sorted(TRANSCRIPTS.glob("imap/*.txt")) + sorted(TRANSCRIPTS.glob("pop3/*.txt"))


def test_there_are_transcripts_for_both_protocols() -> None:
    kinds = {path.parent.name for path in transcript_files()}
    assert kinds == {"imap", "pop3"}


@pytest.mark.parametrize(
    "path", transcript_files(), ids=lambda path: f"{path.parent.name}/{path.stem}"
)
def test_transcript(path: Path) -> None:
    replay(path)


def test_runner_notices_a_wrong_server_line(tmp_path: Path) -> None:
    wrong = tmp_path / "imap" / "wrong.txt"
    wrong.parent.mkdir()
    wrong.write_text("S: * OK something else\n")
    with pytest.raises(AssertionError):
        replay(wrong)


def test_runner_notices_missing_and_extra_events(tmp_path: Path) -> None:
    folder = tmp_path / "pop3"
    folder.mkdir()
    missing = folder / "missing.txt"
    missing.write_text("S: +OK meshproxy ready.\nE: StartTLS\n")
    with pytest.raises(AssertionError):
        replay(missing)
    extra = folder / "extra.txt"
    extra.write_text("S: +OK meshproxy ready.\nC: QUIT\nS: +OK Bye\n")
    with pytest.raises(AssertionError, match="unexpected events"):
        replay(extra)
