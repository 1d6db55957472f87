"""KV store over the shared index (§2 KV, §3 index rules): a mixin of :class:`State`."""

from __future__ import annotations

import threading

from .model import KVEntry


class KVMixin:
    cond: threading.Condition
    index: int

    def __init__(self) -> None:
        self.kv: dict[str, KVEntry] = {}
        self.tombstones: dict[str, int] = {}  # deleted key -> index of its deletion
        self.kv_index = 0  # table index: every KV write, deletions included

    def _next(self) -> int:
        raise NotImplementedError

    def kv_table_index(self) -> int:
        return max(1, self.kv_index)

    def kv_get(self, key: str) -> tuple[int, KVEntry | None, object]:
        """Index = the key's ModifyIndex; missing: the table index, and a watch that only the
        key itself (created or deleted) fires."""
        entry = self.kv.get(key)
        if entry is not None:
            return max(1, entry.modify_index), entry, entry.modify_index
        return self.kv_table_index(), None, ("absent", self.tombstones.get(key))

    def kv_recurse(self, prefix: str) -> tuple[int, list[KVEntry], object]:
        """Plain string prefix; index = max ModifyIndex under it, tombstones included."""
        entries = [self.kv[k] for k in sorted(self.kv) if k.startswith(prefix)]
        marks = [e.modify_index for e in entries]
        marks += [i for k, i in self.tombstones.items() if k.startswith(prefix)]
        if not marks:
            return self.kv_table_index(), entries, ("empty",)
        idx = max(1, *marks)
        return idx, entries, idx

    @staticmethod
    def kv_keys(entries: list[KVEntry], prefix: str, separator: str) -> list[str]:
        out: list[str] = []
        for entry in entries:
            key = entry.key
            if separator:
                pos = key.find(separator, len(prefix))
                if pos >= 0:
                    key = key[: pos + len(separator)]
            if not out or out[-1] != key:
                out.append(key)
        return out

    def kv_put(self, key: str, value: bytes, flags: int | None, cas: int | None) -> bool:
        with self.cond:
            entry = self.kv.get(key)
            if cas is not None and (
                (cas == 0 and entry is not None)
                or (cas > 0 and (entry is None or entry.modify_index != cas))
            ):
                return False
            idx = self._next()
            if entry is None:
                entry = self.kv[key] = KVEntry(key, value, flags or 0, create_index=idx)
            else:
                entry.value = value
                if flags is not None:
                    entry.flags = flags
            entry.modify_index = idx
            self.tombstones.pop(key, None)
            self.kv_index = idx
            self.cond.notify_all()
            return True

    def kv_delete(self, key: str, recurse: bool, cas: int | None) -> bool:
        with self.cond:
            if recurse:
                doomed = [k for k in self.kv if k.startswith(key)]
            else:
                entry = self.kv.get(key)
                if entry is None:
                    return True
                if cas is not None and entry.modify_index != cas:
                    return False
                doomed = [key]
            idx = self._next()
            if doomed:
                for k in doomed:
                    del self.kv[k]
                    self.tombstones[k] = idx
                self.kv_index = idx
            self.cond.notify_all()
            return True
