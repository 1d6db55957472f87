"""The directory interface: "who am I" and "where is node X"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Identity:
    """The names this node answers to.  DNS names compare case-insensitively."""

    names: frozenset[str]

    @classmethod
    def of(cls, *names: str) -> Identity:
        return cls(frozenset(name.lower() for name in names if name))

    def matches(self, host: str) -> bool:
        return host.lower() in self.names

    @property
    def primary(self) -> str:
        return min(self.names) if self.names else ""


class Directory(Protocol):
    def whoami(self) -> Identity: ...

    def close(self) -> None: ...
