"""What the server builds once and every session shares: listeners, settings, sources."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from meshproxy import courier
from meshproxy.auth import AuthSource
from meshproxy.config import Config, parse_address
from meshproxy.errors import MeshproxyError
from meshproxy.io.local import Launcher
from meshproxy.io.wire import Dialer
from meshproxy.mesh import Directory, Identity
from meshproxy.mesh.assertion import ReplayCache
from meshproxy.protocol import (
    ImapPreauth,
    ImapSettings,
    NextEvent,
    Pop3Preauth,
    Pop3Settings,
)
from meshproxy.protocol.replies import POP3_CAPABILITIES

if TYPE_CHECKING:
    from meshproxy.io.connection import Session

PROGRAMS = {"imap": "imapd", "pop3": "pop3d"}
NODE_CAPABILITY = "X-MESHPROXY-NODE"


class Core(Protocol):
    """The API both protocol cores offer the edge."""

    @property
    def secure(self) -> bool: ...

    @property
    def trailing_data(self) -> bytes: ...

    def receive_data(self, data: bytes) -> None: ...

    def data_to_send(self) -> bytes: ...

    def next_event(self) -> NextEvent: ...

    def tls_started(self) -> None: ...

    def login_failed(self, error: MeshproxyError) -> None: ...

    def shutdown(self, text: str) -> None: ...


@dataclass(frozen=True)
class Listener:
    """One listening address and how sessions on it start."""

    service: str  # "imap" | "pop3"
    address: str  # host:port as configured
    implicit_tls: bool
    proxy: bool
    settings: ImapSettings | Pop3Settings

    @property
    def host(self) -> str:
        return parse_address(self.address, "listen")[0]

    @property
    def port(self) -> int:
        return parse_address(self.address, "listen")[1]

    @property
    def name(self) -> str:
        kind = f"{self.service}s" if self.implicit_tls else self.service
        return f"{kind}/{self.address}"

    @property
    def program(self) -> str:
        return PROGRAMS[self.service]

    def make_core(self) -> Core:
        if isinstance(self.settings, ImapSettings):
            return ImapPreauth(self.settings)
        return Pop3Preauth(self.settings)


@dataclass
class Shared:
    """Process-wide state, built once by ``server.serve``."""

    config: Config
    courier: courier.CourierSettings
    source: AuthSource
    directory: Directory
    identity: Identity
    tls: ssl.SSLContext | None
    launcher: Launcher
    dialer: Dialer
    mesh_key: bytes | None = None
    replay: ReplayCache | None = None
    sessions: set[Session] = field(default_factory=set)


def listeners(
    config: Config, settings: courier.CourierSettings, identity: Identity, *, tls: bool
) -> Iterator[Listener]:
    """Every configured listener with its protocol settings."""
    for implicit, key in ((False, "listen"), (True, "tls_listen")):
        imap = imap_settings(config, settings, identity, implicit=implicit, tls=tls)
        pop3 = pop3_settings(config, identity, implicit=implicit, tls=tls)
        for address in getattr(config.imap, key):
            yield Listener("imap", address, implicit, config.imap.proxy, imap)
        for address in getattr(config.pop3, key):
            yield Listener("pop3", address, implicit, config.pop3.proxy, pop3)


def imap_settings(
    config: Config,
    settings: courier.CourierSettings,
    identity: Identity,
    *,
    implicit: bool,
    tls: bool,
) -> ImapSettings:
    """``ID`` names this node (``x-meshproxy-node``): a peer's loop guard reads it."""
    limits = config.limits
    return ImapSettings(
        capabilities=settings.imap_capabilities(tls=False),
        capabilities_tls=settings.imap_capabilities(tls=True),
        sasl_mechanisms=tuple(mech.upper() for mech in config.imap.sasl_mechanisms),
        tls_available=tls and not implicit,
        secure=implicit,
        tls_required=config.tls.required,
        greeting=config.imap.greeting,
        max_line=limits.max_line,
        max_literal=limits.max_literal,
        max_errors=limits.max_errors,
        id_fields=(("name", "meshproxy"), ("x-meshproxy-node", identity.name)),
        mesh_login=bool(config.mesh.key_file),
    )


def pop3_settings(config: Config, identity: Identity, *, implicit: bool, tls: bool) -> Pop3Settings:
    """``CAPA`` names this node (``X-MESHPROXY-NODE``): a peer's loop guard reads it."""
    limits = config.limits
    return Pop3Settings(
        capabilities=(*POP3_CAPABILITIES, f"{NODE_CAPABILITY} {identity.name}"),
        sasl_mechanisms=tuple(mech.upper() for mech in config.pop3.sasl_mechanisms),
        tls_available=tls and not implicit,
        secure=implicit,
        tls_required=config.tls.required,
        greeting=config.pop3.greeting,
        apop=config.pop3.apop,
        max_line=limits.max_line,
        max_literal=limits.max_literal,
        max_errors=limits.max_errors,
        mesh_login=bool(config.mesh.key_file),
    )
