"""What the MySQL and PostgreSQL sources share: building the query, reading the row.

authlib pastes the escaped login into the SQL text.  Here nothing from the client ever
becomes SQL text: the login and the ``$(local_part)``, ``$(domain)`` and ``$(service)``
substitutions are always query parameters (``%s``, sent through the driver's own quoting).
Operators write the substitutions inside quotes, as authlib needs
(``WHERE id = '$(local_part)@$(domain)'``), so a quoted literal holding substitutions
becomes a concatenation of its constant pieces and parameters
(``CONCAT('', %s, '@', %s)`` for MySQL, ``(%s || '@' || %s)`` for PostgreSQL).  A bare
``$(name)`` becomes ``%s``.  ``%`` in the operator's text is doubled for the driver.

The query returns Courier's ten columns: login, crypt password, clear password, uid, gid,
home, maildir, quota, full name, options; the first row counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from meshproxy.account import Account, Options, Secrets
from meshproxy.auth.base import BackendUnavailable
from meshproxy.errors import ConfigError
from meshproxy.sourceconfig import MysqlConfig, PgsqlConfig, key_of

Dialect = Literal["mysql", "pgsql"]
SUBSTITUTIONS = ("local_part", "domain", "service")
_EMPTY_COLUMN = "''"


@dataclass(frozen=True)
class Param:
    """A query parameter: a substitution name, or ``login`` for the default query."""

    name: str


Piece = str | Param


@dataclass(frozen=True)
class Query:
    """A compiled query: SQL text pieces and parameters, rendered per lookup."""

    pieces: tuple[Piece, ...]

    def render(self, values: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
        """(SQL with ``%s`` placeholders, parameters) for the driver's ``execute``."""
        text: list[str] = []
        params: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, Param):
                text.append("%s")
                params.append(values[piece.name])
            else:
                text.append(piece.replace("%", "%%"))
        return "".join(text), tuple(params)


def compile_clause(clause: str, dialect: Dialect, key: str) -> tuple[Piece, ...]:
    """Turn operator SQL with ``$(...)`` substitutions into pieces (see module doc)."""
    pieces: list[Piece] = []
    position = 0
    while position < len(clause):
        char = clause[position]
        if char in _quotes(dialect):
            end = _literal_end(clause, position, dialect, key)
            pieces.extend(_literal(clause[position : end + 1], dialect, key))
            position = end + 1
        elif clause.startswith("$(", position):
            name, position = _substitution(clause, position, key)
            pieces.append(Param(name))
        else:
            end = _next_special(clause, position, dialect)
            pieces.append(clause[position:end])
            position = end
    return tuple(pieces)


def _quotes(dialect: Dialect) -> str:
    """Quotes that delimit string literals (PostgreSQL's ``"`` quotes identifiers)."""
    return "'\"" if dialect == "mysql" else "'"


def _next_special(clause: str, start: int, dialect: Dialect) -> int:
    """Where the plain text starting at ``start`` (not itself special) ends."""
    position = start + 1
    while position < len(clause):
        if clause[position] in _quotes(dialect) or clause.startswith("$(", position):
            return position
        position += 1
    return position


def _literal_end(clause: str, start: int, dialect: Dialect, key: str) -> int:
    quote = clause[start]
    position = start + 1
    while position < len(clause):
        char = clause[position]
        if char == "\\" and dialect == "mysql":
            position += 2
            continue
        if char == quote:
            if clause.startswith(quote * 2, position):
                position += 2
                continue
            return position
        position += 1
    raise ConfigError(key, f"unterminated string literal at character {start}")


def _substitution(clause: str, start: int, key: str) -> tuple[str, int]:
    end = clause.find(")", start)
    if end < 0:
        raise ConfigError(key, f"unterminated $( at character {start}")
    name = clause[start + 2 : end]
    if name not in SUBSTITUTIONS:
        raise ConfigError(key, f"unknown substitution $({name})")
    return name, end + 1


def _literal(literal: str, dialect: Dialect, key: str) -> list[Piece]:
    """A quoted literal; with substitutions inside, a concatenation expression."""
    if "$(" not in literal:
        return [literal]
    quote, body = literal[0], literal[1:-1]
    parts: list[Piece] = []
    position = 0
    while position < len(body):
        start = body.find("$(", position)
        if start < 0:
            parts.append(_requote(body[position:], quote, key))
            break
        if start > position:
            parts.append(_requote(body[position:start], quote, key))
        name, position = _substitution(body, start, key)
        parts.append(Param(name))
    return _concatenate(parts, dialect)


