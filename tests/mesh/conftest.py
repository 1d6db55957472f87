"""Fixtures of the mesh tests: meshes of ``meshproxy serve`` processes, Dovecot, PostgreSQL.

* ``mesh``: parametrised over the account source, ``userdb`` and ``pgsql``: three nodes
  mx2/mx3/mx4 on 127.0.0.2/3/4 (same ports), started once per session, with accounts
  ``a2``, ``a3``, ``a4`` homed on each node (userdb also ``cram3``, CRAM-MD5 from
  ``hmac-md5pw`` only, and ``mbsync4``).  ``userdb_mesh`` / ``pgsql_mesh`` name one of them.
* ``mesh_factory``: builds and starts further meshes (a test module's own configuration);
  ``mesh_factory.stop(mesh)`` or the end of the session stops them.
* ``mesh_tls``: a trustme CA and one certificate for every node name and address.
* ``dovecot_root``: Dovecot unpacked from Debian's packages (cached, see ``dovecot.py``).

Every node's log is checked when it stops: no traceback, no password of its accounts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from integration import services
from integration.accounts import hash_password

from . import dovecot as dovecot_module
from .nodes import (
    DOMAIN,
    FOREIGN_IP,
    NODES,
    Mesh,
    MeshAccount,
    build_mesh,
    materialise,
    mesh_account,
    userdb_source,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mesh: several meshproxy nodes as separate processes")


@dataclass(frozen=True)
class MeshTls:
    ca: Path
    cert: Path
    key: Path

    def section(self) -> dict[str, str]:
        return {"cert": str(self.cert), "key": str(self.key)}


@pytest.fixture(scope="session")
def mesh_root() -> Iterator[Path]:
    assert os.geteuid() == 0, "mesh tests run as root (system users, Courier, Dovecot)"
    path = Path(tempfile.mkdtemp(prefix="meshproxy-mesh-"))
    path.chmod(0o755)
    yield path
    if os.environ.get("MESHPROXY_TEST_KEEP"):
        print(f"\nkept the mesh test directory {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def mesh_tls(mesh_root: Path) -> MeshTls:
    authority = trustme.CA()
    names = [*NODES, *NODES.values(), FOREIGN_IP, "localhost"]
    server = authority.issue_cert(*names, common_name="mesh.test")
    folder = mesh_root / "tls"
    folder.mkdir()
    tls = MeshTls(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    authority.cert_pem.write_to_path(str(tls.ca))
    server.private_key_pem.write_to_path(str(tls.key))
    tls.key.chmod(0o600)
    with open(tls.cert, "wb") as stream:
        for blob in server.cert_chain_pems:
            stream.write(blob.bytes())
    return tls


class MeshFactory:
    """Builds, starts and stops meshes under one root."""

    def __init__(self, root: Path, tls: MeshTls) -> None:
        self.root = root
        self.tls = tls
        self.count = 0
        self.running: list[Mesh] = []

    def folder(self, name: str) -> Path:
        self.count += 1
        path = self.root / f"{self.count:02d}-{name}"
        path.mkdir(parents=True)
        path.chmod(0o755)
        return path

    def start(
        self,
        folder: Path,
        accounts: Mapping[str, MeshAccount],
        source: Mapping[str, Any],
        **kwargs: Any,
    ) -> Mesh:
        mesh = build_mesh(folder, accounts, source, self.tls.section(), self.tls.ca, **kwargs)
        self.running.append(mesh)
        mesh.start()
        return mesh

    def stop(self, mesh: Mesh) -> None:
        if mesh in self.running:
            self.running.remove(mesh)
        mesh.stop()


@pytest.fixture(scope="session")
def mesh_factory(mesh_root: Path, mesh_tls: MeshTls) -> Iterator[MeshFactory]:
    factory = MeshFactory(mesh_root, mesh_tls)
    yield factory
    for mesh in factory.running:  # every node stops before any log is judged
        for node in mesh:
            node.stop(check=False)
    for mesh in list(factory.running):
        factory.stop(mesh)


def standard_accounts(*, userdb: bool) -> dict[str, MeshAccount]:
    table = {f"a{name[2:]}": mesh_account(f"a{name[2:]}", name) for name in NODES}
    if userdb:
        table["cram3"] = mesh_account("cram3", "mx3", cram=True)
        table["mbsync4"] = mesh_account("mbsync4", "mx4")
    return table


@pytest.fixture(scope="session")
def userdb_mesh(mesh_factory: MeshFactory) -> Mesh:
    folder = mesh_factory.folder("userdb")
    accounts = standard_accounts(userdb=True)
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    return mesh_factory.start(folder, accounts, source)


# --- PostgreSQL -------------------------------------------------------------------------------

_TABLE = """CREATE TABLE accounts (
    id VARCHAR(200) NOT NULL PRIMARY KEY, crypt VARCHAR(255), clear VARCHAR(255),
    uid INTEGER, gid INTEGER, home VARCHAR(255), maildir VARCHAR(255),
    mailhost VARCHAR(255), options VARCHAR(255), active INTEGER NOT NULL)"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[services.Postgres]:
    server = services.Postgres()
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.destroy()


def load_accounts(server: services.Postgres, accounts: Mapping[str, MeshAccount]) -> None:
    rows = [
        (
            account.login,
            hash_password(account.scheme, account.password),
            None,
            account.uid,
            account.gid,
            str(account.home),
            None,
            account.mailhost,
            None,
            1,
        )
        for account in accounts.values()
    ]
    with closing(server.admin(services.DB_NAME)) as connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS accounts")
        cursor.execute(_TABLE)
        cursor.executemany(
            "INSERT INTO accounts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows
        )
        cursor.execute(f"GRANT SELECT ON accounts TO {services.DB_USER}")


def pgsql_source(server: services.Postgres) -> dict[str, Any]:
    return {
        "source": "pgsql",
        "pgsql": {
            "connection": server.connection_string(),
            "user_table": "accounts",
            "crypt_pwfield": "crypt",
            "clear_pwfield": "clear",
            "maildir_field": "maildir",
            "auxoptions_field": "concat_ws(',', options, 'mailhost=' || mailhost)",
            "where_clause": "active = 1",
            "connect_timeout": 2.0,
            "query_timeout": 5.0,
        },
    }


@pytest.fixture(scope="session")
def pgsql_mesh(mesh_factory: MeshFactory, postgres: services.Postgres) -> Mesh:
    folder = mesh_factory.folder("pgsql")
    accounts = standard_accounts(userdb=False)
    materialise(accounts.values(), folder)
    load_accounts(postgres, accounts)
    return mesh_factory.start(folder, accounts, pgsql_source(postgres))


@pytest.fixture(scope="session", params=["userdb", "pgsql"])
def mesh(request: pytest.FixtureRequest) -> Mesh:
    """The session mesh of each account source in turn."""
    return request.getfixturevalue(f"{request.param}_mesh")  # type: ignore[no-any-return]


# --- Dovecot ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot_root() -> Path:
    return dovecot_module.unpacked()


MakeDovecot = Callable[..., dovecot_module.Dovecot]


__all__ = ["DOMAIN", "MeshFactory", "MeshTls"]
