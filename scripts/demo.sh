#!/usr/bin/env bash
# Start meshproxy in the foreground with a demo account (README "Quick start", command 1).
#
# Installs what it needs (scripts/bootstrap.sh runtime), then prepares, under a state directory
# (MESHPROXY_DEMO_STATE, default /var/lib/meshproxy-demo):
#   - a system user `meshdemo` owning a Courier Maildir,
#   - a Courier userdb file with one account (password generated once, kept in the state dir),
#   - a self-signed certificate for STARTTLS/STLS and the implicit-TLS ports,
#   - meshproxy.toml,
# and execs `meshproxy serve`.  Safe to run again: existing state is reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

STATE="${MESHPROXY_DEMO_STATE:-/var/lib/meshproxy-demo}"
HOST="${MESHPROXY_DEMO_HOST:-127.0.0.1}"
DEMO_USER=meshdemo
LOGIN=demo@localhost
IMAP_PORT=10143
IMAPS_PORT=10993
POP3_PORT=10110
POP3S_PORT=10995

bash "$ROOT/scripts/bootstrap.sh" runtime

log() { printf '[demo] %s\n' "$*" >&2; }

mkdir -p "$STATE"
chmod 755 "$STATE"

if ! getent passwd "$DEMO_USER" >/dev/null; then
    log "creating system user $DEMO_USER"
    useradd -M -d "$STATE/home" -s /usr/sbin/nologin "$DEMO_USER"
fi
uid="$(id -u "$DEMO_USER")"
gid="$(id -g "$DEMO_USER")"

home="$STATE/home"
mkdir -p "$home"
chown "$uid:$gid" "$home"
chmod 700 "$home"
if [ ! -d "$home/Maildir/cur" ]; then
    log "creating $home/Maildir"
    runuser -u "$DEMO_USER" -- maildirmake.courier "$home/Maildir"
fi

password_file="$STATE/demo-password"
if [ ! -s "$password_file" ]; then
    (umask 077 && "$ROOT/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))' >"$password_file")
fi
chmod 600 "$password_file"
password="$(cat "$password_file")"

userdb="$STATE/userdb"
if [ ! -s "$userdb" ] || [ "$password_file" -nt "$userdb" ]; then
    log "writing $userdb"
    hash="$(DEMO_PASSWORD="$password" "$ROOT/.venv/bin/python" -c '
import os, crypt_r
print(crypt_r.crypt(os.environ["DEMO_PASSWORD"], crypt_r.mksalt(crypt_r.METHOD_SHA512)))')"
    hmac="$(printf '%s\n' "$password" | userdbpw -hmac-md5)"
    (umask 077 && printf '%s\tuid=%s|gid=%s|home=%s|systempw=%s|hmac-md5pw=%s\n' \
        "$LOGIN" "$uid" "$gid" "$home" "$hash" "$hmac" >"$userdb.new")
    mv "$userdb.new" "$userdb"
fi
chmod 600 "$userdb"

cert="$STATE/cert.pem"
key="$STATE/key.pem"
if [ ! -s "$cert" ] || [ ! -s "$key" ]; then
    log "making a self-signed certificate for localhost/$HOST"
    san="DNS:localhost,IP:127.0.0.1"
    if [ "$HOST" != 127.0.0.1 ]; then
        san="$san,IP:$HOST"
    fi
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
        -addext "subjectAltName=$san" -keyout "$key" -out "$cert" 2>/dev/null)
fi

config="$STATE/meshproxy.toml"
cat >"$config" <<TOML
# Written by scripts/demo.sh; rewritten on every run.
[imap]
listen = ["$HOST:$IMAP_PORT"]
tls_listen = ["$HOST:$IMAPS_PORT"]
sasl_mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]

[pop3]
listen = ["$HOST:$POP3_PORT"]
tls_listen = ["$HOST:$POP3S_PORT"]
sasl_mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]

[tls]
cert = "$cert"
key = "$key"

[courier]
config_dir = "/etc/courier"

[auth]
source = "userdb"
failure_delay = 2.0

[auth.userdb]
path = "$userdb"
TOML

cat <<INFO

meshproxy demo
  IMAP   $HOST:$IMAP_PORT (STARTTLS)    IMAPS  $HOST:$IMAPS_PORT
  POP3   $HOST:$POP3_PORT (STLS)        POP3S  $HOST:$POP3S_PORT
  login     $LOGIN
  password  $password
  config    $config
  Maildir   $home/Maildir

Try, from another terminal:
  curl --user '$LOGIN:$password' 'imap://$HOST:$IMAP_PORT/'
  curl --insecure --user '$LOGIN:$password' 'pop3s://$HOST:$POP3S_PORT/'
Stop with Ctrl-C.

INFO

exec "$ROOT/.venv/bin/meshproxy" serve -c "$config"
