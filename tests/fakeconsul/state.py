"""The shared state of the fake cluster: nodes, services, checks, a raft-like index.

Every write takes the next index (``self.index``); per-service-name and per-node indexes
record the last write that touched them, which is what health/catalog reads report and
block on.  All access is under ``self.cond`` (one lock); writes ``notify_all`` it.
KV lives in :mod:`.kv` (a mixin over the same lock and index); restore, reset and
persistence in :mod:`.snapshot` (:class:`~.snapshot.State`, the full state).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .kv import KVMixin
from .model import (
    NODE_MAINT,
    NODE_MAINT_NOTES,
    SERF_CRITICAL,
    SERF_PASSING,
    SERVICE_MAINT,
    SERVICE_MAINT_NOTES,
    STATUSES,
    Check,
    Node,
    Service,
    node_id,
)
from .probes import TcpProbe, Ticker
from .services import parse_registration
from .util import ApiError

T = TypeVar("T")
Key = tuple[str, str]


class AgentGone(Exception):
    """The agent serving a blocked request was stopped."""


def unknown_service(sid: str) -> ApiError:
    return ApiError(
        404,
        f'Unknown service ID "{sid}". Ensure that the service ID is passed, not the service name.',
    )


class CatalogState(KVMixin):
    def __init__(
        self, datacenter: str = "dc1", tcp_immediate: bool = False, reap_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.cond = threading.Condition(threading.RLock())
        self.datacenter = datacenter
        self.tcp_immediate = tcp_immediate
        self.reap_scale = reap_scale
        self.leader = True
        self.index = 0
        self.restore_gen = 0
        self.nodes: dict[str, Node] = {}
        self.services: dict[Key, Service] = {}
        self.checks: dict[Key, Check] = {}
        self.service_index: dict[str, int] = {}
        self.node_index: dict[str, int] = {}
        self.catalog_index = 0
        self.ttl_deadline: dict[Key, float] = {}
        self.critical_since: dict[Key, float] = {}
        self.probes: dict[Key, TcpProbe] = {}
        self.counters: dict[Key, tuple[int, int]] = {}  # TCP (successes, failures) in a row
        self.next_reap = time.monotonic() + 30 * reap_scale
        self.ticker = Ticker(self.tick)
        self.ticker.start()

    # ---- index bookkeeping ------------------------------------------------------------

    def _next(self) -> int:
        self.index += 1
        return self.index

    def _touch(self, idx: int, node: str, names: Iterable[str] = ()) -> None:
        self.catalog_index = idx
        self.node_index[node] = idx
        for name in names:
            self.service_index[name] = idx

    def _touch_check(self, chk: Check, idx: int) -> None:
        if chk.service_name:
            self._touch(idx, chk.node, [chk.service_name])
        else:  # a node check is part of every service entry of its node
            self._touch(idx, chk.node, self._names_on(chk.node))

    def _names_on(self, node: str) -> set[str]:
        return {s.name for (n, _), s in self.services.items() if n == node}

    # ---- nodes -----------------------------------------------------------------------

    def add_node(self, name: str, address: str) -> None:
        with self.cond:
            if name in self.nodes:
                return
            idx = self._next()
            self.nodes[name] = Node(
                name, address, node_id(name), {"consul-network-segment": ""}, idx, idx
            )
            self.checks[(name, "serfHealth")] = Check(
                name,
                "serfHealth",
                "Serf Health Status",
                "passing",
                output=SERF_PASSING,
                synced_output=SERF_PASSING,
                create_index=idx,
                modify_index=idx,
            )
            self._touch(idx, name)
            self.cond.notify_all()

    def require_node(self, node: str) -> Node:
        if node not in self.nodes:
            raise ApiError(500, f"Unknown node {node!r}")
        return self.nodes[node]

    def set_node_health(self, node: str, status: str, output: str = "") -> None:
        if status not in STATUSES:
            raise ApiError(400, f"Invalid check status: '{status}'")
        with self.cond:
            self.require_node(node)
            chk = self.checks[(node, "serfHealth")]
            text = output or (SERF_PASSING if status == "passing" else SERF_CRITICAL)
            self._set_status(chk, status, text, time.monotonic())

    # ---- checks ----------------------------------------------------------------------

    def _set_status(self, chk: Check, status: str, output: str, now: float) -> bool:
        """Status changes reach the catalog (new index); output-only changes stay local."""
        chk.output = output
        if status == chk.status:
            return False
        idx = self._next()
        chk.status, chk.synced_output, chk.modify_index = status, output, idx
        key = (chk.node, chk.check_id)
        if status == "critical":
            self.critical_since[key] = now
        else:
            self.critical_since.pop(key, None)
        self._touch_check(chk, idx)
        self.cond.notify_all()
        return True

    def _remove_check(self, key: Key) -> None:
        self.checks.pop(key, None)
        self.ttl_deadline.pop(key, None)
        self.critical_since.pop(key, None)
        self.counters.pop(key, None)
        probe = self.probes.pop(key, None)
        if probe is not None:
            probe.stop()

    def _start_check(self, chk: Check, now: float) -> None:
        key = (chk.node, chk.check_id)
        if chk.status == "critical":
            self.critical_since.setdefault(key, now)
        if chk.ttl:
            self.ttl_deadline[key] = now + chk.ttl
        if chk.tcp and key not in self.probes:
            probe = TcpProbe(
                chk.tcp,
                chk.interval,
                chk.timeout,
                functools.partial(self._probe_report, key),
                self.tcp_immediate,
            )
            self.probes[key] = probe
            probe.start()

    def _probe_report(self, key: Key, ok: bool, output: str) -> bool:
        with self.cond:
            chk = self.checks.get(key)
            if chk is None or self.probes.get(key) is None:
                return False
            succ, fail = self.counters.get(key, (0, 0))
            succ, fail = (succ + 1, 0) if ok else (0, fail + 1)
            self.counters[key] = (succ, fail)
            status = chk.status
            if ok and succ >= chk.success_before_passing:
                status = "passing"
            elif not ok and fail >= chk.failures_before_critical:
                status = "critical"
            elif not ok and fail >= chk.failures_before_warning:
                status = "warning"
            self._set_status(chk, status, output, time.monotonic())
            return True

    def check_owner(self, node: str, check_id: str) -> Check:
        chk = self.checks.get((node, check_id))
        if chk is None:
            raise ApiError(
                404,
                f'Unknown check ID "{check_id}". '
                "Ensure that the check ID is passed, not the check name.",
            )
        return chk

    def update_ttl_check(self, node: str, check_id: str, status: str, output: str) -> None:
        """pass/warn/fail/update: set status and output, restart the TTL timer."""
        with self.cond:
            chk = self.check_owner(node, check_id)
            if not chk.ttl:
                raise ApiError(500, f'CheckID "{check_id}" does not have associated TTL')
            now = time.monotonic()
            self.ttl_deadline[(node, check_id)] = now + chk.ttl
            self._set_status(chk, status, output, now)

    def tick(self, now: float) -> None:
        with self.cond:
            for key, deadline in list(self.ttl_deadline.items()):
                chk = self.checks.get(key)
                if chk is None or now < deadline:
                    continue
                del self.ttl_deadline[key]
                text = "TTL expired"
                if chk.output and not chk.output.startswith("TTL expired"):
                    text = f"TTL expired (last output before timeout follows): {chk.output}"
                self._set_status(chk, "critical", text, now)
            if now >= self.next_reap:
                self.next_reap = now + 30 * self.reap_scale
                self._reap(now)

    def _reap(self, now: float) -> None:
        doomed: set[Key] = set()
        for key, chk in self.checks.items():
            since = self.critical_since.get(key)
            if chk.service_id and chk.deregister_after and since is not None:
                limit = max(60.0, chk.deregister_after) * self.reap_scale
                if now - since >= limit:
                    doomed.add((chk.node, chk.service_id))
        for node, sid in doomed:
            if (node, sid) in self.services:
                self.deregister_service(node, sid)

    # ---- services --------------------------------------------------------------------

    def register_service(self, node: str, body: Any, replace_existing_checks: bool) -> str:
        """PUT agent/service/register on ``node``'s agent; returns the service ID."""
        svc, checks = parse_registration(node, body)
        with self.cond:
            self.require_node(node)
            key = (node, svc.id)
            old = self.services.get(key)
            changed = old is None or not old.same(svc)
            names = {svc.name} | ({old.name} if old else set())
            now = time.monotonic()
            new_ids = set()
            fresh: list[Check] = []
            for chk in checks:
                ckey = (node, chk.check_id)
                new_ids.add(chk.check_id)
                prev = self.checks.get(ckey)
                if prev is not None:  # no flap: keep status and output
                    chk.status, chk.output, chk.synced_output = (
                        prev.status,
                        prev.output,
                        prev.synced_output,
                    )
                    chk.create_index, chk.modify_index = prev.create_index, prev.modify_index
                    if prev.same_definition(chk):
                        continue
                    if prev.tcp != chk.tcp or prev.interval != chk.interval:
                        probe = self.probes.pop(ckey, None)
                        if probe is not None:
                            probe.stop()
                fresh.append(chk)
            stale = []
            if replace_existing_checks:
                stale = [
                    k
                    for k, c in self.checks.items()
                    if k[0] == node and c.service_id == svc.id and c.check_id not in new_ids
                ]
            if not (changed or fresh or stale):
                return svc.id  # idempotent: nothing reaches the catalog
            idx = self._next()
            for k in stale:
                self._remove_check(k)
            svc.create_index = old.create_index if old else idx
            svc.modify_index = idx if changed or old is None else old.modify_index
            self.services[key] = svc
            for chk in fresh:
                chk.create_index = chk.create_index or idx
                chk.modify_index = idx
                self.checks[(node, chk.check_id)] = chk
                self._start_check(chk, now)
            for k, c in self.checks.items():  # tags of the service live on its checks too
                if k[0] == node and c.service_id == svc.id:
                    c.service_name, c.service_tags = svc.name, list(svc.tags)
            self._touch(idx, node, names)
            self.cond.notify_all()
            return svc.id

    def deregister_service(self, node: str, sid: str) -> None:
        with self.cond:
            svc = self.services.pop((node, sid), None)
            if svc is None:
                raise unknown_service(sid)
            for k in [k for k, c in self.checks.items() if k[0] == node and c.service_id == sid]:
                self._remove_check(k)
            self._touch(self._next(), node, [svc.name])
            self.cond.notify_all()

    def service_maintenance(self, node: str, sid: str, enable: bool, reason: str) -> None:
        with self.cond:
            svc = self.services.get((node, sid))
            if svc is None:
                raise unknown_service(sid)
            self._maintenance(
                node,
                SERVICE_MAINT + sid,
                "Service Maintenance Mode",
                reason or SERVICE_MAINT_NOTES,
                enable,
                svc,
            )

    def node_maintenance(self, node: str, enable: bool, reason: str) -> None:
        with self.cond:
            self.require_node(node)
            self._maintenance(
                node, NODE_MAINT, "Node Maintenance Mode", reason or NODE_MAINT_NOTES, enable, None
            )

    def _maintenance(
        self, node: str, cid: str, name: str, notes: str, enable: bool, svc: Service | None
    ) -> None:
        key = (node, cid)
        if enable == (key in self.checks):
            return  # idempotent: a second enable keeps the first reason
        idx = self._next()
        if enable:
            self.checks[key] = Check(
                node,
                cid,
                name,
                "critical",
                notes=notes,
                service_id=svc.id if svc else "",
                service_name=svc.name if svc else "",
                service_tags=list(svc.tags) if svc else [],
                create_index=idx,
                modify_index=idx,
            )
            self.critical_since[key] = time.monotonic()
            chk = self.checks[key]
        else:
            chk = self.checks[key]
            self._remove_check(key)
        self._touch_check(chk, idx)
        self.cond.notify_all()

    # ---- reads -----------------------------------------------------------------------

    def local_services(self, node: str) -> list[Service]:
        return [s for (n, _), s in self.services.items() if n == node]

    def local_checks(self, node: str) -> list[Check]:
        return [c for (n, _), c in self.checks.items() if n == node]

    def instances(self, name: str) -> list[Service]:
        return sorted(
            (s for s in self.services.values() if s.name == name), key=lambda s: (s.node, s.id)
        )

    def entry_checks(self, svc: Service) -> list[Check]:
        """The node's checks then the service's, as a health entry lists them."""
        node = [c for (n, _), c in self.checks.items() if n == svc.node and not c.service_id]
        own = [c for (n, _), c in self.checks.items() if n == svc.node and c.service_id == svc.id]
        return node + own

    def service_idx(self, name: str) -> int:
        return max(1, self.service_index.get(name, self.catalog_index))

    def node_idx(self, node: str) -> int:
        return max(1, self.node_index.get(node, self.catalog_index))

    def block(
        self,
        run: Callable[[], tuple[int, T, object]],
        min_index: int,
        wait: float,
        alive: Callable[[], bool],
    ) -> tuple[int, T]:
        """A blocking query: answer once the index is > min_index, or at the timeout with the
        current data; a watch that fires without a greater index keeps waiting; a restore
        (index regression) answers at once, as Consul abandons its state store."""
        with self.cond:
            idx, result, watch = run()
            if min_index <= 0 or idx > min_index:
                return idx, result
            deadline = time.monotonic() + wait
            gen = self.restore_gen
            while (remaining := deadline - time.monotonic()) > 0:
                self.cond.wait(remaining)
                if not alive():
                    raise AgentGone
                if self.restore_gen != gen:
                    break
                idx, result, now_watch = run()
                if now_watch != watch:
                    if idx > min_index:
                        return idx, result
                    watch = now_watch
            idx, result, _ = run()
            return idx, result
