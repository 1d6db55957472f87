"""Shared helpers of the endpoint classes: tokens, consistency, index headers, blocking."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from .acl import Token
from .model import Check, Service
from .util import ApiError, parse_go_bool, parse_go_duration
from .web import Request

_RNG = random.Random()  # its own generator: never the random module's shared state

if TYPE_CHECKING:
    from .server import ConsulCluster

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
TEXT = "text/plain; charset=utf-8"


def blocking_params(req: Request) -> tuple[int, float]:
    """(index, wait + jitter) of a read; index 0 = answer at once."""
    try:
        index = int(req.get("index", "0") or "0")
        if index < 0:
            raise ValueError
    except ValueError:
        raise ApiError(400, "Invalid index") from None
    wait = DEFAULT_WAIT
    if req.get("wait"):
        try:
            wait = parse_go_duration(req.get("wait"))
        except ValueError:
            raise ApiError(400, "Invalid wait time") from None
    if wait <= 0:
        wait = DEFAULT_WAIT
    wait = min(wait, MAX_WAIT)
    return index, wait + _RNG.uniform(0, wait / 16)


class ApiBase:
    def __init__(self, cluster: ConsulCluster) -> None:
        self.cluster = cluster
        self.state = cluster.state

    # ---- helpers ---------------------------------------------------------------------

    def token(self, req: Request) -> Token:
        return self.cluster.acl.resolve(req.token_secret())

    def write_leader(self) -> None:
        if not self.state.leader:
            raise ApiError(500, "No cluster leader")

    def read_mode(self, req: Request) -> str:
        dc = req.get("dc")
        if dc and dc != self.state.datacenter:
            raise ApiError(500, "No path to datacenter")
        stale, consistent = req.has("stale"), req.has("consistent")
        if stale and consistent:
            raise ApiError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        if not self.state.leader and not stale:
            raise ApiError(500, "No cluster leader")
        return "stale" if stale else "consistent" if consistent else "leader"

    def meta_headers(self, idx: int, mode: str, filtered: bool, tok: Token) -> dict[str, str]:
        headers = {
            "X-Consul-Index": str(max(1, idx)),
            "X-Consul-Knownleader": "true" if self.state.leader else "false",
            "X-Consul-Lastcontact": "0",
            "X-Consul-Effective-Consistency": mode,
            "X-Consul-Query-Backend": "blocking-query",
        }
        if filtered and not tok.anonymous and self.cluster.acl.enabled:
            headers["X-Consul-Results-Filtered-By-Acls"] = "true"
        return headers

    def can_see(self, tok: Token, svc: Service) -> bool:
        return tok.allows("service", svc.name, "read") and tok.allows("node", svc.node, "read")

    def can_see_check(self, tok: Token, chk: Check) -> bool:
        if chk.service_name:
            return tok.allows("service", chk.service_name, "read")
        return tok.allows("node", chk.node, "read")

    def require_check_write(self, tok: Token, chk: Check) -> None:
        if chk.service_name:
            tok.require("service", chk.service_name, "write")
        else:
            tok.require("node", chk.node, "write")

    @staticmethod
    def bool_param(req: Request, name: str) -> bool:
        if not req.has(name):
            raise ApiError(400, f"Missing value for {name}")
        value = req.get(name)
        try:
            return parse_go_bool(value)
        except ValueError:
            raise ApiError(400, f'Invalid value for {name}: "{value}"') from None

    def blocking(self, req: Request, run: Any) -> tuple[int, Any]:
        index, wait = blocking_params(req)
        return self.state.block(run, index, wait, req.alive)

    @staticmethod
    def _truthy(value: str) -> bool:
        try:
            return parse_go_bool(value)
        except ValueError:
            return False
