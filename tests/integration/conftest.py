"""Session fixtures for the integration tests: accounts, certificates, meshproxy daemons.

* ``accounts``: ``{key: Account}`` (see ``accounts.py``); system users ``mpt_<key>``, homes and
  Maildirs under a fresh session directory, one userdb text file.
* ``tls_files``: a trustme CA and a server certificate for 127.0.0.1/localhost.
* ``daemon``: one meshproxy for the whole session (plain + implicit-TLS listeners for IMAP and
  POP3, TLS available but not required, failure_delay 0.2 s, Debian's /etc/courier).
* ``meshproxy_daemon``: a factory for per-test daemons, ``meshproxy_daemon({"tls":
  {"required": True}})``; they are stopped (SIGTERM) when the test ends.
* ``daemon_factory``: the session-wide factory, for module-scoped daemons.
* ``courier_config``: copies Debian's Courier config files to a temporary directory with some
  variables changed, for ``[courier] config_dir``.

Every daemon's log is checked when it stops: no "Traceback", and no test password in it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from .accounts import (
    EXTRA_SECRETS,
    NODE_NAME,
    Account,
    build_accounts,
    materialise,
    write_userdb,
)
from .daemon import Daemon, DaemonFactory

COURIER_DIR = Path("/etc/courier")
COURIER_FILES = ("imapd", "imapd-ssl", "pop3d", "pop3d-ssl")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # CA certificate (PEM) for clients: curl --cacert, mbsync CertificateFile
    cert: Path  # server certificate chain
    key: Path  # server private key
    authority: trustme.CA


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    """A world-traversable temporary directory (test users must reach their homes)."""
    assert os.geteuid() == 0, "integration tests run as root (system users, Courier)"
    path = Path(tempfile.mkdtemp(prefix="meshproxy-it-"))
    path.chmod(0o755)
    yield path
    if os.environ.get("MESHPROXY_TEST_KEEP"):
        print(f"\nkept the integration test directory {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def accounts(session_dir: Path) -> dict[str, Account]:
    table = build_accounts()
    homes = session_dir / "home"
    homes.mkdir()
    homes.chmod(0o755)
    materialise(table, homes)
    write_userdb(session_dir / "userdb", table.values())
    return table


@pytest.fixture(scope="session")
def userdb_path(accounts: dict[str, Account], session_dir: Path) -> Path:
    return session_dir / "userdb"


def all_secrets(accounts: Mapping[str, Account]) -> list[str]:
    """Every password a test may have typed (account passwords and registered wrong ones)."""
    values = [secret for account in accounts.values() for secret in account.secrets()]
    return values + list(EXTRA_SECRETS)


@pytest.fixture(scope="session")
def tls_files(session_dir: Path) -> TlsFiles:
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost", common_name="localhost")
    folder = session_dir / "tls"
    folder.mkdir()
    ca = folder / "ca.pem"
    cert = folder / "server.pem"
    key = folder / "server.key"
    authority.cert_pem.write_to_path(str(ca))
    server.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    with open(cert, "wb") as stream:
        for blob in server.cert_chain_pems:
            stream.write(blob.bytes())
    return TlsFiles(ca=ca, cert=cert, key=key, authority=authority)


def base_config(userdb: Path, tls: TlsFiles) -> dict[str, Any]:
    """The default test config; listen/tls_listen of None get free ports."""
    mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]
    return {
        "node": {"name": NODE_NAME},
        "imap": {"listen": None, "tls_listen": None, "sasl_mechanisms": mechanisms},
        "pop3": {"listen": None, "tls_listen": None, "sasl_mechanisms": mechanisms},
        "tls": {"cert": str(tls.cert), "key": str(tls.key), "required": False},
        "courier": {"config_dir": str(COURIER_DIR)},
        "auth": {"source": "userdb", "failure_delay": 0.2, "userdb": {"path": str(userdb)}},
        "limits": {"login_timeout": 30.0},
        "log": {"level": "INFO"},
    }


@pytest.fixture(scope="session")
def daemon_factory(
    session_dir: Path, userdb_path: Path, tls_files: TlsFiles, accounts: dict[str, Account]
) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(
        session_dir / "daemons", base_config(userdb_path, tls_files), tls_files.ca
    )
    yield factory
    leftovers = list(factory.running)
    for daemon in leftovers:
        factory.stop(daemon, all_secrets(accounts))


@pytest.fixture(scope="session")
def daemon(daemon_factory: DaemonFactory, accounts: dict[str, Account]) -> Iterator[Daemon]:
    """The shared daemon: TLS available (not required), small failure delay."""
    instance = daemon_factory.start()
    yield instance
    daemon_factory.stop(instance, all_secrets(accounts))


StartDaemon = Callable[..., Daemon]


@pytest.fixture
def meshproxy_daemon(
    daemon_factory: DaemonFactory, accounts: dict[str, Account]
) -> Iterator[StartDaemon]:
    """``meshproxy_daemon(overrides)`` starts a daemon stopped at the end of the test."""
    started: list[Daemon] = []

    def start(overrides: Mapping[str, Any] | None = None) -> Daemon:
        instance = daemon_factory.start(overrides)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        daemon_factory.stop(instance, all_secrets(accounts))


def write_courier_config(folder: Path, changes: Mapping[str, str]) -> Path:
    """Copy Debian's Courier files into ``folder`` with ``VAR=value`` lines replaced.

    Values are written as given (quote them as sh needs).  A variable found in none of the
    files is appended to ``imapd`` (or ``pop3d`` when it starts with POP3).
    """
    folder.mkdir(parents=True)
    texts = {name: (COURIER_DIR / name).read_text() for name in COURIER_FILES}
    for var, value in changes.items():
        pattern = re.compile(rf"^{re.escape(var)}=.*$", re.MULTILINE)
        found = False
        for name, text in texts.items():
            if pattern.search(text):
                texts[name] = pattern.sub(lambda _m, v=var, val=value: f"{v}={val}", text)
                found = True
        if not found:
            target = "pop3d" if var.startswith("POP3") else "imapd"
            texts[target] += f"\n{var}={value}\n"
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="session")
def courier_config(session_dir: Path) -> Callable[[Mapping[str, str]], Path]:
    """``courier_config({"IMAP_IDLE_TIMEOUT": "2"})`` -> a config_dir path."""
    counter = iter(range(1, 1_000_000))

    def make(changes: Mapping[str, str]) -> Path:
        return write_courier_config(session_dir / f"courier{next(counter)}", changes)

    return make
