"""The mesh key: a secret shared by every node, read from ``[mesh] key_file``.

Make one with ``head -c 32 /dev/urandom | base64 > /etc/meshproxy/mesh.key`` (mode 0600 or
0400, owned by the user meshproxy starts as).  The file's bytes, less surrounding
whitespace, are the key: at least 32 bytes.
"""

from __future__ import annotations

import os
import stat

from meshproxy.errors import ConfigError

KEY = "mesh.key_file"
MIN_KEY_BYTES = 32


def load_key(path: str) -> bytes:
    """The key in ``path``; ConfigError (naming ``mesh.key_file``) when unusable."""
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            data = stream.read()
    except OSError as exc:
        raise ConfigError(KEY, f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise ConfigError(KEY, f"{path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(KEY, f"{path} is accessible by group or others: chmod 0600 it")
    key = data.strip()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(KEY, f"{path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} needed")
    return key
