"""meshproxy.courier: Courier's configuration files, capabilities and the exec contract."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshproxy import courier
from meshproxy.account import Account, Options, Secrets
from meshproxy.config import Config, CourierConfig, parse
from meshproxy.courier import (
    CourierSettings,
    Session,
    exec_spec,
    imap_capabilities,
    plain_ip,
    pop3_auth_mechanisms,
    read_shell_vars,
)
from meshproxy.errors import ConfigError

pytestmark = pytest.mark.unit

DEBIAN = Path("/etc/courier")


def sh_vars(paths: list[Path]) -> dict[str, str]:
    """What ``env -i sh -c 'set -a; . a; . b; env'`` exports, minus the shell's own."""
    sources = "".join(f' . "${index + 1}";' for index in range(len(paths)))
    script = f"set -a;{sources} env -0"
    out = subprocess.run(
        ["env", "-i", "/bin/sh", "-c", script, "sh", *map(str, paths)],
        capture_output=True,
        check=True,
        cwd="/",
    ).stdout
    baseline = subprocess.run(
        ["env", "-i", "/bin/sh", "-c", "env -0"], capture_output=True, check=True, cwd="/"
    ).stdout
    shell_own = {item.split(b"=", 1)[0] for item in baseline.split(b"\0") if item}
    pairs = (item.split(b"=", 1) for item in out.split(b"\0") if item)
    return {
        key.decode(): value.decode("utf-8", "surrogateescape")
        for key, value in pairs
        if key not in shell_own
    }


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- read_shell_vars against the real Debian files -------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("imapd", "imapd-ssl"), ("pop3d", "pop3d-ssl")])
def test_debian_files_match_sh(first: str, second: str) -> None:
    paths = [DEBIAN / first, DEBIAN / second]
    assert read_shell_vars(paths) == sh_vars(paths)


def test_debian_imapd_values() -> None:
    variables = read_shell_vars([DEBIAN / "imapd", DEBIAN / "imapd-ssl"])
    assert variables["IMAP_CAPABILITY_TLS"] == variables["IMAP_CAPABILITY"] + " AUTH=PLAIN"
    assert variables["TLS_STARTTLS_PROTOCOL"] == ""


# -- read_shell_vars on synthetic files, each checked against /bin/sh ------------------------

SYNTHETIC = {
    "plain": "A=1\nB=two\n",
    "expansion": 'A=1\nB=$A\nC="${A}x$B"\nD=${A}y\nE=$UNSET-z\n',
    "single quotes": "A='it'\"'\"'s'\nB='$A \\ \"'\nC='multi\nline'\n",
    "double quotes": 'A=x\nB="a \\"q\\" \\$A \\\\ \\z $A"\n',
    "backslashes": "A=a\\ b\nB=\\$x\nC=\\\\\n",
    "continuation": "A=\"one \\\ntwo\"\nB=foo\\\nbar\nC='x\\\ny'\n\\\nD=4\n",
    "comments": '# comment\n\n   # indented\nA=1 # trailing\nB=a#b\nC="#"\n',
    "several per line": "A=1 B=2; C=$A$B;D=$C\n\tE=5\n",
    "export": "export A=1\nexport A\nexport B\nexport C=$A D=2\n",
    "literal dollar": 'A=$\nB="cost $"\nC=a$\nD=$.x\nE="$"\n',
    "empty": "A=\nB=\"\"\nC=''\n",
    "override": "A=1\nA=2\nB=$A\n",
    "no trailing newline": "A=1",
    "utf-8": "GREETING='héllo wörld'\n",
}


@pytest.mark.parametrize("text", SYNTHETIC.values(), ids=SYNTHETIC.keys())
def test_synthetic_matches_sh(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "conf", text)
    assert read_shell_vars([path]) == sh_vars([path])


def test_second_file_sees_and_overrides_first(tmp_path: Path) -> None:
    first = write(tmp_path, "a", "A=1\nB=b\n")
    second = write(tmp_path, "b", 'A="$A$A"\nC=$B\n')
    assert read_shell_vars([first, second]) == {"A": "11", "B": "b", "C": "b"}
    assert read_shell_vars([first, second]) == sh_vars([first, second])


def test_expected_values(tmp_path: Path) -> None:
    quotes = read_shell_vars([write(tmp_path, "q", SYNTHETIC["double quotes"])])
    assert quotes["B"] == 'a "q" $A \\ \\z x'
    lines = read_shell_vars([write(tmp_path, "c", SYNTHETIC["continuation"])])
    assert lines == {"A": "one two", "B": "foobar", "C": "x\\\ny", "D": "4"}


