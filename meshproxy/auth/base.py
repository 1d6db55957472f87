"""What every account source provides.  No I/O here."""

from __future__ import annotations

from typing import Protocol

from meshproxy.account import Account


class BackendUnavailable(Exception):  # noqa: N818 -- the name is the documented contract
    """The source could not answer (missing file, driver or I/O failure).

    The message is for the log; ``authenticate`` turns it into ``TempFail``, never into a
    wrong-password answer.
    """


class AuthSource(Protocol):
    """An account source: userdb now, SQL and LDAP later."""

    def lookup(self, login: str) -> Account | None:
        """The account called ``login`` (exact match), None if there is none.

        Raises ``BackendUnavailable`` when the source cannot tell.
        """
        ...

    def close(self) -> None:
        """Release connections or cached data; the source may be used again afterwards."""
        ...
