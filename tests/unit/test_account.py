"""Account records: Courier's option semantics and the mailhost list."""

from __future__ import annotations

import pytest

from meshproxy.account import Account, Options

pytestmark = pytest.mark.unit


def account(options: str) -> Account:
    return Account("u@example.com", 1001, 1001, "/home/u", options=Options(options))


@pytest.mark.parametrize(
    ("options", "hosts"),
    [
        ("", ()),
        ("disableimap=1", ()),
        ("mailhost=", ()),
        ("mailhost=mx1", ("mx1",)),
        ("mailhost=mx1,mx2", ("mx1", "mx2")),
        ("mailhost=mx1,mx2,mx3,disablepop3=1", ("mx1", "mx2", "mx3")),
        ("disablepop3=1,mailhost=mx1,mx2", ("mx1", "mx2")),
        ("mailhost=mx1 mx2|mx3", ("mx1", "mx2", "mx3")),
        ("mailhost=mx1,group=staff,mx2", ("mx1",)),
        ("mailhost=mx1,mailhost=mx9", ("mx1",)),
    ],
)
def test_mailhost_lists(options: str, hosts: tuple[str, ...]) -> None:
    """A comma list continues with the items that have no ``=`` (Courier stops a value at the
    first comma); the first mailhost entry wins, as Courier's lookup does."""
    assert account(options).mailhosts == hosts


def test_options_keep_courier_semantics_beside_a_host_list() -> None:
    options = Options("mailhost=mx1,mx2,disableimap=1")
    assert options.get("mailhost") == "mx1"
    assert options.flag("disableimap")
    assert not options.flag("disablepop3")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("0", False),
        ("", False),
        ("yes", True),
        ("T", True),
        ("12abc", True),
        ("-0", False),
        ("no", False),
    ],
)
def test_flag_follows_atoi_and_initials(value: str, expected: bool) -> None:
    assert Options(f"disableimap={value}").flag("disableimap") is expected


def test_disabled_for_insecure_only_without_tls() -> None:
    insecure = account("disableinsecureimap=1")
    assert insecure.disabled_for("imap", secure=False)
    assert not insecure.disabled_for("imap", secure=True)
    assert not insecure.disabled_for("pop3", secure=False)
