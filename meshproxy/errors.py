"""The error tree.

Errors are plain data: a kind (the class), a client-facing ``text`` and a ``detail`` for the
log.  They never render themselves: each protocol core turns them into an IMAP or POP3 reply
(``protocol/replies.py``), so this module sits at the bottom of the import graph.

``text`` is what the client may see; ``detail`` may name internals (never a password).
"""

from __future__ import annotations


class MeshproxyError(Exception):
    """Base class.  ``text`` goes to the client, ``detail`` to the log."""

    default_text = "Error"

    def __init__(self, detail: str = "", *, text: str | None = None) -> None:
        self.detail = detail
        self.text = text if text is not None else self.default_text
        super().__init__(detail or self.text)


class ProtocolViolation(MeshproxyError):
    """Bad syntax or a command not allowed now: IMAP ``BAD``, POP3 ``-ERR``."""

    default_text = "Syntax error"


class AuthFailed(MeshproxyError):
    """Wrong password or unknown user: ``NO [AUTHENTICATIONFAILED]`` / ``-ERR [AUTH]``.

    The failed-login delay applies to this error only.
    """

    default_text = "Authentication failed."


class AuthAborted(MeshproxyError):
    """The client cancelled a SASL exchange with ``*``: IMAP ``BAD``, POP3 ``-ERR``."""

    default_text = "Authentication aborted."


class LoginDisabled(MeshproxyError):
    """The account may not use this service (``disableimap`` and friends).

    ``NO [CONTACTADMIN]`` / ``-ERR [AUTH]``; not counted as a wrong password.
    """

    default_text = "Access to this service is disabled for this account."


class PrivacyRequired(MeshproxyError):
    """A plaintext login where TLS is required: ``NO [PRIVACYREQUIRED]`` / ``-ERR [AUTH]``."""

    default_text = "TLS required to log in."


class MechanismUnusable(MeshproxyError):
    """The mechanism cannot work for this account (CRAM-MD5 without a clear or HMAC secret).

    ``NO [CANNOT]`` / ``-ERR [AUTH]``.
    """

    default_text = "This authentication mechanism cannot be used for this account."


class TempFail(MeshproxyError):
    """Something outside the client's control failed: ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]``.

    Never delayed, never counted as a failed password.
    """

    default_text = "Account is temporarily unavailable."


class ConfigError(MeshproxyError):
    """The configuration is invalid; ``key`` names the key at fault."""

    default_text = "Invalid configuration"

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        super().__init__(f"{key}: {detail}", text=f"{key}: {detail}")
