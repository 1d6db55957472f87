"""Courier's rc-file and authdaemonrc formats, as authlib's readers parse them."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshproxy.auth import authlibrc
from meshproxy.errors import ConfigError
from meshproxy.sourceconfig import LdapConfig, MysqlConfig

MARKER = "##NAME: MARKER:0\n"


def parse(text: str) -> dict[str, str]:
    return dict(authlibrc.parse_rc(text + MARKER).values)


def test_key_and_value_are_split_at_blanks_and_trimmed() -> None:
    assert parse("MYSQL_SERVER \t  db.example  \t\r\n") == {"MYSQL_SERVER": "db.example"}


def test_value_keeps_inner_blanks_and_quotes() -> None:
    text = "MYSQL_HOME_FIELD \"/home/vmail\"\nMYSQL_WHERE_CLAUSE a = 'x y'  AND b\n"
    assert parse(text) == {
        "MYSQL_HOME_FIELD": '"/home/vmail"',
        "MYSQL_WHERE_CLAUSE": "a = 'x y'  AND b",
    }


def test_first_definition_wins() -> None:
    assert parse("KEY one\nKEY two\n") == {"KEY": "one"}


def test_backslash_continues_with_a_space() -> None:
    assert parse("KEY CONCAT(a, \\\n     b)\n") == {"KEY": "CONCAT(a,  b)"}


def test_continuation_line_is_never_a_comment() -> None:
    assert parse("KEY a \\\n  # b\n") == {"KEY": "a  # b"}


def test_continuation_over_several_lines_and_blank_end() -> None:
    assert parse("KEY a\\\nb\\\n\nNEXT c\n") == {"KEY": "a b ", "NEXT": "c"}


def test_comments_and_blank_lines_are_skipped() -> None:
    assert parse("# KEY x\n   # OTHER y\n\n \t\nKEY z\n") == {"KEY": "z"}


def test_key_without_value_is_present_and_empty() -> None:
    assert parse("LDAP_FILTER\n") == {"LDAP_FILTER": ""}


def test_last_line_without_newline_counts() -> None:
    assert dict(authlibrc.parse_rc(MARKER + "KEY last").values) == {"KEY": "last"}


def test_marker_line_is_required_in_column_zero() -> None:
    with pytest.raises(ConfigError, match="MARKER"):
        authlibrc.parse_rc("KEY x\n ##NAME: MARKER:0\n", "/etc/courier/authmysqlrc")
    with pytest.raises(ConfigError):
        authlibrc.parse_rc("KEY x\n##NAME: install:0\n")


def test_authdaemonrc_module_list_and_default_options() -> None:
    text = (
        "# comment\n"
        'authmodulelist="authuserdb authpam"\n'
        'authmodulelist="authuserdb  authmysql\tauthldap" # trailing comment\n'
        'authmodulelistorig="authuserdb authpam authpgsql"\n'
        "daemons=5\n"
        "DEFAULTOPTIONS='wbnodsn=1,disableshared=1'\n"
    )
    settings = authlibrc.parse_authdaemonrc(text)
    assert settings.modules == ("authuserdb", "authmysql", "authldap")
    assert settings.default_options == "wbnodsn=1,disableshared=1"


def test_authdaemonrc_unquoted_value_and_bad_line() -> None:
    assert authlibrc.parse_authdaemonrc("authmodulelist=authpgsql\n").modules == ("authpgsql",)
    with pytest.raises(ConfigError, match=":2"):
        authlibrc.parse_authdaemonrc("daemons=1\nexport FOO\n", "authdaemonrc")


def test_rc_keys_fill_the_config_dataclasses() -> None:
    rc = authlibrc.parse_rc(
        "MYSQL_SERVER db\nMYSQL_PORT 3307\nMYSQL_AUXOPTIONS_FIELD CONCAT('mailhost=',host)\n"
        "MYSQL_AUXOPTIONS wrong-name-is-ignored\nDEFAULT_DOMAIN example.org\n" + MARKER
    )
    config = authlibrc.mysql_config(rc)
    assert config == MysqlConfig(
        server="db",
        port=3307,
        auxoptions_field="CONCAT('mailhost=',host)",
        default_domain="example.org",
    )


def test_bad_number_names_the_key() -> None:
    rc = authlibrc.parse_rc("MYSQL_PORT abc\n" + MARKER, "/x/authmysqlrc")
    with pytest.raises(ConfigError, match="MYSQL_PORT"):
        authlibrc.mysql_config(rc)


def test_ldap_binddn_counts_only_with_initbind() -> None:
    text = "LDAP_URI ldap://h\nLDAP_BASEDN o=x\nLDAP_BINDDN cn=a\nLDAP_BINDPW s\nLDAP_AUTHBIND 1\n"
    without = authlibrc.ldap_config(authlibrc.parse_rc(text + MARKER))
    assert (without.binddn, without.bindpw, without.authbind) == ("", "", True)
    with_bind = authlibrc.ldap_config(authlibrc.parse_rc(text + "LDAP_INITBIND 1\n" + MARKER))
    assert with_bind == LdapConfig(
        uri="ldap://h", basedn="o=x", binddn="cn=a", bindpw="s", authbind=True
    )


def test_ldap_emailmap_is_refused() -> None:
    rc = authlibrc.parse_rc("LDAP_EMAILMAP (x=@user@)\n" + MARKER, "authldaprc")
    with pytest.raises(ConfigError, match="LDAP_EMAILMAP"):
        authlibrc.ldap_config(rc)


def test_read_rc_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        authlibrc.read_rc(str(tmp_path / "authmysqlrc"))


def test_glob_ids_resolve_names_and_numbers() -> None:
    assert authlibrc.resolve_uid("0") == 0
    assert authlibrc.resolve_uid("root") == 0
    assert authlibrc.resolve_gid("root") == 0
    assert authlibrc.resolve_uid("") is None
    with pytest.raises(ConfigError):
        authlibrc.resolve_gid("no-such-group-here")
