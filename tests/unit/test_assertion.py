"""mesh.assertion: the mesh login's format, MAC, checks, replay cache and key file."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest

from meshproxy.errors import AuthFailed, ConfigError, TempFail
from meshproxy.mesh import assertion
from meshproxy.mesh.assertion import MeshOrigin, ReplayCache, issue, load_key, new_nonce, verify
from meshproxy.mesh.base import Identity

pytestmark = pytest.mark.unit

KEY = b"k" * 32
NOW = 1_800_000_000.0
HOME = Identity.of("node1.example.com", "node1", addresses=("10.0.0.1",))
CLAIM: dict[str, Any] = {
    "user": "bob@example.com",
    "origin": "node2.example.com",
    "target": "node1",
    "service": "imap",
    "client_ip": "192.0.2.7",
    "client_port": 40000,
    "session": "2b7f-0001",
    "hop": 1,
    "now": NOW,
    "nonce": "4f2a9c",
}


def blob(key: bytes = KEY, **changes: Any) -> bytes:
    return issue(key, **{**CLAIM, **changes})


def check(
    data: bytes,
    *,
    key: bytes = KEY,
    me: Identity = HOME,
    service: str = "imap",
    now: float = NOW,
    replay: ReplayCache | None = None,
    max_hops: int = 1,
) -> MeshOrigin:
    return verify(
        data,
        key,
        me=me,
        service=service,
        now=now,
        window=30.0,
        replay=replay if replay is not None else ReplayCache(30.0),
        max_hops=max_hops,
    )


def signed(payload: bytes, key: bytes = KEY) -> bytes:
    """A blob with a valid MAC around any payload (to test what the MAC does not cover)."""
    mac = hmac.new(key, assertion.LABEL + payload, hashlib.sha256).hexdigest().encode()
    return assertion.PREFIX + mac + b" " + payload


def payload_of(data: bytes) -> dict[str, Any]:
    return dict(json.loads(data.split(b" ", 2)[2]))


# -- round trip ----------------------------------------------------------------------------------


def test_round_trip() -> None:
    origin = check(blob())
    assert origin == MeshOrigin(
        user="bob@example.com",
        origin="node2.example.com",
        target="node1",
        service="imap",
        client_ip="192.0.2.7",
        client_port=40000,
        session="2b7f-0001",
        hop=1,
        issued=NOW,
        nonce="4f2a9c",
    )


def test_format_is_versioned_and_canonical() -> None:
    data = blob()
    assert data.startswith(b"MESHPROXY1 ")
    body = data.split(b" ", 2)[2]
    assert body == json.dumps(payload_of(data), sort_keys=True, separators=(",", ":")).encode()
    assert payload_of(data)["v"] == 1
    assert data.isascii()


@pytest.mark.parametrize(
    "user",
    [
        'quo"te',
        "back\\slash",
        "jörg@exämple.org",
        "新しい@例え.jp",
        "with space",
        "nul\0byte",
        "line\r\nbreak",
        "} ] , :",
        "MESHPROXY1 " + "0" * 64,
        "x" * 2000,
        "\udcff",
    ],
)
def test_any_user_name_survives(user: str) -> None:
    assert check(blob(user=user)).user == user


@pytest.mark.parametrize("service", ["imap", "pop3"])
def test_service_must_match(service: str) -> None:
    assert check(blob(service=service), service=service).service == service
    other = "pop3" if service == "imap" else "imap"
    with pytest.raises(AuthFailed, match="presented to"):
        check(blob(service=service), service=other)


# -- forgery ------------------------------------------------------------------------------------


def test_every_tampered_byte_fails() -> None:
    data = blob()
    for index in range(len(data)):
        for flip in (0x01, 0x20, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= flip
            with pytest.raises(AuthFailed):
                check(bytes(tampered))


def test_truncated_or_extended_blobs_fail() -> None:
    data = blob()
    for end in range(len(data)):
        with pytest.raises(AuthFailed):
            check(data[:end])
    for extra in (b" ", b"x", b"\0", b"}"):
        with pytest.raises(AuthFailed):
            check(data + extra)


def test_upper_case_mac_is_refused() -> None:
    data = blob()
    head = len(assertion.PREFIX)
    with pytest.raises(AuthFailed):
        check(data[:head] + data[head : head + 64].upper() + data[head + 64 :])


def test_wrong_key_fails() -> None:
    with pytest.raises(AuthFailed, match="bad MAC"):
        check(blob(key=b"x" * 32))


@pytest.mark.parametrize(
    "data", [b"", b"MESHPROXY1", b"MESHPROXY1 ", b"MESHPROXY2 " + b"0" * 64 + b" {}", b"garbage"]
)
def test_malformed_blobs_fail(data: bytes) -> None:
    with pytest.raises(AuthFailed, match=r"malformed|bad MAC"):
        check(data)


def fields(**changes: Any) -> dict[str, Any]:
    base = payload_of(blob())
    base.update(changes)
    return base


def canonical(values: dict[str, Any]) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        canonical(fields(v=2)),
        canonical(fields(v=True)),
        canonical({k: v for k, v in fields().items() if k != "nonce"}),
        canonical(fields(extra="x")),
        canonical(fields(hop="1")),
        canonical(fields(hop=True)),
        canonical(fields(hop=0)),
        canonical(fields(client_port=70000)),
        canonical(fields(user="")),
        canonical(fields(nonce="")),
        canonical(fields(nonce="n" * 200)),
        canonical(fields(user=None)),
        json.dumps(dict(reversed(fields().items())), separators=(",", ":")).encode(),  # unsorted
        json.dumps(fields(), sort_keys=True).encode(),  # not compact
        canonical(fields()).replace(b'"hop":1', b'"hop":1,"hop":1'),  # duplicate key
        canonical(fields()) + b"\n",
    ],
)
def test_validly_signed_but_malformed_payloads_fail(payload: bytes) -> None:
    with pytest.raises(AuthFailed, match="malformed"):
        check(signed(payload))


def test_signed_canonical_payload_passes() -> None:
    """The helper itself is right: the untouched payload re-signed verifies."""
    assert check(signed(canonical(fields()))).user == "bob@example.com"


# -- target, time, hops, replay -----------------------------------------------------------------


@pytest.mark.parametrize("target", ["node1", "NODE1.example.com", "10.0.0.1"])
def test_target_may_be_any_name_or_address_of_this_node(target: str) -> None:
    assert check(blob(target=target)).target == target


@pytest.mark.parametrize("target", ["node2", "node1.example.org", "10.0.0.2", ""])
def test_wrong_target_fails(target: str) -> None:
    with pytest.raises(AuthFailed, match="not this node"):
        check(blob(target=target))


@pytest.mark.parametrize("offset", [-30.0, -1.0, 0.0, 29.5, 30.0])
def test_inside_the_window(offset: float) -> None:
    assert check(blob(now=NOW + offset)).issued == NOW + offset


@pytest.mark.parametrize("offset", [-30.5, -3600.0, 31.0, 86400.0])
def test_stale_or_future_fails(offset: float) -> None:
    with pytest.raises(AuthFailed, match="clocks"):
        check(blob(now=NOW + offset))


def test_hop_limit_is_a_temporary_failure() -> None:
    with pytest.raises(TempFail, match="hop limit") as caught:
        check(blob(hop=2))
    assert not isinstance(caught.value, AuthFailed)
    assert check(blob(hop=2), max_hops=2).hop == 2


def test_replay_fails() -> None:
    cache = ReplayCache(30.0)
    data = blob()
    check(data, replay=cache)
    with pytest.raises(AuthFailed, match="replayed"):
        check(data, replay=cache)
    with pytest.raises(AuthFailed, match="replayed"):
        check(data, replay=cache, now=NOW + 29)


def test_refused_logins_do_not_burn_their_nonce() -> None:
    cache = ReplayCache(30.0)
    with pytest.raises(AuthFailed):
        check(blob(target="node2"), replay=cache)
    assert len(cache) == 0
    check(blob(), replay=cache)


def test_fresh_nonce_passes_with_a_shared_cache() -> None:
    cache = ReplayCache(30.0)
    check(blob(nonce="a"), replay=cache)
    check(blob(nonce="b"), replay=cache)


def test_replay_cache_forgets_after_twice_the_window() -> None:
    cache = ReplayCache(10.0)
    assert cache.check_and_remember("n", 100.0)
    assert not cache.check_and_remember("n", 119.9)
    assert cache.check_and_remember("n", 120.0)


def test_replay_cache_memory_is_bounded() -> None:
    cache = ReplayCache(1.0)
    for second in range(10_000):
        assert cache.check_and_remember(f"n{second}", float(second))
    assert len(cache) <= 3


def test_new_nonce_is_random() -> None:
    nonces = {new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(len(nonce) >= 32 for nonce in nonces)


# -- the key file -------------------------------------------------------------------------------


def key_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> str:
    path = tmp_path / "mesh.key"
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


def test_load_key_strips_whitespace(tmp_path: Path) -> None:
    assert load_key(key_file(tmp_path, b"\n  " + b"a" * 40 + b"\n")) == b"a" * 40
    assert load_key(key_file(tmp_path, b"b" * 32, 0o400)) == b"b" * 32


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o660])
def test_load_key_refuses_loose_permissions(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ConfigError, match=r"mesh\.key_file: .*group or others") as caught:
        load_key(key_file(tmp_path, b"a" * 40, mode))
    assert caught.value.key == "mesh.key_file"


def test_load_key_refuses_short_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="31 bytes; at least 32"):
        load_key(key_file(tmp_path, b"  " + b"a" * 31 + b"  \n"))


def test_load_key_refuses_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mesh\.key_file: cannot read"):
        load_key(str(tmp_path / "absent"))
    os.chmod(tmp_path, 0o700)
    with pytest.raises(ConfigError, match=r"mesh\.key_file"):
        load_key(str(tmp_path))
