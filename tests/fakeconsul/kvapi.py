"""KV endpoints (§2 KV)."""

from __future__ import annotations

from typing import Any

from .apibase import TEXT, ApiBase
from .model import render_kv
from .util import ApiError
from .web import Reply, Request


class KVEndpoints(ApiBase):
    def kv_get(self, req: Request) -> Reply:
        key = req.params[0]
        mode = self.read_mode(req)
        tok = self.token(req)
        st = self.state
        listing = req.has("recurse") or req.has("keys")
        if not key and not listing:
            raise ApiError(400, "Missing key name")
        if not listing:
            tok.require("key", key, "read")

        def run() -> tuple[int, Any, object]:
            if not listing:
                return st.kv_get(key)
            idx, entries, watch = st.kv_recurse(key)
            return idx, entries, watch

        idx, result = self.blocking(req, run)
        if not listing:
            headers = self.meta_headers(idx, mode, False, tok)
            if result is None:
                return Reply(404, b"", TEXT, headers)
            if req.has("raw"):
                return Reply(200, result.value, TEXT, headers)
            return Reply.json([render_kv(result)], headers)
        visible = [e for e in result if tok.allows("key", e.key, "read")]
        headers = self.meta_headers(idx, mode, len(visible) < len(result), tok)
        if req.has("keys"):
            keys = st.kv_keys(visible, key, req.get("separator"))
            if not keys and key:
                return Reply(404, b"", TEXT, headers)
            return Reply.json(keys, headers)
        if not visible:
            return Reply(404, b"", TEXT, headers)
        return Reply.json([render_kv(e) for e in visible], headers)

    @staticmethod
    def _uint(req: Request, name: str, what: str) -> int | None:
        if not req.has(name):
            return None
        try:
            value = int(req.get(name))
            if value < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, f"Invalid {what}") from None
        return value

    def kv_put(self, req: Request) -> Reply:
        key = req.params[0]
        if not key:
            raise ApiError(400, "Missing key name")
        flags = [f for f in ("cas", "acquire", "release") if req.has(f)]
        if len(flags) > 1:
            raise ApiError(
                400, "Conflicting flags: " + "&".join(f"{f}={req.get(f)}" for f in flags)
            )
        self.token(req).require("key", key, "write")
        self.write_leader()
        if req.has("acquire") or req.has("release"):
            session = req.get("acquire") or req.get("release")
            raise ApiError(500, f'invalid session "{session}"')
        cas = self._uint(req, "cas", "cas index")
        flag_value = self._uint(req, "flags", "flags")
        return Reply.json(self.state.kv_put(key, req.body, flag_value, cas))

    def kv_delete(self, req: Request) -> Reply:
        key = req.params[0]
        if req.has("recurse") and req.has("cas"):
            raise ApiError(
                400, f"Conflicting flags: cas={req.get('cas')}&recurse={req.get('recurse')}"
            )
        self.token(req).require("key", key, "write")
        self.write_leader()
        cas = self._uint(req, "cas", "cas index")
        return Reply.json(self.state.kv_delete(key, req.has("recurse"), cas))
