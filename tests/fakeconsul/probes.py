"""Check runners: the TTL/reaper ticker and TCP probes (real dials, §4)."""

from __future__ import annotations

import errno
import random
import socket
import threading
import time
from collections.abc import Callable

_RNG = random.Random()  # its own generator: never the random module's shared state

TICK = 0.02  # seconds between TTL-deadline / reaper looks


class Ticker(threading.Thread):
    """Calls ``tick(now)`` every TICK seconds until stopped."""

    def __init__(self, tick: Callable[[float], None]) -> None:
        super().__init__(name="fakeconsul-ticker", daemon=True)
        self._tick = tick
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(TICK):
            self._tick(time.monotonic())

    def stop(self) -> None:
        self._stop_event.set()


def dial(target: str, timeout: float) -> tuple[bool, str]:
    """One TCP check probe: (ok, Output) worded like Consul's."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except TimeoutError:
        return False, f"dial tcp {target}: i/o timeout"
    except ConnectionRefusedError:
        return False, f"dial tcp {target}: connect: connection refused"
    except OSError as exc:
        if exc.errno == errno.EHOSTUNREACH:
            return False, f"dial tcp {target}: connect: no route to host"
        return False, f"dial tcp {target}: {exc.strerror or exc}"
    except ValueError:
        return False, f"dial tcp {target}: address {target}: missing port in address"
    return True, f"TCP connect {target}: Success"


class TcpProbe(threading.Thread):
    """Dials ``target`` every ``interval``; the first dial after a random delay in
    [0, interval) (Consul's stagger) or at once when ``immediate``."""

    def __init__(
        self,
        target: str,
        interval: float,
        timeout: float,
        report: Callable[[bool, str], bool],
        immediate: bool,
    ) -> None:
        super().__init__(name=f"fakeconsul-tcp-{target}", daemon=True)
        self.target = target
        self.interval = interval
        self.timeout = timeout
        self._report = report
        self._first = 0.0 if immediate else _RNG.uniform(0, interval)
        self._stop_event = threading.Event()

    def run(self) -> None:
        delay = self._first
        while not self._stop_event.wait(delay):
            ok, output = dial(self.target, self.timeout)
            if self._stop_event.is_set() or not self._report(ok, output):
                return
            delay = self.interval

    def stop(self) -> None:
        self._stop_event.set()
