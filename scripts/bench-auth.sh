#!/usr/bin/env bash
# Benchmark of API key verification: how many `tenantctl.authenticate(key)` calls per second the
# local PostgreSQL answers (scripts/servers.sh), as the application role, with pgbench.
#
#   bash scripts/bench-auth.sh
#
# On a fresh PostgreSQL database and Chroma database (dropped on exit, with the run's roles):
# BENCH_TENANTS tenants with two API keys each are applied with a secrets folder of the run's
# scratch space; the delivered keys (and as many unknown ones) go into a table of that database;
# then pgbench calls `authenticate` with a random key of it, for BENCH_SECONDS per client count,
# next to the same lookup of the key alone (the floor of one round trip that reads the table).
#
# Environment:
#   BENCH_TENANTS=1000       tenants (two keys each)
#   BENCH_SECONDS=10         seconds per pgbench run
#   BENCH_CLIENTS="1 2 4"    pgbench client counts
#   BENCH_SKIP_BUILD=1       use target/release/tenantctl as it is (default: cargo build --release)
#   TENANTCTL_PG_PORT (5432), TENANTCTL_CHROMA_PORT (8000): the loopback servers to use
#
# The servers run with fsync off (development settings) and the machine may be shared: compare
# the two figures of one run rather than absolute figures across runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT="${TENANTCTL_PG_PORT:-5432}"
CHROMA_PORT="${TENANTCTL_CHROMA_PORT:-8000}"
CHROMA_URL_LOCAL="http://127.0.0.1:$CHROMA_PORT"
CHROMA_TENANT_NAME=default_tenant
TENANTS="${BENCH_TENANTS:-1000}"
SECONDS_EACH="${BENCH_SECONDS:-10}"
CLIENTS="${BENCH_CLIENTS:-1 2 4}"
BIN="$ROOT/target/release/tenantctl"

say() { printf 'bench-auth.sh: %s\n' "$*" >&2; }
die() {
    printf 'bench-auth.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ $# -eq 0 ]] || die "no arguments expected (configure with the BENCH_* variables)"
for p in "$PG_PORT" "$CHROMA_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "invalid port '$p'"; fi
done
if ! [[ "$TENANTS" =~ ^[1-9][0-9]{0,4}$ ]] || ((TENANTS > 20000)); then die "BENCH_TENANTS must be 1 to 20000"; fi
if ! [[ "$SECONDS_EACH" =~ ^[1-9][0-9]?$ ]]; then die "BENCH_SECONDS must be 1 to 99"; fi
read -r -a CLIENT_LIST <<<"$CLIENTS"
for c in "${CLIENT_LIST[@]}"; do
    [[ "$c" =~ ^[1-9][0-9]?$ ]] || die "BENCH_CLIENTS: '$c' is not a client count from 1 to 99"
done
for tool in curl timeout awk python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x "$PGBIN/pgbench" ]] || die "$PGBIN/pgbench is missing (run scripts/servers.sh start once as root)"
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
unset TENANTCTL_DIR TENANTCTL_BACKUP_DIR TENANTCTL_ROLE_PREFIX TENANTCTL_SECRETS_DIR \
    TENANTCTL_SECRETS_COMMAND DATABASE_URL CHROMA_URL CHROMA_DATABASE CHROMA_TENANT

RUN_ID="ba$$"
SCRATCH="$(mktemp -d "/tmp/tenantctl-bench-auth.XXXXXX")"
CREATED_DBS=()
CHROMA_DBS=()
ROLES_CREATED=0
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    drop_bench_targets
    rm -rf "$SCRATCH"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "servers: scripts/servers.sh start"
bash "$ROOT/scripts/servers.sh" start >/dev/null
if [[ "${BENCH_SKIP_BUILD:-0}" == 1 ]]; then
    [[ -x "$BIN" ]] || die "BENCH_SKIP_BUILD=1 but $BIN does not exist"
else
    build_release
fi

