"""The full state: catalog + KV plus index regressions, resets and persistence."""

from __future__ import annotations

import time
from typing import Any

from .model import Check, KVEntry, Node, Service, kv_from_record, to_record
from .state import CatalogState


class State(CatalogState):
    def restore_index(self, index: int | None = None) -> int:
        """Simulate a snapshot restore: every index drops to at most ``index`` (default: half
        the current one); blocked queries answer at once with the lower index."""
        with self.cond:
            new = max(1, index if index is not None else self.index // 2)
            records: list[Node | Service | Check | KVEntry] = [
                *self.nodes.values(),
                *self.services.values(),
                *self.checks.values(),
                *self.kv.values(),
            ]
            for obj in records:
                obj.create_index = min(obj.create_index, new)
                obj.modify_index = min(obj.modify_index, new)
            for table in (self.service_index, self.node_index, self.tombstones):
                for k, v in table.items():
                    table[k] = min(v, new)
            self.catalog_index = min(self.catalog_index, new)
            self.kv_index = min(self.kv_index, new)
            self.index = new
            self.restore_gen += 1
            self.cond.notify_all()
            return new

    def reset(self) -> None:
        """Lose everything (a Consul started with an empty data dir): nodes come back with
        their serfHealth, and the index starts again from 1."""
        with self.cond:
            nodes = [(n.name, n.address) for n in self.nodes.values()]
            for key in list(self.checks):
                self._remove_check(key)
            self.nodes.clear()
            self.services.clear()
            self.kv.clear()
            self.tombstones.clear()
            self.service_index.clear()
            self.node_index.clear()
            self.catalog_index = self.kv_index = self.index = 0
            self.restore_gen += 1
            for name, address in nodes:
                self.add_node(name, address)
            self.cond.notify_all()

    def close(self) -> None:
        self.ticker.stop()
        with self.cond:
            for probe in self.probes.values():
                probe.stop()
            self.probes.clear()

    def dump(self) -> dict[str, Any]:
        with self.cond:
            return {
                "index": self.index,
                "leader": self.leader,
                "nodes": [to_record(n) for n in self.nodes.values()],
                "services": [to_record(s) for s in self.services.values()],
                "checks": [to_record(c) for c in self.checks.values()],
                "kv": [to_record(e) for e in self.kv.values()],
                "tombstones": self.tombstones,
                "service_index": self.service_index,
                "node_index": self.node_index,
                "catalog_index": self.catalog_index,
                "kv_index": self.kv_index,
            }

    def load(self, data: dict[str, Any]) -> None:
        with self.cond:
            for key in list(self.checks):
                self._remove_check(key)
            self.index = data["index"]
            self.leader = data["leader"]
            self.nodes = {n["name"]: Node(**n) for n in data["nodes"]}
            self.services = {(s["node"], s["id"]): Service(**s) for s in data["services"]}
            self.kv = {e["key"]: kv_from_record(e) for e in data["kv"]}
            self.tombstones = dict(data["tombstones"])
            self.service_index = dict(data["service_index"])
            self.node_index = dict(data["node_index"])
            self.catalog_index = data["catalog_index"]
            self.kv_index = data["kv_index"]
            now = time.monotonic()
            for record in data["checks"]:
                chk = Check(**record)
                self.checks[(chk.node, chk.check_id)] = chk
                self._start_check(chk, now)
            self.cond.notify_all()
