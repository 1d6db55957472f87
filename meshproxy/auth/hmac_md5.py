"""HMAC-MD5 from Courier's precomputed ``hmac-md5pw`` secret.

``userdbpw -hmac-md5`` prints 64 hex digits: the MD5 chaining state (A, B, C, D, each
little-endian, i.e. what an MD5 digest of a one-block message would print without the final
padding) after compressing the block ``key ^ opad`` (0x5c), followed by the state after
``key ^ ipad`` (0x36).  The key is the password, or MD5(password) if longer than 64 bytes.
Opad comes first: libhmac's ``hmac_hashkey(hh, key, len, kxopad, kxipad)``.

hashlib cannot resume from a state, so this module carries a small MD5 compression function
(RFC 1321).  It is only used for CRAM-MD5 against such secrets; everything else uses hashlib.
"""

from __future__ import annotations

import hashlib
import math
import struct

BLOCK = 64
DIGEST = 16
STATE_HEX_LEN = 4 * DIGEST  # opad state + ipad state, hex

_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_MASK = 0xFFFFFFFF
_SHIFTS = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
_SINES = tuple(int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64))

State = tuple[int, int, int, int]


def _rotl(value: int, count: int) -> int:
    return ((value << count) | (value >> (32 - count))) & _MASK


def _round_function(step: int, b: int, c: int, d: int) -> tuple[int, int]:
    """The nonlinear function of this step and the index of the message word it uses."""
    if step < 16:
        return (b & c) | (~b & d), step
    if step < 32:
        return (d & b) | (~d & c), (5 * step + 1) % 16
    if step < 48:
        return b ^ c ^ d, (3 * step + 5) % 16
    return c ^ (b | (~d & _MASK)), (7 * step) % 16


def compress(state: State, block: bytes) -> State:
    """One MD5 compression of a 64-byte block into ``state``."""
    if len(block) != BLOCK:
        raise ValueError("MD5 block must be 64 bytes")
    words = struct.unpack("<16I", block)
    a, b, c, d = state
    for step in range(64):
        mixed, index = _round_function(step, b, c, d)
        total = (a + mixed + _SINES[step] + words[index]) & _MASK
        a, d, c = d, c, b
        b = (b + _rotl(total, _SHIFTS[step])) & _MASK
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def state_bytes(state: State) -> bytes:
    return struct.pack("<4I", *state)


def state_from_bytes(data: bytes) -> State:
    a, b, c, d = struct.unpack("<4I", data)
    return (a, b, c, d)


def resume(state: State, data: bytes, prefix_length: int) -> bytes:
    """The MD5 digest of ``prefix + data``, where ``state`` is the state after ``prefix``.

    ``prefix_length`` must be a multiple of 64 (the prefix was whole blocks).
    """
    total = prefix_length + len(data)
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % BLOCK)
    padded += struct.pack("<Q", (total * 8) & 0xFFFFFFFFFFFFFFFF)
    for offset in range(0, len(padded), BLOCK):
        state = compress(state, padded[offset : offset + BLOCK])
    return state_bytes(state)


def md5(data: bytes) -> bytes:
    """Plain MD5 through this module's compression function (for tests against hashlib)."""
    return resume(_IV, data, 0)


def _pad_key(key: bytes, fill: int) -> bytes:
    if len(key) > BLOCK:
        key = hashlib.md5(key).digest()  # noqa: S324 -- HMAC-MD5 key reduction, RFC 2104
    return bytes(byte ^ fill for byte in key.ljust(BLOCK, b"\x00"))


def courier_state(key: bytes) -> str:
    """What ``userdbpw -hmac-md5`` prints for the password ``key``."""
    outer = compress(_IV, _pad_key(key, 0x5C))
    inner = compress(_IV, _pad_key(key, 0x36))
    return (state_bytes(outer) + state_bytes(inner)).hex()


def parse_state(text: str) -> tuple[State, State] | None:
    """(opad state, ipad state) from Courier's hex secret, or None if it is not one."""
    if len(text) != STATE_HEX_LEN:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    if len(raw) != 2 * DIGEST:
        return None
    return state_from_bytes(raw[:DIGEST]), state_from_bytes(raw[DIGEST:])


def hmac_from_state(outer: State, inner: State, message: bytes) -> bytes:
    """HMAC-MD5 of ``message`` given the two precomputed key states."""
    inner_digest = resume(inner, message, BLOCK)
    return resume(outer, inner_digest, BLOCK)
