"""What every account source provides.  No I/O here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from meshproxy.account import Account


class BackendUnavailable(Exception):
    """The source could not answer (missing file, driver or I/O failure).

    The message is for the log; ``authenticate`` turns it into ``TempFail``, never into a
    wrong-password answer.
    """


class AuthSource(Protocol):
    """An account source: userdb, LDAP, MySQL, PostgreSQL, or Courier's module chain."""

    default_options: str
    """Options merged into every account (authdaemonrc ``DEFAULTOPTIONS``); usually empty."""

    def lookup(self, login: str, service: str = "") -> Account | None:
        """The account called ``login`` (exact match), None if there is none.

        Raises ``BackendUnavailable`` when the source cannot tell.
        """
        ...

    def candidates(self, login: str, service: str = "") -> Iterator[Account]:
        """Every account that may own ``login``, in the order to try their passwords.

        One source yields at most one; Courier's module chain yields one per module.
        """
        ...

    def verify_password(self, account: Account, password: str) -> bool | None:
        """The source's own password check (LDAP authbind); None: the stored secrets decide."""
        ...

    def close(self) -> None:
        """Release connections or cached data; the source may be used again afterwards."""
        ...


class SingleSource:
    """The common behaviour of a source that knows at most one account per login."""

    default_options = ""

    def lookup(self, login: str, service: str = "") -> Account | None:
        raise NotImplementedError

    def candidates(self, login: str, service: str = "") -> Iterator[Account]:
        account = self.lookup(login, service)
        if account is not None:
            yield account

    def verify_password(self, account: Account, password: str) -> bool | None:
        del account, password
        return None