def test_missing_file_is_skipped(tmp_path: Path) -> None:
    present = write(tmp_path, "a", "A=1\n")
    assert read_shell_vars([tmp_path / "missing", present]) == {"A": "1"}


def test_initial_variables(tmp_path: Path) -> None:
    path = write(tmp_path, "a", "B=$prefix/lib\n")
    assert read_shell_vars([path], {"prefix": "/usr"}) == {"prefix": "/usr", "B": "/usr/lib"}


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_shell_vars([tmp_path])
    assert info.value.key == str(tmp_path)


BAD = {
    "command": ("A=1\n\necho hi\n", 3),
    "command substitution": ("A=$(date)\n", 1),
    "backquotes": ("A=`date`\n", 1),
    "backquotes in double quotes": ('A="`date`"\n', 1),
    "default expansion": ("A=1\nB=${A:-x}\n", 2),
    "unterminated single": ("A=1\nB='open\n", 2),
    "unterminated double": ('A="open\n', 2),
    "positional": ("A=$1\n", 1),
    "pipe": ("A=1 | cat\n", 1),
    "redirection": ("A=1 >/tmp/x\n", 1),
    "command after assignment": ("A=1 true\n", 1),
    "export of a non-name": ("export 1A\n", 1),
    "unclosed brace": ("A=${B\n", 1),
}


@pytest.mark.parametrize(("text", "line"), BAD.values(), ids=BAD.keys())
def test_unsupported_syntax_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, "imapd", text)
    with pytest.raises(ConfigError) as info:
        read_shell_vars([path])
    assert info.value.key == f"{path}:{line}"
    assert str(path) in str(info.value)


# -- capabilities ----------------------------------------------------------------------------


def test_capabilities_minimal() -> None:
    assert imap_capabilities({}, tls=False) == ("IMAP4rev1", "ENABLE", "UTF8=ACCEPT")
    assert imap_capabilities({}, tls=True) == ("IMAP4rev1", "ENABLE", "UTF8=ACCEPT")


def test_capabilities_debian() -> None:
    settings = CourierSettings(imap_vars=read_shell_vars([DEBIAN / "imapd", DEBIAN / "imapd-ssl"]))
    expected = (
        *("IMAP4rev1", "UIDPLUS", "CHILDREN", "NAMESPACE", "THREAD=ORDEREDSUBJECT"),
        *("THREAD=REFERENCES", "SORT", "QUOTA", "IDLE", "ACL", "ACL2=UNION", "ENABLE"),
        "UTF8=ACCEPT",
    )
    assert settings.imap_capabilities(tls=False) == expected
    assert settings.imap_capabilities(tls=True) == expected


def test_capabilities_contract_example() -> None:
    variables = {
        "IMAP_CAPABILITY": "IMAP4rev1 NOTUSED",
        "IMAP_CAPABILITY_TLS": "IMAP4rev1 IDLE AUTH=PLAIN",
        "IMAP_ID_FIELDS": "name",
        "IMAP_ACL": "0",
        "OUTBOX": ".Outbox",
        "IMAP_MOVE_EXPUNGE_TO_TRASH": "1",
    }
    assert imap_capabilities(variables, tls=True) == (
        "IMAP4rev1",
        "IDLE",
        "ID",
        "XCOURIEROUTBOX=INBOX.Outbox",
        "XMAGICTRASH",
        "ENABLE",
        "UTF8=ACCEPT",
    )
    assert imap_capabilities(variables, tls=False)[:3] == ("IMAP4rev1", "NOTUSED", "ID")


def test_capabilities_rules() -> None:
    base = {"IMAP_CAPABILITY": "IMAP4rev1 STARTTLS LOGINDISABLED auth=cram-md5 SORT"}
    assert imap_capabilities(base, tls=False)[:2] == ("IMAP4rev1", "SORT")
    assert "ID" in imap_capabilities({"IMAP_ID_FIELDS": ""}, tls=False)
    assert "ACL" not in imap_capabilities({"IMAP_ACL": "no"}, tls=False)
    assert "ACL2=UNION" in imap_capabilities({"IMAP_ACL": " 2x"}, tls=False)
    assert "XCOURIEROUTBOX=INBOX" not in " ".join(imap_capabilities({"OUTBOX": ""}, tls=False))
    smap = imap_capabilities({"SMAP_CAPABILITY": "SMAP1", "IMAP_KEYWORDS": "1"}, tls=False)
    assert smap[:3] == ("IMAP4rev1", "SMAP1", "KEYWORDS")
    empty_tls = {"IMAP_CAPABILITY": "X", "IMAP_CAPABILITY_TLS": ""}
    assert imap_capabilities(empty_tls, tls=True)[0] == "X"
    files_say_tls = {"IMAP_TLS": "1", "IMAP_CAPABILITY": "X", "IMAP_CAPABILITY_TLS": "Y"}
    assert imap_capabilities(files_say_tls, tls=False)[0] == "Y"


