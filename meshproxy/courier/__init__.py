"""Courier's side of the hand-off: its configuration files and its exec contract.

Pure: reads files, never starts processes.  See ``shell`` (the sh subset of Courier's
configuration files), ``settings`` (``CourierSettings``, capabilities) and ``spec``
(``Session``, ``ExecSpec``, ``exec_spec``).
"""

from meshproxy.courier.settings import (
    SERVICE_FILES,
    CourierSettings,
    config_files,
    imap_capabilities,
    load,
    pop3_auth_mechanisms,
)
from meshproxy.courier.shell import read_shell_vars
from meshproxy.courier.spec import DEFAULT_PATH, ExecSpec, Session, exec_spec, plain_ip

__all__ = [
    "DEFAULT_PATH",
    "SERVICE_FILES",
    "CourierSettings",
    "ExecSpec",
    "Session",
    "config_files",
    "exec_spec",
    "imap_capabilities",
    "load",
    "plain_ip",
    "pop3_auth_mechanisms",
    "read_shell_vars",
]
