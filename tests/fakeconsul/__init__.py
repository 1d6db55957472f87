"""A Consul HTTP API test server: several agents sharing one catalog.

It behaves as ``shared/docs/consul-subset.md`` describes for the endpoints meshproxy uses,
so that the real ``py-consul`` client (and meshproxy) can be tested without Consul.
(The package is not called ``consul``: pytest puts ``tests/`` on ``sys.path``, where a
``consul`` package would shadow py-consul's.)

Layout: ``state.py`` (catalog, checks, index, blocking), ``kv.py``, ``services.py``
(register bodies), ``model.py`` (records, JSON shapes), ``probes.py`` (TTL ticker, TCP
dials), ``acl.py``, ``api.py`` (endpoints), ``web.py`` (HTTP), ``server.py``
(:class:`ConsulCluster`), ``__main__.py`` (process), ``fixtures.py`` (pytest, and
:class:`ConsulProcess`).

Agents
    One HTTP listener per node, each bound to its node name: ``agent/self`` names that
    node, ``agent/service/register`` registers on it, ``agent/services``/``checks`` are its
    local view.  Every node has an Address and a ``serfHealth`` check (passing).  With
    ``bind="node"`` (default) an agent listens on its node's own address (``mx2`` on
    ``127.0.0.2``), as a local agent would.

Endpoints (/v1)
    agent/self, agent/service/register[?replace-existing-checks], agent/service/deregister/ID,
    agent/service/maintenance/ID?enable=&reason=, agent/maintenance, agent/check/{pass,warn,
    fail}/ID, agent/check/update/ID, agent/services, agent/checks, health/service/NAME,
    catalog/service/NAME, catalog/node/NODE, catalog/services, catalog/nodes, kv/KEY,
    status/leader, status/peers, acl/token/self.  Unknown /v1 path: 404 ``Invalid URL path:
    not a recognized HTTP API endpoint``; wrong method: 405 with ``Allow``.  Not modelled:
    ``?filter=`` and ``?near=`` (ignored), sessions (acquire/release -> 500), HTTP, gRPC and
    script checks (registered, never run: they keep their initial status).  Agent endpoints
    keep working without a leader (they are agent-local in Consul too).

Checks
    TTL checks expire in real time (critical, ``TTL expired``).  TCP checks really dial,
    every Interval (>= 1 s); the first dial comes after a random delay in [0, Interval)
    unless ``tcp_immediate=True`` (``--tcp-immediate``), which dials at once: use it in
    tests that wait for a TCP check to pass.  DeregisterCriticalServiceAfter reaps with
    Consul's 1 m floor and 30 s reaper; ``reap_scale`` (``--reap-scale``) multiplies both,
    for tests only (0.01: a "1m" service goes after 0.6-0.9 s).  Status changes bump the
    index; output-only changes stay in the agent's view (``agent/checks``) and do not.

Blocking queries
    ``index``/``wait`` as in §3: wait default 5 m, capped at 10 m, plus up to wait/16 of
    jitter; answers when the index is > N, or at the timeout with the current data.

ACLs
    Off by default (``X-Consul-Default-Acl-Policy: allow``, tokens ignored).  On with
    ``acl_tokens={secret: None}`` (management) or ``{secret: "service::read,node::read"}``
    (rules ``resource:prefix:read|write|deny``, see ``acl.py``); ``--acl-token SECRET`` or
    ``--acl-token SECRET=RULES``.  Token order: ``?token=``, ``X-Consul-Token``,
    ``Authorization: Bearer``, the agent default token (``acl_default_token``), anonymous.
    ``agent/self`` needs ``agent:read``, and **py-consul's ``agent.self()`` sends no token**:
    send it yourself, ``c.http.get(consul.callback.CB.json(), "/v1/agent/self",
    headers=c.prepare_headers())``.

Control (Python methods of ``ConsulCluster`` and ``fixtures.ConsulProcess``, and HTTP on
every agent's port; PUT or POST)
    ``set_node_health(node, status, output)`` - ``PUT /test/node/NODE/health?status=critical``
    (serfHealth: a dead node to everyone);
    ``restore_index(index=None)`` - ``PUT /test/restore-index[?index=N]`` (snapshot restore:
    every index drops to N, default half the current one; blocked queries answer at once);
    ``set_leader(present)`` - ``PUT /test/leader?present=false`` (500 ``No cluster leader``
    except ``?stale`` reads);
    ``stop_agent(node, mark_critical=True)`` - ``PUT /test/stop-agent/NODE[?critical=false]``
    (listener closed, connections dropped, serfHealth critical);
    ``start_agent(node)`` - ``PUT /test/start-agent/NODE`` (same port, serfHealth passing);
    ``state.reset()`` - ``PUT /test/reset`` (lose all state, index from 1);
    ``dump()`` - ``GET /test/state``.
    Whole server: ``stop()`` closes every agent, keeping the state (a process: SIGTERM,
    state saved to its state file); ``start(keep_state=True)`` reopens on the same ports,
    ``start(keep_state=False)`` with an empty catalog and the index restarted (regression).
"""

from .server import ConsulCluster

__all__ = ["ConsulCluster"]
