"""Bulk throughput through the relay, as a ratio to direct loopback.

A sender (this process) writes SIZE bytes (default 1 GiB) in 1 MiB sendall calls to a receiver
(a child process reading into a 1 MiB buffer until EOF): directly, then through bench/relayd.py
with each design.  Time = connect to the receiver's EOF.  Each case runs RUNS times (median
reported); also the relay process's CPU per MB (user+system).

Two rounds: an unpaced sender (loopback as fast as two processes on this machine go; a relay
then competes for the CPUs, since it receives and sends every byte), and a sender paced at
1.25 GB/s, the speed of the Dovecot backend relay-findings.md measured its ratios against.

    .venv/bin/python bench/throughput.py [SIZE_MIB] [RUNS]     (default 1024 3; under 1 minute)
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

from common import Relayd, machine, versions

CHUNK = 1 << 20
RECEIVER = r"""
import socket, sys, time
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(8)
print(listener.getsockname()[1], flush=True)
buffer = bytearray(1 << 20)
while True:
    conn, _ = listener.accept()
    total = 0
    while n := conn.recv_into(buffer):
        total += n
    conn.close()
    print(total, time.monotonic(), flush=True)
"""
CASES = (
    ("direct", None, ()),
    ("watchers + splice (1 MiB pipes)", "watchers", ()),
    ("watchers, 256 KiB shared buffer (no splice)", "watchers", ("--no-splice",)),
    ("two greenlets, 64 KiB (previous relay)", "greenlets", ()),
)


PACED = 1.25e9


def run(port: int, receiver: subprocess.Popen[str], size: int, rate: float = 0.0) -> float:
    data = memoryview(bytearray(CHUNK))
    began = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(("127.0.0.1", port))
    for index in range(size // CHUNK):
        sock.sendall(data)
        if rate:
            ahead = began + (index + 1) * CHUNK / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    sock.shutdown(socket.SHUT_WR)
    assert receiver.stdout is not None
    total, ended = receiver.stdout.readline().split()
    sock.close()
    assert int(total) == size, f"received {total} of {size}"
    return float(ended) - began


def main() -> None:
    size = (int(sys.argv[1]) if len(sys.argv) > 1 else 1024) * CHUNK
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    backend_port = int(receiver.stdout.readline())
    print(f"# throughput: {size >> 20} MiB x {runs} runs (median); {machine()}, {versions()}, ")
    print(f"# {time.strftime('%Y-%m-%d')}")
    print("| sender | case | GB/s | ratio to direct | relay CPU ms/MB |")
    print("|---|---|---|---|---|")
    try:
        for pace in (0.0, PACED):
            direct = 0.0
            sender = f"paced {pace / 1e9:.2f} GB/s" if pace else "unpaced"
            for name, design, extra in CASES:
                relayd = Relayd(design, backend_port, *extra) if design else None
                port = relayd.port if relayd else backend_port
                cpu_before = float(relayd.ask("cpu")) if relayd else 0.0
                times = [run(port, receiver, size, pace) for _ in range(runs)]
                cpu = (float(relayd.ask("cpu")) - cpu_before) if relayd else 0.0
                if relayd:
                    relayd.close()
                rate = size / statistics.median(times) / 1e9
                direct = direct or rate
                per_mb = f"{cpu * 1000 / (size * runs / 1e6):.3f}" if relayd else "-"
                row = f"| {sender} | {name} | {rate:.2f} | {rate / direct:.2f} | {per_mb} |"
                print(row, flush=True)
    finally:
        receiver.kill()
        receiver.wait()
        receiver.stdout.close()


if __name__ == "__main__":
    main()
