"""The IMAP verbs the pre-login core knows about, besides its own commands."""

from __future__ import annotations

_POST_LOGIN = """
    SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB NAMESPACE STATUS APPEND
    CHECK CLOSE UNSELECT EXPUNGE SEARCH FETCH STORE COPY MOVE UID IDLE ENABLE GETQUOTA
    GETQUOTAROOT SETQUOTA GETACL SETACL DELETEACL LISTRIGHTS MYRIGHTS THREAD SORT COMPRESS
    GETMETADATA SETMETADATA
"""
IMAP_POST_LOGIN_VERBS = frozenset(_POST_LOGIN.split())
"""Verbs answered ``BAD Command not allowed before login`` rather than ``Unknown command``."""
IMAP_LOGIN_VERBS = frozenset({"LOGIN", "AUTHENTICATE"})
IMAP_LITERAL_VERBS = frozenset({"LOGIN", "ID"})
"""Verbs that may carry a synchronizing literal before login."""
