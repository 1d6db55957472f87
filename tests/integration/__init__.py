"""Integration tests: a real meshproxy daemon, real Courier imapd/pop3d, real clients."""
