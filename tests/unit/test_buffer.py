"""ReceiveBuffer: lines, counted octets, limits, clearing."""

from __future__ import annotations

import pytest

from meshproxy.protocol.buffer import LineTooLongError, ReceiveBuffer

pytestmark = pytest.mark.unit


def buffer_with(data: bytes) -> ReceiveBuffer:
    buffer = ReceiveBuffer()
    buffer.feed(data)
    return buffer


def test_line_without_terminator_is_incomplete() -> None:
    buffer = buffer_with(b"a NOOP")
    assert buffer.take_line(100) is None
    assert bytes(buffer) == b"a NOOP"


def test_crlf_and_bare_lf_both_end_a_line() -> None:
    buffer = buffer_with(b"one\r\ntwo\nthree\r")
    assert buffer.take_line(100) == b"one"
    assert buffer.take_line(100) == b"two"
    assert buffer.take_line(100) is None
    assert bytes(buffer) == b"three\r"


def test_only_the_cr_right_before_lf_is_dropped() -> None:
    assert buffer_with(b"a\rb\r\r\n").take_line(100) == b"a\rb\r"


def test_line_split_over_many_feeds() -> None:
    buffer = ReceiveBuffer()
    for byte in b"abc\r":
        buffer.feed(bytes([byte]))
        assert buffer.take_line(100) is None
    buffer.feed(b"\nrest")
    assert buffer.take_line(100) == b"abc"
    assert bytes(buffer) == b"rest"


def test_line_of_exactly_max_line_is_accepted() -> None:
    assert buffer_with(b"x" * 10 + b"\r\n").take_line(10) == b"x" * 10


def test_complete_line_over_the_limit_raises() -> None:
    with pytest.raises(LineTooLongError):
        buffer_with(b"x" * 11 + b"\r\n").take_line(10)


def test_incomplete_line_raises_once_it_cannot_fit() -> None:
    buffer = buffer_with(b"x" * 10 + b"\r")
    assert buffer.take_line(10) is None
    buffer.feed(b"y")
    with pytest.raises(LineTooLongError):
        buffer.take_line(10)


def test_take_exactly_waits_for_all_octets() -> None:
    buffer = buffer_with(b"abc")
    assert buffer.take_exactly(4) is None
    buffer.feed(b"\n\x00z")
    assert buffer.take_exactly(5) == b"abc\n\x00"
    assert len(buffer) == 1


def test_take_exactly_zero() -> None:
    assert buffer_with(b"").take_exactly(0) == b""


def test_clear_drops_everything_and_rescans() -> None:
    buffer = buffer_with(b"partial")
    assert buffer.take_line(100) is None
    buffer.clear()
    assert len(buffer) == 0
    buffer.feed(b"new\n")
    assert buffer.take_line(100) == b"new"


def test_empty_feed_marks_eof_without_losing_data() -> None:
    buffer = buffer_with(b"a\n")
    before = buffer.eof
    buffer.feed(b"")
    assert (before, buffer.eof) == (False, True)
    assert buffer.take_line(100) == b"a"
