"""The watcher relay (meshproxy/io/relay.py) over real sockets.

The relay runs in a child process (``relay_child.py``, gevent monkey-patched as in the daemon);
this process plays client and backend with plain blocking sockets and threads, so nothing here
is patched.  Every wait is bounded and waits on a real condition: an event line from the child,
EOF on a socket, a reply.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TlsFiles

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("relay_child.py")
ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0
MIB = 1 << 20


class RelayChild:
    """The relay process: events in, commands out."""

    def __init__(self, backend: Any, **options: Any) -> None:
        options["backend"] = backend
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = int(self.wait("ready")["port"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait(self, kind: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """The first event of ``kind`` matching ``match`` (earlier ones are kept)."""
        for event in self.seen:
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} event {match} within {timeout} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event
            self.seen.append(event)

    def send(self, **order: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(order).encode() + b"\n")
        self.proc.stdin.flush()

    def query(self, cmd: str) -> dict[str, Any]:
        self.send(cmd=cmd)
        return self.wait(cmd)

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(WAIT)
        self.reader.join(WAIT)
        self.proc.stdout.close()
        doubles = [e for e in self.seen if e["event"] == "double"]
        assert not doubles, f"on_done ran more than once: {doubles}"


class Backend:
    """The listening server behind the relay (TCP or a Unix socket)."""

    def __init__(self, unix: bool = False) -> None:
        self.path = ""
        if unix:
            self.path = tempfile.mktemp(prefix="mp-relay-", suffix=".sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(self.path)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.settimeout(WAIT)

    @property
    def address(self) -> Any:
        return self.path or list(self.sock.getsockname())

    def close(self) -> None:
        self.sock.close()
        if self.path:
            os.unlink(self.path)


class Session:
    """One client connection through the relay and the backend's end of it."""

    def __init__(
        self, child: RelayChild, backend: Backend, tls: ssl.SSLContext | None = None
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", child.port), timeout=WAIT)
        self.port = raw.getsockname()[1]
        self.client: socket.socket = (
            tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        )
        self.server, _ = backend.sock.accept()
        self.server.settimeout(WAIT)
        self.start = child.wait("start", client_port=self.port)

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def start(backend: Backend) -> Iterator[Callable[..., RelayChild]]:
    children: list[RelayChild] = []

    def launch(**options: Any) -> RelayChild:
        child = RelayChild(options.pop("backend_address", backend.address), **options)
        children.append(child)
        return child

    yield launch
    for child in children:
        child.close()


def client_context(tls_files: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files.ca))


# -- helpers: streams and hashes ---------------------------------------------------------------


def payload(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def send_all(sock: socket.socket, data: bytes, shut: bool = True) -> None:
    view = memoryview(data)
    for start in range(0, len(data), 1 << 18):
        sock.sendall(view[start : start + (1 << 18)])
    if shut and not isinstance(sock, ssl.SSLSocket):
        sock.shutdown(socket.SHUT_WR)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ssl.SSLEOFError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tls_duplex(sock: ssl.SSLSocket, data: bytes) -> bytes:
    """Send ``data`` and read until EOF on one TLS socket, from this one thread."""
    sock.setblocking(False)
    view, sent, chunks = memoryview(data), 0, []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        want_write = sent < len(data)
        readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 1.0)
        if sock.pending() or readable:
            try:
                chunk = sock.recv(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                chunk = None
            except ssl.SSLEOFError:
                chunk = b""
            if chunk == b"":
                assert sent == len(data), f"EOF after sending {sent} of {len(data)} bytes"
                return b"".join(chunks)
            if chunk:
                chunks.append(chunk)
        if writable and want_write:
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
                sent += sock.send(view[sent : sent + (1 << 16)])
    raise AssertionError("TLS exchange did not finish in time")


def read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(1 << 20, size - got))
        assert chunk, f"EOF after {got} of {size} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Worker(threading.Thread):
    """A thread whose result (or exception) is collected by ``join_result``."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as exc:
            self.error = exc

    def join_result(self, timeout: float = WAIT) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "worker thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def abort(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def eof_within(sock: socket.socket, timeout: float) -> bool:
    """True when ``sock`` reads EOF (or a reset) within ``timeout``; data is discarded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not readable:
            continue
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, ssl.SSLEOFError):
            return True
    return False


# -- tests -------------------------------------------------------------------------------------


