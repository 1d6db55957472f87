"""Events the protocol cores surface to the I/O edge.

The cores answer CAPABILITY, NOOP, ID, CAPA, UTF8, syntax errors and the like by themselves
(their replies appear in ``data_to_send()``).  Only these events need the edge:

* ``StartTLS``: the core has queued the "go ahead" reply; the edge must send it, wrap the
  socket in TLS and then call ``core.tls_started()`` (which discards any plaintext the client
  sent behind the command).
* ``LoginAttempt``: credentials to check.  The edge answers with ``core.login_failed(error)``
  or hands the session over (``core.trailing_data`` then holds what the client pipelined).
* ``Closed``: the session is over (LOGOUT/QUIT, too many errors, overlong input); the edge
  sends ``data_to_send()`` and closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, TypeAlias

from meshproxy.credentials import Credentials


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _Sentinel.NEED_DATA
"""``next_event()`` returns this when it needs more bytes from the client."""

NeedData: TypeAlias = Literal[_Sentinel.NEED_DATA]
"""The type of ``NEED_DATA``."""


@dataclass(frozen=True)
class StartTLS:
    pass


@dataclass(frozen=True)
class LoginAttempt:
    """``tag`` is the IMAP tag of LOGIN/AUTHENTICATE ("" for POP3)."""

    credentials: Credentials
    tag: str = ""


@dataclass(frozen=True)
class Closed:
    reason: str = ""


Event = StartTLS | LoginAttempt | Closed

NextEvent: TypeAlias = Event | NeedData
"""What ``next_event()`` returns."""
