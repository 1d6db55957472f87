"""The fake Consul's own tests: its fixtures, and a py-consul client of its first agent."""

from __future__ import annotations

import consul
import pytest

from .fixtures import consul_cluster, consul_cluster_factory, consul_process_factory
from .server import ConsulCluster

__all__ = ["consul_cluster", "consul_cluster_factory", "consul_process_factory"]


@pytest.fixture
def c(consul_cluster: ConsulCluster) -> consul.Consul:
    """py-consul client of mx2's agent."""
    return consul_cluster.client("mx2")
