"""CPU of the real daemon per login + logout.

A ``python -m meshproxy serve`` process (``bench/daemon_common.py``; log level INFO, one
summary line per session) and, per case, M client sessions run one at a time or by 8 threads
at once.  Daemon CPU per session = (utime + stime from /proc/<pid>/stat after - before) / M;
the clients' and the backend's CPU are not counted.  Three rounds per case, median shown.

Cases:

* ``greeting + LOGOUT``: connect, read the greeting, LOGOUT (no login): the accept/greeting
  floor of the daemon itself;
* ``foreign {SHA256}``: LOGIN of the foreign account (``mailhost=127.0.0.66``): userdb lookup
  and a cheap password check, connect to the backend, its greeting, our LOGIN, relay start;
  then LOGOUT through the relay (the backend closes; the relay ends both sides);
* ``foreign $6$``: the same with a sha512-crypt hash (5,000 rounds), the cost of a typical
  Courier password hash;
* ``local Courier``: LOGIN of an account served here: the daemon execs Courier's imapd with
  the client socket (raw hand-off); imapd answers LOGOUT.  Only the daemon's CPU (fork and
  exec set-up) is counted, not imapd's.  Needs an existing ``mpt_*`` test user (made by the
  integration tests); skipped otherwise.

    .venv/bin/python bench/daemon_logins.py [M] [--log-level WARNING]   (default 2000 INFO; ~1 min)
"""

from __future__ import annotations

import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable

from common import machine, versions
from daemon_common import (
    CRYPT_USER,
    LOCAL_PASSWORD,
    LOCAL_USER,
    PASSWORD,
    USER,
    Bench,
    connect,
    proc_cpu_seconds,
    raise_nofile,
    read_until,
)

ROUNDS = 3
Client = Callable[[int], None]


def greeting_only(port: int) -> None:
    sock = connect(port)
    try:
        read_until(sock, b"* OK")
        sock.sendall(b"a9 LOGOUT\r\n")
        _until_closed(sock, b"a9 OK")
    finally:
        sock.close()


def login_logout(user: str, password: str) -> Client:
    command = f'a1 LOGIN "{user}" "{password}"\r\n'.encode()

    def client(port: int) -> None:
        sock = connect(port)
        try:
            read_until(sock, b"* OK")
            sock.sendall(command)
            reply = read_until(sock, b"a1 ")
            if b"a1 OK" not in reply:
                raise RuntimeError(f"login failed: {reply!r}")
            sock.sendall(b"a2 LOGOUT\r\n")
            _until_closed(sock, b"a2 OK")
        finally:
            sock.close()

    return client


def _until_closed(sock: socket.socket, marker: bytes) -> None:
    data = b""
    sock.settimeout(10)
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    if marker not in data:
        raise RuntimeError(f"no {marker!r} before the close: {data!r}")


def run(bench: Bench, client: Client, count: int, threads: int) -> tuple[float, float]:
    """(daemon CPU ms per session, sessions per second) for ``count`` sessions."""
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for _ in range(number):
                client(bench.imap_port)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in share]
    deadline = time.monotonic() + 10
    while bench.sessions() and time.monotonic() < deadline:  # the previous round's ends
        time.sleep(0.05)
    before = proc_cpu_seconds(bench.pid)
    started = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    wall = time.monotonic() - started
    while bench.sessions() and time.monotonic() < deadline + 20:
        time.sleep(0.05)
    cpu = proc_cpu_seconds(bench.pid) - before
    if errors:
        raise errors[0]
    return cpu * 1000 / count, count / wall


def main() -> None:
    args = sys.argv[1:]
    level = "INFO"
    if "--log-level" in args:
        at = args.index("--log-level")
        level = args[at + 1]
        del args[at : at + 2]
    count = int(args[0]) if args else 2000
    raise_nofile()
    print(
        f"# daemon_logins: {machine()}, {versions()}, {time.strftime('%Y-%m-%d')}, "
        f"log level {level}"
    )
    bench = Bench(local=True, log_level=level)
    cases: list[tuple[str, Client, int]] = [
        ("greeting + LOGOUT, no login", greeting_only, count),
        ("foreign, {SHA256} hash", login_logout(USER, PASSWORD), count),
        ("foreign, $6$ sha512-crypt hash", login_logout(CRYPT_USER, PASSWORD), count // 4),
    ]
    if bench.local_user is not None:
        local = login_logout(LOCAL_USER, LOCAL_PASSWORD)
        cases.append((f"local Courier imapd (as {bench.local_user})", local, count // 10))
    try:
        bench.start()
        run(bench, login_logout(USER, PASSWORD), 100, 4)  # warm-up
        print("| case | sessions | concurrency | daemon CPU ms/session (median; rounds) | /s |")
        print("|---|---|---|---|---|")
        for name, client, number in cases:
            for threads in (1, 8):
                results = [run(bench, client, number, threads) for _ in range(ROUNDS)]
                cpus = [cpu for cpu, _ in results]
                rate = statistics.median(rate for _, rate in results)
                rounds = ", ".join(f"{cpu:.3f}" for cpu in cpus)
                print(
                    f"| {name} | {number} | {threads} | **{statistics.median(cpus):.3f}** "
                    f"({rounds}) | {rate:.0f} |",
                    flush=True,
                )
        if "Traceback" in bench.log():
            print("# WARNING: traceback in the daemon log", bench.dir / "meshproxy.log")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
