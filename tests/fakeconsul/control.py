"""status/*, acl/token/self and the /test control API."""

from __future__ import annotations

import json

from .apibase import ApiBase
from .util import ApiError
from .web import Reply, Request


class ControlEndpoints(ApiBase):
    def status_leader(self, req: Request) -> Reply:
        return Reply.json("127.0.0.1:8300" if self.state.leader else "")

    def status_peers(self, req: Request) -> Reply:
        return Reply.json(["127.0.0.1:8300"])

    def acl_token_self(self, req: Request) -> Reply:
        if not self.cluster.acl.enabled:
            raise ApiError(401, "ACL support disabled")
        tok = self.token(req)
        policy = "global-management" if tok.rules is None else ""
        return Reply.json(
            {
                "AccessorID": tok.accessor,
                "SecretID": tok.secret,
                "Description": "anonymous" if tok.anonymous else "fakeconsul token",
                "Policies": [{"Name": policy}] if policy else [],
                "Local": False,
            }
        )

    # ---- test control API ------------------------------------------------------------

    def ctl_dispatch(self, req: Request) -> Reply:
        what, arg = req.params[0], req.params[1]
        c = self.cluster
        if what == "node":
            c.set_node_health(arg, req.get("status", "critical"), req.get("output"))
        elif what == "restore-index":
            index = int(req.get("index")) if req.get("index") else None
            return Reply.json({"Index": c.restore_index(index)})
        elif what == "leader":
            c.set_leader(self._truthy(req.get("present", "true")))
        elif what == "reset":
            c.state.reset()
        elif what == "stop-agent":
            critical = self._truthy(req.get("critical", "true"))
            return Reply(after=lambda: c.stop_agent(arg, mark_critical=critical))
        elif what == "start-agent":
            c.start_agent(arg)
        elif what == "state":
            return Reply(body=json.dumps(c.state.dump()).encode())
        return Reply()
