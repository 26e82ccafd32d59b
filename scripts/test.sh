#!/usr/bin/env bash
# The whole tenantctl test suite: local servers, formatting, lints, tests.
#
#   bash scripts/test.sh [extra cargo test arguments]
#
# Starts PostgreSQL, Chroma and the S3-compatible server with scripts/servers.sh (idempotent), then runs cargo fmt --check,
# cargo clippy -D warnings and cargo test against them. Ports: TENANTCTL_PG_PORT (5432),
# TENANTCTL_CHROMA_PORT (8000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGPORT="${TENANTCTL_PG_PORT:-5432}"
CHROMAPORT="${TENANTCTL_CHROMA_PORT:-8000}"

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'test.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# A non-login shell (CI) may not have rustup's folder on PATH.
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup: https://rustup.rs)"

# The TLS tests make their certificates with the openssl command.
if ! command -v openssl >/dev/null; then
    step "installing openssl (for the TLS tests' certificates)"
    if ! { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }; then
        die "openssl is missing and could not be installed"
    fi
fi

# The CI examples are checked with the GitHub Actions static analyser and the platforms' JSON
# schemas (tests/examples.rs), and the Markdown comments are rendered with GitHub's cmark-gfm
# (tests/markdown_html.rs); the tools come from PyPI, pinned, into a venv of their own.
CI_TOOLS="$ROOT/.local/ci-tools-venv"
ZIZMOR_VERSION=1.32.0
CHECK_JSONSCHEMA_VERSION=0.39.0
CMARKGFM_VERSION=2025.10.22
if ! { [[ -x "$CI_TOOLS/bin/zizmor" && -x "$CI_TOOLS/bin/check-jsonschema" ]] &&
    "$CI_TOOLS/bin/zizmor" --version | grep -qF " $ZIZMOR_VERSION" &&
    "$CI_TOOLS/bin/check-jsonschema" --version | grep -qF " $CHECK_JSONSCHEMA_VERSION" &&
    "$CI_TOOLS/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('cmarkgfm') != '$CMARKGFM_VERSION')" 2>/dev/null; }; then
    step "installing zizmor $ZIZMOR_VERSION, check-jsonschema $CHECK_JSONSCHEMA_VERSION and cmarkgfm $CMARKGFM_VERSION (PyPI)"
    mkdir -p "$ROOT/.local"
    python3 -m venv --clear "$CI_TOOLS" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$CI_TOOLS/bin/pip" install --quiet \
        "zizmor==$ZIZMOR_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" \
        "cmarkgfm==$CMARKGFM_VERSION" </dev/null ||
        die "pip install zizmor check-jsonschema cmarkgfm failed"
fi
export TENANTCTL_TEST_ZIZMOR="$CI_TOOLS/bin/zizmor"
export TENANTCTL_TEST_CHECK_JSONSCHEMA="$CI_TOOLS/bin/check-jsonschema"
export TENANTCTL_TEST_CI_PYTHON="$CI_TOOLS/bin/python"

step "servers (scripts/servers.sh start)"
bash "$ROOT/scripts/servers.sh" start

# Admin URL: the tests create (and drop) one database per test.
export TENANTCTL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export TENANTCTL_TEST_CHROMA_URL="http://127.0.0.1:$CHROMAPORT"
# The S3-compatible server (moto's) and the moto_server program, for the tests that start a
# private one to stop it mid-upload.
export TENANTCTL_TEST_S3_URL="http://127.0.0.1:${TENANTCTL_S3_PORT:-9000}"
export TENANTCTL_TEST_MOTO_SERVER="$ROOT/.local/s3-venv/bin/moto_server"

cd "$ROOT"

# Databases, Chroma databases and roles that an interrupted earlier run left behind (a killed
# test process never runs its clean-up). Test names are `tct_*`, test roles `r<pid>x<n>_*`.
step "removing what interrupted test runs left"
"/usr/lib/postgresql/15/bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Atq -v ON_ERROR_STOP=1 <<'SQL' || true
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 'tct\_%' \gexec
SELECT format('DROP ROLE IF EXISTS %I', rolname) FROM pg_roles WHERE rolname ~ '^r[0-9]+x[0-9]+_' \gexec
SQL
python3 - "$TENANTCTL_TEST_CHROMA_URL" <<'PY' || true
import json, sys, urllib.request
base = sys.argv[1] + "/api/v2/tenants/default_tenant/databases"
with urllib.request.urlopen(base + "?limit=10000", timeout=30) as answer:
    names = [d["name"] for d in json.load(answer) if d["name"].startswith("tct_")]
for name in names:
    request = urllib.request.Request(f"{base}/{name}", method="DELETE")
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except Exception as error:
        print(f"test.sh: could not delete chroma database {name}: {error}", file=sys.stderr)
print(f"test.sh: removed {len(names)} leftover chroma database(s)", file=sys.stderr)
PY

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Without arguments: every unit and integration test (there are no doc tests, so that target
# is left out rather than closing the run on "0 passed"). With arguments: exactly those.
if (($# == 0)); then
    set -- --workspace --lib --bins --tests
fi
step "cargo test --locked $*"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line over all test binaries, printed last.
totals=$(awk '/^test result:/ {
    for (i = 1; i < NF; i++) {
        if ($(i + 1) == "passed;") passed += $i
        if ($(i + 1) == "failed;") failed += $i
    }
} END { printf "%d passed, %d failed", passed, failed }' "$log")
if ((status == 0)); then
    step "all checks passed"
fi
printf '\ntests: %s\n' "$totals"
exit "$status"
