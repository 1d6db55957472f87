"""The command line: ``meshproxy serve | check-config | route``.

``main(argv)`` returns the exit status (``__main__`` passes it to ``sys.exit``):

* ``serve -c FILE``: load the configuration and run the daemon (``meshproxy.io.server``);
* ``check-config -c FILE``: validate the configuration and everything it points at (Courier's
  files and programs, the account source, the TLS certificate and key); prints each problem
  as ``key: explanation`` and exits 1, or prints ``configuration OK``;
* ``route -c FILE USER``: look USER up (no password) and show where IMAP and POP3 sessions
  would go; exits 0 if found, 2 if not, 1 on error.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, cast

from meshproxy import __version__, courier, mesh, route
from meshproxy import config as config_module
from meshproxy.account import Account
from meshproxy.auth import checks, open_source
from meshproxy.config import Config
from meshproxy.errors import ConfigError
from meshproxy.mesh.base import Identity, Unreachable
from meshproxy.mesh.key import load_key

DEFAULT_CONFIG = "/etc/meshproxy/meshproxy.toml"
EXIT_OK, EXIT_ERROR, EXIT_NOT_FOUND = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]
SOURCE_ERRORS = checks.SOURCE_ERRORS


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    handler: Handler = args.handler
    return handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshproxy", description="IMAP/POP3 login proxy mesh for Courier mail servers."
    )
    parser.add_argument("--version", action="version", version=f"meshproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the daemon")
    serve.set_defaults(handler=_serve)
    check = commands.add_parser("check-config", help="check the configuration and its files")
    check.set_defaults(handler=_check_config)
    where = commands.add_parser("route", help="show where a user's sessions would go")
    where.add_argument("user", metavar="USER", help="login name, exactly as the source has it")
    where.set_defaults(handler=_route)
    for command in (serve, check, where):
        command.add_argument(
            "-c",
            "--config",
            default=DEFAULT_CONFIG,
            metavar="FILE",
            help=f"configuration file (default {DEFAULT_CONFIG})",
        )
    return parser


def _load(path: str) -> Config | None:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        print(f"meshproxy: {exc.text}", file=sys.stderr)
        return None


class _ServerModule(Protocol):
    def serve(self, config: Config, config_path: str) -> int: ...


# -- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_ERROR
    # Imported here so that gevent is loaded (and monkey-patches) only when serving.
    server = cast(_ServerModule, importlib.import_module("meshproxy.io.server"))
    return int(server.serve(config, args.config))


# -- check-config ------------------------------------------------------------------------------


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        for line in invalid_config_lines(args.config, exc):
            print(line)
        return EXIT_ERROR
    findings = checks.source_findings(config)
    problems = [*config_problems(config), *(str(f) for f in findings if f.fatal)]
    warnings = [*mesh_warnings(config), *(str(f) for f in findings if not f.fatal)]
    for line in (*problems, *warnings):
        print(line)
    if problems:
        return EXIT_ERROR
    print("configuration OK")
    return EXIT_OK


def invalid_config_lines(path: str, error: ConfigError) -> list[str]:
    """The error ``load`` stopped at, then every other problem of the source's table."""
    lines = [error.text]
    try:
        config = config_module.read(path)
    except ConfigError:
        return lines
    for problem in config_module.source_problems(config.auth):
        if problem.text not in lines:
            lines.append(problem.text)
    return lines


def config_problems(config: Config) -> Iterator[str]:
    """Every problem with the Courier files, programs and TLS files, as ``key: explanation``.

    The account source is checked by ``auth.checks.source_findings``.
    """
    services = served_services(config)
    yield from _courier_file_problems(config, services)
    yield from _program_problems(config, services)
    yield from _tls_problems(config)
    yield from _mesh_problems(config)


def served_services(config: Config) -> tuple[str, ...]:
    """The services with at least one listener."""
    return tuple(
        service
        for service in ("imap", "pop3")
        if getattr(config, service).listen or getattr(config, service).tls_listen
    )


def _courier_file_problems(config: Config, services: tuple[str, ...]) -> Iterator[str]:
    directory = Path(config.courier.config_dir)
    if not directory.is_dir():
        yield f"courier.config_dir: {directory} is not a directory"
        return
    files = courier.config_files(config)
    for service in services:
        for path in files[service]:
            if not path.is_file():
                yield f"courier.config_dir: {path} does not exist (Courier's {service} settings)"
    try:
        courier.load(config)
    except ConfigError as exc:
        yield f"courier.config_dir: {exc.text}"


def _program_problems(config: Config, services: tuple[str, ...]) -> Iterator[str]:
    programs = {"imap": "imapd", "pop3": "pop3d"}
    for service in services:
        key = programs[service]
        path = getattr(config.courier, key)
        if not os.path.isfile(path):
            yield f"courier.{key}: {path} does not exist"
        elif not os.access(path, os.X_OK):
            yield f"courier.{key}: {path} is not executable"


