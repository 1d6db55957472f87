"""Run the fake Consul as a process (see the package docstring for the options).

    python -m tests.fakeconsul --nodes mx2=127.0.0.2,mx3=127.0.0.3 --port 8500 \\
        [--bind node|ADDRESS] [--agent-port mx2=18500 ...] [--acl-token SECRET[=RULES] ...] \\
        [--acl-anonymous RULES] [--acl-default-token SECRET] [--tcp-immediate] \\
        [--reap-scale 0.01] [--no-leader] [--state-file PATH]

When every agent listens it prints one line, then runs until SIGTERM/SIGINT (which saves
the state to --state-file, if given, and exits 0):

    FAKECONSUL READY {"pid": 1234, "agents": {"mx2": "http://127.0.0.2:8500", ...}}
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from types import FrameType

from .server import ConsulCluster

READY = "FAKECONSUL READY"


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = item.partition("=")
        out[name] = value or "127.0.0.1"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.fakeconsul",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", default="mx1=127.0.0.1", help="NAME=ADDRESS,... (node Address)")
    p.add_argument("--port", type=int, default=0, help="agent port (0: ephemeral)")
    p.add_argument("--bind", default="node", help="'node' (each on its Address) or an address")
    p.add_argument("--agent-port", action="append", default=[], help="NAME=PORT override")
    p.add_argument("--datacenter", default="dc1")
    p.add_argument(
        "--acl-token",
        action="append",
        default=None,
        help="SECRET (management) or SECRET=RULES; turns ACLs on",
    )
    p.add_argument("--acl-anonymous", default="", help="rules of the anonymous token")
    p.add_argument("--acl-default-token", default=None)
    p.add_argument("--tcp-immediate", action="store_true", help="first TCP probe at once")
    p.add_argument("--reap-scale", type=float, default=1.0)
    p.add_argument("--no-leader", action="store_true")
    p.add_argument("--state-file", default=None, help="load at start, save at SIGTERM")
    args = p.parse_args(argv)

    tokens: dict[str, str | None] | None = None
    if args.acl_token is not None:
        tokens = {}
        for spec in args.acl_token:
            secret, sep, rules = spec.partition("=")
            tokens[secret] = rules if sep else None
    ports = {k: int(v) for item in args.agent_port for k, v in _pairs(item).items()}
    cluster = ConsulCluster(
        _pairs(args.nodes),
        bind=args.bind,
        port=args.port,
        ports=ports,
        datacenter=args.datacenter,
        acl_tokens=tokens,
        acl_anonymous_rules=args.acl_anonymous,
        acl_default_token=args.acl_default_token,
        tcp_immediate=args.tcp_immediate,
        reap_scale=args.reap_scale,
        leader=not args.no_leader,
        state_file=args.state_file,
    )
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cluster.start()
    print(f"{READY} {json.dumps({'pid': os.getpid(), 'agents': cluster.urls})}", flush=True)
    while not done.wait(0.2):
        pass
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
