"""Shared by the bench scripts: start bench/relayd.py, talk to it, describe the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import gevent
import greenlet

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class Relayd:
    """bench/relayd.py as a child process."""

    def __init__(self, design: str, backend_port: int, *extra: str) -> None:
        env = dict(os.environ, PYTHONPATH=f"{HERE}:{ROOT}")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "relayd.py"), design, str(backend_port), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        word, port = self.proc.stdout.readline().split()
        assert word == "ready"
        self.port = int(port)

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return f"{os.cpu_count()} vCPU {cpu}, Linux {platform.release()}, Python {python}"


def versions() -> str:
    return f"gevent {gevent.__version__}, greenlet {greenlet.__version__}"
