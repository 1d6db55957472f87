"""``python -m meshproxy`` and the ``meshproxy`` console script.

gevent's monkey-patching must happen before anything else imports ``socket``, ``ssl``,
``subprocess`` or ``threading``, so it is the very first statement.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from meshproxy import cli  # noqa: E402


def main() -> None:
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
