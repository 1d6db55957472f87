"""The home node's side of a mesh login: verify the assertion, find the account, agree.

A peer that authenticated a user sends ``AUTHENTICATE X-MESHPROXY`` / ``AUTH X-MESHPROXY``
with a signed assertion (``mesh.assertion``).  ``accept`` checks, in order:

* this node has the mesh key (else ``AuthFailed``: a node without a key takes no mesh logins);
* the assertion: MAC, target, service, time window, hop count, nonce (``AuthFailed`` for a
  forged, stale, misdirected or replayed one, delayed like a wrong password; ``TempFail`` for
  the hop limit, a routing problem);
* the account, looked up without a password (unknown: ``AuthFailed``; source down:
  ``TempFail``), with default options and the ``disable*`` check applied;
* the route: the account must be local here (guard 2 against loops).  Anything else is a
  routing disagreement between the two nodes' sources: logged naming both nodes, and
  ``TempFail``, which the front node turns into ``[UNAVAILABLE]`` for the client.

``disableinsecure*`` is checked as if the session were secure: the front node already
checked it against the real client's transport, which this node cannot see.
"""

from __future__ import annotations

import time

from meshproxy import auth, log, route
from meshproxy.account import Account
from meshproxy.credentials import MeshCredentials
from meshproxy.errors import AuthFailed, TempFail
from meshproxy.io.state import Listener, Shared
from meshproxy.mesh import assertion
from meshproxy.mesh.assertion import MeshOrigin

_log = log.get("session")


def accept(
    shared: Shared, listener: Listener, credentials: MeshCredentials, session: str
) -> tuple[Account, MeshOrigin]:
    """The account and verified origin of a mesh login, or an error (see the module doc)."""
    origin = _verify(shared, listener.service, credentials)
    account = _lookup(shared, listener.service, origin)
    decision = route.decide(account, proxy=listener.proxy, me=shared.identity, via=origin)
    if not isinstance(decision, route.Local):
        why = decision.reason if isinstance(decision, route.Refuse) else "not local here"
        why = why.removeprefix("routing disagreement: ")
        _log.warning(
            "session %s routing disagreement between %s (session %s) and %s: %s",
            session,
            log.field(origin.origin),
            log.field(origin.session),
            log.field(shared.identity.name),
            log.field(why),
        )
        raise TempFail(detail=f"routing disagreement with {origin.origin}")
    _log.info(
        "session %s mesh login user=%s origin=%s/%s client=%s hop=%d",
        session,
        log.field(account.login),
        log.field(origin.origin),
        log.field(origin.session),
        log.client(origin.client_ip, origin.client_port),
        origin.hop,
    )
    return account, origin


def _verify(shared: Shared, service: str, credentials: MeshCredentials) -> MeshOrigin:
    if shared.mesh_key is None or shared.replay is None:
        raise AuthFailed(detail="mesh login refused: mesh.key_file is not set on this node")
    mesh = shared.config.mesh
    try:
        return assertion.verify(
            credentials.blob,
            shared.mesh_key,
            me=shared.identity,
            service=service,
            now=time.time(),
            window=mesh.clock_skew,
            replay=shared.replay,
            max_hops=mesh.max_hops,
        )
    except AuthFailed as exc:
        raise AuthFailed(detail=f"mesh login refused: {exc.detail}") from exc
    except TempFail as exc:
        raise TempFail(detail=f"mesh login refused: {exc.detail}") from exc


def _lookup(shared: Shared, service: str, origin: MeshOrigin) -> Account:
    try:
        account = shared.source.lookup(origin.user, service)
    except auth.BackendUnavailable as exc:
        raise TempFail(detail=f"account source unavailable: {exc}") from exc
    if account is None:
        raise AuthFailed(
            detail=f"mesh login refused: {origin.user!r} from {origin.origin} is unknown here"
        )
    return auth.admit(
        shared.source,
        account,
        service=service,
        secure=True,
        default_options=shared.config.auth.default_options,
    )
