"""Logging: one line per record on stderr, and the two lines every session may produce.

Format: ``2025-01-31T12:00:00.123+00:00 INFO meshproxy.session: text``.  Newlines inside a
record (a multi-line exception, a hostile login name) are escaped so that one record stays one
line.  Nothing here ever receives a client command line or a password: the helpers take the
few fields they print, by name.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime

ROOT = "meshproxy"
_MAX_FIELD = 200


class _OneLineFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r", "\\r").replace("\n", "\\n")


def setup(level: str = "INFO") -> None:
    """Send meshproxy's records to stderr at ``level`` (idempotent)."""
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def get(name: str) -> logging.Logger:
    """The logger ``meshproxy.<name>``."""
    return logging.getLogger(f"{ROOT}.{name}")


def field(value: object) -> str:
    """A value as printable text: control characters escaped, length capped, "-" if empty."""
    text = str(value) if value not in (None, "") else "-"
    text = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text)
    return text if len(text) <= _MAX_FIELD else text[:_MAX_FIELD] + "..."


def token(value: object) -> str:
    """Like ``field``, with spaces escaped too: for values inside a line split on spaces."""
    return field(value).replace(" ", "\\x20")


def client(ip: str, port: int) -> str:
    """``ip:port``, with brackets around IPv6 addresses."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class Summary:
    """What the end-of-session line reports; filled in as the session goes."""

    session: str
    client: str
    listener: str
    user: str = ""
    decision: str = "none"
    pid: int = 0
    origin: str = ""  # "<node>/<session>" of a mesh login (home node)
    bytes_in: int = 0
    bytes_out: int = 0
    reason: str = ""


def session_summary(logger: logging.Logger, summary: Summary, duration: float) -> None:
    """The one line that closes every session."""
    logger.info(
        "session %s end client=%s listener=%s user=%s decision=%s pid=%s%s in=%d out=%d "
        "duration=%.3fs reason=%s",
        summary.session,
        summary.client,
        summary.listener,
        token(summary.user),
        token(summary.decision),
        summary.pid or "-",
        f" origin={field(summary.origin)}" if summary.origin else "",
        summary.bytes_in,
        summary.bytes_out,
        duration,
        field(summary.reason),
    )


def failed_login(
    logger: logging.Logger, *, session: str, client: str, user: str, mechanism: str, reason: str
) -> None:
    """A refused login.  ``reason`` is an error's detail: never a password."""
    logger.warning(
        "session %s login failed client=%s user=%s mechanism=%s reason=%s",
        session,
        client,
        token(user),
        field(mechanism),
        field(reason),
    )
