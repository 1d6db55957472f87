"""The exec contract of Courier's imaplogin/pop3login, as data.

``exec_spec()`` builds what ``io/local.py`` needs to exec ``imapd`` or ``courierpop3d`` exactly
as Courier's own login stage would (docs: courier-contract.md sections 2.1, 3 and 8):

* argv ``[program, maildir]``: the account's maildir, else ``courier.maildir``;
* the environment: every variable of the service's configuration files (as the start
  scripts export them), a default ``PATH`` if they set none, couriertcpd's ``TCP*``
  variables, and what the login stage adds (``AUTHENTICATED``, ``OPTIONS``, and
  ``IMAPLOGINTAG``/``PROTOCOL`` or ``UTF8``) plus the TLS variables;
* cwd = home, uid/gid, supplementary groups (``[gid]``, or ``initgroups`` for a system
  user), the umask and address-space limit of the start script.

Addresses: couriertcpd listens on an IPv6 socket and shows IPv4 clients as
``::ffff:a.b.c.d``; meshproxy passes IPv4 clients as plain ``a.b.c.d`` (mapped addresses are
unmapped), which is what imapd/pop3d log and what Courier shows on an IPv4-only build.
No password ever goes into the environment.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from meshproxy.account import Account
from meshproxy.config import Config
from meshproxy.courier.settings import CourierSettings

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Session:
    """One client connection at the moment of hand-off.

    ``tag`` is the tag of the IMAP LOGIN/AUTHENTICATE command (``""`` for POP3); ``utf8`` is
    true when a POP3 client sent ``UTF8`` before logging in.
    """

    service: str
    remote_ip: str
    remote_port: int
    local_ip: str
    local_port: int
    tls: bool
    tag: str = ""
    utf8: bool = False


@dataclass(frozen=True)
class ExecSpec:
    """How to start Courier for one session.

    ``groups`` is the supplementary group list for ``setgroups``; None means
    ``initgroups(system_user, gid)``.  ``limit_as`` is ``RLIMIT_AS`` in bytes (None: leave it).
    """

    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)
    cwd: str
    uid: int
    gid: int
    groups: tuple[int, ...] | None
    system_user: str | None
    umask: int
    limit_as: int | None


def exec_spec(
    settings: CourierSettings, config: Config, account: Account, session: Session
) -> ExecSpec:
    """The argv, environment and credentials for ``session``'s Courier server."""
    service = session.service
    program = _program(config, service)
    maildir = account.maildir or config.courier.maildir
    return ExecSpec(
        argv=(program, maildir),
        env=build_env(settings, config, account, session),
        cwd=account.home,
        uid=account.uid,
        gid=account.gid,
        groups=None if account.system_user else (account.gid,),
        system_user=account.system_user,
        umask=settings.umask(service),
        limit_as=settings.limit_as(service),
    )


def _program(config: Config, service: str) -> str:
    if service == "imap":
        return config.courier.imapd
    if service == "pop3":
        return config.courier.pop3d
    raise ValueError(f"unknown service {service!r}")


def build_env(
    settings: CourierSettings, config: Config, account: Account, session: Session
) -> dict[str, str]:
    """The complete environment of the exec'd server."""
    env = dict(settings.vars_for(session.service))
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(tcp_env(session))
    options = account.options.merged_with_defaults(config.auth.default_options)
    env["AUTHENTICATED"] = account.login
    env["OPTIONS"] = options.raw
    if session.service == "imap":
        env.update(_imap_env(session))
    else:
        env.update(_pop3_env(session))
    return env


def tcp_env(session: Session) -> dict[str, str]:
    """couriertcpd's per-connection variables."""
    return {
        "TCPREMOTEIP": plain_ip(session.remote_ip),
        "TCPREMOTEPORT": str(session.remote_port),
        "TCPLOCALIP": plain_ip(session.local_ip),
        "TCPLOCALPORT": str(session.local_port),
    }


def _imap_env(session: Session) -> dict[str, str]:
    # imaplogin adds IMAPLOGINTAG and PROTOCOL; after STARTTLS (or under couriertls) the TLS
    # trio.  IMAP_STARTTLS=NO always: the login stage is over, imapd must not offer it.
    env = {"IMAPLOGINTAG": session.tag, "PROTOCOL": "IMAP", "IMAP_STARTTLS": "NO"}
    if session.tls:
        env.update(IMAP_TLS="1", IMAP_TLS_REQUIRED="0")
    return env


def _pop3_env(session: Session) -> dict[str, str]:
    # pop3d defaults UTF8 to 1, so always pass it; POP3_STARTTLS=NO or CAPA shows STLS.
    env = {"UTF8": "1" if session.utf8 else "0", "POP3_STARTTLS": "NO"}
    if session.tls:
        env.update(POP3_TLS="1", POP3_TLS_REQUIRED="0")
    return env


def plain_ip(text: str) -> str:
    """``::ffff:a.b.c.d`` -> ``a.b.c.d``; anything else unchanged (brackets stripped)."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return bare
