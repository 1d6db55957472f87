#!/usr/bin/env bash
# Install what meshproxy needs on a Debian 12 machine (run as root) and build the virtualenv.
#
#   scripts/bootstrap.sh [runtime|test]     (default: test)
#
# runtime: Debian's Courier IMAP/POP3 and userdb tools, Python venv tooling, `pip install -e .`
# test:    the same plus the test clients and servers (isync, curl, fetchmail, slapd,
#          mariadb-server, postgresql) and `pip install -e '.[test]'`
#
# Idempotent and quick on repeat runs: apt-get runs only when a package is missing, pip only
# when setup.cfg/pyproject.toml changed since the last successful install (a stamp file in
# .venv).  The virtualenv is always built with Debian's /usr/bin/python3.
set -euo pipefail

MODE="${1:-test}"
case "$MODE" in
    runtime | test) ;;
    *)
        echo "usage: $0 [runtime|test]" >&2
        exit 2
        ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PYTHON=/usr/bin/python3
VENV="$ROOT/.venv"

RUNTIME_PACKAGES=(
    python3-venv python3-dev build-essential libcrypt-dev
    courier-imap courier-pop courier-authlib-userdb
    ca-certificates openssl
)
# mbsync, curl and fetchmail are test clients; slapd, MariaDB and PostgreSQL back the
# account-source tests, which run private instances of them on free loopback ports.
TEST_PACKAGES=(isync curl fetchmail slapd ldap-utils mariadb-server postgresql)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root (apt-get, system users for Courier accounts)"
    exit 1
fi

packages=("${RUNTIME_PACKAGES[@]}")
if [ "$MODE" = test ]; then
    packages+=("${TEST_PACKAGES[@]}")
fi

missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's courier packages start their services on install where they can.  We serve on
    # our own ports and exec imapd/pop3d ourselves, so keep the packaged daemons from starting
    # during this install (policy-rc.d is honoured by invoke-rc.d/deb-systemd-invoke).  An
    # existing policy-rc.d belongs to someone else and is left alone.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    cleanup_policy() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
    trap cleanup_policy EXIT
    apt-get -o DPkg::Lock::Timeout=600 update
    apt-get install -y -o DPkg::Lock::Timeout=600 "${missing[@]}"
    cleanup_policy
    trap - EXIT
else
    log "Debian packages already installed"
fi

# A venv made by another interpreter (pyenv, a different minor version) is rebuilt.
if [ -f "$VENV/pyvenv.cfg" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
    log "rebuilding $VENV: it was not made by $PYTHON"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PYTHON ($("$PYTHON" -V 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi

digest="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1) $("$PYTHON" -V 2>&1)"
stamp="$VENV/.bootstrap-$MODE"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && "$VENV/bin/python" -c 'import meshproxy' 2>/dev/null; then
    log "virtualenv up to date ($MODE)"
else
    target="."
    if [ "$MODE" = test ]; then
        target=".[test]"
    fi
    log "pip install -e '$target'"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$target"
    printf '%s\n' "$digest" >"$stamp"
    if [ "$MODE" = test ]; then
        # test extras include everything the runtime needs
        printf '%s\n' "$digest" >"$VENV/.bootstrap-runtime"
    fi
fi
