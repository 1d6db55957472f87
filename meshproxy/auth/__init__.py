"""Account sources and the login decision.

``open_source(config)`` builds the configured source (imported lazily, so a deployment pays
only for the driver it uses).  ``authenticate`` turns credentials into an ``Account`` or one
of the error kinds: ``TempFail`` (source unavailable), ``AuthFailed`` (unknown user, wrong
password, foreign authzid), ``MechanismUnusable`` (CRAM-MD5 or APOP without a usable secret) and
``LoginDisabled`` (``disable<service>`` options, checked only after the password).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Protocol, cast

from meshproxy.account import Account
from meshproxy.auth.base import AuthSource, BackendUnavailable
from meshproxy.auth.passwords import verify, verify_apop, verify_clear, verify_cram_md5
from meshproxy.config import Config
from meshproxy.credentials import (
    ApopCredentials,
    CramCredentials,
    Credentials,
    PlainCredentials,
)
from meshproxy.errors import (
    AuthFailed,
    ConfigError,
    LoginDisabled,
    MechanismUnusable,
    MeshproxyError,
    TempFail,
)

__all__ = [
    "SOURCES",
    "AuthSource",
    "BackendUnavailable",
    "admit",
    "authenticate",
    "open_source",
    "verify",
    "verify_apop",
    "verify_clear",
    "verify_cram_md5",
]

SOURCES: dict[str, str] = {
    "userdb": "meshproxy.auth.userdb:UserdbSource",
    "ldap": "meshproxy.auth.ldap:LdapSource",
    "mysql": "meshproxy.auth.mysql:MysqlSource",
    "pgsql": "meshproxy.auth.pgsql:PgsqlSource",
    "courier": "meshproxy.auth.courier_chain:CourierSource",
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
    """Check ``credentials`` for ``service``; the account, or an error from meshproxy.errors.

    Every candidate account is tried in order (Courier's module chain: a module that does not
    know the login or rejects the password passes to the next); the first that accepts wins.
    A source failure at any point is a temporary failure, never a wrong password.
    """
    if not isinstance(credentials, PlainCredentials | CramCredentials | ApopCredentials):
        # A mesh assertion is checked by meshproxy.mesh, never against an account source.
        raise AuthFailed(detail=f"{credentials.mechanism}: not checked by account sources")
    rejections: list[MeshproxyError] = []
    try:
        for account in source.candidates(credentials.authcid, service):
            try:
                _check(source, account, credentials, service)
            except (AuthFailed, MechanismUnusable) as exc:
                rejections.append(exc)
                continue
            return _admit(source, account, service, secure, default_options)
    except BackendUnavailable as exc:
        raise TempFail(detail=f"account source unavailable: {exc}") from exc
    raise _rejection(rejections, credentials.authcid)


def _rejection(rejections: list[MeshproxyError], authcid: str) -> MeshproxyError:
    """A wrong password for any candidate is a wrong password (and delayed as one);
    ``MechanismUnusable`` only when no candidate could check the CRAM-MD5/APOP answer at all."""
    wrong = [exc for exc in rejections if isinstance(exc, AuthFailed)]
    if wrong:
        return wrong[0]
    return rejections[0] if rejections else AuthFailed(detail=f"{authcid!r}: unknown user")


def admit(
    source: AuthSource, account: Account, *, service: str, secure: bool, default_options: str = ""
) -> Account:
    """What every accepted login goes through: default options merged, ``disable*`` checked
    (``LoginDisabled``).  For an account found without a password (a verified mesh login)."""
    return _admit(source, account, service, secure, default_options)


def _admit(
    source: AuthSource, account: Account, service: str, secure: bool, default_options: str
) -> Account:
    options = account.options.merged_with_defaults(source.default_options)
    options = options.merged_with_defaults(default_options)
    account = dataclasses.replace(account, options=options)
    if account.disabled_for(service, secure=secure):
        raise LoginDisabled(detail=f"{account.login!r}: {service} disabled by options")
    return account


def _check(
    source: AuthSource,
    account: Account,
    credentials: PlainCredentials | CramCredentials | ApopCredentials,
    service: str,
) -> None:
    if isinstance(credentials, PlainCredentials):
        _check_plain(source, account, credentials, service)
    elif isinstance(credentials, ApopCredentials):
        _check_apop(account, credentials, service)
    else:
        _check_cram(account, credentials, service)


def _check_plain(
    source: AuthSource, account: Account, credentials: PlainCredentials, service: str
) -> None:
    if credentials.authzid and credentials.authzid != credentials.authcid:
        raise AuthFailed(detail=f"{credentials.authcid!r}: authzid differs from authcid")
    if not credentials.password:
        raise AuthFailed(detail=f"{credentials.authcid!r}: password mismatch (empty password)")
    verdict = source.verify_password(account, credentials.password)
    if verdict is None:
        verdict = _plain_matches(account, credentials.password, service)
    if not verdict:
        raise AuthFailed(detail=f"{credentials.authcid!r}: password mismatch")


def _plain_matches(account: Account, password: str, service: str) -> bool:
    """The stored hash decides when there is one, otherwise the clear password."""
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


APOP_NEEDS_CLEAR = "APOP needs a clear password for this account; use USER and PASS."


def _check_apop(account: Account, credentials: ApopCredentials, service: str) -> None:
    """APOP (RFC 1939 section 7) needs a stored clear password: neither a hash, nor an HMAC-MD5
    state, nor an LDAP authbind (which checks passwords only by binding) can verify an MD5 of
    timestamp + password.  As for CRAM-MD5, a clear field read from the entry is used."""
    clear = account.secrets.clear_for(service)
    if clear is None:
        raise MechanismUnusable(
            detail=f"{credentials.authcid!r}: APOP needs a clear password, none stored",
            text=APOP_NEEDS_CLEAR,
        )
    if not verify_apop(credentials.challenge, credentials.digest, clear):
        raise AuthFailed(detail=f"{credentials.authcid!r}: APOP digest mismatch")