def bulk(child: RelayChild, server_side: Backend, up_size: int, down_size: int, **kw: Any) -> None:
    """Both directions at once, then both ends close; hashes and counts match.

    Plaintext: each end half-closes after sending.  TLS client: it cannot half-close, so the
    backend reads exactly what was sent, then half-closes, which ends the relay."""
    session = Session(child, server_side, **kw)
    tls = kw.get("tls") is not None
    up, down = payload(up_size, 1), payload(down_size, 2)
    if tls:
        # One OpenSSL connection must not be used by two threads at once (it crashes), so the
        # TLS client sends and receives from one thread.
        client_side = Worker(lambda: tls_duplex(session.client, up))
        got_up = Worker(lambda: read_exactly(session.server, len(up)))
        send_all(session.server, down, shut=False)
        assert digest(got_up.join_result()) == digest(up)
        session.server.shutdown(socket.SHUT_WR)
        assert digest(client_side.join_result()) == digest(down)
    else:
        sender_up = Worker(lambda: send_all(session.client, up))
        got_up = Worker(lambda: read_to_eof(session.server))
        got_down = Worker(lambda: read_to_eof(session.client))
        send_all(session.server, down)
        sender_up.join_result()
        assert digest(got_up.join_result()) == digest(up)
        assert digest(got_down.join_result()) == digest(down)
    session.close()
    done = child.wait("done", client_port=session.port)
    assert (done["a_to_b"], done["b_to_a"]) == (len(up), len(down))
    assert done["reason"] in ("client closed", "server closed")


@pytest.mark.parametrize(
    "options",
    [{}, {"splice": False}, {"blocking": True}],
    ids=["splice", "copy", "blocking-relay"],
)
def test_bulk_both_ways(
    start: Callable[..., RelayChild], backend: Backend, options: dict[str, Any]
) -> None:
    child = start(**options)
    bulk(child, backend, 48 * MIB, 40 * MIB + 12345)


def test_bulk_to_unix_socket(start: Callable[..., RelayChild]) -> None:
    """The daemon relays to Courier through a socketpair: splice must work on Unix sockets."""
    unix = Backend(unix=True)
    try:
        bulk(start(backend_address=unix.address), unix, 24 * MIB, 24 * MIB + 1)
    finally:
        unix.close()


@pytest.mark.parametrize("first", ["client", "server"])
def test_half_close(start: Callable[..., RelayChild], backend: Backend, first: str) -> None:
    """EOF one way is passed on as shutdown(SHUT_WR); the other way keeps flowing."""
    child = start()
    session = Session(child, backend)
    closer, other = (
        (session.client, session.server) if first == "client" else (session.server, session.client)
    )
    closer.sendall(b"last words")
    closer.shutdown(socket.SHUT_WR)
    assert read_to_eof(other) == b"last words"
    late = payload(3 * MIB, 3)
    other.sendall(late)  # the half-closed side still reads
    received = b""
    while len(received) < len(late):
        chunk = closer.recv(1 << 20)
        assert chunk, "EOF before the late reply was complete"
        received += chunk
    assert digest(received) == digest(late)
    closer.settimeout(0.3)
    with pytest.raises(socket.timeout):  # the relay is still up: no EOF yet
        closer.recv(1)
    other.close()
    closer.settimeout(WAIT)
    assert read_to_eof(closer) == b""
    done = child.wait("done", client_port=session.port)
    assert done["reason"] == f"{first} closed"
    sizes = (10, len(late)) if first == "client" else (len(late), 10)
    assert (done["a_to_b"], done["b_to_a"]) == sizes
    session.close()


@pytest.mark.parametrize("side", ["client", "server"])
def test_reset_ends_both_promptly(
    start: Callable[..., RelayChild], backend: Backend, side: str
) -> None:
    """An abortive close (RST) of either side ends the relay; the other side sees EOF at once."""
    child = start()
    session = Session(child, backend)
    gone, other = (
        (session.client, session.server) if side == "client" else (session.server, session.client)
    )
    other.sendall(b"hello")
    assert gone.recv(5) == b"hello"
    began = time.monotonic()
    abort(gone)
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"].startswith(f"{side}->")
    assert "error" in done["reason"]
    assert done["in_hub"] is True
    assert eof_within(other, 5)
    assert time.monotonic() - began < 2
    other.close()