def test_pop3_auth_mechanisms() -> None:
    variables = {"POP3AUTH": "PLAIN LOGIN CRAM-MD5", "POP3AUTH_TLS": "PLAIN"}
    assert pop3_auth_mechanisms(variables, tls=False) == ("PLAIN", "LOGIN", "CRAM-MD5")
    assert pop3_auth_mechanisms(variables, tls=True) == ("PLAIN",)
    assert pop3_auth_mechanisms({"POP3AUTH": "LOGIN", "POP3AUTH_TLS": ""}, tls=True) == ("LOGIN",)
    assert pop3_auth_mechanisms({}, tls=True) == ()


# -- settings ----------------------------------------------------------------------------------


def config_for(directory: Path | str, **courier_keys: str) -> Config:
    return parse({"courier": {"config_dir": str(directory), **courier_keys}})


def test_load_debian() -> None:
    settings = courier.load(Config())
    assert settings.imap_vars["IMAP_ULIMITD"] == "131072"
    assert settings.pop3_vars["MAXPERIP"] == "4"
    assert settings.umask("imap") == 0o022
    assert settings.limit_as("imap") == 131072 * 1024
    assert settings.limit_as("pop3") is None
    assert settings.flag("imap", "IMAP_ACL")
    assert not settings.flag("pop3", "POP3_PROXY")


def test_load_reads_both_files_of_each_service(tmp_path: Path) -> None:
    write(tmp_path, "imapd", "A=imap\nIMAP_UMASK=027\nIMAP_ULIMITD=unlimited\n")
    write(tmp_path, "imapd-ssl", "B=$A-ssl\n")
    write(tmp_path, "pop3d-ssl", "C=pop\n")
    settings = courier.load(config_for(tmp_path))
    assert settings.imap_vars == {
        "A": "imap",
        "IMAP_UMASK": "027",
        "IMAP_ULIMITD": "unlimited",
        "B": "imap-ssl",
    }
    assert settings.pop3_vars == {"C": "pop"}
    assert settings.umask("imap") == 0o027
    assert settings.limit_as("imap") is None


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        courier.load(config_for(tmp_path / "nope"))
    assert info.value.key == "courier.config_dir"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("IMAP_UMASK=9\n", "IMAP_UMASK"),
        ("IMAP_UMASK=1777\n", "IMAP_UMASK"),
        ("IMAP_ULIMITD=lots\n", "IMAP_ULIMITD"),
    ],
)
def test_load_rejects_bad_limits(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path, "imapd", text)
    with pytest.raises(ConfigError) as info:
        courier.load(config_for(tmp_path))
    assert info.value.key == key


def test_unknown_service() -> None:
    with pytest.raises(ValueError, match="smtp"):
        CourierSettings().vars_for("smtp")


def test_config_files() -> None:
    files = courier.config_files(config_for("/etc/x"))
    assert files["imap"] == (Path("/etc/x/imapd"), Path("/etc/x/imapd-ssl"))
    assert files["pop3"] == (Path("/etc/x/pop3d"), Path("/etc/x/pop3d-ssl"))


# -- exec_spec ---------------------------------------------------------------------------------

SETTINGS = CourierSettings(
    imap_vars={
        "IMAP_CAPABILITY": "IMAP4rev1",
        "IMAP_UMASK": "027",
        "IMAP_ULIMITD": "1000",
        "IMAP_STARTTLS": "YES",
        "IMAP_TLS_REQUIRED": "1",
    },
    pop3_vars={"POP3AUTH": "", "PATH": "/opt/bin", "POP3_STARTTLS": "YES"},
)
ACCOUNT = Account(
    login="user@example.com",
    uid=1001,
    gid=1002,
    home="/home/user",
    options=Options("disableshared=1,mailhost=a"),
    secrets=Secrets(hashed={"": "$1$salt$hash"}, clear={"": "secret-password"}),
)


def imap_session(*, tls: bool = False) -> Session:
    return Session("imap", "::ffff:192.0.2.7", 40001, "192.0.2.1", 143, tls, tag="a1")


def pop3_session(*, tls: bool = False, utf8: bool = False) -> Session:
    return Session("pop3", "2001:db8::7", 40002, "2001:db8::1", 110, tls, utf8=utf8)


