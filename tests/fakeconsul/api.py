"""The agent, health and catalog endpoints (§2) and the route table of every endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .acl import Token
from .apibase import blocking_params
from .control import ControlEndpoints
from .kvapi import KVEndpoints
from .model import (
    STATUSES,
    Service,
    render_agent_service,
    render_check,
    render_node,
    render_service,
    render_service_node,
)
from .util import UPDATE_FIELDS, ApiError, parse_go_bool
from .web import Reply, Request, Router

if TYPE_CHECKING:
    from .server import ConsulCluster

VERSION = "1.21.4"

__all__ = ["Api", "blocking_params"]


class Api(KVEndpoints, ControlEndpoints):
    def __init__(self, cluster: ConsulCluster) -> None:
        super().__init__(cluster)
        self.state = cluster.state
        r = self.router = Router()
        r.add("/v1/agent/self", GET=self.agent_self)
        r.add("/v1/agent/service/register", PUT=self.register)
        r.add("/v1/agent/service/deregister/(.+)", PUT=self.deregister)
        r.add("/v1/agent/service/maintenance/(.+)", PUT=self.service_maintenance)
        r.add("/v1/agent/maintenance", PUT=self.node_maintenance)
        r.add("/v1/agent/check/(pass|warn|fail)/(.+)", PUT=self.check_ttl)
        r.add("/v1/agent/check/update/(.+)", PUT=self.check_update)
        r.add("/v1/agent/services", GET=self.agent_services)
        r.add("/v1/agent/checks", GET=self.agent_checks)
        r.add("/v1/health/service/(.+)", GET=self.health_service)
        r.add("/v1/catalog/service/(.+)", GET=self.catalog_service)
        r.add("/v1/catalog/node/(.+)", GET=self.catalog_node)
        r.add("/v1/catalog/services", GET=self.catalog_services)
        r.add("/v1/catalog/nodes", GET=self.catalog_nodes)
        r.add("/v1/kv/(.*)", GET=self.kv_get, PUT=self.kv_put, DELETE=self.kv_delete)
        r.add("/v1/status/leader", GET=self.status_leader)
        r.add("/v1/status/peers", GET=self.status_peers)
        r.add("/v1/acl/token/self", GET=self.acl_token_self)
        ctl = {"PUT": self.ctl_dispatch, "POST": self.ctl_dispatch}
        r.add("/test/(node)/([^/]+)/health", **ctl)
        r.add("/test/(restore-index|leader|reset)()", **ctl)
        r.add("/test/(stop-agent|start-agent)/(.+)", **ctl)
        r.add("/test/(state)()", GET=self.ctl_dispatch)

    # ---- agent -----------------------------------------------------------------------

    def agent_self(self, req: Request) -> Reply:
        self.token(req).require("agent", req.node, "read")
        with self.state.cond:
            node = self.state.require_node(req.node)
            n_services = len(self.state.local_services(req.node))
            n_checks = len(self.state.local_checks(req.node))
        dc = self.state.datacenter
        tags = {"dc": dc, "role": "node", "id": node.id, "vsn": "2", "vsn_min": "2", "vsn_max": "3"}
        return Reply.json(
            {
                "Config": {
                    "Datacenter": dc,
                    "PrimaryDatacenter": dc,
                    "NodeName": node.name,
                    "NodeID": node.id,
                    "Revision": "4b2e1d3a",
                    "Server": False,
                    "Version": VERSION,
                    "BuildDate": "2025-08-19T10:12:30Z",
                },
                "DebugConfig": {"NodeName": node.name, "Datacenter": dc},
                "Coord": {"Vec": [0] * 8, "Error": 1.5, "Adjustment": 0, "Height": 1e-05},
                "Member": {
                    "Name": node.name,
                    "Addr": node.address,
                    "Port": 8301,
                    "Tags": tags,
                    "Status": 1,
                    "ProtocolMin": 1,
                    "ProtocolMax": 5,
                    "ProtocolCur": 2,
                    "DelegateMin": 2,
                    "DelegateMax": 5,
                    "DelegateCur": 4,
                },
                "Stats": {"agent": {"checks": str(n_checks), "services": str(n_services)}},
                "Meta": {"consul-network-segment": "", "consul-version": VERSION},
            }
        )

    def register(self, req: Request) -> Reply:
        tok = self.token(req)
        body = req.json_body()
        name = ""
        if isinstance(body, dict):
            name = next((v for k, v in body.items() if k.lower() == "name"), "") or ""
        if isinstance(name, str) and name:
            tok.require("service", name, "write")
        replace = req.has("replace-existing-checks") and (
            req.get("replace-existing-checks") == ""
            or self._truthy(req.get("replace-existing-checks"))
        )
        self.state.register_service(req.node, body, replace)
        return Reply()

    def _owned_service(self, req: Request, sid: str) -> Token:
        tok = self.token(req)
        with self.state.cond:
            svc = self.state.services.get((req.node, sid))
            if svc is not None:
                tok.require("service", svc.name, "write")
        return tok

    def deregister(self, req: Request) -> Reply:
        self._owned_service(req, req.params[0])
        self.state.deregister_service(req.node, req.params[0])
        return Reply()

    def service_maintenance(self, req: Request) -> Reply:
        enable = self.bool_param(req, "enable")
        self._owned_service(req, req.params[0])
        self.state.service_maintenance(req.node, req.params[0], enable, req.get("reason"))
        return Reply()

    def node_maintenance(self, req: Request) -> Reply:
        enable = self.bool_param(req, "enable")
        self.token(req).require("node", req.node, "write")
        self.state.node_maintenance(req.node, enable, req.get("reason"))
        return Reply()

    def check_ttl(self, req: Request) -> Reply:
        verb, check_id = req.params
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[verb]
        return self._update(req, check_id, status, req.get("note"))

    def check_update(self, req: Request) -> Reply:
        body = UPDATE_FIELDS.decode(req.json_body(), "checkUpdate")
        status = body.get("Status") or ""
        if status not in STATUSES:
            raise ApiError(400, f"Invalid check status: '{status}'")
        return self._update(req, req.params[0], status, str(body.get("Output") or ""))

    def _update(self, req: Request, check_id: str, status: str, output: str) -> Reply:
        tok = self.token(req)
        with self.state.cond:
            self.require_check_write(tok, self.state.check_owner(req.node, check_id))
            self.state.update_ttl_check(req.node, check_id, status, output)
        return Reply()

    def agent_services(self, req: Request) -> Reply:
        tok = self.token(req)
        with self.state.cond:
            services = self.state.local_services(req.node)
            out = {
                s.id: render_agent_service(s, self.state.datacenter)
                for s in services
                if tok.allows("service", s.name, "read")
            }
        return Reply.json(out)

    def agent_checks(self, req: Request) -> Reply:
        tok = self.token(req)
        with self.state.cond:
            checks = self.state.local_checks(req.node)
            out = {
                c.check_id: render_check(c, local=True)
                for c in checks
                if self.can_see_check(tok, c)
            }
        return Reply.json(out)

    # ---- health and catalog ----------------------------------------------------------

    def _instances(self, req: Request, name: str, tok: Token) -> tuple[list[Service], bool]:
        tags = req.query.get("tag", [])
        metas = [m.split(":", 1) for m in req.query.get("node-meta", []) if ":" in m]
        found, filtered = [], False
        for svc in self.state.instances(name):
            if not self.can_see(tok, svc):
                filtered = True
                continue
            node = self.state.nodes[svc.node]
            if all(t in svc.tags for t in tags) and all(node.meta.get(k) == v for k, v in metas):
                found.append(svc)
        return found, filtered

    def health_service(self, req: Request) -> Reply:
        name = req.params[0]
        passing = False
        if req.has("passing"):
            value = req.get("passing")
            try:
                passing = value == "" or parse_go_bool(value)
            except ValueError:
                raise ApiError(400, "Invalid value for ?passing") from None
        mode = self.read_mode(req)
        tok = self.token(req)
        st = self.state
        dc = st.datacenter

        def run() -> tuple[int, tuple[list[Any], bool], object]:
            idx = st.service_idx(name)
            found, filtered = self._instances(req, name, tok)
            entries = []
            for svc in found:
                checks = st.entry_checks(svc)
                if passing and any(c.status != "passing" for c in checks):
                    continue
                entries.append(
                    {
                        "Node": render_node(st.nodes[svc.node], dc),
                        "Service": render_service(svc, null_meta=True),
                        "Checks": [render_check(c) for c in checks],
                    }
                )
            return idx, (entries, filtered), idx

        idx, (entries, filtered) = self.blocking(req, run)
        return Reply.json(entries, self.meta_headers(idx, mode, filtered, tok))

    def catalog_service(self, req: Request) -> Reply:
        name = req.params[0]
        mode = self.read_mode(req)
        tok = self.token(req)
        st = self.state

        def run() -> tuple[int, tuple[list[Any], bool], object]:
            idx = st.service_idx(name)
            found, filtered = self._instances(req, name, tok)
            rows = [render_service_node(st.nodes[s.node], s, st.datacenter) for s in found]
            return idx, (rows, filtered), idx

        idx, (rows, filtered) = self.blocking(req, run)
        return Reply.json(rows, self.meta_headers(idx, mode, filtered, tok))

    def catalog_node(self, req: Request) -> Reply:
        name = req.params[0]
        mode = self.read_mode(req)
        tok = self.token(req)
        st = self.state

        def run() -> tuple[int, tuple[Any, bool], object]:
            idx = st.node_idx(name)
            node = st.nodes.get(name)
            if node is None:
                return idx, (None, False), idx
            if not tok.allows("node", name, "read"):
                return idx, (None, True), idx
            services, filtered = {}, False
            for svc in st.local_services(name):
                if tok.allows("service", svc.name, "read"):
                    services[svc.id] = render_service(svc, null_meta=False)
                else:
                    filtered = True
            return (
                idx,
                ({"Node": render_node(node, st.datacenter), "Services": services}, filtered),
                idx,
            )

        idx, (data, filtered) = self.blocking(req, run)
        return Reply.json(data, self.meta_headers(idx, mode, filtered, tok))

    def catalog_services(self, req: Request) -> Reply:
        mode = self.read_mode(req)
        tok = self.token(req)
        st = self.state

        def run() -> tuple[int, tuple[dict[str, list[str]], bool], object]:
            out: dict[str, list[str]] = {}
            filtered = False
            for svc in st.services.values():
                if not self.can_see(tok, svc):
                    filtered = True
                    continue
                tags = out.setdefault(svc.name, [])
                tags.extend(t for t in svc.tags if t not in tags)
            return max(1, st.catalog_index), (out, filtered), st.catalog_index

        idx, (data, filtered) = self.blocking(req, run)
        return Reply.json(data, self.meta_headers(idx, mode, filtered, tok))

    def catalog_nodes(self, req: Request) -> Reply:
        mode = self.read_mode(req)
        tok = self.token(req)
        st = self.state

        def run() -> tuple[int, tuple[list[Any], bool], object]:
            rows = [
                render_node(n, st.datacenter)
                for n in st.nodes.values()
                if tok.allows("node", n.name, "read")
            ]
            return max(1, st.catalog_index), (rows, len(rows) < len(st.nodes)), st.catalog_index

        idx, (rows, filtered) = self.blocking(req, run)
        return Reply.json(rows, self.meta_headers(idx, mode, filtered, tok))
