"""Who this node is and where other nodes are (the directory), and the mesh login."""

from __future__ import annotations

from meshproxy.config import Config
from meshproxy.mesh.base import (
    Address,
    Directory,
    ForeignHost,
    Identity,
    MeshNode,
    SelfNode,
    Target,
    Unreachable,
)
from meshproxy.mesh.static import StaticDirectory

__all__ = [
    "Address",
    "Directory",
    "ForeignHost",
    "Identity",
    "MeshNode",
    "SelfNode",
    "StaticDirectory",
    "Target",
    "Unreachable",
    "open_directory",
]


def open_directory(config: Config) -> Directory:
    """Consul's when ``[mesh] consul`` is set (py-consul is imported only then), else the
    embedded directory."""
    if config.mesh.consul:
        from meshproxy.mesh.consul import ConsulDirectory  # noqa: PLC0415 -- only when used

        return ConsulDirectory(config)
    return StaticDirectory(config)