def test_exec_spec_imap_plain() -> None:
    spec = exec_spec(SETTINGS, Config(), ACCOUNT, imap_session())
    assert spec.argv == ("/usr/bin/imapd", "Maildir")
    assert spec.cwd == "/home/user"
    assert (spec.uid, spec.gid, spec.groups, spec.system_user) == (1001, 1002, (1002,), None)
    assert spec.umask == 0o027
    assert spec.limit_as == 1000 * 1024
    assert spec.env == {
        "IMAP_CAPABILITY": "IMAP4rev1",
        "IMAP_UMASK": "027",
        "IMAP_ULIMITD": "1000",
        "IMAP_STARTTLS": "NO",
        "IMAP_TLS_REQUIRED": "1",
        "PATH": courier.DEFAULT_PATH,
        "TCPREMOTEIP": "192.0.2.7",
        "TCPREMOTEPORT": "40001",
        "TCPLOCALIP": "192.0.2.1",
        "TCPLOCALPORT": "143",
        "AUTHENTICATED": "user@example.com",
        "OPTIONS": "disableshared=1,mailhost=a",
        "IMAPLOGINTAG": "a1",
        "PROTOCOL": "IMAP",
    }


def test_exec_spec_imap_tls() -> None:
    env = exec_spec(SETTINGS, Config(), ACCOUNT, imap_session(tls=True)).env
    assert (env["IMAP_TLS"], env["IMAP_STARTTLS"], env["IMAP_TLS_REQUIRED"]) == ("1", "NO", "0")


def test_exec_spec_pop3() -> None:
    config = parse({"courier": {"pop3d": "/opt/pop3d", "maildir": "Mail"}})
    spec = exec_spec(SETTINGS, config, ACCOUNT, pop3_session())
    assert spec.argv == ("/opt/pop3d", "Mail")
    assert spec.umask == 0o022
    assert spec.limit_as is None
    assert spec.env == {
        "POP3AUTH": "",
        "PATH": "/opt/bin",
        "POP3_STARTTLS": "NO",
        "TCPREMOTEIP": "2001:db8::7",
        "TCPREMOTEPORT": "40002",
        "TCPLOCALIP": "2001:db8::1",
        "TCPLOCALPORT": "110",
        "AUTHENTICATED": "user@example.com",
        "OPTIONS": "disableshared=1,mailhost=a",
        "UTF8": "0",
    }


def test_exec_spec_pop3_tls_utf8() -> None:
    env = exec_spec(SETTINGS, Config(), ACCOUNT, pop3_session(tls=True, utf8=True)).env
    assert (env["UTF8"], env["POP3_TLS"], env["POP3_TLS_REQUIRED"]) == ("1", "1", "0")
    assert "PROTOCOL" not in env
    assert "IMAPLOGINTAG" not in env


def test_exec_spec_account_maildir_and_system_user() -> None:
    account = Account(
        login="sys",
        uid=1000,
        gid=100,
        home="/home/sys",
        maildir="/var/mail/sys",
        system_user="sys",
    )
    spec = exec_spec(SETTINGS, Config(), account, imap_session())
    assert spec.argv == ("/usr/bin/imapd", "/var/mail/sys")
    assert spec.groups is None
    assert spec.system_user == "sys"
    assert spec.env["OPTIONS"] == ""


def test_exec_spec_default_options_merged() -> None:
    config = parse({"auth": {"default_options": "mailhost=b,disablepop3=0,group=staff"}})
    env = exec_spec(SETTINGS, config, ACCOUNT, imap_session()).env
    assert env["OPTIONS"] == "disableshared=1,mailhost=a,disablepop3=0,group=staff"


def test_exec_spec_never_carries_a_password() -> None:
    for session in (imap_session(), imap_session(tls=True), pop3_session()):
        spec = exec_spec(SETTINGS, Config(), ACCOUNT, session)
        assert not any("secret-password" in value for value in spec.env.values())
        assert not any("$1$salt" in value for value in spec.env.values())
        assert "env" not in repr(spec)


def test_exec_spec_unknown_service() -> None:
    session = Session("smtp", "127.0.0.1", 1, "127.0.0.1", 25, False)
    with pytest.raises(ValueError, match="smtp"):
        exec_spec(SETTINGS, Config(), ACCOUNT, session)


def test_exec_spec_config_files_precede_session_vars() -> None:
    settings = CourierSettings(imap_vars={"AUTHENTICATED": "evil", "TCPREMOTEIP": "x"})
    env = exec_spec(settings, Config(), ACCOUNT, imap_session()).env
    assert env["AUTHENTICATED"] == "user@example.com"
    assert env["TCPREMOTEIP"] == "192.0.2.7"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_plain_ip(given: str, expected: str) -> None:
    assert plain_ip(given) == expected


def test_courier_config_defaults() -> None:
    assert CourierConfig().imapd == "/usr/bin/imapd"
    assert Path(CourierConfig().pop3d).name == "courierpop3d"
