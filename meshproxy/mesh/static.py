"""The embedded directory: identity from config, PROXY_HOSTNAME, then the host name."""

from __future__ import annotations

import os
import socket

from meshproxy.config import Config
from meshproxy.mesh.base import Identity


class StaticDirectory:
    def __init__(self, config: Config, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._name = config.node.name or env.get("PROXY_HOSTNAME", "") or socket.gethostname()
        self._identity = Identity.of(
            config.node.name, env.get("PROXY_HOSTNAME", ""), socket.gethostname()
        )

    @property
    def name(self) -> str:
        """The name this node logs and announces itself by."""
        return self._name

    def whoami(self) -> Identity:
        return self._identity

    def close(self) -> None:
        return None