# The tenants, two keys each, and the application role.
DIR="$SCRATCH/tenants"
mkdir -p "$DIR"
cp "$ROOT/tenants/plans.yaml" "$DIR/plans.yaml"
use_target a "$DIR"
DB=$CUR_DB
APP="${RUN_ID}_a_app"   # carries the run's role prefix: dropped with the run's roles
psql_admin -d postgres -c "CREATE ROLE \"$APP\" LOGIN" >/dev/null
printf 'apiVersion: tenantctl/v1\nkind: Settings\nauth:\n  app_role: %s\n' "$APP" >"$DIR/settings.yaml"
for ((i = 1; i <= TENANTS; i++)); do
    printf -v id 't%05d' "$i"
    printf 'apiVersion: tenantctl/v1\nkind: Tenant\nid: %s\nname: Tenant %s\nplan: pro\nauth:\n  api_keys:\n    - name: web\n    - name: batch\n' \
        "$id" "$id" >"$DIR/$id.yaml"
done
say "applying $TENANTS tenants with two API keys each"
t0=$(now_us)
timeout 900 "$BIN" apply --auto-approve --parallelism 2 --secrets-dir "$SCRATCH/secrets" \
    >"$SCRATCH/apply.log" 2>&1 || { tail -n 20 "$SCRATCH/apply.log" >&2; die "apply failed"; }
APPLY_US=$(($(now_us) - t0))

# The delivered keys, then as many unknown ones, in a table the app role may read (for the
# benchmark only; the database is dropped on exit).
python3 - "$SCRATCH/secrets" >"$SCRATCH/keys.csv" <<'PY'
import json, os, sys
folder = sys.argv[1]
keys = []
for name in sorted(os.listdir(folder)):
    if name.endswith(".json"):
        keys += [key["key"] for key in json.load(open(os.path.join(folder, name)))["api_keys"]]
for index, key in enumerate(keys):
    print(key)
for index in range(len(keys)):
    print("tct_%012x_unknown%d" % (index, index))
PY
NKEYS=$(wc -l <"$SCRATCH/keys.csv")
psql_admin -d "$DB" -c "CREATE TABLE bench_keys (id serial PRIMARY KEY, key text NOT NULL)" >/dev/null
psql_admin -d "$DB" -c "\\copy bench_keys (key) FROM '$SCRATCH/keys.csv'" >/dev/null
psql_admin -d "$DB" -c "GRANT SELECT ON bench_keys TO \"$APP\"; ANALYZE bench_keys;" >/dev/null
VALID=$(psql_admin -d "$DB" -c "SET ROLE \"$APP\"; SELECT count(*) FROM bench_keys, tenantctl.authenticate(key)")
[[ "$VALID" == $((NKEYS / 2)) ]] || die "$VALID of $((NKEYS / 2)) delivered keys authenticate"

cat >"$SCRATCH/authenticate.sql" <<SQL
\\set id random(1, $NKEYS)
SELECT * FROM tenantctl.authenticate((SELECT key FROM bench_keys WHERE id = :id));
SQL
cat >"$SCRATCH/lookup.sql" <<SQL
\\set id random(1, $NKEYS)
SELECT key FROM bench_keys WHERE id = :id;
SQL

tps() {
    # tps SCRIPT CLIENTS: transactions per second of pgbench as the app role
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U "$APP" -n -M prepared -c "$2" -j "$2" \
        -T "$SECONDS_EACH" -f "$1" "$DB" 2>/dev/null |
        awk '/^tps = / { printf "%.0f", $3 }'
}

echo
echo "tenantctl API key verification  $(date -u '+%Y-%m-%d %H:%M UTC')  rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: nproc=$(nproc); shared and noisy: compare the figures of one run"
echo "PostgreSQL $(psql_admin -d postgres -c 'SHOW server_version' | awk '{ print $1 }') on 127.0.0.1:$PG_PORT (fsync off, dev settings)"
echo "$TENANTS tenants, $((NKEYS / 2)) keys (applied in $(awk -v us="$APPLY_US" 'BEGIN { printf "%.1f", us / 1e6 }') s), half the calls with an unknown key; $SECONDS_EACH s per figure"
echo
printf '%-10s %22s %22s %8s\n' clients "authenticate (calls/s)" "key lookup alone (/s)" ratio
for c in "${CLIENT_LIST[@]}"; do
    auth_tps=$(tps "$SCRATCH/authenticate.sql" "$c")
    lookup_tps=$(tps "$SCRATCH/lookup.sql" "$c")
    printf '%-10s %22s %22s %8s\n' "$c" "$auth_tps" "$lookup_tps" \
        "$(awk -v a="$auth_tps" -v b="$lookup_tps" 'BEGIN { if (a > 0) printf "%.2fx", b / a }')"
done
