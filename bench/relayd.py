"""The relay under test, as its own process (gevent, monkey-patched as in the daemon).

``relayd.py DESIGN BACKEND_PORT [--no-splice] [--idle SECONDS]`` listens on 127.0.0.1 (a free
port, printed as ``ready <port>``) and for every client connects to 127.0.0.1:BACKEND_PORT
(numeric: no resolver thread pool) and relays with DESIGN:

* ``watchers``: meshproxy.io.relay.start_relay (no greenlet while idle; splice unless
  --no-splice);
* ``greenlets``: the previous relay (bench/greenlet_relay.py), one greenlet per direction;
* ``none``: no relay, the two sockets are only kept (the floor: gevent socket objects).

Commands on stdin, one a line, answered on stdout: ``rss`` (VmRSS KiB after gc), ``cpu``
(user+system CPU seconds), ``count`` (sessions started).
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import greenlet_relay  # noqa: E402
from gevent.socket import wait_read  # noqa: E402

from meshproxy.io.relay import RelayResult, start_relay  # noqa: E402

DESIGN = sys.argv[1]
BACKEND = ("127.0.0.1", int(sys.argv[2]))
SPLICE = "--no-splice" not in sys.argv
IDLE = float(sys.argv[sys.argv.index("--idle") + 1]) if "--idle" in sys.argv else 3600.0
KEPT: list[socket.socket] = []
STARTED = [0]


def closer(client: socket.socket, server: socket.socket):  # type: ignore[no-untyped-def]
    def done(_result: RelayResult) -> None:
        client.close()
        server.close()

    return done


def greenlet_session(client: socket.socket, server: socket.socket) -> None:
    try:
        greenlet_relay.relay(client, server, idle_timeout=IDLE)
    finally:
        client.close()
        server.close()


def accept_loop(listener: socket.socket) -> None:
    while True:
        client, _ = listener.accept()
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.connect(BACKEND)
        STARTED[0] += 1
        if DESIGN == "watchers":
            start_relay(
                client, server, idle_timeout=IDLE, on_done=closer(client, server), use_splice=SPLICE
            )
        elif DESIGN == "greenlets":
            gevent.spawn(greenlet_session, client, server)
        else:
            KEPT.extend((client, server))


def answer(line: str) -> str:
    if line == "rss":
        gc.collect()
        with open("/proc/self/status") as status:
            return next(row.split()[1] for row in status if row.startswith("VmRSS:"))
    if line == "cpu":
        times = os.times()
        return repr(times.user + times.system)
    if line == "count":
        return str(STARTED[0])
    return "?"


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    gevent.spawn(accept_loop, listener)
    print("ready", listener.getsockname()[1], flush=True)
    os.set_blocking(0, False)
    pending = b""
    while True:
        wait_read(0)
        chunk = os.read(0, 4096)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            print(answer(line.decode().strip()), flush=True)


main()
