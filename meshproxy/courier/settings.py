"""Courier's imapd/pop3d settings as the start scripts export them, and what they imply.

``load(config)`` reads ``imapd`` + ``imapd-ssl`` and ``pop3d`` + ``pop3d-ssl`` from
``courier.config_dir`` (in the order the start scripts source them for the child shell) and
checks the values meshproxy itself acts on (``IMAP_UMASK``, ``IMAP_ULIMITD``).

The capability rules follow imapd's ``imapcapability()`` (courier-libs ``imap/capability.c``)
and were cross-checked against the installed imapd (tests/integration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meshproxy.config import Config
from meshproxy.courier.shell import read_shell_vars
from meshproxy.errors import ConfigError

SERVICE_FILES: Mapping[str, tuple[str, str]] = {
    "imap": ("imapd", "imapd-ssl"),
    "pop3": ("pop3d", "pop3d-ssl"),
}
DEFAULT_UMASK = 0o022
# Tokens owned by the login stage: meshproxy advertises its own AUTH= list and STARTTLS.
_LOGIN_STAGE_TOKENS = ("STARTTLS", "LOGINDISABLED")


def config_files(config: Config) -> dict[str, tuple[Path, ...]]:
    """The files read for each service, in sourcing order."""
    base = Path(config.courier.config_dir)
    return {
        service: tuple(base / name for name in names) for service, names in SERVICE_FILES.items()
    }


@dataclass(frozen=True)
class CourierSettings:
    """The exported variables of each service's configuration files."""

    imap_vars: Mapping[str, str] = field(default_factory=dict)
    pop3_vars: Mapping[str, str] = field(default_factory=dict)

    def vars_for(self, service: str) -> Mapping[str, str]:
        if service == "imap":
            return self.imap_vars
        if service == "pop3":
            return self.pop3_vars
        raise ValueError(f"unknown service {service!r}")

    def flag(self, service: str, name: str) -> bool:
        """Courier's ``atoi(getenv(name)) != 0``."""
        return atoi(self.vars_for(service).get(name, "")) != 0

    def imap_capabilities(self, *, tls: bool) -> tuple[str, ...]:
        return imap_capabilities(self.imap_vars, tls=tls)

    def pop3_auth_mechanisms(self, *, tls: bool) -> tuple[str, ...]:
        return pop3_auth_mechanisms(self.pop3_vars, tls=tls)

    def umask(self, service: str) -> int:
        """``umask $IMAP_UMASK`` of the imapd start scripts; pop3d inherits 022."""
        text = self.imap_vars.get("IMAP_UMASK", "") if service == "imap" else ""
        if not text:
            return DEFAULT_UMASK
        try:
            value = int(text, 8)
        except ValueError:
            raise ConfigError("IMAP_UMASK", f"{text!r} is not an octal umask") from None
        if not 0 <= value <= 0o777:
            raise ConfigError("IMAP_UMASK", f"{text!r} is out of range")
        return value

    def limit_as(self, service: str) -> int | None:
        """``ulimit -v $IMAP_ULIMITD`` (KiB) in bytes, or None; pop3d sets no limit."""
        text = self.imap_vars.get("IMAP_ULIMITD", "") if service == "imap" else ""
        if not text or text == "unlimited":
            return None
        if not text.isdigit():
            raise ConfigError("IMAP_ULIMITD", f"{text!r} is not a number of KiB")
        return int(text) * 1024


def load(config: Config) -> CourierSettings:
    """Read ``courier.config_dir``; files that do not exist contribute nothing."""
    base = Path(config.courier.config_dir)
    if not base.is_dir():
        raise ConfigError("courier.config_dir", f"{base} is not a directory")
    files = config_files(config)
    settings = CourierSettings(
        imap_vars=read_shell_vars(files["imap"]), pop3_vars=read_shell_vars(files["pop3"])
    )
    settings.umask("imap")
    settings.limit_as("imap")
    return settings


def imap_capabilities(variables: Mapping[str, str], *, tls: bool) -> tuple[str, ...]:
    """What imapd lists in CAPABILITY after login, minus the login stage's tokens.

    imapd (``imapcapability()``): ``IMAP_CAPABILITY_TLS`` if TLS and non-empty, else
    ``IMAP_CAPABILITY`` if non-empty, else ``IMAP4rev1``; ``SMAP_CAPABILITY`` (+ ``KEYWORDS``
    if ``IMAP_KEYWORDS``); ``ACL ACL2=UNION`` if ``IMAP_ACL``; ``ID`` if ``IMAP_ID_FIELDS`` is
    set at all (even empty); ``XCOURIEROUTBOX=INBOX<OUTBOX>``; ``XMAGICTRASH`` if
    ``IMAP_MOVE_EXPUNGE_TO_TRASH``; always ``ENABLE UTF8=ACCEPT``.  STARTTLS never appears
    after login.  ``AUTH=*``, ``STARTTLS`` and ``LOGINDISABLED`` are dropped: the pre-login
    stage is meshproxy's.  ``IMAP_TLS`` set in the files counts as TLS, as it does for imapd.
    """
    tls = tls or atoi(variables.get("IMAP_TLS", "")) != 0
    base = variables.get("IMAP_CAPABILITY_TLS", "") if tls else ""
    words = (base or variables.get("IMAP_CAPABILITY", "") or "IMAP4rev1").split()
    smap = variables.get("SMAP_CAPABILITY", "")
    if smap:
        words += smap.split()
        if atoi(variables.get("IMAP_KEYWORDS", "")):
            words.append("KEYWORDS")
    if atoi(variables.get("IMAP_ACL", "")):
        words += ["ACL", "ACL2=UNION"]
    if "IMAP_ID_FIELDS" in variables:
        words.append("ID")
    if variables.get("OUTBOX"):
        words.append("XCOURIEROUTBOX=INBOX" + variables["OUTBOX"])
    if atoi(variables.get("IMAP_MOVE_EXPUNGE_TO_TRASH", "")):
        words.append("XMAGICTRASH")
    words += ["ENABLE", "UTF8=ACCEPT"]
    return tuple(word for word in words if not _login_stage_token(word))


def _login_stage_token(word: str) -> bool:
    upper = word.upper()
    return upper.startswith("AUTH=") or upper in _LOGIN_STAGE_TOKENS


def pop3_auth_mechanisms(variables: Mapping[str, str], *, tls: bool) -> tuple[str, ...]:
    """Courier's ``SASL`` CAPA line: ``POP3AUTH_TLS`` if TLS and non-empty, else ``POP3AUTH``."""
    tls = tls or atoi(variables.get("POP3_TLS", "")) != 0
    value = variables.get("POP3AUTH_TLS", "") if tls else ""
    return tuple((value or variables.get("POP3AUTH", "")).split())


def atoi(text: str) -> int:
    """C ``atoi``: optional blanks and sign, then leading digits; anything else is 0."""
    stripped = text.lstrip(" \t\n\r\f\v")
    sign = -1 if stripped[:1] == "-" else 1
    if stripped[:1] in ("+", "-"):
        stripped = stripped[1:]
    digits = ""
    for char in stripped:
        if not "0" <= char <= "9":
            break
        digits += char
    return sign * int(digits) if digits else 0