@pytest.mark.parametrize("side", ["client", "server"])
def test_close_passes_on_and_ends(
    start: Callable[..., RelayChild], backend: Backend, side: str
) -> None:
    """A plain close of either side reaches the other at once; its close then ends the relay."""
    child = start()
    session = Session(child, backend)
    gone, other = (
        (session.client, session.server) if side == "client" else (session.server, session.client)
    )
    gone.close()
    assert eof_within(other, 2)
    other.close()
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"] == f"{side} closed"


@pytest.mark.parametrize("activity", [False, True], ids=["silent", "one-byte-late"])
def test_idle_timeout(start: Callable[..., RelayChild], backend: Backend, activity: bool) -> None:
    """No byte either way for idle_timeout ends the relay, not earlier; traffic postpones it."""
    child = start(idle=0.5)
    session = Session(child, backend)
    quiet_from = 0.0
    if activity:
        time.sleep(0.3)  # deliberate: move a byte 0.3 s into the session
        session.client.sendall(b"x")
        assert session.server.recv(1) == b"x"
        quiet_from = 0.3
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"] == "idle"
    assert quiet_from + 0.5 <= done["elapsed"] < quiet_from + 0.5 + 1.5
    assert eof_within(session.client, 2)
    assert eof_within(session.server, 2)
    session.close()


def test_stalled_receiver_times_out(start: Callable[..., RelayChild], backend: Backend) -> None:
    """A side that stops taking bytes for idle_timeout is named as stalled."""
    child = start(idle=0.5, bufsize=65536)
    session = Session(child, backend)
    session.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    session.client.settimeout(0.0)
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            sent += session.client.send(b"z" * 65536)
        except BlockingIOError:
            break
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"] == "server stalled"
    session.close()


@pytest.mark.parametrize("options", [{}, {"splice": False}], ids=["splice", "copy"])
def test_backpressure(
    start: Callable[..., RelayChild], backend: Backend, options: dict[str, Any]
) -> None:
    """A backend that does not read makes the relay stop reading: memory stays bounded."""
    child = start(bufsize=131072, **options)
    session = Session(child, backend)
    session.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 131072)
    rss_before = child.query("rss")["kib"]
    data = payload(64 * MIB, 4)
    view = memoryview(data)
    sent = 0
    session.client.setblocking(False)
    while sent < len(data):  # until the client cannot write for a whole second
        _, writable, _ = select.select([], [session.client], [], 1.0)
        if not writable:
            break
        try:
            sent += session.client.send(view[sent : sent + 65536])
        except BlockingIOError:
            continue
    assert sent < 8 * MIB, f"the relay kept reading: {sent} bytes accepted"
    assert child.query("rss")["kib"] - rss_before < 4096
    session.client.setblocking(True)
    session.client.settimeout(WAIT)
    rest = Worker(lambda: send_all(session.client, data[sent:]))
    assert digest(read_to_eof(session.server)) == digest(data)
    rest.join_result()
    session.close()
    done = child.wait("done", client_port=session.port)
    assert done["a_to_b"] == len(data)


def test_tls_one_side(
    start: Callable[..., RelayChild], backend: Backend, tls_files: TlsFiles
) -> None:
    """TLS terminated in the relay process: bulk both ways, no splice on either direction."""
    child = start(tls={"cert": str(tls_files.cert), "key": str(tls_files.key)})
    bulk(child, backend, 16 * MIB + 7, 20 * MIB + 3, tls=client_context(tls_files))


@pytest.mark.parametrize("first", ["client", "server"])
def test_tls_close(
    start: Callable[..., RelayChild], backend: Backend, tls_files: TlsFiles, first: str
) -> None:
    """EOF from the TLS client half-closes the backend; EOF from the backend ends the relay."""
    child = start(tls={"cert": str(tls_files.cert), "key": str(tls_files.key)})
    session = Session(child, backend, tls=client_context(tls_files))
    session.client.sendall(b"ping")
    assert session.server.recv(4) == b"ping"
    if first == "client":
        session.client.close()
        assert eof_within(session.server, 2)
        session.server.close()
    else:
        session.server.sendall(b"bye")
        session.server.shutdown(socket.SHUT_WR)
        assert read_to_eof(session.client) == b"bye"  # the relay ends: the client sees EOF
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"].startswith(first)
    session.close()


