"""ACL tokens of the fake: management tokens and simple prefix rules (§5 of consul-subset.md).

A rule string is a comma-separated list of ``resource:prefix:access`` with resource one of
``agent node service key`` and access ``read``, ``write`` or ``deny``; the longest matching
prefix wins; ``write`` implies ``read``.  ``None`` rules = a management token (everything).
Example: ``"service::read,node::read"`` (read the catalog), ``"service:imap:write"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from .util import ApiError

RESOURCES = ("agent", "node", "service", "key")
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"


@dataclass(frozen=True)
class Rule:
    resource: str
    prefix: str
    access: str  # read | write | deny


def parse_rules(text: str) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            resource, prefix, access = part.split(":")
        except ValueError:
            raise ValueError(f"bad ACL rule {part!r}: want resource:prefix:access") from None
        if resource not in RESOURCES or access not in ("read", "write", "deny"):
            raise ValueError(f"bad ACL rule {part!r}")
        rules.append(Rule(resource, prefix, access))
    return tuple(rules)


@dataclass(frozen=True)
class Token:
    secret: str
    accessor: str
    rules: tuple[Rule, ...] | None  # None: management
    anonymous: bool = False

    def allows(self, resource: str, name: str, access: str) -> bool:
        if self.rules is None:
            return True
        best: Rule | None = None
        for rule in self.rules:
            if (
                rule.resource == resource
                and name.startswith(rule.prefix)
                and (best is None or len(rule.prefix) > len(best.prefix))
            ):
                best = rule
        if best is None or best.access == "deny":
            return False
        return best.access == "write" or access == "read"

    def denial(self, resource: str, name: str, access: str) -> ApiError:
        if self.anonymous:
            return ApiError(
                403,
                f"Permission denied: anonymous token lacks permission '{resource}:{access}' "
                f'on "{name}". The anonymous token is used implicitly when a request does not '
                "specify a token.",
            )
        return ApiError(
            403,
            f"Permission denied: token with AccessorID '{self.accessor}' lacks permission "
            f"'{resource}:{access}' on \"{name}\"",
        )

    def require(self, resource: str, name: str, access: str) -> None:
        if not self.allows(resource, name, access):
            raise self.denial(resource, name, access)


ALLOW_ALL = Token("", "", None)


class Acl:
    """Token store; ``enabled=False`` makes every request act with full rights."""

    def __init__(
        self,
        tokens: Mapping[str, str | None] | None = None,
        anonymous_rules: str = "",
        default_token: str | None = None,
    ) -> None:
        self.enabled = tokens is not None
        self.tokens: dict[str, Token] = {}
        for secret, rules in (tokens or {}).items():
            accessor = str(uuid.uuid5(uuid.NAMESPACE_OID, "accessor:" + secret))
            parsed = None if rules is None else parse_rules(rules)
            self.tokens[secret] = Token(secret, accessor, parsed)
        self.anonymous = Token("anonymous", ANONYMOUS_ACCESSOR, parse_rules(anonymous_rules), True)
        self.default_token = default_token

    @property
    def default_policy(self) -> str:
        return "deny" if self.enabled else "allow"

    def resolve(self, secret: str | None) -> Token:
        """The token of a request (secret from ?token, X-Consul-Token or Bearer)."""
        if not self.enabled:
            return ALLOW_ALL
        if not secret:
            secret = self.default_token
        if not secret or secret == "anonymous":
            return self.anonymous
        token = self.tokens.get(secret)
        if token is None:
            raise ApiError(403, "ACL not found")
        return token
