"""A relay server for test_relay.py, run as a child process (gevent, monkey-patched).

``python relay_child.py '<json options>'`` listens on 127.0.0.1 (a free port), and for every
client: optional TLS handshake (``tls``: cert and key files), optional read of ``preread``
bytes, a connection to ``backend`` (``[host, port]`` or a Unix socket path), then a relay with
``idle``, ``splice`` and ``blocking`` (use ``relay()`` in a greenlet instead of
``start_relay``).  ``bufsize`` sets SO_SNDBUF/SO_RCVBUF on both relayed sockets.

Events, one JSON object a line on stdout: ready (port), start (id, client_port, preread),
done (id, client_port, a_to_b, b_to_a, reason, elapsed, in_hub, calls), fds (count), rss (kib).
Commands, one JSON object a line on stdin: stop (client_port), fds, rss, exit.
"""

from gevent import monkey

monkey.patch_all()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.socket import wait_read  # noqa: E402

from meshproxy.io import splice  # noqa: E402
from meshproxy.io.relay import Relay, RelayResult, relay, start_relay  # noqa: E402

OPTIONS: dict[str, Any] = json.loads(sys.argv[1])
RUNNING: dict[int, Any] = {}  # client port -> Relay or the greenlet running relay()


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def backend() -> socket.socket:
    target = OPTIONS["backend"]
    if isinstance(target, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.connect((target[0], target[1]))
    return sock


def session(number: int, client: socket.socket, port: int, context: Any) -> None:
    if OPTIONS.get("bufsize"):
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            client.setsockopt(socket.SOL_SOCKET, option, OPTIONS["bufsize"])
    if context is not None:
        client = context.wrap_socket(client, server_side=True)
    preread = b""
    while len(preread) < OPTIONS.get("preread", 0):
        preread += client.recv(OPTIONS["preread"] - len(preread))
    server = backend()
    if OPTIONS.get("bufsize"):
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            server.setsockopt(socket.SOL_SOCKET, option, OPTIONS["bufsize"])
    started = time.monotonic()
    calls = []

    def done(result: RelayResult) -> None:
        calls.append(result)
        if len(calls) > 1:
            emit(event="double", id=number)
            return
        client.close()
        server.close()
        RUNNING.pop(port, None)
        emit(
            event="done",
            id=number,
            client_port=port,
            a_to_b=result.a_to_b,
            b_to_a=result.b_to_a,
            reason=result.reason,
            elapsed=time.monotonic() - started,
            in_hub=gevent.getcurrent() is gevent.get_hub(),
        )

    emit(event="start", id=number, client_port=port, preread=preread.decode("latin-1"))
    kwargs = {"idle_timeout": OPTIONS.get("idle", 30.0), "names": ("client", "server")}
    if not OPTIONS.get("blocking"):
        RUNNING[port] = start_relay(
            client, server, on_done=done, use_splice=OPTIONS.get("splice", True), **kwargs
        )
        return
    RUNNING[port] = gevent.getcurrent()
    try:
        result = relay(client, server, **kwargs)
    except gevent.GreenletExit:
        result = RelayResult(-1, -1, "killed")
    done(result)


def accept_loop(listener: socket.socket) -> None:
    context = None
    if OPTIONS.get("tls"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(OPTIONS["tls"]["cert"], OPTIONS["tls"]["key"])
    number = 0
    while True:
        client, address = listener.accept()
        number += 1
        gevent.spawn(session, number, client, address[1], context)


def commands() -> None:
    os.set_blocking(0, False)
    pending = b""
    while True:
        wait_read(0)
        chunk = os.read(0, 4096)
        if not chunk:
            os._exit(0)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            command(json.loads(line))


def command(order: dict[str, Any]) -> None:
    if order["cmd"] == "stop":
        running = RUNNING.get(order["client_port"])
        if isinstance(running, Relay):
            running.stop("stopped by test")
        elif running is not None:
            running.kill(block=False)
    elif order["cmd"] == "fds":
        splice.POOL.close_idle()
        names = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the fd of listdir itself is gone already
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
        emit(event="fds", count=len(names), lent=splice.POOL.lent, names=sorted(names))
    elif order["cmd"] == "rss":
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        emit(event="rss", kib=kib)
    elif order["cmd"] == "exit":
        os._exit(0)


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    gevent.spawn(accept_loop, listener)
    emit(event="ready", port=listener.getsockname()[1], pid=os.getpid())
    commands()


main()
