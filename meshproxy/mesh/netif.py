"""This host's own interface addresses, read from Linux's /proc (no extra dependency).

IPv4: the ``/32 host LOCAL`` entries of ``/proc/net/fib_trie`` (every address assigned to an
interface, secondary ones included).  IPv6: ``/proc/net/if_inet6``.  The parsers take the
file text, so tests feed them samples.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

FIB_TRIE = Path("/proc/net/fib_trie")
IF_INET6 = Path("/proc/net/if_inet6")


def local_addresses() -> frozenset[str]:
    """Every address assigned to an interface of this host (empty when /proc is missing)."""
    return ipv4_from_fib_trie(_read(FIB_TRIE)) | ipv6_from_if_inet6(_read(IF_INET6))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def ipv4_from_fib_trie(text: str) -> frozenset[str]:
    found: set[str] = set()
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped == "/32 host LOCAL" and last:
            found.add(last)
    return frozenset(found)


def ipv6_from_if_inet6(text: str) -> frozenset[str]:
    found: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                found.add(str(ipaddress.IPv6Address(int(fields[0], 16))))
            except ValueError:
                continue
    return frozenset(found)
