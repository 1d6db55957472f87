"""Lookups are cooperative under gevent: a slow server never stalls other sessions.

The check runs in a subprocess that monkey-patches first, as the daemon's entry point does
(this test process must not be patched).  There one lookup waits two seconds in the server
(``SLEEP()`` in MariaDB, ``pg_sleep`` in PostgreSQL, both from a custom ``select_clause``; for
LDAP a directory that accepts and never answers) while twenty other lookups must all finish
promptly, before the slow one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .source_accounts import ACCOUNTS, ldap_config, mysql_config, pgsql_config, servers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLOW_LOGIN = "user5@example.test"
COLUMNS = "SELECT id, crypt, clear, uid, gid, home, maildir, '', '', options FROM accounts"
WHERE = "WHERE id = '$(local_part)@$(domain)' AND active = 1"
SLOW_SELECT = {
    "mysql": f"{COLUMNS} {WHERE} AND IF('$(local_part)' = 'user5', SLEEP(2), 0) = 0",
    "pgsql": f"{COLUMNS} {WHERE} AND (CASE WHEN '$(local_part)' = 'user5' "
    "THEN (SELECT true FROM pg_sleep(2)) ELSE true END)",
}

CHILD = """
from gevent import monkey
monkey.patch_all()

import json, sys, time
import gevent
from meshproxy import sourceconfig
from meshproxy.auth.ldap import LdapSource
from meshproxy.auth.mysql import MysqlSource
from meshproxy.auth.pgsql import PgsqlSource, set_wait_callback
from meshproxy.io.pgwait import make_wait_callback

job = json.loads(sys.argv[1])
set_wait_callback(make_wait_callback(10.0))
kinds = {"ldap": (LdapSource, sourceconfig.LdapConfig),
         "mysql": (MysqlSource, sourceconfig.MysqlConfig),
         "pgsql": (PgsqlSource, sourceconfig.PgsqlConfig)}
cls, config_cls = kinds[job["kind"]]
fast_source = cls(config_cls(**job["fast"]))
slow_source = cls(config_cls(**job["slow"]))

def timed(source, login):
    started = time.monotonic()
    try:
        found = source.lookup(login) is not None
    except Exception as exc:
        found = type(exc).__name__
    return {"found": found, "start": started, "end": time.monotonic()}

slow = gevent.spawn(timed, slow_source, job["slow_login"])
gevent.sleep(0.3)
fast = [gevent.spawn(timed, fast_source, login) for login in job["logins"]]
gevent.joinall(fast + [slow], timeout=30)
print(json.dumps({"slow": slow.value, "fast": [g.value for g in fast]}))
"""


@pytest.fixture
def silent_directory() -> Iterator[str]:
    """An LDAP URI whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"ldap://127.0.0.1:{listener.getsockname()[1]}"


def job_for(kind: str, silent_uri: str) -> dict[str, Any]:
    running = servers()
    logins = [account.login for account in ACCOUNTS if account.active][10:30]
    if kind == "ldap":
        fast: Any = ldap_config(running.slapd)
        slow: Any = dataclasses.replace(fast, uri=silent_uri, timeout=2.0)
    elif kind == "mysql":
        fast = mysql_config(running.mariadb)
        slow = dataclasses.replace(fast, select_clause=SLOW_SELECT[kind])
    else:
        fast = pgsql_config(running.postgres)
        slow = dataclasses.replace(fast, select_clause=SLOW_SELECT[kind])
    return {
        "kind": kind,
        "fast": dataclasses.asdict(fast),
        "slow": dataclasses.asdict(slow),
        "slow_login": SLOW_LOGIN,
        "logins": logins,
    }


@pytest.mark.parametrize("kind", ["ldap", "mysql", "pgsql"])
def test_slow_lookup_does_not_stall_twenty_others(kind: str, silent_directory: str) -> None:
    job = job_for(kind, silent_directory)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    slow, fast = result["slow"], result["fast"]
    slow_seconds = slow["end"] - slow["start"]
    assert slow_seconds >= 1.9
    assert slow["found"] == (True if kind != "ldap" else "BackendUnavailable")
    assert [entry["found"] for entry in fast] == [True] * 20
    assert max(entry["end"] for entry in fast) < slow["end"] - 1.0
    assert max(entry["end"] - entry["start"] for entry in fast) < 1.0
