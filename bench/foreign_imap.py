"""A tiny foreign IMAP server for the daemon benches, as its own process (no gevent).

``foreign_imap.py HOST`` listens on HOST (a free port, printed as ``ready <port>``) and, for
every connection, greets ``* OK``, answers ``<tag> LOGIN ...`` with ``<tag> OK``, ``<tag> LOGOUT``
with ``* BYE`` + ``<tag> OK`` and a close, and any other command with ``<tag> OK``; otherwise it
holds the connection idle.  One selectors loop, non-blocking sockets.  It exits when its stdin
closes (the bench process ended).
"""

from __future__ import annotations

import resource
import selectors
import socket
import sys

GREETING = b"* OK [CAPABILITY IMAP4rev1] bench foreign server ready\r\n"


def _answer(line: bytes) -> tuple[bytes, bool]:
    """The reply to one command line and whether to close afterwards."""
    tag, _, rest = line.partition(b" ")
    command = rest.split(b" ", 1)[0].upper()
    if command == b"LOGOUT":
        return b"* BYE bye\r\n" + tag + b" OK LOGOUT completed\r\n", True
    if command == b"LOGIN":
        return tag + b" OK LOGIN completed\r\n", False
    return tag + b" OK " + command + b" completed\r\n", False


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((sys.argv[1], 0))
    listener.listen(4096)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listen")
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("ready", listener.getsockname()[1], flush=True)
    buffers: dict[socket.socket, bytearray] = {}

    def close(conn: socket.socket) -> None:
        selector.unregister(conn)
        buffers.pop(conn, None)
        conn.close()

    while True:
        for key, _mask in selector.select():
            if key.data == "stdin":
                if not sys.stdin.readline():
                    return
            elif key.data == "listen":
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conn.send(GREETING)
                    buffers[conn] = bytearray()
                    selector.register(conn, selectors.EVENT_READ, "conn")
            else:
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    close(conn)
                    continue
                buffer = buffers[conn]
                buffer += data
                while b"\n" in buffer:
                    line, _, rest = bytes(buffer).partition(b"\n")
                    buffer[:] = rest
                    reply, done = _answer(line.rstrip(b"\r"))
                    try:
                        conn.send(reply)  # a few bytes: the loopback socket buffer takes them
                    except OSError:
                        done = True
                    if done:
                        close(conn)
                        break


if __name__ == "__main__":
    main()
