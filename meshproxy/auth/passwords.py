"""Every password scheme, once.  Pure functions; nothing here raises on bad input.

The schemes are those of Courier authlib's ``authcheckpassword`` (checkpassword.c,
checkpasswordmd5.c, checkpasswordsha1.c), whose prefixes are matched case-insensitively:

* ``{MD5}``: base64 of the MD5 digest; ``{MD5RAW}``: its hex form.
* ``{SHA}``, ``{SHA256}``, ``{SHA512}``: base64 of the digest.
* ``{SSHA}``: base64(SHA1(password + salt) + salt).  Courier's salt is 4 bytes; any
  non-empty salt is accepted here, as OpenLDAP writes 4 or 8.
* ``{SSHA256}``, ``{SSHA512}``: the same with SHA-2 (not in authlib; OpenLDAP/Dovecot).
* ``{CRYPT}`` followed by a crypt(3) string, or a bare crypt(3) string of any kind the
  system's libxcrypt verifies (yescrypt, gost-yescrypt, scrypt, sha512/256-crypt, md5-crypt,
  bcrypt, DES).

authlib knows no ``{PLAIN}``/``{CLEARTEXT}``, so neither does this module: such a value, or
any other unknown ``{SCHEME}``, never matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable

import crypt_r

from meshproxy.auth import hmac_md5

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"

_Check = Callable[[str, bytes], bool]


def _encode(text: str) -> bytes | None:
    try:
        return text.encode(_ENCODING, _ERRORS)
    except UnicodeError:
        return None


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError, ValueError):
        return None


def _digest_b64(algorithm: str) -> _Check:
    def check(encoded: str, plain: bytes) -> bool:
        expected = _b64decode(encoded)
        if expected is None:
            return False
        return hmac.compare_digest(hashlib.new(algorithm, plain).digest(), expected)

    return check


def _salted_b64(algorithm: str) -> _Check:
    size = hashlib.new(algorithm).digest_size

    def check(encoded: str, plain: bytes) -> bool:
        raw = _b64decode(encoded)
        if raw is None or len(raw) <= size:
            return False
        digest, salt = raw[:size], raw[size:]
        return hmac.compare_digest(hashlib.new(algorithm, plain + salt).digest(), digest)

    return check


def _md5_hex(encoded: str, plain: bytes) -> bool:
    actual = hashlib.md5(plain).hexdigest().encode("ascii")  # noqa: S324 -- {MD5RAW} scheme
    expected = _encode(encoded.lower())
    return expected is not None and hmac.compare_digest(actual, expected)


def _crypt(stored: str, plain: bytes) -> bool:
    """crypt(3) through libxcrypt; a failure token (``*0``, ``*1``) never matches."""
    if not stored or stored.startswith(("*", "!")):
        return False
    try:
        result = crypt_r.crypt(plain.decode(_ENCODING, _ERRORS), stored)
    except (ValueError, UnicodeError, OSError):
        return False
    if not isinstance(result, str) or not result or result.startswith("*"):
        return False
    actual, expected = _encode(result), _encode(stored)
    return actual is not None and expected is not None and hmac.compare_digest(actual, expected)


_SCHEMES: dict[str, _Check] = {
    "MD5": _digest_b64("md5"),
    "MD5RAW": _md5_hex,
    "SHA": _digest_b64("sha1"),
    "SHA256": _digest_b64("sha256"),
    "SHA512": _digest_b64("sha512"),
    "SSHA": _salted_b64("sha1"),
    "SSHA256": _salted_b64("sha256"),
    "SSHA512": _salted_b64("sha512"),
    "CRYPT": _crypt,
}


def split_scheme(stored: str) -> tuple[str | None, str]:
    """(upper-cased scheme, rest) for ``{SCHEME}rest``; (None, stored) otherwise."""
    if stored.startswith("{"):
        end = stored.find("}")
        if end > 1 and stored[1:end].isascii():
            return stored[1:end].upper(), stored[end + 1 :]
    return None, stored


def verify(stored: str, plain: str) -> bool:
    """True if ``plain`` matches the stored hash.  Unknown schemes and garbage give False."""
    if not stored or not plain or "\x00" in plain:
        return False
    password = _encode(plain)
    if password is None:
        return False
    scheme, rest = split_scheme(stored)
    if scheme is None:
        return _crypt(stored, password)
    check = _SCHEMES.get(scheme)
    if check is None:
        return False
    return check(rest, password)


def verify_clear(stored: str, plain: str) -> bool:
    """A clear-text stored password (SQL/LDAP clear fields), compared in constant time."""
    if not stored or not plain:
        return False
    expected, actual = _encode(stored), _encode(plain)
    return expected is not None and actual is not None and hmac.compare_digest(expected, actual)


def _parse_digest(digest_hex: str) -> bytes | None:
    """Courier accepts exactly 32 hex digits, either case."""
    if len(digest_hex) != 2 * hmac_md5.DIGEST:
        return None
    try:
        raw = bytes.fromhex(digest_hex)
    except ValueError:
        return None
    return raw if len(raw) == hmac_md5.DIGEST else None


def verify_cram_md5(
    challenge: bytes, digest_hex: str, *, clear: str | None, hmac_md5_state: str | None
) -> bool:
    """Check a CRAM-MD5 answer against a clear password or Courier's ``hmac-md5pw`` state.

    A clear password, when given, is used; otherwise the precomputed state.  False when
    neither is usable or the answer is malformed.
    """
    answer = _parse_digest(digest_hex)
    if answer is None:
        return False
    if clear:
        key = _encode(clear)
        if key is None:
            return False
        expected = hmac.new(key, challenge, "md5").digest()
        return hmac.compare_digest(expected, answer)
    if hmac_md5_state:
        states = hmac_md5.parse_state(hmac_md5_state)
        if states is None:
            return False
        expected = hmac_md5.hmac_from_state(states[0], states[1], challenge)
        return hmac.compare_digest(expected, answer)
    return False


def verify_apop(challenge: bytes, digest_hex: str, clear: str | None) -> bool:
    """Check a POP3 APOP digest (RFC 1939 section 7): hex MD5 of the greeting's timestamp
    followed by the clear password.  False without a clear password or for a malformed digest.
    """
    answer = _parse_digest(digest_hex)
    if answer is None or not clear:
        return False
    secret = _encode(clear)
    if secret is None:
        return False
    expected = hashlib.md5(challenge + secret).digest()  # noqa: S324 -- APOP is MD5 by definition
    return hmac.compare_digest(expected, answer)