def test_tls_bytes_buffered_before_the_relay(
    start: Callable[..., RelayChild], backend: Backend, tls_files: TlsFiles
) -> None:
    """Bytes OpenSSL decrypted before the relay started (the pre-login stage read part of a
    record) do not wake the fd watcher: the relay must deliver them anyway."""
    child = start(tls={"cert": str(tls_files.cert), "key": str(tls_files.key)}, preread=5)
    raw = socket.create_connection(("127.0.0.1", child.port), timeout=WAIT)
    port = raw.getsockname()[1]
    client = client_context(tls_files).wrap_socket(raw, server_hostname="localhost")
    client.sendall(b"HELLO" + b"pipelined behind the greeting")  # one TLS record
    server, _ = backend.sock.accept()
    server.settimeout(WAIT)
    assert child.wait("start", client_port=port)["preread"] == "HELLO"
    expected = b"pipelined behind the greeting"
    received = b""
    while len(received) < len(expected):
        chunk = server.recv(100)
        assert chunk
        received += chunk
    assert received == expected
    client.close()
    server.close()
    child.wait("done", client_port=port)


def test_stop(start: Callable[..., RelayChild], backend: Backend) -> None:
    """Relay.stop() ends a session at once; the child then closes both sockets."""
    child = start()
    session = Session(child, backend)
    child.send(cmd="stop", client_port=session.port)
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"] == "stopped by test"
    assert eof_within(session.client, 2)
    assert eof_within(session.server, 2)
    session.close()


def test_blocking_relay_killed(start: Callable[..., RelayChild], backend: Backend) -> None:
    """relay() in a greenlet that is killed stops its relay before the caller closes."""
    child = start(blocking=True)
    session = Session(child, backend)
    child.send(cmd="stop", client_port=session.port)
    done = child.wait("done", client_port=session.port, timeout=5)
    assert done["reason"] == "killed"
    assert eof_within(session.client, 2)
    session.close()
    assert child.query("fds")["lent"] == 0


def test_many_sessions(start: Callable[..., RelayChild], backend: Backend) -> None:
    """200 sessions at once, each echoing 256 KiB through the relay."""
    child = start()
    sessions = [Session(child, backend) for _ in range(200)]

    def echo(sock: socket.socket) -> None:
        while chunk := sock.recv(65536):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)

    def talk(session: Session, seed: int) -> bool:
        data = payload(256 * 1024, seed)
        reader = Worker(lambda: read_to_eof(session.client))
        send_all(session.client, data)
        return digest(reader.join_result()) == digest(data)

    echoes = [Worker(lambda s=s: echo(s.server)) for s in sessions]
    talks = [Worker(lambda s=s, i=i: talk(s, i)) for i, s in enumerate(sessions)]
    assert all(t.join_result(60) for t in talks)
    for worker in echoes:
        worker.join_result()
    for session in sessions:
        session.close()
        done = child.wait("done", client_port=session.port)
        assert (done["a_to_b"], done["b_to_a"]) == (256 * 1024, 256 * 1024)


def test_no_fd_leak(
    start: Callable[..., RelayChild], backend: Backend, tls_files: TlsFiles
) -> None:
    """Every way a relay can end leaves the process with the fds it had before."""
    child = start(idle=0.5, tls={"cert": str(tls_files.cert), "key": str(tls_files.key)})
    plain = start(idle=0.5)
    context = client_context(tls_files)
    for relay_child, tls in ((child, context), (plain, None)):
        warm = Session(relay_child, backend, tls=tls)  # gevent's own lazy fds, if any
        warm.close()
        relay_child.wait("done", client_port=warm.port)
        before = relay_child.query("fds")
        ended = []
        for how in ("close", "reset", "stop", "idle", "bulk"):
            session = Session(relay_child, backend, tls=tls)
            if how == "close":
                session.server.close()
                session.client.close()
            elif how == "reset":
                session.server.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                session.server.close()
            elif how == "stop":
                relay_child.send(cmd="stop", client_port=session.port)
            elif how == "bulk":
                data = payload(4 * MIB, 5)
                reader = Worker(lambda s=session: read_to_eof(s.client))
                send_all(session.server, data)
                assert digest(reader.join_result()) == digest(data)
                session.client.close()
            relay_child.wait("done", client_port=session.port, timeout=5)
            ended.append(session)
        for session in ended:
            session.close()
        after = relay_child.query("fds")
        extra = sorted(set(after["names"]) - set(before["names"]))
        assert (after["count"], after["lent"]) == (before["count"], 0), extra
