"""meshproxy.config: parsing, validation, and the documentation of every key."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from meshproxy import config as config_module
from meshproxy.config import Config, iter_keys, load, parse, parse_address, validate
from meshproxy.errors import ConfigError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "deploy" / "meshproxy.toml.example"


def nested(key: str, value: Any) -> dict[str, Any]:
    """``"a.b.c", v`` -> ``{"a": {"b": {"c": v}}}``."""
    data: dict[str, Any] = {}
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def check(data: dict[str, Any]) -> Config:
    config = parse(data)
    validate(config)
    return config


# -- documentation -----------------------------------------------------------------------------


def test_every_key_is_documented() -> None:
    text = DOCS.read_text()
    missing = [key for key, _ in iter_keys() if f"`{key}`" not in text]
    assert missing == []


def test_every_documented_key_exists() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text, re.MULTILINE))
    assert documented == {key for key, _ in iter_keys()}


def test_every_key_has_help() -> None:
    assert all(help_text for _, help_text in iter_keys())


def test_documented_defaults_match() -> None:
    text = DOCS.read_text()
    defaults = flat_defaults(Config())
    for key, default in defaults.items():
        row = re.search(rf"^\| `{re.escape(key)}` \| [a-z]+ \| `([^`]*)` \|", text, re.MULTILINE)
        assert row, key
        assert tomllib.loads(f"v = {row.group(1)}")["v"] == default, key


def flat_defaults(obj: Any, prefix: str = "") -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(obj):
        value = getattr(obj, spec.name)
        key = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            values.update(flat_defaults(value, f"{key}."))
        else:
            values[key] = value
    return values


# -- the example -------------------------------------------------------------------------------


def test_example_loads_and_validates() -> None:
    config = load(EXAMPLE)
    assert config.imap.tls_listen == ["0.0.0.0:993"]
    assert config.tls.cert == config.tls.key == "/etc/courier/imapd.pem"


@pytest.mark.parametrize("source", ["ldap", "mysql", "pgsql"])
def test_example_source_tables_are_complete(source: str) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    data["auth"]["source"] = source
    config = check(data)
    assert list(config_module.source_problems(config.auth)) == []
    assert getattr(config.auth, source) != getattr(Config().auth, source)


def test_example_sets_every_key() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(flat_keys(data)) == {key for key, _ in iter_keys()}


NAMED_TABLES = {"mesh.peers"}
"""Tables whose keys are names the operator chooses (one documented key each)."""


def flat_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, value in data.items():
        if isinstance(value, dict) and f"{prefix}{name}" not in NAMED_TABLES:
            keys += flat_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


# -- parsing -----------------------------------------------------------------------------------


def test_empty_is_all_defaults() -> None:
    assert check({}) == Config()


def test_defaults_are_not_shared() -> None:
    first, second = Config(), Config()
    first.imap.listen.append("x")
    assert second.imap.listen == ["127.0.0.1:143"]


def test_values_are_read() -> None:
    config = check(
        {
            "node": {"name": "n1"},
            "imap": {"listen": ["[::1]:1143"], "proxy": True},
            "auth": {"failure_delay": 1, "userdb": {"path": "/tmp/userdb"}},
            "limits": {"login_timeout": 5},
        }
    )
    assert config.node.name == "n1"
    assert config.imap.listen == ["[::1]:1143"]
    assert config.imap.proxy is True
    assert config.auth.failure_delay == 1.0
    assert isinstance(config.auth.failure_delay, float)
    assert config.auth.userdb.path == "/tmp/userdb"


PARSE_ERRORS = [
    ("imap.listn", ["x"], "imap.listn", "unknown key"),
    ("nosuch.key", 1, "nosuch", "unknown key"),
    ("imap.listen", "127.0.0.1:143", "imap.listen", "must be a list of str"),
    ("imap.listen", [143], "imap.listen", "must be a string"),
    ("imap.proxy", "yes", "imap.proxy", "must be true or false"),
    ("imap.proxy", 1, "imap.proxy", "must be true or false"),
    ("limits.max_line", True, "limits.max_line", "must be an integer"),
    ("limits.max_line", 1.5, "limits.max_line", "must be an integer"),
    ("limits.login_timeout", "60", "limits.login_timeout", "must be a number"),
    ("tls.cert", 1, "tls.cert", "must be a string"),
    ("auth.userdb", "path", "auth.userdb", "must be a table"),
    ("auth.userdb.file", "x", "auth.userdb.file", "unknown key"),
    ("auth.mysql.servr", "db", "auth.mysql.servr", "unknown key"),
    ("auth.ldap.authbind", "yes", "auth.ldap.authbind", "must be true or false"),
    ("auth.pgsql.port", "5432", "auth.pgsql.port", "must be an integer"),
]


@pytest.mark.parametrize(("key", "value", "named", "detail"), PARSE_ERRORS)
def test_parse_errors_name_their_key(key: str, value: Any, named: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(nested(key, value))
    assert info.value.key == named
    assert detail in str(info.value)
    assert str(info.value).startswith(f"{named}: ")


def test_section_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"imap": 1})
    assert info.value.key == "imap"


# -- validation --------------------------------------------------------------------------------

VALIDATION_ERRORS = [
    ({"imap": {"listen": ["143"]}}, "imap.listen", "is not host:port"),
    ({"imap": {"listen": ["host:0"]}}, "imap.listen", "is not host:port"),
    ({"pop3": {"tls_listen": ["h:65536"]}}, "pop3.tls_listen", "is not host:port"),
    ({"pop3": {"listen": [":110"]}}, "pop3.listen", "is not host:port"),
    ({"imap": {"sasl_mechanisms": ["GSSAPI"]}}, "imap.sasl_mechanisms", "unknown mechanism"),
    ({"pop3": {"sasl_mechanisms": ["XOAUTH2"]}}, "pop3.sasl_mechanisms", "unknown mechanism"),
    ({"imap": {"tls_listen": ["h:993"]}}, "imap.tls_listen", "needs tls.cert"),
    ({"tls": {"required": True}}, "tls.required", "needs tls.cert"),
    ({"tls": {"cert": "c.pem"}}, "tls.key", "go together"),
    ({"tls": {"key": "k.pem"}}, "tls.cert", "go together"),
    ({"auth": {"source": "nosuch"}}, "auth.source", "must be one of"),
    ({"auth": {"source": "ldap"}}, "auth.ldap.uri", "required"),
    ({"auth": {"source": "ldap", "ldap": {"uri": "ldap://h"}}}, "auth.ldap.basedn", "required"),
    ({"auth": {"source": "mysql"}}, "auth.mysql.username", "required"),
    ({"auth": {"source": "pgsql"}}, "auth.pgsql.connection", "required"),
    (
        {"auth": {"source": "pgsql", "pgsql": {"connection": "host=h", "user_table": "t"}}},
        "auth.pgsql.crypt_pwfield",
        "crypt_pwfield or clear_pwfield",
    ),
    (
        {"auth": {"source": "ldap", "ldap": {"uri": "u", "basedn": "b", "timeout": 0}}},
        "auth.ldap.timeout",
        "must be positive",
    ),
    ({"auth": {"failure_delay": -1}}, "auth.failure_delay", "negative"),
    ({"log": {"level": "LOUD"}}, "log.level", "must be one of"),
    ({"limits": {"max_per_ip": 0}}, "limits.max_per_ip", "must be positive"),
    ({"limits": {"login_timeout": -1.0}}, "limits.login_timeout", "must be positive"),
    ({"imap": {"greeting": ""}}, "imap.greeting", "must not be empty"),
    ({"pop3": {"greeting": "hi\r\n+OK fake"}}, "pop3.greeting", "CR, LF or NUL"),
    ({"courier": {"maildir": ""}}, "courier.maildir", "must not be empty"),
    ({"courier": {"imapd": ""}}, "courier.imapd", "must not be empty"),
    (
        {"imap": {"listen": ["127.0.0.1:110"]}, "pop3": {"listen": ["127.0.0.1:110"]}},
        "pop3.listen",
        "already used by imap.listen",
    ),
    ({"imap": {"listen": ["a:1", "a:1"]}}, "imap.listen", "already used by imap.listen"),
]


@pytest.mark.parametrize(("data", "named", "detail"), VALIDATION_ERRORS)
def test_validation_errors_name_their_key(data: dict[str, Any], named: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        check(data)
    assert info.value.key == named
    assert detail in str(info.value)


def test_source_problems_lists_every_missing_key() -> None:
    config = parse({"auth": {"source": "mysql", "mysql": {"query_timeout": 0}}})
    keys = [problem.key for problem in config_module.source_problems(config.auth)]
    assert keys == [
        "auth.mysql.username",
        "auth.mysql.database",
        "auth.mysql.server",
        "auth.mysql.user_table",
        "auth.mysql.crypt_pwfield",
        "auth.mysql.query_timeout",
    ]


def test_only_the_chosen_source_table_is_checked() -> None:
    config = check({"auth": {"source": "userdb", "mysql": {"server": "db"}}})
    assert config.auth.mysql.server == "db"
    assert list(config_module.source_problems(config.auth)) == []


@pytest.mark.parametrize(
    "section",
    [
        {"source": "mysql", "mysql": {"socket": "/s", "username": "u", "database": "d",
                                      "select_clause": "SELECT 1"}},
        {"source": "pgsql", "pgsql": {"server": "h", "user_table": "t", "clear_pwfield": "c"}},
        {"source": "ldap", "ldap": {"uri": "ldap://h", "basedn": "dc=x", "deref": "Always"}},
    ],
)  # fmt: skip
def test_complete_source_tables_validate(section: dict[str, Any]) -> None:
    config = check({"auth": section})
    assert config.auth.source == section["source"]


def test_read_does_not_validate(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[auth]\nsource = 'ldap'\n")
    assert config_module.read(path).auth.source == "ldap"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "auth.ldap.uri"


def test_valid_variants() -> None:
    config = check(
        {
            "imap": {"sasl_mechanisms": ["plain", "cram-md5"], "tls_listen": ["[::]:993"]},
            "tls": {"cert": "c.pem", "key": "c.pem", "required": True},
            "log": {"level": "debug"},
            "auth": {"failure_delay": 0},
        }
    )
    assert config.tls.required


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:143", ("127.0.0.1", 143)),
        ("[::1]:993", ("::1", 993)),
        ("mail.example.com:65535", ("mail.example.com", 65535)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, "k") == expected


# -- load --------------------------------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "none.toml")
    assert info.value.key == str(tmp_path / "none.toml")
    assert "cannot read" in str(info.value)


@pytest.mark.parametrize("content", [b"[imap\n", b"a = 1\na = 2\n", b"greeting = '\xff'\n"])
def test_load_invalid_toml(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == str(path)
    assert "not valid TOML" in str(info.value)


def test_load_validates(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmax_errors = 0\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "limits.max_errors"


def test_module_constants() -> None:
    assert config_module.SASL == ("PLAIN", "LOGIN", "CRAM-MD5")
    assert "userdb" in config_module.SOURCES
