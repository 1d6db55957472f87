"""meshproxy: an IMAP/POP3 proxy mesh for Courier mail servers."""

__version__ = "0.1.0"