def _requote(text: str, quote: str, key: str) -> str:
    trailing = len(text) - len(text.rstrip("\\"))
    if trailing % 2:
        raise ConfigError(key, "a backslash right before $(...) is not supported")
    return f"{quote}{text}{quote}"


def _concatenate(parts: list[Piece], dialect: Dialect) -> list[Piece]:
    if len(parts) == 1:
        return parts
    joined: list[Piece] = ["CONCAT(" if dialect == "mysql" else "("]
    separator = ", " if dialect == "mysql" else " || "
    for index, part in enumerate(parts):
        if index:
            joined.append(separator)
        joined.append(part)
    joined.append(")")
    return joined


def build_query(config: MysqlConfig | PgsqlConfig, dialect: Dialect, origin: str) -> Query:
    """The lookup query: the custom select_clause, or authlib's default SELECT."""
    if config.select_clause:
        return Query(
            compile_clause(config.select_clause, dialect, key_of(config, origin, "select_clause"))
        )
    columns = [
        config.login_field,
        config.crypt_pwfield or _EMPTY_COLUMN,
        config.clear_pwfield or _EMPTY_COLUMN,
        config.uid_field,
        config.gid_field,
        config.home_field,
        config.maildir_field or _EMPTY_COLUMN,
        _EMPTY_COLUMN,
        _EMPTY_COLUMN,
        config.auxoptions_field or _EMPTY_COLUMN,
    ]
    where_key = key_of(config, origin, "where_clause")
    where = compile_clause(config.where_clause or "1=1", dialect, where_key)
    # Column, table and where text come from the operator's configuration, as in authlib;
    # the login is a parameter.
    head = f"SELECT {', '.join(columns)} FROM {config.user_table} WHERE {config.login_field} = "  # noqa: S608
    return Query((head, Param("login"), " AND (", *where, ")"))


def query_values(login: str, service: str, default_domain: str) -> dict[str, str]:
    """Parameter values for one lookup, as authlib computes them.

    ``login`` (default query) gets ``@default_domain`` when it has no ``@``; in a custom
    query ``$(local_part)`` is the part before the first ``@`` and ``$(domain)`` the rest, or
    the default domain.
    """
    local_part, at, domain = login.partition("@")
    full = login if at or not default_domain else f"{login}@{default_domain}"
    return {
        "login": full,
        "local_part": local_part,
        "domain": domain if at else default_domain,
        "service": service,
    }


def usable_login(login: str) -> bool:
    """False for logins no account can have: empty, NUL inside, or not encodable as UTF-8."""
    if not login or "\x00" in login:
        return False
    try:
        login.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def row_to_account(
    row: Sequence[object], login: str, source: str, *, missing_home_is_unknown: bool
) -> Account | None:
    """Courier's column rules (authmysqllib.cpp / authpgsqllib.cpp).

    Fewer than six columns or a uid/gid that is not a positive number: a source failure
    (authlib fails temporarily too).  An empty home: "no such user" for PostgreSQL, a source
    failure for MySQL, as in authlib.  ADDRESS is the login column.
    """
    if len(row) < 6:
        raise BackendUnavailable(f"{source}: query returned {len(row)} columns, need 6")
    values = [_text(value) for value in row] + [""] * (10 - len(row))
    home = values[5]
    if not home:
        if missing_home_is_unknown:
            return None
        raise BackendUnavailable(f"{source}: account {login!r} has an empty home")
    crypt, clear = values[1], values[2]
    return Account(
        login=values[0] or login,
        uid=_positive_id(values[3], "uid", source, login),
        gid=_positive_id(values[4], "gid", source, login),
        home=home,
        maildir=values[6] or None,
        options=Options(values[9]),
        secrets=Secrets(hashed={"": crypt} if crypt else {}, clear={"": clear} if clear else {}),
        source=source,
    )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _positive_id(text: str, what: str, source: str, login: str) -> int:
    """uid/gid must be a whole positive number: never 0 (root), as authmysql and authldap."""
    stripped = text.strip()
    if not stripped.isdigit() or int(stripped) == 0:
        raise BackendUnavailable(f"{source}: account {login!r} has invalid {what} {text!r}")
    return int(stripped)
