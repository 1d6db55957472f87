"""The LDAP account source (Courier's authldap), through ldap3.

ldap3 is pure Python on the standard socket module: under gevent's monkey patching it is
cooperative as it is.  The lookup follows authldaplib.cpp:

* filter ``(&<LDAP_FILTER>(<LDAP_MAIL>=<login>[@LDAP_DOMAIN]))``, the login escaped as RFC 4515
  wants (``\\2a`` for ``*`` ...), searched in the subtree of ``basedn``; exactly one entry
  counts, none or several mean "no such user";
* home = ``mailroot/`` + the home attribute; uid/gid from their attributes or the global
  values; a uid or gid of 0 is refused as a source failure (authlib fails temporarily);
* a clear-password attribute wins over the crypt one (authldap checks the clear one first);
* ``auxoptions`` (``attr=option,...``) builds the options from the entry's first values;
* ADDRESS is the login as the client typed it.

With ``authbind`` the password is checked by binding as the entry's DN
(``verify_password``); the DN is never built from the login, it comes from the search.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth import sql
from meshproxy.auth.authlibrc import resolve_gid, resolve_uid
from meshproxy.auth.base import BackendUnavailable, SingleSource
from meshproxy.auth.pool import Driver, Pool
from meshproxy.config import Config
from meshproxy.errors import ConfigError
from meshproxy.sourceconfig import LdapConfig, check_ldap, key_of

log = logging.getLogger(__name__)

SOURCE_NAME = "ldap"
_SUCCESS, _SIZE_LIMIT, _NO_SUCH_OBJECT = 0, 4, 32
_Deref = Literal["NEVER", "SEARCH", "FINDING_BASE", "ALWAYS"]
_DEREF: dict[str, _Deref] = {
    "": ldap3.DEREF_NEVER,
    "never": ldap3.DEREF_NEVER,
    "searching": ldap3.DEREF_SEARCH,
    "finding": ldap3.DEREF_BASE,
    "always": ldap3.DEREF_ALWAYS,
}
_DN_CACHE_SIZE = 4096


class LdapResultError(LDAPException):
    """The server answered with an error code where success was needed."""


@dataclass(frozen=True)
class Entry:
    dn: str
    attributes: Mapping[str, Sequence[bytes]]
    """Attribute name in lower case -> values."""

    def first(self, name: str) -> str:
        values = self.attributes.get(name.lower()) if name else None
        if not values:
            return ""
        if len(values) > 1:
            log.warning("ldap: %s has %d values of %s; using the first", self.dn, len(values), name)
        return values[0].decode("utf-8", "surrogateescape")


def search_value(config: LdapConfig, login: str) -> str:
    """The value of the login attribute that ``login`` names (``LDAP_DOMAIN`` appended)."""
    return login if "@" in login or not config.domain else f"{login}@{config.domain}"


def search_filter(config: LdapConfig, login: str) -> str:
    """authldap's filter for ``login``; the login is escaped (RFC 4515), the rest is config."""
    match = f"({config.mail}={escape_filter_chars(search_value(config, login))})"
    return f"(&{config.filter}{match})" if config.filter else match


def parse_auxoptions(text: str) -> tuple[tuple[str, str], ...]:
    """``attr=option,attr2`` -> ((attr, option), (attr2, attr2)); empty items skipped."""
    pairs = []
    for item in text.split(","):
        if not item:
            continue
        attribute, _, option = item.partition("=")
        pairs.append((attribute, option or attribute))
    return tuple(pairs)


