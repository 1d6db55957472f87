"""Sans-I/O protocol cores: the pre-login parts of IMAP and POP3.

Both cores have the same API (see docs/architecture.md); the I/O edge drives them.
"""

from meshproxy.protocol.events import (
    NEED_DATA,
    Closed,
    Event,
    LoginAttempt,
    NeedData,
    NextEvent,
    StartTLS,
)
from meshproxy.protocol.imap import ImapPreauth, ImapSettings, ImapState
from meshproxy.protocol.pop3 import Pop3Preauth, Pop3Settings, Pop3State

__all__ = [
    "NEED_DATA",
    "Closed",
    "Event",
    "ImapPreauth",
    "ImapSettings",
    "ImapState",
    "LoginAttempt",
    "NeedData",
    "NextEvent",
    "Pop3Preauth",
    "Pop3Settings",
    "Pop3State",
    "StartTLS",
]
