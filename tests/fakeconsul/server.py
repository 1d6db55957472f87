"""ConsulCluster: the shared state plus one HTTP agent per node, in this process."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import consul

from .acl import Acl
from .api import Api
from .snapshot import State
from .web import Agent


class ConsulCluster:
    """Several Consul agents sharing one catalog.

    ``nodes`` maps node name -> node Address (e.g. ``{"mx2": "127.0.0.2"}``).  ``bind``:
    ``"node"`` makes each agent listen on its node's own address (its "local agent"),
    any other value is the address every agent listens on.  ``port`` 0 = ephemeral ports
    (kept across stop/start); with a fixed port and ``bind="node"`` every agent uses that
    port, otherwise agent *i* (in ``nodes`` order) uses ``port + i``; ``ports`` (node ->
    port) overrides both.
    ``acl_tokens`` (secret -> rules or None for management) turns ACLs on.
    ``tcp_immediate``: TCP checks probe at once instead of after a random part of Interval.
    ``reap_scale``: multiplies DeregisterCriticalServiceAfter (after its 1m floor) and the
    30 s reaper period, e.g. 0.01 reaps a "1m" service after 0.6 s (tests only).
    """

    def __init__(
        self,
        nodes: Mapping[str, str] | None = None,
        *,
        bind: str = "node",
        port: int = 0,
        ports: Mapping[str, int] | None = None,
        datacenter: str = "dc1",
        acl_tokens: Mapping[str, str | None] | None = None,
        acl_anonymous_rules: str = "",
        acl_default_token: str | None = None,
        tcp_immediate: bool = False,
        reap_scale: float = 1.0,
        leader: bool = True,
        state_file: str | Path | None = None,
    ) -> None:
        nodes = dict(nodes or {"mx1": "127.0.0.1"})
        self.state = State(datacenter, tcp_immediate=tcp_immediate, reap_scale=reap_scale)
        self.state.leader = leader
        self.acl = Acl(acl_tokens, acl_anonymous_rules, acl_default_token)
        self.api = Api(self)
        self.state_file = Path(state_file) if state_file else None
        if self.state_file and self.state_file.exists():
            self.state.load(json.loads(self.state_file.read_text()))
        for name, address in nodes.items():
            self.state.add_node(name, address)
        self.agents: dict[str, Agent] = {}
        for i, (name, address) in enumerate(nodes.items()):
            host = address if bind == "node" else bind
            agent_port = port if (port == 0 or bind == "node") else port + i
            agent_port = (ports or {}).get(name, agent_port)
            self.agents[name] = Agent(self, name, host, agent_port)

    # ---- life cycle ------------------------------------------------------------------

    def start(self, keep_state: bool = True) -> ConsulCluster:
        """Open every agent's listener (again).  ``keep_state=False`` first forgets the
        catalog and KV and restarts the index at 1 (a Consul that lost its data dir)."""
        if not keep_state:
            self.state.reset()
        for agent in self.agents.values():
            agent.start()
        return self

    def stop(self) -> None:
        """Every agent stops listening and drops its connections; the state is kept (and
        TTL clocks keep running), so ``start()`` brings the same catalog back."""
        for agent in self.agents.values():
            agent.stop()
        self.save()

    def close(self) -> None:
        self.stop()
        self.state.close()

    def save(self) -> None:
        if self.state_file:
            self.state_file.write_text(json.dumps(self.state.dump()))

    def __enter__(self) -> ConsulCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- addresses -------------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        return {name: agent.url for name, agent in self.agents.items()}

    def url(self, node: str) -> str:
        return self.agents[node].url

    def client(self, node: str, token: str | None = None, **kwargs: Any) -> consul.Consul:
        """A py-consul client of ``node``'s agent."""
        agent = self.agents[node]
        return consul.Consul(host=agent.host, port=agent.port, token=token, **kwargs)

    # ---- control ---------------------------------------------------------------------

    def set_node_health(self, node: str, status: str = "critical", output: str = "") -> None:
        """serfHealth of ``node``: ``critical`` = a dead node to everyone else."""
        self.state.set_node_health(node, status, output)

    def restore_index(self, index: int | None = None) -> int:
        return self.state.restore_index(index)

    def set_leader(self, present: bool) -> None:
        with self.state.cond:
            self.state.leader = present
            self.state.cond.notify_all()

    def stop_agent(self, node: str, mark_critical: bool = True) -> None:
        """Stop one node's agent; its serfHealth turns critical unless told otherwise."""
        self.agents[node].stop()
        if mark_critical:
            self.state.set_node_health(node, "critical")

    def start_agent(self, node: str) -> None:
        self.agents[node].start()
        self.state.set_node_health(node, "passing")

    def dump(self) -> dict[str, Any]:
        return self.state.dump()