class LdapSource(SingleSource):
    """Looks accounts up in an LDAP directory, as authldap does."""

    def __init__(self, config: LdapConfig, *, origin: str = "auth.ldap") -> None:
        check_ldap(config, origin)
        self.config = config
        self.uris = tuple(part for part in config.uri.replace(",", " ").split() if part)
        self.auxoptions = parse_auxoptions(config.auxoptions)
        try:
            self.glob_uid = resolve_uid(config.glob_uid)
            self.glob_gid = resolve_gid(config.glob_gid)
        except ConfigError as exc:
            detail = exc.text.removeprefix(f"{exc.key}: ")
            raise ConfigError(key_of(config, origin, exc.key), detail) from None
        self._dns: dict[str, str] = {}
        driver: Driver[ldap3.Connection] = Driver(
            name=f"ldap {' '.join(self.uris)}",
            connect=self._connect_search,
            close=_unbind,
            errors=(LDAPException, OSError),
            is_connection_error=_is_connection_error,
            is_timeout=_is_timeout,
            describe=_describe,
        )
        self.pool = Pool(driver, size=config.pool_size, wait=config.timeout)

    @classmethod
    def from_config(cls, config: Config) -> LdapSource:
        section = getattr(config.auth, SOURCE_NAME, None)
        if not isinstance(section, LdapConfig):
            section = LdapConfig()
        return cls(section)

    @property
    def authbind(self) -> bool:
        return self.config.authbind

    def lookup(self, login: str, service: str = "") -> Account | None:
        """The account for ``login``; None if there is none.  Raises BackendUnavailable."""
        del service  # authldap's query does not depend on the service
        if not sql.usable_login(login):
            return None
        entry = self._find(login)
        if entry is None:
            return None
        self._remember_dn(login, entry.dn)
        return self._account(login, entry)

    def verify_password(self, account: Account, password: str) -> bool | None:
        """With ``authbind``: True if binding as the account's DN with ``password`` works.

        None without ``authbind``: the stored secrets decide.  Raises BackendUnavailable when
        the server cannot be reached.
        """
        if not self.config.authbind:
            return None
        if not password or "\x00" in password:
            return False
        dn = self._dns.get(account.login)
        if dn is None:
            entry = self._find(account.login)
            if entry is None:
                return False
            dn = entry.dn
        return self._bind_as(dn, password)

    def close(self) -> None:
        self.pool.close()

    def _find(self, login: str) -> Entry | None:
        query = search_filter(self.config, login)
        entries = self.pool.run(lambda connection: self._search(connection, query))
        if len(entries) != 1:
            if entries:
                log.warning("ldap: %d entries match %s; refusing", len(entries), query)
            return None
        entry = entries[0]
        return entry if self._names_exactly(entry, login) else None

    def _names_exactly(self, entry: Entry, login: str) -> bool:
        """The server's matching rule may ignore spaces or fold look-alike characters
        (caseExactMatch does both): only an entry whose login attribute holds this value, up to
        letter case (``mail`` is case-insensitive in the standard schema), is the account."""
        wanted = search_value(self.config, login).casefold()
        values = entry.attributes.get(self.config.mail.lower(), ())
        return any(value.decode("utf-8", "replace").casefold() == wanted for value in values)

    def _search(self, connection: ldap3.Connection, query: str) -> list[Entry]:
        connection.search(
            search_base=self.config.basedn,
            search_filter=query,
            search_scope=ldap3.SUBTREE,
            dereference_aliases=_DEREF[self.config.deref.lower()],
            attributes=self._attributes() or [ldap3.NO_ATTRIBUTES],
            size_limit=2,
            time_limit=max(1, round(self.config.timeout)),
        )
        code = connection.result.get("result") if connection.result else None
        if code not in (_SUCCESS, _SIZE_LIMIT, _NO_SUCH_OBJECT):
            raise LdapResultError(f"search failed: {connection.result.get('description')}")
        return [_entry(item) for item in connection.response or () if _is_entry(item)]

    def _attributes(self) -> list[str]:
        config = self.config
        names = [config.mail, config.homedir, config.maildir, config.clearpw, config.cryptpw]
        names += [config.uid, config.gid, *(attribute for attribute, _ in self.auxoptions)]
        return sorted({name for name in names if name})

    def _account(self, login: str, entry: Entry) -> Account:
        config = self.config
        home = entry.first(config.homedir)
        if home and config.mailroot:
            home = f"{config.mailroot}/{home}"
        if not home:
            raise BackendUnavailable(f"ldap: {entry.dn} has no {config.homedir}")
        clear, crypt = entry.first(config.clearpw), entry.first(config.cryptpw)
        return Account(
            login=login,
            uid=self._id(entry, config.uid, self.glob_uid, "uid"),
            gid=self._id(entry, config.gid, self.glob_gid, "gid"),
            home=home,
            maildir=entry.first(config.maildir) or None,
            options=Options(self._options(entry)),
            secrets=Secrets(
                clear={"": clear} if clear else {},
                hashed={"": crypt} if crypt and not clear else {},
            ),
            source=SOURCE_NAME,
        )

    def _id(self, entry: Entry, attribute: str, default: int | None, what: str) -> int:
        number = _leading_int(entry.first(attribute)) if attribute else None
        if number is None:
            number = default
        if not number:
            raise BackendUnavailable(f"ldap: {entry.dn}: {what} 0 or missing is not permitted")
        return number

    def _options(self, entry: Entry) -> str:
        items = []
        for attribute, option in self.auxoptions:
            value = entry.first(attribute)
            if value:
                items.append(f"{option}={value}")
        return ",".join(items)

    def _remember_dn(self, login: str, dn: str) -> None:
        if len(self._dns) >= _DN_CACHE_SIZE:
            self._dns.pop(next(iter(self._dns)))
        self._dns[login] = dn

    def _connect_search(self) -> ldap3.Connection:
        return self._open(self.config.binddn, self.config.bindpw)

    def _bind_as(self, dn: str, password: str) -> bool:
        try:
            connection = self._open(dn, password)
        except LdapResultError as exc:
            log.info("ldap: bind as %s refused: %s", dn, exc)
            return False
        except (LDAPException, OSError) as exc:
            raise BackendUnavailable(f"ldap {' '.join(self.uris)}: {_describe(exc)}") from exc
        _unbind(connection)
        return True

    def _open(self, user: str, password: str) -> ldap3.Connection:
        """A bound connection to the first URI that answers."""
        failure: BaseException | None = None
        for uri in self.uris:
            try:
                return self._open_uri(uri, user, password)
            except LdapResultError:
                raise
            except (LDAPException, OSError) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def _open_uri(self, uri: str, user: str, password: str) -> ldap3.Connection:
        timeout = self.config.timeout
        # ldap3 does not verify certificates unless told to; OpenLDAP (authldap's library)
        # demands a valid certificate by default, so meshproxy does too.  ``tls_cacert``
        # replaces the system CA store (OpenLDAP's TLS_CACERT in ldap.conf, which authldap
        # leaves to the library).
        verify = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.config.tls_cacert or None)
        server = ldap3.Server(uri, connect_timeout=timeout, get_info=ldap3.NONE, tls=verify)
        connection = ldap3.Connection(
            server,
            user=user or None,
            password=password or None,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            receive_timeout=max(1, math.ceil(timeout)),
            read_only=True,
            auto_referrals=False,
            raise_exceptions=False,
        )
        try:
            _start(connection, tls=self.config.tls and not uri.lower().startswith("ldaps:"))
        except BaseException:
            _unbind(connection)
            raise
        return connection


def _start(connection: ldap3.Connection, *, tls: bool) -> None:
    connection.open()
    if tls and not connection.start_tls():
        raise LDAPException(f"STARTTLS failed: {connection.result}")
    if not connection.bind():
        result = connection.result or {}
        raise LdapResultError(f"bind refused: {result.get('description')} ({result.get('result')})")


def _is_entry(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "searchResEntry"


def _entry(item: Mapping[str, Any]) -> Entry:
    raw = item.get("raw_attributes") or {}
    return Entry(str(item.get("dn", "")), {str(key).lower(): list(raw[key]) for key in raw})


def _leading_int(text: str) -> int | None:
    """``istringstream >> uid``: the leading digits, None without any."""
    digits = ""
    for char in text.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _unbind(connection: ldap3.Connection) -> None:
    """Unbind, and close the socket even when the server is gone (ldap3 leaves it open)."""
    with contextlib.suppress(LDAPException, OSError):
        connection.unbind()
    sock = getattr(connection, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _is_connection_error(exc: BaseException) -> bool:
    return not isinstance(exc, LdapResultError)


def _is_timeout(exc: BaseException) -> bool:
    return "timed out" in str(exc) or "timeout" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