def _tls_problems(config: Config) -> Iterator[str]:
    cert, key = config.tls.cert, config.tls.key
    if not cert:
        return
    missing = False
    for name, path in (("tls.cert", cert), ("tls.key", key)):
        if not os.path.isfile(path):
            missing = True
            yield f"{name}: {path} does not exist"
    if missing:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        yield f"tls.cert: cannot load {cert} with key {key}: {exc}"


def _mesh_problems(config: Config) -> Iterator[str]:
    """The mesh key (as ``serve`` loads it) and the CA files for peers and foreign servers."""
    if config.mesh.key_file:
        try:
            load_key(config.mesh.key_file)
        except ConfigError as exc:
            yield exc.text
    for key, path in (
        ("mesh.ca_file", config.mesh.ca_file),
        ("foreign.ca_file", config.foreign.ca_file),
    ):
        if not path:
            continue
        try:
            ssl.create_default_context(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            yield f"{key}: cannot load {path}: {exc}"


def mesh_warnings(config: Config) -> Iterator[str]:
    """Peers this node cannot use, as this node sees them (its own entry is expected here)."""
    if not config.mesh.peers:
        return
    directory = mesh.open_directory(config)
    try:
        me = directory.whoami()
        for name in config.mesh.peers:
            if me.matches(name):
                continue
            for service in served_services(config):
                target = directory.resolve(name, service)
                if isinstance(target, Unreachable):
                    yield f"mesh.peers.{name}: warning: {service}: {target.reason}"
    finally:
        directory.close()


# -- route -------------------------------------------------------------------------------------


def _route(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_ERROR
    try:
        account = lookup(config, args.user)
    except SOURCE_ERRORS as exc:
        print(f"meshproxy: account source {config.auth.source!r} failed: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if account is None:
        print(f"account: {args.user!r} not found (source {config.auth.source})")
        return EXIT_NOT_FOUND
    for line in describe_route(config, account):
        print(line)
    return EXIT_OK


def lookup(config: Config, login: str) -> Account | None:
    """``login`` from the configured source, with the default options merged in as a login
    would: the source's (authdaemonrc ``DEFAULTOPTIONS``), then ``auth.default_options``."""
    source = open_source(config)
    try:
        account = source.lookup(login)
        source_defaults = source.default_options
    finally:
        source.close()
    if account is None:
        return None
    options = account.options.merged_with_defaults(source_defaults)
    options = options.merged_with_defaults(config.auth.default_options)
    return dataclasses.replace(account, options=options)


def describe_route(config: Config, account: Account) -> Iterator[str]:
    """The lines ``route`` prints for a found account (never a secret)."""
    me, note = this_node(config)
    maildir = account.maildir or f"{config.courier.maildir} (default)"
    yield "account: found"
    yield f"source: {describe_source(config, account)}"
    yield f"login: {account.login}"
    yield f"home: {account.home}"
    yield f"maildir: {maildir}"
    yield f"uid/gid: {account.uid}/{account.gid}"
    if account.system_user:
        yield f"system user: {account.system_user}"
    yield f"options: {account.options.raw}"
    yield f"mailhost: {' '.join(account.mailhosts) or '(none)'}"
    yield f"this node: {' '.join(sorted(me.names)) or '(no name)'}"
    if note:
        yield note
    for service in ("imap", "pop3"):
        proxy = bool(getattr(config, service).proxy)
        decision = route.decide(account, proxy=proxy, me=me)
        yield f"{service}: {describe_decision(decision)}"


def this_node(config: Config) -> tuple[Identity, str]:
    """Who this node is, as ``serve`` would see it (with Consul: the agent's node name too),
    and a note when part of it could not be learnt."""
    directory = mesh.open_directory(config)
    try:
        note = _ask_consul(directory) if config.mesh.consul else ""
        return directory.whoami(), note
    finally:
        directory.close()


def _ask_consul(directory: mesh.Directory) -> str:
    from meshproxy.mesh.consul import ConsulDirectory, ConsulUnavailable  # noqa: PLC0415

    if not isinstance(directory, ConsulDirectory):
        return ""
    client = directory.client()
    try:
        directory.set_agent(client.agent_self())
    except ConsulUnavailable as exc:
        return f"consul: unreachable ({exc}); the agent's node name is not known"
    finally:
        client.close()
    return ""


def describe_source(config: Config, account: Account) -> str:
    """Which source (for Courier's chain: which authlib module) found the account."""
    if config.auth.source == "courier":
        return f"courier, module auth{account.source}"
    return account.source or config.auth.source


def describe_decision(decision: route.Decision) -> str:
    if isinstance(decision, route.Local):
        return f"local ({decision.note})" if decision.note else "local"
    if isinstance(decision, route.Peer):
        return f"peer {' '.join(decision.hosts)}"
    return f"refuse ({decision.reason})"
