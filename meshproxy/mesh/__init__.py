"""Who this node is and where other nodes are (the directory)."""

from __future__ import annotations

from meshproxy.config import Config
from meshproxy.mesh.base import Directory, Identity
from meshproxy.mesh.static import StaticDirectory

__all__ = ["Directory", "Identity", "open_directory"]


def open_directory(config: Config) -> Directory:
    """The embedded directory (Consul comes in a later version)."""
    return StaticDirectory(config)
