"""auth.userdb: the text format, directories, problems, reloading, unavailability."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth import open_source
from meshproxy.auth.base import BackendUnavailable
from meshproxy.auth.passwords import verify
from meshproxy.auth.userdb import NEVER_MATCHES, UserdbSource, parse_account, parse_fields
from meshproxy.config import parse

pytestmark = pytest.mark.unit

MD5_SECRET = "$1$.jfXlut.$6TCUT0xrojWI1Qsp2Q3iy0"  # echo secret | userdbpw -md5
STATE = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"

FULL = (
    "alice@example.com\tuid=1001|gid=1002|home=/home/alice|shell=/bin/sh|mail=/home/alice/Mail"
    "|quota=1000S|gecos=Alice|options=mailhost=b.example,disablepop3=1"
    f"|systempw={MD5_SECRET}|imappw={{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ="
    f"|hmac-md5pw={STATE}|pop3-hmac-md5pw=00|webmailpw=x|hmac-sha1pw=y|_=ignored\n"
)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def bump(path: Path, text: str) -> None:
    """Rewrite with a distinct mtime, so the change is seen even on coarse clocks."""
    old = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(old + 1_000_000_000, old + 1_000_000_000))


@pytest.fixture
def udb(tmp_path: Path) -> Path:
    return write(tmp_path / "userdb", FULL)


def test_full_record_maps_to_an_account(udb: Path) -> None:
    source = UserdbSource(str(udb))
    expected = Account(
        login="alice@example.com",
        uid=1001,
        gid=1002,
        home="/home/alice",
        maildir="/home/alice/Mail",
        options=Options("mailhost=b.example,disablepop3=1"),
        secrets=Secrets(
            hashed={
                "": MD5_SECRET,
                "imap": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
                "webmail": "x",
            },
            hmac_md5={"": STATE, "pop3": "00"},
        ),
        source="userdb",
    )
    assert source.lookup("alice@example.com") == expected
    assert source.problems == []


def test_service_passwords_win_over_systempw(udb: Path) -> None:
    account = UserdbSource(str(udb)).lookup("alice@example.com")
    assert account is not None
    assert account.secrets.hashed_for("imap") == "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="
    assert account.secrets.hashed_for("pop3") == MD5_SECRET
    assert account.secrets.hmac_md5_for("imap") == STATE
    assert account.secrets.hmac_md5_for("pop3") == "00"
    assert account.secrets.clear_for("imap") is None


def test_lookup_is_case_sensitive_and_exact(udb: Path) -> None:
    source = UserdbSource(str(udb))
    assert source.lookup("Alice@example.com") is None
    assert source.lookup("alice@example.com ") is None
    assert source.lookup("alice") is None
    assert source.lookup("") is None


def test_comments_blank_lines_and_reverse_uid_records_are_silent(tmp_path: Path) -> None:
    text = (
        "# a comment\n\n   \n\t\n1001=\tbob\nbob\tuid=1|gid=2|home=/b\n#bob2\tuid=1|gid=2|home=/x\n"
    )
    source = UserdbSource(str(write(tmp_path / "userdb", text)))
    assert source.lookup("bob") is not None
    assert source.lookup("#bob2") is None
    assert source.lookup("1001=") is None
    assert source.problems == []


MALFORMED = [
    ("no tab here", "no TAB"),
    ("nohome\tuid=1|gid=1", "home"),
    ("emptyhome\tuid=1|gid=1|home=", "home"),
    ("nouid\tgid=1|home=/x", "numeric"),
    ("nogid\tuid=1|home=/x", "numeric"),
    ("nameuid\tuid=mtest|gid=1|home=/x", "numeric"),
    ("neguid\tuid=-1|gid=1|home=/x", "numeric"),
    ("spaceuid\tuid= 1|gid=1|home=/x", "numeric"),
    ("\tuid=1|gid=1|home=/x", "empty account name"),
    ("twotabs\tx\tuid=1|gid=1|home=/x", "numeric"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
def test_malformed_lines_are_skipped_with_a_reason(tmp_path: Path, line: str, reason: str) -> None:
    text = f"good\tuid=1|gid=1|home=/g\n{line}\n"
    source = UserdbSource(str(write(tmp_path / "userdb", text)))
    assert source.lookup("good") is not None
    assert source.lookup(line.partition("\t")[0]) is None
    assert len(source.problems) == 1
    assert reason in source.problems[0]
    assert source.problems[0].startswith(f"{tmp_path / 'userdb'}:2: ")


def test_duplicate_keeps_the_first_and_reports(tmp_path: Path) -> None:
    text = "dup\tuid=1|gid=1|home=/first\ndup\tuid=2|gid=2|home=/second\n"
    source = UserdbSource(str(write(tmp_path / "userdb", text)))
    account = source.lookup("dup")
    assert account is not None
    assert account.home == "/first"
    assert len(source.problems) == 1
    assert "duplicate 'dup'" in source.problems[0]


def test_crlf_is_reported_and_kept_like_courier(tmp_path: Path) -> None:
    source = UserdbSource(str(write(tmp_path / "userdb", "crlf\tuid=1|gid=1|home=/c\r\n")))
    account = source.lookup("crlf")
    assert account is not None
    assert account.home == "/c\r"
    assert "CR" in source.problems[0]


def test_fields_first_key_wins_and_bare_keys_are_empty() -> None:
    assert parse_fields("a=1|b|a=2|c=x=y") == {"a": "1", "b": "", "c": "x=y"}


def test_name_may_hold_spaces_and_at_signs() -> None:
    account, reason = parse_account("a b@c", "uid=1|gid=2|home=/h")
    assert reason == ""
    assert account is not None
    assert account.login == "a b@c"


def test_empty_mail_means_no_maildir() -> None:
    account, _ = parse_account("m", "uid=1|gid=2|home=/h|mail=")
    assert account is not None
    assert account.maildir is None
    assert account.options == Options("")


def test_present_but_empty_secrets_never_match_and_do_not_fall_back() -> None:
    fields = f"uid=1|gid=1|home=/h|systempw={MD5_SECRET}|imappw=|hmac-md5pw={STATE}|imap-hmac-md5pw"
    account, _ = parse_account("e", fields)
    assert account is not None
    assert account.secrets.hashed_for("imap") == NEVER_MATCHES
    assert account.secrets.hashed_for("pop3") == MD5_SECRET
    assert account.secrets.hmac_md5_for("imap") == NEVER_MATCHES
    assert not verify(NEVER_MATCHES, "secret")
    assert not verify(NEVER_MATCHES, NEVER_MATCHES)


def test_odd_secret_keys_are_ignored() -> None:
    account, _ = parse_account("o", "uid=1|gid=1|home=/h|pw=a|-hmac-md5pw=b|hmac-sha1pw=c")
    assert account is not None
    assert account.secrets == Secrets()


def test_non_utf8_bytes_survive_as_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "userdb"
    path.write_bytes(b"caf\xe9\tuid=1|gid=1|home=/h\xe9\n")
    path.chmod(0o600)
    account = UserdbSource(str(path)).lookup("caf\udce9")
    assert account is not None
    assert account.home == "/h\udce9"


def test_group_or_world_permissions_are_reported(tmp_path: Path) -> None:
    source = UserdbSource(str(write(tmp_path / "userdb", "x\tuid=1|gid=1|home=/h\n", 0o644)))
    assert source.lookup("x") is not None
    assert source.problems == [
        f"{tmp_path / 'userdb'}: group or other permissions set (makeuserdb refuses this)"
    ]


# --- directories ----------------------------------------------------------------------------


@pytest.fixture
def udb_dir(tmp_path: Path) -> Path:
    root = tmp_path / "userdb"
    root.mkdir(mode=0o700)
    (root / "sub").mkdir()
    write(root / "a", "one\tuid=1|gid=1|home=/1\n")
    write(root / "sub" / "b", "two\tuid=2|gid=2|home=/2\n")
    write(root / ".hidden", "hidden\tuid=3|gid=3|home=/3\n")
    write(root / "c~", "backup\tuid=4|gid=4|home=/4\n")
    (root / ".git").mkdir()
    write(root / ".git" / "d", "gitted\tuid=5|gid=5|home=/5\n")
    return root


def test_directory_reads_every_file_recursively(udb_dir: Path) -> None:
    source = UserdbSource(str(udb_dir))
    assert source.lookup("one") is not None
    assert source.lookup("two") is not None
    assert source.problems == []


@pytest.mark.parametrize("name", ["hidden", "backup", "gitted"])
def test_directory_skips_dotfiles_and_backups(udb_dir: Path, name: str) -> None:
    assert UserdbSource(str(udb_dir)).lookup(name) is None


def test_duplicate_across_files_is_reported(udb_dir: Path) -> None:
    write(udb_dir / "z", "one\tuid=9|gid=9|home=/9\n")
    source = UserdbSource(str(udb_dir))
    account = source.lookup("one")
    assert account is not None
    assert account.uid == 1
    assert source.problems == [
        f"{udb_dir / 'z'}:1: duplicate 'one' ignored (makeuserdb refuses it)"
    ]


def test_directory_symlink_loop_terminates(udb_dir: Path) -> None:
    (udb_dir / "sub" / "loop").symlink_to(udb_dir)
    source = UserdbSource(str(udb_dir))
    assert source.lookup("two") is not None


# --- reloading ------------------------------------------------------------------------------


def test_unchanged_files_are_not_re_read(udb: Path) -> None:
    source = UserdbSource(str(udb))
    first = source.lookup("alice@example.com")
    assert first is not None
    assert source.lookup("alice@example.com") is first


def test_edit_in_place_is_seen(tmp_path: Path) -> None:
    path = write(tmp_path / "userdb", "u\tuid=1|gid=1|home=/old\n")
    source = UserdbSource(str(path))
    assert source.lookup("u") is not None
    bump(path, "u\tuid=1|gid=1|home=/new\n")
    account = source.lookup("u")
    assert account is not None
    assert account.home == "/new"


def test_same_size_same_mtime_but_new_inode_is_seen(tmp_path: Path) -> None:
    path = write(tmp_path / "userdb", "u\tuid=1|gid=1|home=/aaa\n")
    source = UserdbSource(str(path))
    assert source.lookup("u") is not None
    stamp = path.stat().st_mtime_ns
    replacement = write(tmp_path / "new", "u\tuid=1|gid=1|home=/bbb\n")
    os.utime(replacement, ns=(stamp, stamp))
    replacement.replace(path)
    account = source.lookup("u")
    assert account is not None
    assert account.home == "/bbb"


def test_problems_are_recomputed_on_reload(tmp_path: Path) -> None:
    path = write(tmp_path / "userdb", "broken line\n")
    source = UserdbSource(str(path))
    assert source.lookup("x") is None
    assert len(source.problems) == 1
    bump(path, "x\tuid=1|gid=1|home=/x\n")
    assert source.lookup("x") is not None
    assert source.problems == []


def test_new_and_removed_files_in_a_directory_are_seen(udb_dir: Path) -> None:
    source = UserdbSource(str(udb_dir))
    assert source.lookup("three") is None
    write(udb_dir / "sub" / "c", "three\tuid=3|gid=3|home=/3\n")
    assert source.lookup("three") is not None
    (udb_dir / "a").unlink()
    assert source.lookup("one") is None
    assert source.lookup("three") is not None


def test_close_drops_the_cache_and_lookup_reloads(udb: Path) -> None:
    source = UserdbSource(str(udb))
    first = source.lookup("alice@example.com")
    source.close()
    again = source.lookup("alice@example.com")
    assert again == first
    assert again is not first


# --- unavailability -------------------------------------------------------------------------


def test_missing_file_is_unavailable_not_unknown(tmp_path: Path) -> None:
    source = UserdbSource(str(tmp_path / "nope"))
    with pytest.raises(BackendUnavailable, match="nope"):
        source.lookup("anyone")


def test_file_removed_after_loading_is_unavailable(udb: Path) -> None:
    source = UserdbSource(str(udb))
    assert source.lookup("alice@example.com") is not None
    udb.unlink()
    with pytest.raises(BackendUnavailable):
        source.lookup("alice@example.com")
    write(udb, FULL)
    assert source.lookup("alice@example.com") is not None


def test_dangling_symlink_in_a_directory_is_unavailable(udb_dir: Path) -> None:
    (udb_dir / "gone").symlink_to(udb_dir / "does-not-exist")
    with pytest.raises(BackendUnavailable, match="gone"):
        UserdbSource(str(udb_dir)).lookup("one")


def test_symlink_loop_as_the_path_is_unavailable(tmp_path: Path) -> None:
    loop = tmp_path / "userdb"
    loop.symlink_to(loop)
    with pytest.raises(BackendUnavailable):
        UserdbSource(str(loop)).lookup("one")


def test_fifo_inside_a_directory_is_not_read(udb_dir: Path) -> None:
    os.mkfifo(udb_dir / "pipe")
    source = UserdbSource(str(udb_dir))
    assert source.lookup("one") is not None
    assert source.problems == []


def test_fifo_as_the_path_is_unavailable(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "userdb")
    with pytest.raises(BackendUnavailable, match="neither a file nor a directory"):
        UserdbSource(str(tmp_path / "userdb")).lookup("one")


def test_refresh_raises_for_check_config(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable):
        UserdbSource(str(tmp_path / "nope")).refresh()


# --- construction ---------------------------------------------------------------------------


def test_open_source_builds_userdb_from_config(udb: Path) -> None:
    config = parse({"auth": {"source": "userdb", "userdb": {"path": str(udb)}}})
    source = open_source(config)
    assert isinstance(source, UserdbSource)
    assert source.path == str(udb)
    assert source.lookup("alice@example.com") is not None
