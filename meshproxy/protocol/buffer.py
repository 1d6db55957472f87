"""The receive buffer both cores read from: lines and counted octets, nothing else.

Lines end with LF; a CR just before it is dropped.  RFC 9051 and RFC 1939 say CRLF, but
Courier (and every other mail server) also takes a bare LF from a hand-typed session, so the
buffer does too.  A line's length is counted without its terminator.
"""

from __future__ import annotations


class LineTooLongError(Exception):
    """The client sent more than ``max_line`` octets without ending the line."""


class ReceiveBuffer:
    """Bytes received from the client and not yet processed."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._scanned = 0
        self.eof = False

    def __len__(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        return bytes(self._data)

    def feed(self, data: bytes) -> None:
        """Append ``data``; ``b""`` records that the client closed its side."""
        if data:
            self._data += data
        else:
            self.eof = True

    def take_line(self, max_line: int) -> bytes | None:
        """The next line without its terminator, or None while it is incomplete.

        Raises LineTooLongError as soon as the line is certain to exceed ``max_line`` octets.
        """
        newline = self._data.find(b"\n", self._scanned)
        if newline < 0:
            self._scanned = len(self._data)
            if len(self._data) > max_line + 1:
                raise LineTooLongError
            return None
        line = bytes(self._data[:newline])
        self._consume(newline + 1)
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max_line:
            raise LineTooLongError
        return line

    def take_exactly(self, count: int) -> bytes | None:
        """The next ``count`` octets, or None while fewer have arrived."""
        if len(self._data) < count:
            return None
        chunk = bytes(self._data[:count])
        self._consume(count)
        return chunk

    def clear(self) -> None:
        """Drop everything buffered (the STARTTLS injection defence)."""
        self._consume(len(self._data))

    def _consume(self, count: int) -> None:
        del self._data[:count]
        self._scanned = 0
