"""Dovecot from Debian's packages as a foreign IMAP/POP3 server for the mesh tests.

``dovecot-imapd`` / ``dovecot-pop3d`` conflict with Courier's packages in dpkg, so they are
never installed: ``apt-get download`` fetches the .debs (and the libraries they need that this
machine lacks), ``dpkg-deb -x`` unpacks them into ``CACHE`` (kept between runs), and the
binaries run from there.  Dovecot looks for its helpers, modules and ``doveconf`` under the
fixed paths ``/usr/lib/dovecot`` and ``/usr/bin``, so the server runs in a private mount
namespace (``unshare --mount``) where an overlay puts the unpacked ``usr`` over the real one;
nothing outside that namespace changes.

The server listens on ``FOREIGN_IP`` (127.0.0.5) with its own config, a passwd-file of test
users and Maildirs in the session's temporary directory; it runs in the foreground (``-F``)
as a child of the test process and is stopped with SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from integration.accounts import ensure_system_user
from integration.clients import LineClient

CACHE = Path("/var/cache/meshproxy-tests/dovecot")
PACKAGES = ("dovecot-core", "dovecot-imapd", "dovecot-pop3d")
USERS = ("mpm_dovecot", "mpm_dovenull", "mpm_dovemail")
READY_TIMEOUT = 20.0
APT = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=600"]


def _installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.endswith(" installed")


def _missing_libraries() -> list[str]:
    """Library packages Dovecot depends on that are not installed here."""
    result = subprocess.run(
        ["apt-cache", "depends", "--no-recommends", "--no-suggests", *PACKAGES],
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in result.stdout.splitlines():
        kind, _, name = line.strip().partition(": ")
        if kind in ("Depends", "PreDepends") and name.startswith("lib"):
            names.add(name.strip("<>"))
    return sorted(name for name in names if not _installed(name))


def unpacked() -> Path:
    """The unpacked tree (``<CACHE>/root``), downloaded and unpacked on first use."""
    root = CACHE / "root"
    stamp = CACHE / "complete"
    if stamp.exists() and (root / "usr/sbin/dovecot").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="meshproxy-dovecot-") as folder:
        os.chmod(folder, 0o777)  # apt-get download runs as _apt where it can
        packages = [*PACKAGES, *_missing_libraries()]
        subprocess.run(
            [*APT, "download", *packages],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        for deb in sorted(Path(folder).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=300)
    stamp.write_text(" ".join(packages) + "\n")
    return root


class Dovecot:
    """One private Dovecot on ``address`` (IMAP and POP3 on the given ports)."""

    def __init__(
        self, workdir: Path, address: str, imap_port: int, pop3_port: int, root: Path
    ) -> None:
        self.workdir = workdir
        self.address = address
        self.imap_port = imap_port
        self.pop3_port = pop3_port
        self.root = root
        self.log_path = workdir / "dovecot.log"
        self.passwd = workdir / "passwd"
        self.conf = workdir / "dovecot.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o755)  # Dovecot's auth process (mpm_dovecot) reads the passwd-file
        for user in USERS:
            ensure_system_user(user)
        self.mail = workdir / "mail"
        self.mail.mkdir(exist_ok=True)
        shutil.chown(self.mail, "mpm_dovemail", "mpm_dovemail")

    def set_users(self, users: Iterable[tuple[str, str]]) -> None:
        """passwd-file entries (login, clear password), stored as {PLAIN}."""
        text = "".join(f"{login}:{{PLAIN}}{password}::::::\n" for login, password in users)
        fd = os.open(self.passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
        shutil.chown(self.passwd, "mpm_dovecot", "mpm_dovecot")

    def _config(self) -> str:
        uid, gid = ensure_system_user("mpm_dovemail")
        # Dovecot 2.3 (Debian 12): plaintext logins without TLS need
        # disable_plaintext_auth = no (2.4 renamed it auth_allow_cleartext = yes).
        return f"""\
base_dir = {self.workdir}/run
state_dir = {self.workdir}/state
log_path = /dev/stderr
instance_name = meshproxy-tests-dovecot
listen = {self.address}
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = mpm_dovenull
default_internal_user = mpm_dovecot
default_internal_group = mpm_dovecot
first_valid_uid = 1
mail_location = maildir:{self.mail}/%u
passdb {{
  driver = passwd-file
  args = {self.passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""

    def start(self) -> None:
        for folder in ("run", "state"):
            (self.workdir / folder).mkdir(exist_ok=True)
        self.conf.write_text(self._config())
        script = (
            f"mount -t overlay overlay -o lowerdir={self.root}/usr:/usr /usr && "
            f"exec /usr/sbin/dovecot -F -c {self.conf}"
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for port, greeting in ((self.imap_port, b"* OK"), (self.pop3_port, b"+OK")):
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"dovecot exited {self.proc.returncode}:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"dovecot not ready on port {port}:\n{self.log()}")
                try:
                    with LineClient(self.address, port, timeout=2) as client:
                        if client.readline().startswith(greeting):
                            break
                except (OSError, TimeoutError, EOFError):
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
