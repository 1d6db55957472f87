"""``[auth] source = "courier"``: Courier's own authlib configuration, used unchanged.

``authdaemonrc``'s ``authmodulelist`` names the modules, tried in order as authdaemond does
(authdaemond.c ``auth()`` / ``pre()``):

* a module that finds the account and accepts the password ends the search;
* a module that does not know the login, *or rejects the password*, passes the request on
  ("REJECT - try next module");
* a module that fails temporarily (server down) ends the search with a temporary failure
  ("TEMPFAIL - no more modules will be tried"), even if a later module knows the login.

``lookup`` gives the first module's account (authdaemond's ``PRE`` request); ``candidates``
yields every module's account in order, for ``authenticate`` to check the password against
each in turn, as authdaemond's ``AUTH`` request does.  Modules meshproxy does not implement
(``authpam``, ``authshadow``, ``authpwd``, ``authcustom``, ``authpipe``, ``authsqlite``) are
skipped with a warning, as authdaemond skips a module it cannot load.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meshproxy.account import Account
from meshproxy.auth import authlibrc
from meshproxy.auth.base import AuthSource
from meshproxy.config import Config
from meshproxy.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE_NAME = "courier"
_SOURCE_OF_MODULE = {
    "authuserdb": "userdb",
    "authldap": "ldap",
    "authmysql": "mysql",
    "authpgsql": "pgsql",
}


@dataclass(frozen=True)
class Module:
    """One authlib module of the chain and the source that implements it."""

    name: str
    source: AuthSource


class CourierSource:
    """The modules of ``authmodulelist``, each configured from its authlib file."""

    def __init__(self, config_dir: str) -> None:
        self.config_dir = config_dir
        settings = authlibrc.read_authdaemonrc(os.path.join(config_dir, "authdaemonrc"))
        self.default_options = settings.default_options
        self.modules = tuple(self._open_modules(settings.modules))
        if not self.modules:
            raise ConfigError(
                os.path.join(config_dir, "authdaemonrc"),
                "authmodulelist names none of " + ", ".join(authlibrc.SUPPORTED_MODULES),
            )

    @classmethod
    def from_config(cls, config: Config) -> CourierSource:
        return cls(config.courier.config_dir)

    def lookup(self, login: str, service: str = "") -> Account | None:
        """The first module's account (authdaemond ``PRE``).  Raises BackendUnavailable."""
        return next(self.candidates(login, service), None)

    def candidates(self, login: str, service: str = "") -> Iterator[Account]:
        """Each module's account for ``login``, in ``authmodulelist`` order.

        BackendUnavailable from a module stops the iteration (authdaemond's TEMPFAIL); the
        caller turns it into a temporary failure even if an earlier candidate was rejected.
        """
        for module in self.modules:
            account = module.source.lookup(login, service)
            if account is not None:
                yield account

    def verify_password(self, account: Account, password: str) -> bool | None:
        """The deciding module's own check (LDAP authbind), None when its secrets decide."""
        for module in self.modules:
            if _SOURCE_OF_MODULE[module.name] == account.source:
                return module.source.verify_password(account, password)
        return None

    def close(self) -> None:
        for module in self.modules:
            module.source.close()

    def _open_modules(self, names: tuple[str, ...]) -> Iterator[Module]:
        for name in names:
            if name not in _SOURCE_OF_MODULE:
                log.warning("authmodulelist: %s is not supported by meshproxy; skipped", name)
                continue
            yield _OPENERS[name](self.config_dir)


def _rc_path(config_dir: str, name: str) -> str:
    return os.path.join(config_dir, name)


def _open_userdb(config_dir: str) -> Module:
    userdb = importlib.import_module("meshproxy.auth.userdb")
    source: AuthSource = userdb.UserdbSource(os.path.join(config_dir, "userdb"))
    return Module("authuserdb", source)


def _open_mysql(config_dir: str) -> Module:
    path = _rc_path(config_dir, "authmysqlrc")
    config = authlibrc.mysql_config(authlibrc.read_rc(path))
    source = importlib.import_module("meshproxy.auth.mysql").MysqlSource(config, origin=path)
    return Module("authmysql", source)


def _open_pgsql(config_dir: str) -> Module:
    path = _rc_path(config_dir, "authpgsqlrc")
    config = authlibrc.pgsql_config(authlibrc.read_rc(path))
    source = importlib.import_module("meshproxy.auth.pgsql").PgsqlSource(config, origin=path)
    return Module("authpgsql", source)


def _open_ldap(config_dir: str) -> Module:
    path = _rc_path(config_dir, "authldaprc")
    config = authlibrc.ldap_config(authlibrc.read_rc(path))
    source = importlib.import_module("meshproxy.auth.ldap").LdapSource(config, origin=path)
    return Module("authldap", source)


_OPENERS: dict[str, Callable[[str], Module]] = {
    "authuserdb": _open_userdb,
    "authmysql": _open_mysql,
    "authpgsql": _open_pgsql,
    "authldap": _open_ldap,
}
