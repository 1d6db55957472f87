"""The I/O edge: sockets, TLS, processes, and the only place gevent is used.

``server`` (listeners, caps, signals) -> ``connection`` (one session's pump) -> ``local``
(exec Courier) and ``relay`` (byte copying); ``tls`` builds contexts and handshakes,
``childlog`` copies Courier's stderr into the log, ``state`` holds what sessions share.
Exports nothing: ``cli`` imports ``meshproxy.io.server`` when serving.
"""
