"""Account sources and the login decision.

``open_source(config)`` builds the configured source (imported lazily, so a deployment pays
only for the driver it uses).  ``authenticate`` turns credentials into an ``Account`` or one
of the error kinds: ``TempFail`` (source unavailable), ``AuthFailed`` (unknown user, wrong
password, foreign authzid), ``MechanismUnusable`` (CRAM-MD5 without a usable secret) and
``LoginDisabled`` (``disable<service>`` options, checked only after the password).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Protocol, cast

from meshproxy.account import Account
from meshproxy.auth.base import AuthSource, BackendUnavailable
from meshproxy.auth.passwords import verify, verify_clear, verify_cram_md5
from meshproxy.config import Config
from meshproxy.credentials import CramCredentials, Credentials, PlainCredentials
from meshproxy.errors import (
    AuthFailed,
    ConfigError,
    LoginDisabled,
    MechanismUnusable,
    TempFail,
)

__all__ = [
    "SOURCES",
    "AuthSource",
    "BackendUnavailable",
    "authenticate",
    "open_source",
    "verify",
    "verify_clear",
    "verify_cram_md5",
]

SOURCES: dict[str, str] = {
    "userdb": "meshproxy.auth.userdb:UserdbSource",
}
"""Source name -> ``module:Class``; the class has ``from_config(config)``."""


class _SourceClass(Protocol):
    def from_config(self, config: Config) -> AuthSource: ...


def open_source(config: Config) -> AuthSource:
    """The account source named by ``auth.source``."""
    target = SOURCES.get(config.auth.source)
    if target is None:
        raise ConfigError("auth.source", f"unknown source {config.auth.source!r}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    factory = cast(_SourceClass, getattr(module, class_name))
    return factory.from_config(config)


def authenticate(
    source: AuthSource,
    credentials: Credentials,
    *,
    service: str,
    secure: bool,
    default_options: str = "",
) -> Account:
    """Check ``credentials`` for ``service``; the account, or an error from meshproxy.errors."""
    account = _lookup(source, credentials.authcid)
    if isinstance(credentials, PlainCredentials):
        _check_plain(account, credentials, service)
    else:
        _check_cram(account, credentials, service)
    options = account.options.merged_with_defaults(default_options)
    account = dataclasses.replace(account, options=options)
    if account.disabled_for(service, secure=secure):
        raise LoginDisabled(detail=f"{account.login!r}: {service} disabled by options")
    return account


def _lookup(source: AuthSource, login: str) -> Account:
    try:
        account = source.lookup(login)
    except BackendUnavailable as exc:
        raise TempFail(detail=f"account source unavailable: {exc}") from exc
    if account is None:
        raise AuthFailed(detail=f"{login!r}: unknown user")
    return account


def _check_plain(account: Account, credentials: PlainCredentials, service: str) -> None:
    if credentials.authzid and credentials.authzid != credentials.authcid:
        raise AuthFailed(detail=f"{credentials.authcid!r}: authzid differs from authcid")
    if not _plain_matches(account, credentials.password, service):
        raise AuthFailed(detail=f"{credentials.authcid!r}: password mismatch")


def _plain_matches(account: Account, password: str, service: str) -> bool:
    """The stored hash decides when there is one, otherwise the clear password."""
    if not password:
        return False
    hashed = account.secrets.hashed_for(service)
    if hashed is not None:
        return verify(hashed, password)
    clear = account.secrets.clear_for(service)
    return clear is not None and verify_clear(clear, password)


def _check_cram(account: Account, credentials: CramCredentials, service: str) -> None:
    clear = account.secrets.clear_for(service)
    state = account.secrets.hmac_md5_for(service)
    if clear is None and state is None:
        raise MechanismUnusable(detail=f"{credentials.authcid!r}: no clear or HMAC-MD5 secret")
    matches = verify_cram_md5(
        credentials.challenge, credentials.digest, clear=clear, hmac_md5_state=state
    )
    if not matches:
        raise AuthFailed(detail=f"{credentials.authcid!r}: CRAM-MD5 digest mismatch")
