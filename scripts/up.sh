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

# The application role tenants/settings.yaml names (`auth.app_role`): tenantctl grants it
# EXECUTE on tenantctl.authenticate, but creating roles for applications is the operator's job.
PSQL=/usr/lib/postgresql/15/bin/psql
step "role example_app (the example application's, see tenants/settings.yaml)"
"$PSQL" "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_app') THEN
        CREATE ROLE example_app LOGIN;
    END IF; END \$\$" || die "could not create the role example_app"

# Generated passwords and API keys go here (git-ignored, 0700, one 0600 file per tenant).
export TENANTCTL_SECRETS_DIR="${TENANTCTL_SECRETS_DIR:-$ROOT/.local/secrets}"

step "tenantctl validate --dir tenants"
"$BIN" validate --dir tenants

step "tenantctl plan --dir tenants"
"$BIN" plan --dir tenants

step "tenantctl apply --dir tenants --auto-approve (secrets to $TENANTCTL_SECRETS_DIR)"
"$BIN" apply --dir tenants --auto-approve

step "done: DATABASE_URL=$DATABASE_URL CHROMA_URL=$CHROMA_URL"
echo "generated secrets: $TENANTCTL_SECRETS_DIR (try: bash examples/auth/connect.sh acme)"
