"""TLS: the listener context and handshake, and the client contexts for peer dials."""

from __future__ import annotations

import socket
import ssl

from meshproxy.config import TlsConfig
from meshproxy.errors import ConfigError

HANDSHAKE_TIMEOUT = 30.0
"""Upper bound for one handshake, whatever time the login deadline still leaves."""

# Mozilla "intermediate" for TLS 1.2 (TLS 1.3 suites are always on and not set here).
_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
)


def server_context(tls: TlsConfig) -> ssl.SSLContext | None:
    """The context for STARTTLS/STLS and implicit-TLS listeners; None when TLS is not set up."""
    if not tls.cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(tls.cert, tls.key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("tls.cert", f"cannot load {tls.cert} / {tls.key}: {exc}") from exc
    return context


def handshake(sock: socket.socket, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    """Wrap ``sock`` server-side and complete the handshake within ``timeout`` seconds.

    Raises ``OSError`` (``socket.timeout``, ``ssl.SSLError``) on failure; the caller closes.
    The returned socket is left blocking (cooperatively, under gevent) with no timeout.
    """
    sock.settimeout(max(0.001, min(timeout, HANDSHAKE_TIMEOUT)))
    wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    wrapped.do_handshake()
    wrapped.settimeout(None)
    return wrapped


def client_context(ca_file: str = "", *, verify: bool = True) -> ssl.SSLContext:
    """A context for dialling peers and foreign servers.

    ``verify``: the certificate must chain to ``ca_file`` (the system store when empty) and
    name the host dialled.  Without it (``[foreign] verify = false``) any certificate is taken:
    the link is encrypted but not authenticated.
    """
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def client_handshake(
    sock: socket.socket, context: ssl.SSLContext, server_name: str
) -> ssl.SSLSocket:
    """Wrap ``sock`` client-side; the caller's gevent Timeout bounds the handshake."""
    wrapped = context.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    wrapped.do_handshake()
    return wrapped
