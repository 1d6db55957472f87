"""auth.passwords and auth.hmac_md5: every scheme, wrong passwords, garbage, CRAM-MD5.

Fixed vectors come from tools independent of this code: ``openssl dgst`` for the
``{SCHEME}`` hashes, Courier's ``userdbpw`` for the crypt and ``hmac-md5pw`` values, and
RFC 2195 for the CRAM-MD5 exchange.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import crypt_r
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshproxy.auth import hmac_md5
from meshproxy.auth.passwords import split_scheme, verify, verify_clear, verify_cram_md5

pytestmark = pytest.mark.unit

PASSWORD = "secret"

# printf secret | openssl dgst -<alg> -binary | base64 (salted: password + b"salt" or b"saltsalt")
FIXED = [
    "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    "{md5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    "{MD5RAW}5ebe2294ecd0e0f08eab7690d2a6ee69",
    "{MD5RAW}5EBE2294ECD0E0F08EAB7690D2A6EE69",
    "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{sha}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
    "{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==",
    "{SSHA}gVK8WC9YyFT1gMsQHTGCgT3sSv5zYWx0",
    "{SSHA}1G904nLkTkGWjKNnQuB/hpWXC/hzYWx0c2FsdA==",
    "{SSHA256}+E+iFJ27Yu1ODPH1UNKUmzOmUT06dwfghQJRHHnMsO5zYWx0",
    "{SSHA512}E491yrR9AdCoE7rbOPYS3EZgSuZpVE65AD9xko08s6floNesY/Zpe9zMVvLix4S2FiQSJ99RIkNvhHomNO9uL3NhbHQ=",
    # echo secret | userdbpw -md5 ; echo secret | userdbpw   (Debian: DES by default)
    "$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0",
    "{CRYPT}$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0",
    "{crypt}G55M8gVBnbY0U",
    "G55M8gVBnbY0U",
]


@pytest.mark.parametrize("stored", FIXED)
def test_fixed_vectors_match_the_right_password(stored: str) -> None:
    assert verify(stored, PASSWORD)


@pytest.mark.parametrize("stored", FIXED)
@pytest.mark.parametrize("wrong", ["Secret", "secret ", "secre", "secretsecret", "x"])
def test_fixed_vectors_refuse_wrong_passwords(stored: str, wrong: str) -> None:
    assert not verify(stored, wrong)


def test_non_ascii_password_is_hashed_as_utf8() -> None:
    # printf 'pässwörd' | openssl dgst -sha1 -binary | base64
    assert verify("{SHA}9Rfd8dMqES/xrVXGbRsSyzjn6Pc=", "pässwörd")
    assert not verify("{SHA}9Rfd8dMqES/xrVXGbRsSyzjn6Pc=", "passwort")


def _yescrypt_like(prefix: str) -> str:
    return prefix + "j9T$" + "abcdefghijklmnop"


CRYPT_SETTINGS = [
    pytest.param(crypt_r.mksalt(crypt_r.METHOD_SHA512), id="sha512-crypt"),
    pytest.param(crypt_r.mksalt(crypt_r.METHOD_SHA256), id="sha256-crypt"),
    pytest.param(crypt_r.mksalt(crypt_r.METHOD_MD5), id="md5-crypt"),
    pytest.param(crypt_r.mksalt(crypt_r.METHOD_CRYPT), id="des"),
    pytest.param(crypt_r.mksalt(crypt_r.METHOD_BLOWFISH, rounds=16), id="bcrypt-2b"),
    pytest.param("$2a$04$abcdefghijklmnopqrstuu", id="bcrypt-2a"),
    pytest.param("$2y$04$abcdefghijklmnopqrstuu", id="bcrypt-2y"),
    pytest.param(_yescrypt_like("$y$"), id="yescrypt"),
    pytest.param(_yescrypt_like("$gy$"), id="gost-yescrypt"),
    pytest.param("$7$CU..../....abcdefghijklmnop", id="scrypt"),
]


@pytest.mark.parametrize("setting", CRYPT_SETTINGS)
def test_every_crypt_method_libxcrypt_knows(setting: str) -> None:
    stored = crypt_r.crypt(PASSWORD, setting)
    assert not stored.startswith("*"), f"libxcrypt refused the setting {setting!r}"
    assert verify(stored, PASSWORD)
    assert verify("{CRYPT}" + stored, PASSWORD)
    assert not verify(stored, "wrong")
    assert not verify("{CRYPT}" + stored, "wrong")


GARBAGE = [
    "",
    "*",
    "!",
    "*0",
    "*1",
    "!$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0",
    "secret",  # a clear password without prefix is a (wrong) DES hash, as in authlib
    "{PLAIN}secret",
    "{CLEARTEXT}secret",
    "{UNKNOWN}secret",
    "{",
    "{}",
    "{}secret",
    "{MD5}",
    "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ",  # missing padding
    "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==junk",
    "{MD5}!!!!",
    "{MD5}é",
    "{MD5RAW}5ebe2294ecd0e0f08eab7690d2a6ee6",
    "{MD5RAW}zzbe2294ecd0e0f08eab7690d2a6ee69",
    "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",
    "{SSHA}",
    "{SSHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",  # a digest with no salt
    "{SSHA}" + "=" * 8,
    "{\u017fha}5en6G6MezRroT3XKqkdPOmY/BfQ=",  # non-ASCII scheme that upper()s to SHA
    "{CRYPT}",
    "{CRYPT}*0",
    "$6$",
    "$y$",
    "$2b$99$abcdefghijklmnopqrstuu",
    "$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy",  # truncated
    "\x00",
    "\ud800",
    "x" * 10000,
]


@pytest.mark.parametrize("stored", GARBAGE)
def test_garbage_stored_values_never_match_and_never_raise(stored: str) -> None:
    assert verify(stored, PASSWORD) is False


@pytest.mark.parametrize("plain", ["", "\x00", "secret\x00", "\x00secret", "\ud800", "x\udcff"])
def test_odd_passwords_never_match_and_never_raise(plain: str) -> None:
    assert verify("$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0", plain) is False
    assert verify("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", plain) is False


def test_surrogate_escaped_bytes_hash_as_the_original_bytes() -> None:
    raw = b"caf\xe9"  # latin-1 bytes, as a client may send them
    stored = "{SHA}" + base64.b64encode(hashlib.sha1(raw).digest()).decode()
    assert verify(stored, raw.decode("utf-8", "surrogateescape"))


def test_split_scheme() -> None:
    assert split_scheme("{ssha}abc") == ("SSHA", "abc")
    assert split_scheme("$1$abc") == (None, "$1$abc")
    assert split_scheme("{}abc") == (None, "{}abc")
    assert split_scheme("{abc") == (None, "{abc")


def test_verify_clear() -> None:
    assert verify_clear("secret", "secret")
    assert not verify_clear("secret", "Secret")
    assert not verify_clear("", "")
    assert not verify_clear("secret", "")
    assert not verify_clear("\ud800", "\ud800")


# --- CRAM-MD5 -------------------------------------------------------------------------------

# RFC 2195 section 2: user tim, password tanstaaftanstaaf.
RFC_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC_DIGEST = "b913a602c7eda7a495b4e6e7334d3890"
RFC_PASSWORD = "tanstaaftanstaaf"
# echo tanstaaftanstaaf | userdbpw -hmac-md5
RFC_STATE = "d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"
# echo secret | userdbpw -hmac-md5
SECRET_STATE = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
# printf 'x%.0s' $(seq 100) | userdbpw -hmac-md5   (key longer than a block: hashed first)
LONG_STATE = "52197db948d0932512a61b183e7d05b04e94d60a3bb0d00f92d3df52a5d275ca"


def test_rfc2195_with_the_clear_password() -> None:
    assert verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear=RFC_PASSWORD, hmac_md5_state=None)


def test_rfc2195_with_userdbpw_state() -> None:
    assert verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear=None, hmac_md5_state=RFC_STATE)


def test_digest_and_state_hex_are_case_insensitive_as_in_courier() -> None:
    upper = RFC_DIGEST.upper()
    assert verify_cram_md5(RFC_CHALLENGE, upper, clear=None, hmac_md5_state=RFC_STATE.upper())
    assert verify_cram_md5(RFC_CHALLENGE, upper, clear=RFC_PASSWORD, hmac_md5_state=None)


@pytest.mark.parametrize(
    "digest",
    [
        "b913a602c7eda7a495b4e6e7334d3891",
        RFC_DIGEST[:-1],
        RFC_DIGEST + "0",
        "",
        "zz13a602c7eda7a495b4e6e7334d3890",
        "b9 3a602c7eda7a495b4e6e7334d3890",
        "é" * 32,
    ],
)
def test_wrong_or_malformed_digests(digest: str) -> None:
    assert not verify_cram_md5(RFC_CHALLENGE, digest, clear=RFC_PASSWORD, hmac_md5_state=None)
    assert not verify_cram_md5(RFC_CHALLENGE, digest, clear=None, hmac_md5_state=RFC_STATE)


def test_wrong_secret_or_challenge() -> None:
    assert not verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear="secret", hmac_md5_state=None)
    assert not verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear=None, hmac_md5_state=SECRET_STATE)
    assert not verify_cram_md5(b"<other@x>", RFC_DIGEST, clear=None, hmac_md5_state=RFC_STATE)


@pytest.mark.parametrize(
    "state",
    ["", "*", RFC_STATE[:-1], RFC_STATE + "0", "g" * 64, RFC_STATE[:62] + " 6", "é" * 64],
)
def test_malformed_states_never_match(state: str) -> None:
    assert not verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear=None, hmac_md5_state=state)


def test_no_secret_at_all() -> None:
    assert not verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear=None, hmac_md5_state=None)
    assert not verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear="", hmac_md5_state="")


def test_clear_password_is_preferred_over_the_state() -> None:
    assert verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear=RFC_PASSWORD, hmac_md5_state="junk")
    assert not verify_cram_md5(RFC_CHALLENGE, RFC_DIGEST, clear="other", hmac_md5_state=RFC_STATE)


# --- the MD5 compression function -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "state"),
    [(b"secret", SECRET_STATE), (b"x" * 100, LONG_STATE), (RFC_PASSWORD.encode(), RFC_STATE)],
)
def test_courier_state_matches_userdbpw(key: bytes, state: str) -> None:
    assert hmac_md5.courier_state(key) == state


@pytest.mark.parametrize("size", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000])
def test_md5_matches_hashlib_at_block_boundaries(size: int) -> None:
    data = bytes(range(256)) * 4
    assert hmac_md5.md5(data[:size]) == hashlib.md5(data[:size]).digest()


@given(st.binary(max_size=300))
def test_md5_matches_hashlib(data: bytes) -> None:
    assert hmac_md5.md5(data) == hashlib.md5(data).digest()


@given(st.binary(max_size=150), st.binary(max_size=200))
def test_hmac_from_state_matches_stdlib_hmac(key: bytes, message: bytes) -> None:
    states = hmac_md5.parse_state(hmac_md5.courier_state(key))
    assert states is not None
    expected = hmac.new(key, message, "md5").digest()
    assert hmac_md5.hmac_from_state(states[0], states[1], message) == expected


def test_compress_rejects_a_short_block() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        hmac_md5.compress((0, 0, 0, 0), b"short")


def test_parse_state_splits_opad_then_ipad() -> None:
    states = hmac_md5.parse_state(SECRET_STATE)
    assert states is not None
    assert hmac_md5.state_bytes(states[0]).hex() == SECRET_STATE[:32]
    assert hmac_md5.state_bytes(states[1]).hex() == SECRET_STATE[32:]
