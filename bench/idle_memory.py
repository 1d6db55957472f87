"""Memory per idle relayed plaintext session: RSS growth of the relay process per session.

For each design (bench/relayd.py: none, greenlets, watchers) and each N: start a relay process,
open N sessions (client -> relay -> backend, the ends held by this process), move one small
message each way through each (a greeting and a command, so that whatever a session allocates
on first traffic is allocated), let them go idle, and read the relay's RSS (after gc).
KiB/session = (RSS with N idle sessions - RSS before) / N.  ``none`` is the floor (the two
gevent socket objects a session needs whatever the relay); the relay's own cost is the rest.

    .venv/bin/python bench/idle_memory.py [N ...]     (default 2000 9000; under 2 minutes)

At most ~9,500 sessions fit: this process and the relay each hold 2 fds per session and the
hard limit here is 20,000 open files.
"""

from __future__ import annotations

import resource
import socket
import sys
import time

from common import Relayd, machine, versions

DESIGNS = ("none", "greenlets", "watchers")
GREETING = b"* OK [CAPABILITY IMAP4rev1] ready\r\n"
COMMAND = b"a1 NOOP\r\n"


def measure(design: str, count: int) -> float:
    backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    backend.bind(("127.0.0.1", 0))
    backend.listen(4096)
    relayd = Relayd(design, backend.getsockname()[1])
    held: list[socket.socket] = []
    try:
        before = int(relayd.ask("rss"))
        for _ in range(count):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.connect(("127.0.0.1", relayd.port))
            server, _ = backend.accept()
            held.extend((client, server))
            if design != "none":
                server.sendall(GREETING)
                client.sendall(COMMAND)
        if design != "none":
            for index in range(0, len(held), 2):
                client, server = held[index], held[index + 1]
                assert _read(client, len(GREETING)) == GREETING
                assert _read(server, len(COMMAND)) == COMMAND
        after = int(relayd.ask("rss"))
        assert int(relayd.ask("count")) == count
        return (after - before) / count
    finally:
        for sock in held:
            sock.close()
        relayd.close()
        backend.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk
        data += chunk
    return data


def main() -> None:
    counts = [int(arg) for arg in sys.argv[1:]] or [2000, 9000]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"# idle_memory: {machine()}, {versions()}, {time.strftime('%Y-%m-%d')}")
    print("| design | " + " | ".join(f"{n} sessions KiB/session" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    floor: dict[int, float] = {}
    for design in DESIGNS:
        cells = []
        for count in counts:
            per = measure(design, count)
            if design == "none":
                floor[count] = per
                cells.append(f"{per:.2f}")
            else:
                cells.append(f"{per:.2f} (relay {per - floor[count]:+.2f})")
        print(f"| {design} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
