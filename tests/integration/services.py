"""Private slapd, MariaDB and PostgreSQL instances for the account-source tests.

Each server runs from a temporary directory on a free loopback port, started by the test
session itself (nothing depends on system services).  Missing Debian packages are installed
with apt-get.  Readiness is a real client connection, polled with a bounded timeout.
``stop()`` / ``start()`` let fault tests take a server away and bring it back on the same
port with the same data.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import ldap3
import psycopg2
import pymysql

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LDAP_BASE = "dc=example,dc=test"
LDAP_ADMIN = f"cn=admin,{LDAP_BASE}"
ADMIN_PASSWORD = "admin-secret"
DB_NAME = "mail"
DB_USER = "courier"
DB_PASSWORD = "courier-secret"

_PACKAGES = {
    "slapd": ("slapd", "ldap-utils"),
    "mariadbd": ("mariadb-server",),
    "pg": ("postgresql",),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_packages(kind: str) -> None:
    """apt-get install the server when its programs are missing (stock Debian 12)."""
    present = {
        "slapd": shutil.which("slapd", path="/usr/sbin:/usr/bin") is not None,
        "mariadbd": shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is not None,
        "pg": bool(glob.glob("/usr/lib/postgresql/*/bin/postgres")),
    }[kind]
    if present:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q"]
    subprocess.run([*command, *_PACKAGES[kind]], check=True, env=env, stdout=subprocess.DEVNULL)


def wait_until(check: Callable[[], object], what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:  # any failure means "not yet"
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s: {last}")


class Server:
    """A server process started from ``workdir``; subclasses say how."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"meshproxy-{self.name}-"))
        os.chmod(self.workdir, 0o755)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "server.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def user(self) -> str | None:
        return None

    def check_ready(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user(),
                cwd=self.workdir,
                start_new_session=True,
            )
        wait_until(self._ready_while_running, f"{self.name} on port {self.port}")

    def _ready_while_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited {self.process.returncode}: {tail}")
        # A bare TCP connect first: client libraries may leak their socket when the server
        # is not listening yet.
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self.check_ready()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Postgres(Server):
    name = "postgres"
    stop_signal = signal.SIGINT

    def __init__(self) -> None:
        super().__init__()
        ensure_packages("pg")
        self.bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.data = self.workdir / "data"
        shutil.chown(self.workdir, "postgres", "postgres")
        subprocess.run(
            [
                f"{self.bindir}/initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            user="postgres",
            stdout=subprocess.DEVNULL,
            cwd=self.workdir,
        )

    def command(self) -> list[str]:
        return [
            f"{self.bindir}/postgres",
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.workdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=60",
        ]

    def user(self) -> str | None:
        return "postgres"

    def admin(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=2
        )
        connection.autocommit = True
        return connection

    def check_ready(self) -> None:
        self.admin().close()

    def create_database(self) -> None:
        with closing(self.admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE USER {DB_USER} PASSWORD %s", (DB_PASSWORD,))
            cursor.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")

    def connection_string(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={DB_USER} password={DB_PASSWORD} "
            f"dbname={DB_NAME}"
        )


class Mariadb(Server):
    name = "mariadb"

    def __init__(self) -> None:
        super().__init__()
        ensure_packages("mariadbd")
        self.data = self.workdir / "data"
        self.socket_path = self.workdir / "mysqld.sock"
        shutil.chown(self.workdir, "mysql", "mysql")
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )

    def command(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.data}",
            "--user=mysql",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--skip-log-bin",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            "--innodb-flush-log-at-trx-commit=0",
            "--max-connections=100",
            "--character-set-server=utf8mb4",
        ]

    def admin(self, database: str | None = None) -> pymysql.Connection:  # type: ignore[type-arg]
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            database=database,
            connect_timeout=2,
            autocommit=True,
            charset="utf8mb4",
        )

    def check_ready(self) -> None:
        self.admin().close()

    def create_database(self) -> None:
        with self.admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cursor.execute(f"CREATE USER '{DB_USER}'@'%%' IDENTIFIED BY %s", (DB_PASSWORD,))
            cursor.execute(f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'%'")


SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.7.1.1 NAME 'courierLogin'
    DESC 'login name, matched exactly' EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.7.1.2 NAME 'mailhost'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.7.1.3 NAME 'mailbox'
    EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.7.1.4 NAME 'clearPassword'
    EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
attributetype ( 1.3.6.1.4.1.99999.7.1.5 NAME 'disableimap'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.7.1.6 NAME 'disablepop3'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.7.1.7 NAME 'accountActive'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.7.2.1 NAME 'courierAccount' SUP top AUXILIARY
    MUST courierLogin
    MAY ( mailhost $ mailbox $ clearPassword $ disableimap $ disablepop3 $ accountActive ) )
"""


class Slapd(Server):
    name = "slapd"

    def __init__(self) -> None:
        super().__init__()
        ensure_packages("slapd")
        (self.workdir / "db").mkdir()
        (self.workdir / "courier-test.schema").write_text(SCHEMA)
        self.conf = self.workdir / "slapd.conf"
        self.conf.write_text(self._config())
        subprocess.run(
            ["slaptest", "-u", "-f", str(self.conf)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _config(self) -> str:
        schemas = ["core", "cosine", "nis", "inetorgperson"]
        includes = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in schemas)
        return (
            f"{includes}include {self.workdir}/courier-test.schema\n"
            f"pidfile {self.workdir}/slapd.pid\n"
            "moduleload back_mdb\n"
            "modulepath /usr/lib/ldap\n"
            "password-hash {SSHA}\n"
            "database mdb\n"
            f'suffix "{LDAP_BASE}"\n'
            f'rootdn "{LDAP_ADMIN}"\n'
            f"rootpw {ADMIN_PASSWORD}\n"
            f"directory {self.workdir}/db\n"
            "maxsize 268435456\n"
            "dbnosync\n"
            "index objectClass eq\nindex courierLogin eq\n"
            "access to attrs=userPassword,clearPassword by anonymous auth by * none\n"
            "access to * by * read\n"
        )

    def command(self) -> list[str]:
        return ["slapd", "-f", str(self.conf), "-h", f"ldap://127.0.0.1:{self.port}/", "-d", "0"]

    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.uri(), connect_timeout=2, get_info=ldap3.NONE)
        return ldap3.Connection(
            server,
            LDAP_ADMIN,
            ADMIN_PASSWORD,
            auto_bind=True,
            receive_timeout=10,
            raise_exceptions=True,
        )

    def check_ready(self) -> None:
        self.admin().unbind()

    def create_base(self) -> None:
        connection = self.admin()
        connection.add(LDAP_BASE, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
        connection.unbind()
