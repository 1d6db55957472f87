"""Account records as every account source returns them.  No I/O.

``Options`` follows Courier's authoption.c: ``key=value,key2=value2,flag``; a lookup finds the
first entry whose name matches exactly (case-sensitive); a bare ``key`` has an empty value; a
value ends at the next comma; nothing is trimmed.  Integer options use ``atoi`` semantics plus
"t/T/y/Y" meaning 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SERVICES = ("imap", "pop3")


@dataclass(frozen=True)
class Options:
    """Courier account options, kept as the raw string plus parsed entries."""

    raw: str = ""

    @property
    def entries(self) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        for item in self.raw.split(","):
            if not item:
                continue
            name, _, value = item.partition("=")
            pairs.append((name, value))
        return tuple(pairs)

    def get(self, name: str) -> str | None:
        """The value of the first entry called ``name``, or None."""
        for key, value in self.entries:
            if key == name:
                return value
        return None

    def flag(self, name: str) -> bool:
        """Courier's integer option test: atoi(value) != 0, or a t/T/y/Y initial."""
        value = self.get(name)
        if value is None:
            return False
        if value == "":
            return False
        if value[0] in "tTyY":
            return True
        return _atoi(value) != 0

    def merged_with_defaults(self, defaults: str) -> Options:
        """authdaemonrc DEFAULTOPTIONS semantics: account values win, per key."""
        if not defaults:
            return self
        mine = {key for key, _ in self.entries}
        extra = [
            item for item in defaults.split(",") if item and item.partition("=")[0] not in mine
        ]
        return Options(",".join([self.raw, *extra]) if self.raw else ",".join(extra))


def _mailhost_items(raw: str) -> list[str]:
    """The first ``mailhost=`` entry's value and the ``=``-less items that follow it."""
    items = raw.split(",")
    for index, item in enumerate(items):
        name, _, value = item.partition("=")
        if name != "mailhost":
            continue
        hosts = [value]
        for extra in items[index + 1 :]:
            if "=" in extra:
                break
            hosts.append(extra)
        return hosts
    return []


def _atoi(text: str) -> int:
    digits = ""
    for index, char in enumerate(text.lstrip()):
        if char.isdigit() or (index == 0 and char in "+-"):
            digits += char
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Secrets:
    """What a source stores to check a password.

    Each mapping is keyed by service (``"imap"``, ``"pop3"``) with ``""`` for the generic
    value (userdb's ``systempw`` / ``hmac-md5pw``, an SQL crypt or clear column).  A
    service-specific value wins over the generic one, as in Courier's userdb.

    * ``hashed``: crypt(3) strings or ``{SCHEME}`` hashes, checked by ``auth.passwords.verify``.
    * ``clear``: clear-text passwords (SQL/LDAP clear fields).
    * ``hmac_md5``: Courier's precomputed CRAM-MD5 secret (hex of the HMAC-MD5 inner and outer
      states, as ``userdbpw -hmac-md5`` prints it).
    """

    hashed: Mapping[str, str] = field(default_factory=dict)
    clear: Mapping[str, str] = field(default_factory=dict)
    hmac_md5: Mapping[str, str] = field(default_factory=dict)

    def hashed_for(self, service: str) -> str | None:
        return _for_service(self.hashed, service)

    def clear_for(self, service: str) -> str | None:
        return _for_service(self.clear, service)

    def hmac_md5_for(self, service: str) -> str | None:
        return _for_service(self.hmac_md5, service)


def _for_service(values: Mapping[str, str], service: str) -> str | None:
    value = values.get(service)
    if value:
        return value
    return values.get("") or None


@dataclass(frozen=True)
class Account:
    """One account, as a source found it.

    ``login`` is the address the source returns (Courier's AUTHENTICATED / ADDRESS), which may
    differ from what the client typed.  ``maildir`` is None when the source gives none (the
    configured default, ``Maildir`` relative to home, applies).  ``system_user`` is set when the
    source names a system account (groups then come from ``initgroups``).
    """

    login: str
    uid: int
    gid: int
    home: str
    maildir: str | None = None
    options: Options = field(default_factory=Options)
    secrets: Secrets = field(default_factory=Secrets)
    system_user: str | None = None
    source: str = ""

    @property
    def mailhosts(self) -> tuple[str, ...]:
        """The hosts named by the ``mailhost`` option, in the order to try them.

        ``mailhost=a,b`` lists two hosts: Courier's option parser stops a value at the first
        comma, so the items that follow the ``mailhost`` entry without an ``=`` of their own
        continue its list (a Courier option is always written ``name=value``).  Spaces and
        ``|`` separate hosts too.
        """
        hosts = _mailhost_items(self.options.raw)
        return tuple(part for host in hosts for part in host.replace("|", " ").split() if part)

    def disabled_for(self, service: str, *, secure: bool) -> bool:
        """Courier's ``disable<service>`` and ``disableinsecure<service>`` options."""
        if self.options.flag(f"disable{service}"):
            return True
        return not secure and self.options.flag(f"disableinsecure{service}")
