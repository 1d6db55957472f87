#!/usr/bin/env bash
# Run the whole test suite (README "Quick start", command 2; .ci/run runs this).
#
# Installs what the tests need (scripts/bootstrap.sh test), then runs, in order:
#   ruff check, ruff format --check, mypy, lint-imports (import-linter contracts), pytest.
# Every step runs even when an earlier one fails; the exit status is non-zero if any failed.
# Extra arguments go to pytest (e.g. scripts/test.sh -k pop3 -x).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh must run as root: the integration tests create system users and" >&2
    echo "run Courier's imapd/pop3d under them" >&2
    exit 1
fi

bash "$ROOT/scripts/bootstrap.sh" test

BIN="$ROOT/.venv/bin"
names=()
results=()
failed=0

step() {
    local name="$1"
    shift
    printf '\n===== %s: %s\n' "$name" "$*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    names+=("$name")
    if [ "$rc" -eq 0 ]; then
        results+=("ok      $((SECONDS - start))s")
    else
        results+=("FAILED  $((SECONDS - start))s (exit $rc)")
        failed=1
    fi
}

step "ruff check" "$BIN/ruff" check .
step "ruff format" "$BIN/ruff" format --check .
step "mypy" "$BIN/mypy"
step "lint-imports" "$BIN/lint-imports"
step "pytest" "$BIN/python" -m pytest "$@"

printf '\n===== summary\n'
for i in "${!names[@]}"; do
    printf '  %-14s %s\n' "${names[$i]}" "${results[$i]}"
done
if [ "$failed" -ne 0 ]; then
    printf 'FAILED\n'
    exit 1
fi
printf 'all passed\n'
