"""``meshproxy serve`` with a probe, for the debug passes of the daemon benches.

``daemon_probe.py OUT serve -c FILE`` runs the daemon exactly as ``python -m meshproxy`` does
(monkey-patching first, then ``meshproxy.cli.main``), plus a SIGUSR1 handler that writes a
JSON report to OUT: VmRSS, the number of live greenlets, the gc-tracked objects by type, and,
when the environment has ``BENCH_TRACEMALLOC=1`` (tracing from the start, 8 frames), the
allocations grown since the previous report, grouped by file, line and traceback; with
``BENCH_PROFILE=1``, a cProfile table since the previous report in OUT.profile.txt.  meshproxy's
code is not touched.  Such runs are for finding where memory and CPU go; the figures of the
benches come from a plain ``python -m meshproxy`` process.
"""

from gevent import monkey

monkey.patch_all()

import cProfile  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import greenlet  # noqa: E402

from meshproxy import cli  # noqa: E402

OUT = sys.argv[1]
TRACE = os.environ.get("BENCH_TRACEMALLOC") == "1"
PROFILER = cProfile.Profile() if os.environ.get("BENCH_PROFILE") == "1" else None
_previous: dict[str, Any] = {}


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _report() -> None:
    if PROFILER is not None:
        PROFILER.disable()
        text = io.StringIO()
        stats = pstats.Stats(PROFILER, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        with open(OUT + ".profile.txt", "w") as stream:
            stream.write(text.getvalue())
        PROFILER.clear()
        PROFILER.enable()
    gc.collect()
    objects = gc.get_objects()
    types = Counter(type(obj).__qualname__ for obj in objects)
    greenlets = sum(1 for obj in objects if isinstance(obj, greenlet.greenlet))
    del objects
    report: dict[str, Any] = {"rss_kib": _rss_kib(), "greenlets": greenlets, "types": types}
    if TRACE:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        report["traced_kib"] = sum(stat.size for stat in snapshot.statistics("filename")) / 1024
        before = _previous.get("snapshot")
        if before is not None:
            report["by_file"] = [_stat(s) for s in snapshot.compare_to(before, "filename")[:12]]
            report["by_line"] = [_stat(s) for s in snapshot.compare_to(before, "lineno")[:25]]
            report["by_trace"] = [
                _stat(s, trace=True) for s in snapshot.compare_to(before, "traceback")[:12]
            ]
        _previous["snapshot"] = snapshot
    with open(OUT + ".tmp", "w") as stream:
        json.dump(report, stream, indent=1)
    os.replace(OUT + ".tmp", OUT)


def _stat(stat: tracemalloc.StatisticDiff, *, trace: bool = False) -> dict[str, Any]:
    frames = [f"{frame.filename}:{frame.lineno}" for frame in stat.traceback]
    return {
        "size_diff_kib": round(stat.size_diff / 1024, 1),
        "count_diff": stat.count_diff,
        "where": frames if trace else frames[0],
    }


def main() -> None:
    if TRACE:
        tracemalloc.start(8)
    if PROFILER is not None:
        PROFILER.enable()
    gevent.signal_handler(signal.SIGUSR1, _report)
    sys.exit(cli.main(sys.argv[2:]))


if __name__ == "__main__":
    main()
