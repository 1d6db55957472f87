"""Where a session goes: a pure function of the account, the service and who this node is."""

from __future__ import annotations

from dataclasses import dataclass

from meshproxy.account import Account
from meshproxy.mesh.base import Identity


@dataclass(frozen=True)
class Local:
    """Serve the account here by exec'ing Courier.  ``note`` explains why (for the log)."""

    note: str = ""


@dataclass(frozen=True)
class Peer:
    """Log in on one of ``hosts`` (tried in order) and relay."""

    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Refuse:
    """Answer ``[UNAVAILABLE]``; ``reason`` goes to the log."""

    reason: str


Decision = Local | Peer | Refuse

NO_MAILHOST = "no mailhost"
"""The note of a Local decision taken because the account names no mailhost (logged)."""


def decide(account: Account, *, proxy: bool, me: Identity) -> Decision:
    """Courier's rule, made safe: local unless proxying is on and mailhost names another node."""
    if not proxy:
        return Local("proxying off")
    hosts = account.mailhosts
    if not hosts:
        return Local(NO_MAILHOST)
    if any(me.matches(host) for host in hosts):
        return Local(f"mailhost {' '.join(hosts)} is this node")
    return Peer(hosts)
