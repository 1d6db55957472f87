"""Fixtures of the mesh tests: meshes of ``meshproxy serve`` processes, Dovecot, PostgreSQL.

* ``directory``: parametrised over how the nodes find each other, ``static`` (the embedded
  directory, ``[mesh.peers]``) and ``consul`` (``[mesh] consul``: each node its own agent of
  an in-process fake Consul, see ``consul_nodes.py``).  Every fixture below that builds a
  mesh, and every module fixture that asks for ``directory``, runs in both; the test ids
  carry the mode (``test_x[userdb-static]``, ``test_y[consul]``).
* ``mesh``: parametrised over the account source, ``userdb`` and ``pgsql``: three nodes
  mx2/mx3/mx4 on 127.0.0.2/3/4 (same ports), started once per session and directory, with
  accounts ``a2``, ``a3``, ``a4`` homed on each node (userdb also ``cram3``, CRAM-MD5 from
  ``hmac-md5pw`` only, and ``mbsync4``).  ``userdb_mesh`` / ``pgsql_mesh`` name one of them.
* ``mesh_factory``: builds and starts further meshes (a test module's own configuration),
  ``directory="static"`` unless told; ``mesh_factory.stop(mesh)`` or the end of the session
  stops them.  A Consul mesh is started once every node sees every node passing.
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
from .consul_nodes import build_consul_mesh
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
        *,
        directory: str = "static",
        **kwargs: Any,
    ) -> Mesh:
        """A started mesh; ``kwargs`` as ``build_mesh``'s (with ``consul``: a ``cluster``)."""
        build = {"static": build_mesh, "consul": build_consul_mesh}[directory]
        mesh = build(folder, accounts, source, self.tls.section(), self.tls.ca, **kwargs)
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


DIRECTORIES = ("static", "consul")


@pytest.fixture(scope="session", params=DIRECTORIES)
def directory(request: pytest.FixtureRequest) -> str:
    """How the nodes find each other: ``static`` ([mesh.peers]) or ``consul``."""
    return str(request.param)


@pytest.fixture(scope="session")
def userdb_mesh(mesh_factory: MeshFactory, directory: str) -> Mesh:
    folder = mesh_factory.folder(f"userdb-{directory}")
    accounts = standard_accounts(userdb=True)
    materialise(accounts.values(), folder)
    source = userdb_source(folder / "userdb", accounts.values())
    return mesh_factory.start(folder, accounts, source, directory=directory)


# --- PostgreSQL -------------------------------------------------------------------------------

_TABLE = """CREATE TABLE {table} (
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


def load_accounts(
    server: services.Postgres, accounts: Mapping[str, MeshAccount], table: str
) -> None:
    """``table`` (one per mesh: the meshes of both directories run side by side)."""
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
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(_TABLE.format(table=table))
        cursor.executemany(
            f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows
        )
        cursor.execute(f"GRANT SELECT ON {table} TO {services.DB_USER}")


def pgsql_source(server: services.Postgres, table: str) -> dict[str, Any]:
    return {
        "source": "pgsql",
        "pgsql": {
            "connection": server.connection_string(),
            "user_table": table,
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
def pgsql_mesh(mesh_factory: MeshFactory, postgres: services.Postgres, directory: str) -> Mesh:
    folder = mesh_factory.folder(f"pgsql-{directory}")
    accounts = standard_accounts(userdb=False)
    materialise(accounts.values(), folder)
    table = f"accounts_{directory}"
    load_accounts(postgres, accounts, table)
    source = pgsql_source(postgres, table)
    return mesh_factory.start(folder, accounts, source, directory=directory)


@pytest.fixture(scope="session", params=["userdb", "pgsql"])
def mesh(request: pytest.FixtureRequest, directory: str) -> Mesh:
    """The session mesh of each account source in turn, in each directory mode (``directory``
    is named here so that pytest parametrises over it: the lookup below is dynamic)."""
    return request.getfixturevalue(f"{request.param}_mesh")  # type: ignore[no-any-return]


# --- Dovecot ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot_root() -> Path:
    return dovecot_module.unpacked()


MakeDovecot = Callable[..., dovecot_module.Dovecot]


__all__ = ["DOMAIN", "MeshFactory", "MeshTls"]
