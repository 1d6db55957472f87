"""Evaluate Courier's configuration files the way its start scripts do.

Courier's start scripts run ``env -i sh -c "set -a; . imapd; . imapd-ssl; ..."``: every
variable the files set is exported to the login stage and, through it, to imapd.  This module
evaluates the subset of sh that those files use, without running a shell:

* ``NAME=value`` assignments, several per line (separated by blanks or ``;``), optionally
  after ``export``; a bare ``export NAME`` is accepted and changes nothing (``set -a`` exports
  everything anyway);
* single quotes (literal), double quotes (``\\`` escapes only ``$ ` " \\`` and newline),
  unquoted backslash escapes, backslash-newline continuation;
* ``$NAME`` and ``${NAME}`` from the variables set so far (unset expands to nothing), and a
  ``$`` followed by anything else is a literal ``$`` (as in sh);
* comments, blank lines, ``#`` inside a word being literal.

No field splitting or pathname expansion happens in an assignment, as in sh.  Anything else
(commands, ``$(...)``, backquotes, ``${NAME:-word}``, special parameters, redirections) raises
``ConfigError`` naming ``file:line``.  ``~`` is kept literally (``env -i`` leaves HOME unset).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from meshproxy.errors import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_BLANKS = " \t"
_WORD_END = " \t\n;"
_OPERATORS = "|&<>()"
_DQUOTE_ESCAPES = '$`"\\'
_SPECIAL_PARAMETERS = "0123456789@*#?-$!"


def read_shell_vars(
    paths: Sequence[Path], initial: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Evaluate ``paths`` in order, as ``set -a; . first; . second`` would.

    Files that do not exist are skipped; an unreadable file or a line outside the supported
    subset raises ``ConfigError``.  ``initial`` seeds the variables (nothing, like ``env -i``).
    """
    variables = dict(initial or {})
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
        evaluate(text, str(path), variables)
    return variables


def evaluate(text: str, name: str, variables: dict[str, str]) -> None:
    """Run the assignments of one file's ``text`` against ``variables`` (updated in place)."""
    _Parser(text, name, variables).run()


class _Parser:
    def __init__(self, text: str, name: str, variables: dict[str, str]) -> None:
        self.text = text
        self.name = name
        self.variables = variables
        self.pos = 0
        self.line = 1

    # -- reading -------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def error(self, detail: str) -> ConfigError:
        return ConfigError(f"{self.name}:{self.line}", detail)

    def skip_blanks(self) -> None:
        while True:
            if self.peek() in _BLANKS and self.peek():
                self.take()
            elif self.peek() == "\\" and self.peek(1) == "\n":
                self.take()
                self.take()
            else:
                return

    def skip_comment(self) -> None:
        while self.peek() not in ("", "\n"):
            self.take()

    # -- commands ------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            self.skip_blanks()
            char = self.peek()
            if not char:
                return
            if char in "\n;":
                self.take()
            elif char == "#":
                self.skip_comment()
            else:
                self.command()

    def command(self) -> None:
        exporting = self.keyword("export")
        while True:
            self.skip_blanks()
            char = self.peek()
            if char in ("", "\n", ";", "#"):
                return
            if not self.assignment() and not (exporting and self.bare_name()):
                raise self.error(f"not a variable assignment: {self.rest_of_line()!r}")

    def keyword(self, word: str) -> bool:
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and self.peek(len(word)) in ("", *_WORD_END):
            while self.pos < end:
                self.take()
            return True
        return False

    def assignment(self) -> bool:
        match = _ASSIGNMENT.match(self.text, self.pos)
        if not match:
            return False
        self.pos = match.end()
        self.variables[match.group(1)] = self.word()
        return True

    def bare_name(self) -> bool:
        match = _NAME.match(self.text, self.pos)
        if not match or self.text[match.end() : match.end() + 1] not in ("", *_WORD_END):
            return False
        self.pos = match.end()
        return True

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        return self.text[self.pos : end if end >= 0 else len(self.text)]

    # -- words ---------------------------------------------------------------------------
    def word(self) -> str:
        parts: list[str] = []
        while True:
            char = self.peek()
            if char in ("", *_WORD_END):
                return "".join(parts)
            if char in _OPERATORS or char == "`":
                raise self.error(f"unsupported shell syntax {char!r}")
            self.take()
            if char == "'":
                parts.append(self.single_quoted())
            elif char == '"':
                parts.append(self.double_quoted())
            elif char == "\\":
                parts.append(self.unquoted_escape())
            elif char == "$":
                parts.append(self.expansion())
            else:
                parts.append(char)

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise self.error("unterminated single quote")
        value = self.text[self.pos : end]
        while self.pos <= end:
            self.take()
        return value

    def double_quoted(self) -> str:
        parts: list[str] = []
        while True:
            char = self.take()
            if not char:
                raise self.error("unterminated double quote")
            if char == '"':
                return "".join(parts)
            if char == "`":
                raise self.error("command substitution is not supported")
            if char == "$":
                parts.append(self.expansion())
            elif char == "\\" and self.peek() == "\n":
                self.take()
            elif char == "\\" and self.peek() and self.peek() in _DQUOTE_ESCAPES:
                parts.append(self.take())
            else:
                parts.append(char)

    def unquoted_escape(self) -> str:
        char = self.take()
        if char == "\n":
            return ""
        return char or "\\"

    def expansion(self) -> str:
        char = self.peek()
        if char == "{":
            self.take()
            match = _NAME.match(self.text, self.pos)
            if not match or self.text[match.end() : match.end() + 1] != "}":
                raise self.error("only ${NAME} parameter expansion is supported")
            self.pos = match.end() + 1
            return self.variables.get(match.group(0), "")
        if char == "(":
            raise self.error("command substitution is not supported")
        if char and char in _SPECIAL_PARAMETERS:
            raise self.error(f"special parameter ${char} is not supported")
        match = _NAME.match(self.text, self.pos)
        if not match:
            return "$"
        self.pos = match.end()
        return self.variables.get(match.group(0), "")
