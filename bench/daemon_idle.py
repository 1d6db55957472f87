"""Memory per idle proxied plaintext session, through the real daemon.

A ``python -m meshproxy serve`` process (config in a temp dir, ``bench/daemon_common.py``)
proxies every login of a foreign account (``mailhost=127.0.0.66``) to ``bench/foreign_imap.py``.
For each N: warm the daemon up (64 sessions opened, used and closed), read its VmRSS once it
is stable, open N client sessions (greeting, ``LOGIN``, one ``NOOP`` through the relay) and keep
them idle, check ``/metrics`` counts N sessions, and read VmRSS again once stable.
KiB/session = (after - before) / N.  The kernel's socket buffers are outside RSS.

Then a probe pass (``bench/daemon_probe.py``: the same daemon plus a SIGUSR1 report) counts
the daemon's greenlets and its gc-tracked objects by type before and after N sessions; with
``--trace`` it also runs tracemalloc and prints the allocation sites that grew.

    .venv/bin/python bench/daemon_idle.py [N ...] [--trace]   (default 2000 8000; ~1 minute)

Each session holds 2 fds in the daemon (client, backend) and 1 here and 1 in the backend
process; the hard limit here is 20,000 open files per process, so N stays under ~9,900.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

from common import machine, versions
from daemon_common import (
    Bench,
    login_batch,
    noop_batch,
    proc_nofile,
    raise_nofile,
    settled_rss,
)

BATCH = 200


def open_sessions(bench: Bench, count: int) -> list:
    held: list = []
    while len(held) < count:
        socks = login_batch(bench.imap_port, min(BATCH, count - len(held)))
        noop_batch(socks)
        held.extend(socks)
    return held


def close_all(bench: Bench, held: list) -> None:
    for sock in held:
        sock.close()
    held.clear()
    deadline = time.monotonic() + 30
    while bench.sessions() and time.monotonic() < deadline:
        time.sleep(0.2)


def warm_up(bench: Bench) -> None:
    held = open_sessions(bench, 64)
    close_all(bench, held)


def measure(bench: Bench, count: int) -> dict[str, Any]:
    bench.start()
    try:
        warm_up(bench)
        before = settled_rss(bench.pid)
        started = time.monotonic()
        held = open_sessions(bench, count)
        opened = time.monotonic() - started
        sessions = bench.sessions()
        after = settled_rss(bench.pid)
        fds = len(os.listdir(f"/proc/{bench.pid}/fd"))
        result = {
            "before": before,
            "after": after,
            "per": (after - before) / count,
            "sessions": sessions,
            "fds": fds,
            "nofile": proc_nofile(bench.pid),
            "open_s": opened,
        }
        close_all(bench, held)
        result["after_close"] = settled_rss(bench.pid)
        held = open_sessions(bench, count)  # memory kept after closing is reused, not leaked?
        result["reopened"] = settled_rss(bench.pid)
        close_all(bench, held)
        return result
    finally:
        bench.stop()


def probe(bench: Bench, count: int, *, trace: bool) -> None:
    bench.start(probe=True, trace=trace)
    try:
        warm_up(bench)
        first = bench.probe()
        held = open_sessions(bench, count)
        assert bench.sessions() == count
        second = bench.probe()
        grown = Counter(second["types"]) - Counter(first["types"])  # type: ignore[arg-type]
        print(
            f"\n# probe, {count} idle sessions: greenlets {first['greenlets']} -> "
            f"{second['greenlets']}; gc-tracked objects grown, per session:"
        )
        for name, number in grown.most_common(14):
            print(f"#   {name:<28} {number / count:6.2f}")
        if trace:
            print(
                f"# tracemalloc: traced {first['traced_kib']:.0f} -> "
                f"{second['traced_kib']:.0f} KiB "
                f"({(second['traced_kib'] - first['traced_kib']) / count:.2f} KiB/session)"
            )
            print("# grown, by file:")
            for stat in second.get("by_file", []):  # type: ignore[union-attr]
                per = stat["size_diff_kib"] * 1024 / count
                if abs(per) >= 8:
                    print(f"#   {per:8.0f} B/session  {stat['where']}")
            print("# grown, by line:")
            for stat in second.get("by_line", []):  # type: ignore[union-attr]
                per = stat["size_diff_kib"] * 1024 / count
                if abs(per) >= 8:
                    print(f"#   {per:8.0f} B/session  {stat['where']}")
            for stat in second.get("by_trace", [])[:6]:  # type: ignore[union-attr]
                per = stat["size_diff_kib"] * 1024 / count
                print(f"#   {per:8.0f} B/session, traceback (oldest first):")
                for frame in stat["where"]:
                    print(f"#       {frame}")
        close_all(bench, held)
        third = bench.probe()
        left = Counter(third["types"]) - Counter(first["types"])  # type: ignore[arg-type]
        print(
            f"# after closing them: greenlets {third['greenlets']}, objects left over: "
            + (", ".join(f"{name} {number}" for name, number in left.most_common(6)) or "none")
        )
    finally:
        bench.stop()


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    trace = "--trace" in sys.argv
    counts = [int(arg) for arg in args] or [2000, 8000]
    raise_nofile()
    print(f"# daemon_idle: {machine()}, {versions()}, {time.strftime('%Y-%m-%d')}")
    bench = Bench()
    try:
        print("| sessions | RSS before KiB | RSS after KiB | KiB/session | daemon fds | nofile |")
        print("|---|---|---|---|---|---|")
        for count in counts:
            r = measure(bench, count)
            assert r["sessions"] == count, r
            print(
                f"| {count} | {r['before']} | {r['after']} | **{r['per']:.2f}** | "
                f"{r['fds']} | {r['nofile']} |",
                flush=True,
            )
            print(
                f"#   opened in {r['open_s']:.1f} s; RSS after closing them all "
                f"{r['after_close']} KiB, after opening {count} again {r['reopened']} KiB",
                flush=True,
            )
        probe(bench, min(counts), trace=trace)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
