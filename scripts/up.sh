#!/usr/bin/env bash
# The newcomer's one command: local servers, a release build, then validate, plan and apply the
# tenants in tenants/ against them.
#
#   bash scripts/up.sh
#
# DATABASE_URL and CHROMA_URL default to the local servers; set them to target others.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGPORT="${TENANTCTL_PG_PORT:-5432}"
CHROMAPORT="${TENANTCTL_CHROMA_PORT:-8000}"

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'up.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

if (($# > 0)); then
    printf 'up.sh: note: ignoring arguments (%s); up.sh takes none for now\n' "$*" >&2
fi

if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup: https://rustup.rs)"

step "servers (scripts/servers.sh start)"
bash "$ROOT/scripts/servers.sh" start

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:$PGPORT/tenantctl}"
export CHROMA_URL="${CHROMA_URL:-http://127.0.0.1:$CHROMAPORT}"

cd "$ROOT"

step "cargo build --release --locked"
cargo build --release --locked

BIN="${CARGO_TARGET_DIR:-target}/release/tenantctl"
[[ -x "$BIN" ]] || die "$BIN was not built"

step "tenantctl validate --dir tenants"
"$BIN" validate --dir tenants

step "tenantctl plan --dir tenants"
"$BIN" plan --dir tenants

step "tenantctl apply --dir tenants --auto-approve"
"$BIN" apply --dir tenants --auto-approve

step "done: DATABASE_URL=$DATABASE_URL CHROMA_URL=$CHROMA_URL"
