"""A small line-oriented client for talking raw IMAP/POP3 to the daemon, with timeouts."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from types import TracebackType


class LineClient:
    """A socket with a read buffer; every read is bounded by ``timeout``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        source: str | None = None,
    ) -> None:
        self.host = host
        self.timeout = timeout
        self.buffer = b""
        sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        try:
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket = sock

    def __enter__(self) -> LineClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete reply; have {self.buffer!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(f"no complete reply; have {self.buffer!r}") from None
        self.buffer += chunk
        return chunk

    def readline(self, timeout: float | None = None) -> bytes:
        """One line including CRLF; EOFError if the server closed first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buffer:
            if not self._fill(deadline):
                raise EOFError(f"connection closed; unread {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def read_until(
        self, done: Callable[[bytes], bool], timeout: float | None = None
    ) -> list[bytes]:
        """Lines until one satisfies ``done`` (included)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.001))
            lines.append(line)
            if done(line):
                return lines

    def tagged(self, tag: str, timeout: float | None = None) -> list[bytes]:
        """IMAP: lines up to and including the tagged completion of ``tag``."""
        prefix = tag.encode() + b" "
        return self.read_until(lambda line: line.startswith(prefix), timeout)

    def command(self, tag: str, text: str, timeout: float | None = None) -> list[bytes]:
        self.send(f"{tag} {text}\r\n".encode())
        return self.tagged(tag, timeout)

    def multiline(self, timeout: float | None = None) -> list[bytes]:
        """POP3: a multi-line response after its +OK status line (dot-terminated)."""
        return self.read_until(lambda line: line == b".\r\n", timeout)

    def read_exact(self, count: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buffer) < count:
            if not self._fill(deadline):
                raise EOFError(f"connection closed; unread {self.buffer!r}")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_to_eof(self, timeout: float | None = None) -> bytes:
        """Everything until the server closes; TimeoutError if it does not."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                chunk = self._fill(deadline)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
        data, self.buffer = self.buffer, b""
        return data

    def starttls(self, context: ssl.SSLContext) -> None:
        assert not self.buffer, f"plaintext left over before TLS: {self.buffer!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
