"""Latency added per small round trip by the relay.

A client (this process) sends 64 bytes and waits for them back, ROUNDS times, to an echo server
(a child process): directly, then through bench/relayd.py with each design.  Reported: p50,
p99 and mean round trip, and the p50 added over direct.

    .venv/bin/python bench/latency.py [ROUNDS]     (default 20000; ~15 seconds)
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

from common import Relayd, machine, versions

ECHO = r"""
import socket
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(8)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.close()
"""
CASES = (
    ("direct", None, ()),
    ("watchers + splice", "watchers", ()),
    ("watchers, shared buffer", "watchers", ("--no-splice",)),
    ("two greenlets (previous relay)", "greenlets", ()),
)
MESSAGE = b"x" * 62 + b"\r\n"


def rounds(port: int, count: int) -> list[float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect(("127.0.0.1", port))
    samples = []
    try:
        for index in range(count + 500):
            began = time.perf_counter()
            sock.sendall(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                got += len(sock.recv(65536))
            if index >= 500:  # warm-up excluded
                samples.append(time.perf_counter() - began)
    finally:
        sock.close()
    return samples


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    assert echo.stdout is not None
    backend_port = int(echo.stdout.readline())
    print(f"# latency: {count} round trips of 64 bytes; {machine()}, {versions()},")
    print(f"# {time.strftime('%Y-%m-%d')}")
    print("| case | p50 µs | p99 µs | mean µs | p50 added µs |")
    print("|---|---|---|---|---|")
    direct = 0.0
    try:
        for name, design, extra in CASES:
            relayd = Relayd(design, backend_port, *extra) if design else None
            samples = rounds(relayd.port if relayd else backend_port, count)
            if relayd:
                relayd.close()
            cuts = statistics.quantiles(samples, n=100)
            p50, p99 = cuts[49] * 1e6, cuts[98] * 1e6
            direct = direct or p50
            mean = statistics.fmean(samples) * 1e6
            added = f"{p50 - direct:+.1f}" if relayd else "-"
            print(f"| {name} | {p50:.1f} | {p99:.1f} | {mean:.1f} | {added} |", flush=True)
    finally:
        echo.kill()
        echo.wait()
        echo.stdout.close()


if __name__ == "__main__":
    main()
