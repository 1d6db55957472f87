"""Where a session goes: a pure function of the account, who this node is and how the session
arrived (``via``: the verified mesh login, when a peer sent it here).

Guard 2 against loops lives here: a session that arrived through a mesh login is served here
or refused, never proxied again.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshproxy.account import Account
from meshproxy.mesh.assertion import MeshOrigin
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


def decide(
    account: Account, *, proxy: bool, me: Identity, via: MeshOrigin | None = None
) -> Decision:
    """Courier's rule, made safe: local unless proxying is on and mailhost names another node.

    ``proxy`` off or no mailhost serve the account here even for a mesh login: the front node
    decided to send it, and this node's sources have nothing that says otherwise.
    """
    if not proxy:
        return Local("proxying off")
    hosts = account.mailhosts
    if not hosts:
        return Local(NO_MAILHOST)
    if any(me.matches(host) for host in hosts):
        return Local(f"mailhost {' '.join(hosts)} is this node")
    if via is not None:
        return Refuse(
            f"routing disagreement: {via.origin} sent {via.user} here ({me.name}), "
            f"but its mailhost is {' '.join(hosts)}"
        )
    return Peer(hosts)
