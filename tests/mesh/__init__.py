"""Multi-node tests: several ``meshproxy serve`` processes on 127.0.0.x addresses."""
