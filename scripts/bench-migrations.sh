#!/usr/bin/env bash
# Benchmark of tenant-schema migrations against the local PostgreSQL and Chroma
# (scripts/servers.sh).
#
#   bash scripts/bench-migrations.sh
#
# Measures, each on fresh PostgreSQL and Chroma databases (unique names, created here and
# dropped on exit together with the roles, whose prefix is unique to the run):
#
#   1. Migrating N tenants (BENCH_TENANTS, default 1000) with `ALTER TABLE ... ADD COLUMN` plus
#      `CREATE INDEX` on their empty tables, BENCH_ROUNDS times (a new migration each round),
#      with `tenantctl apply --parallelism P` (BENCH_PARALLELISM, default 4), against the floor:
#      the same SQL sent by psql, one transaction per tenant, P psql sessions at once, on a twin
#      database of the same N tenants. The two alternate within each round, the order swapped
#      every round, after a warm-up round that is not counted; the median of the rounds' ratios
#      is reported, for the migration phase alone (first to last tenant transaction, as the
#      server recorded them) and for the whole run. tenantctl's time is the whole run:
#      reading the live state, planning, locking, the SQL, grants, history and registry rows.
#   2. Migrating a fleet of BENCH_FLEET tenants (default 10000; 0 skips) once: `ADD COLUMN` in
#      one migration, then `CREATE INDEX CONCURRENTLY` in a `-- tenantctl: no-transaction` one,
#      with the canary; then a no-op apply of the same fleet.
#   3. The no-change plan at N tenants with 10 migrations against the no-change plan at N
#      tenants without a `migrations/` folder (the built-in one only): medians of BENCH_RUNS
#      plans each, alternated.
#
# Environment:
#   BENCH_TENANTS=1000       tenants of parts 1 and 3
#   BENCH_FLEET=10000        tenants of part 2 (0: skip it)
#   BENCH_ROUNDS=5           migrations measured in part 1 (after one more that warms up)
#   BENCH_PARALLELISM=4      sessions at once, for tenantctl and for the floor alike
#   BENCH_RUNS=5             plans per figure in part 3
#   BENCH_CANARY=10          tenantctl's migrating runs take a canary of this many tenants
#                            (`--canary`): migrated first, the rest after they all succeeded
#   BENCH_MAX_SECONDS=1200   the run gives up (and cleans up) after this long, build excluded
#   BENCH_SKIP_BUILD=1       use target/release/tenantctl as it is (default: cargo build --release)
#   TENANTCTL_PG_PORT (5432), TENANTCTL_CHROMA_PORT (8000): the loopback servers to use
#
# The default run takes about 2 minutes once the binary is built (most of it creating the
# 10,000 tenants of part 2). The servers run with fsync off (development settings) and the
# machine may be shared: compare ratios taken from one run rather than absolute figures across
# runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT="${TENANTCTL_PG_PORT:-5432}"
CHROMA_PORT="${TENANTCTL_CHROMA_PORT:-8000}"
CHROMA_URL_LOCAL="http://127.0.0.1:$CHROMA_PORT"
CHROMA_TENANT_NAME=default_tenant
TENANTS="${BENCH_TENANTS:-1000}"
FLEET="${BENCH_FLEET:-10000}"
ROUNDS="${BENCH_ROUNDS:-5}"
PARALLELISM="${BENCH_PARALLELISM:-4}"
RUNS="${BENCH_RUNS:-5}"
CANARY="${BENCH_CANARY:-10}"
MAX_SECONDS="${BENCH_MAX_SECONDS:-1200}"
BIN="$ROOT/target/release/tenantctl"

say() { printf 'bench-migrations.sh: %s\n' "$*" >&2; }
die() {
    printf 'bench-migrations.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Arguments and environment
# ---------------------------------------------------------------------------------------------
[[ $# -eq 0 ]] || die "no arguments expected (configure with the BENCH_* variables)"
for p in "$PG_PORT" "$CHROMA_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "invalid port '$p'"; fi
done
if ! [[ "$TENANTS" =~ ^[1-9][0-9]{0,4}$ ]] || ((TENANTS > 20000)); then
    die "BENCH_TENANTS must be 1 to 20000"
fi
if ! [[ "$FLEET" =~ ^[0-9]{1,5}$ ]] || ((FLEET > 20000)); then die "BENCH_FLEET must be 0 to 20000"; fi
if ! [[ "$ROUNDS" =~ ^[1-8]$ ]]; then die "BENCH_ROUNDS must be 1 to 8"; fi
if ! [[ "$PARALLELISM" =~ ^[1-9][0-9]?$ ]] || ((PARALLELISM > 32)); then
    die "BENCH_PARALLELISM must be 1 to 32"
fi
if ! [[ "$CANARY" =~ ^[0-9]{1,4}$ ]] || ((CANARY > 1000)); then die "BENCH_CANARY must be 0 to 1000"; fi
if ! [[ "$RUNS" =~ ^[1-9][0-9]?$ ]]; then die "BENCH_RUNS must be 1 to 99"; fi
if ! [[ "$MAX_SECONDS" =~ ^[1-9][0-9]{0,5}$ ]]; then die "BENCH_MAX_SECONDS must be a number of seconds"; fi

for tool in curl timeout awk sort git; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x "$PGBIN/psql" ]] || die "$PGBIN/psql is missing (run scripts/servers.sh start once as root)"
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Settings from the caller's environment that would change what is measured.
unset TENANTCTL_DIR TENANTCTL_RETENTION_DAYS TENANTCTL_MAX_DELETES TENANTCTL_BACKUP_DIR \
    TENANTCTL_ROLE_PREFIX DATABASE_URL CHROMA_URL CHROMA_DATABASE CHROMA_TENANT

# ---------------------------------------------------------------------------------------------
# Scratch folder, unique names and cleanup
# ---------------------------------------------------------------------------------------------
# Role prefixes are at most 23 characters: "bm<pid>_<label>_" with short labels stays within.
RUN_ID="bm$$"
SCRATCH="$(mktemp -d "/tmp/tenantctl-bench-migrations.XXXXXX")"
CREATED_DBS=()
CHROMA_DBS=()
ROLES_CREATED=0
CHILDREN=()  # pids of the running tenantctl or psql processes, if any

# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    set +e
    for pid in "${CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    drop_bench_targets
    rm -rf "$SCRATCH"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START=$SECONDS
check_deadline() {
    if ((SECONDS - START > MAX_SECONDS)); then
        die "over BENCH_MAX_SECONDS=$MAX_SECONDS s before '$1'; giving up (cleaning up)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Servers and binary
# ---------------------------------------------------------------------------------------------
say "servers: scripts/servers.sh start"
bash "$ROOT/scripts/servers.sh" start >/dev/null
if [[ "${BENCH_SKIP_BUILD:-0}" == 1 ]]; then
    [[ -x "$BIN" ]] || die "BENCH_SKIP_BUILD=1 but $BIN does not exist"
else
    command -v cargo >/dev/null || die "cargo not found (or set BENCH_SKIP_BUILD=1)"
    build_release
fi
START=$SECONDS
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    GIT_REV="$GIT_REV+uncommitted changes"
fi

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
LAST_US=0

run_tc() {
    # run_tc LOG LIMIT_SECONDS tenantctl-args...: times one tenantctl run, which must exit 0.
    local log=$1 limit=$2 t0 rc
    shift 2
    t0=$(now_us)
    timeout -k 5 "$limit" "$BIN" "$@" >"$log" 2>&1 </dev/null &
    CHILDREN=("$!")
    set +e
    wait "${CHILDREN[0]}"
    rc=$?
    set -e
    CHILDREN=()
    LAST_US=$(($(now_us) - t0))
    if ((rc != 0)); then
        tail -n 25 "$log" >&2
        die "tenantctl $* exited $rc (log above)"
    fi
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
secs() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000000 }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

gen_dir() {
    # gen_dir DIR N: plans.yaml (from tenants/) and N tenant files t00001.yaml...
    local dir=$1 n=$2 i id
    mkdir -p "$dir"
    cp "$ROOT/tenants/plans.yaml" "$dir/plans.yaml"
    for ((i = 1; i <= n; i++)); do
        printf -v id 't%05d' "$i"
        printf 'apiVersion: tenantctl/v1\nkind: Tenant\nid: %s\nname: Tenant %s\nplan: pro\n' \
            "$id" "$id" >"$dir/$id.yaml"
    done
}

use_migrations() {
    # use_migrations DIR: the built-in first migration as a file, so that more can follow
    mkdir -p "$1/migrations"
    cp "$ROOT/crates/core/src/spec/builtin/0001_conversations.sql" "$1/migrations/"
}

round_sql() {
    # round_sql K: the migration of round K, on the tables' empty `conversations`
    printf 'ALTER TABLE conversations ADD COLUMN note_%d text;\n' "$1"
    printf 'CREATE INDEX conversations_note_%d ON conversations (note_%d);\n' "$1" "$1"
}

create_fleet() {
    # create_fleet LABEL DIR N: a fresh target, N tenants created by tenantctl (untimed)
    use_target "$1" "$2"
    say "$1: creating $3 tenants"
    run_tc "$SCRATCH/$1.create.log" $((300 + $3 / 10)) apply --auto-approve --parallelism "$PARALLELISM"
    say "$1: created in $(secs "$LAST_US") s"
}

floor_migrate() {
    # floor_migrate DB N K: round K's SQL for N tenants with psql, one transaction per tenant,
    # PARALLELISM sessions at once; wall time in LAST_US.
    local db=$1 n=$2 k=$3 s i id t0 rc
    for ((s = 0; s < PARALLELISM; s++)); do
        {
            for ((i = 1 + s; i <= n; i += PARALLELISM)); do
                printf -v id 't%05d' "$i"
                printf 'BEGIN;\nSET LOCAL search_path TO "tenant_%s";\n' "$id"
                round_sql "$k"
                printf 'COMMIT;\n'
            done
        } >"$SCRATCH/floor.$s.sql"
    done
    t0=$(now_us)
    CHILDREN=()
    for ((s = 0; s < PARALLELISM; s++)); do
        psql_admin -d "$db" -f "$SCRATCH/floor.$s.sql" >"$SCRATCH/floor.$s.log" 2>&1 &
        CHILDREN+=("$!")
    done
    rc=0
    for s in "${CHILDREN[@]}"; do wait "$s" || rc=$?; done
    CHILDREN=()
    LAST_US=$(($(now_us) - t0))
    ((rc == 0)) || { cat "$SCRATCH"/floor.*.log >&2; die "psql floor failed"; }
}

select_target() {
    # select_target LABEL DIR: point tenantctl at a target created earlier by use_target
    local db="${RUN_ID}_$1"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
    export CHROMA_DATABASE="$db"
    export TENANTCTL_ROLE_PREFIX="${db}_"
    export TENANTCTL_DIR="$2"
    export TENANTCTL_BACKUP_DIR="$SCRATCH/backups-$1"
    CUR_DB=$db
}

check_history() {
    # check_history DB N VERSION: every tenant has VERSION recorded, and the column exists
    local db=$1 n=$2 version=$3 got
    got=$(psql_admin -d "$db" -c "SELECT count(*) FROM tenantctl.tenant_migrations WHERE version = $version")
    [[ "$got" == "$n" ]] || die "$db: $got tenants have migration $version recorded, expected $n"
}

check_floor() {
    # check_floor DB N K: every tenant's table has round K's column
    local db=$1 n=$2 k=$3 got
    got=$(psql_admin -d "$db" -c "SELECT count(*) FROM information_schema.columns
        WHERE column_name = 'note_$k' AND table_name = 'conversations'")
    [[ "$got" == "$n" ]] || die "$db: $got tenants have column note_$k, expected $n"
}

# ---------------------------------------------------------------------------------------------
# 1. N tenants: tenantctl against the psql floor
# ---------------------------------------------------------------------------------------------
check_deadline "part 1"
TC_DIR="$SCRATCH/m"
gen_dir "$TC_DIR" "$TENANTS"
use_migrations "$TC_DIR"
FLOOR_DIR="$SCRATCH/f"
gen_dir "$FLOOR_DIR" "$TENANTS"
create_fleet m "$TC_DIR" "$TENANTS"
TC_DB=$CUR_DB
create_fleet f "$FLOOR_DIR" "$TENANTS"
FLOOR_DB=$CUR_DB

TC_TIMES=()
PHASE_TIMES=()
FLOOR_TIMES=()
# Round 0 warms both sides up (the catalogs of freshly created tenants) and is not counted.
for ((k = 0; k <= ROUNDS; k++)); do
    check_deadline "round $k"
    version=$((k + 2))
    round_sql "$k" >"$TC_DIR/migrations/$(printf '%04d' "$version")_note_$k.sql"
    # The order alternates with the round, so neither side always goes first.
    order=(tc floor)
    ((k % 2 == 0)) && order=(floor tc)
    for side in "${order[@]}"; do
        if [[ $side == tc ]]; then
            select_target m "$TC_DIR"
            run_tc "$SCRATCH/m.round$k.log" $((120 + TENANTS / 10)) \
                apply --auto-approve --parallelism "$PARALLELISM" --canary "$CANARY"
            check_history "$TC_DB" "$TENANTS" "$version"
            ((k > 0)) && TC_TIMES+=("$LAST_US")
            # The migration phase alone, as the server recorded it: from the first tenant's
            # transaction to the last one's (history rows carry their transaction's start; the
            # last tenant's own milliseconds are left out).
            phase=$(psql_admin -d "$TC_DB" -c "
                SELECT (extract(epoch FROM max(applied_at) - min(applied_at)) * 1000000)::bigint
                FROM tenantctl.tenant_migrations WHERE version = $version")
            ((k > 0)) && PHASE_TIMES+=("$phase")
            say "round $k: tenantctl $(secs "$LAST_US") s"
        else
            floor_migrate "$FLOOR_DB" "$TENANTS" "$k"
            check_floor "$FLOOR_DB" "$TENANTS" "$k"
            ((k > 0)) && FLOOR_TIMES+=("$LAST_US")
            say "round $k: psql floor $(secs "$LAST_US") s"
        fi
    done
done
TC_MEDIAN=$(median "${TC_TIMES[@]}")
PHASE_MEDIAN=$(median "${PHASE_TIMES[@]}")
# Ratios round by round (the two sides of a round ran back to back), then their median: the
# machine's speed drifts less within a round than across the run.
PHASE_RATIOS=()
WHOLE_RATIOS=()
for ((i = 0; i < ROUNDS; i++)); do
    PHASE_RATIOS+=("$(awk -v a="${PHASE_TIMES[i]}" -v b="${FLOOR_TIMES[i]}" 'BEGIN { printf "%d", 1000 * a / b }')")
    WHOLE_RATIOS+=("$(awk -v a="${TC_TIMES[i]}" -v b="${FLOOR_TIMES[i]}" 'BEGIN { printf "%d", 1000 * a / b }')")
done
PHASE_RATIO=$(median "${PHASE_RATIOS[@]}")
WHOLE_RATIO=$(median "${WHOLE_RATIOS[@]}")
FLOOR_MEDIAN=$(median "${FLOOR_TIMES[@]}")

# ---------------------------------------------------------------------------------------------
# 3. No-change plan with 10 migrations against without (on the same N)
# ---------------------------------------------------------------------------------------------
check_deadline "part 3"
# The tenantctl side of part 1 is at 2 + ROUNDS migrations: bring it to 10.
for ((version = ROUNDS + 3; version <= 10; version++)); do
    printf 'CREATE TABLE extra_%d (id bigserial PRIMARY KEY, body text NOT NULL);\n' "$version" \
        >"$TC_DIR/migrations/$(printf '%04d' "$version")_extra_$version.sql"
done
select_target m "$TC_DIR"
say "m: applying migrations up to 10"
run_tc "$SCRATCH/m.to10.log" $((120 + TENANTS / 10)) apply --auto-approve --parallelism "$PARALLELISM"
check_history "$TC_DB" "$TENANTS" 10
# The floor's tenants were changed behind tenantctl's back (drift): a twin of its own.
PLAIN_DIR="$SCRATCH/p"
gen_dir "$PLAIN_DIR" "$TENANTS"
create_fleet p "$PLAIN_DIR" "$TENANTS"
WITH=()
WITHOUT=()
for ((i = 1; i <= RUNS; i++)); do
    select_target m "$TC_DIR"
    run_tc "$SCRATCH/m.plan.log" 120 plan --detailed-exitcode
    grep -q "No changes." "$SCRATCH/m.plan.log" || die "the plan with 10 migrations is not empty"
    WITH+=("$LAST_US")
    select_target p "$PLAIN_DIR"
    run_tc "$SCRATCH/p.plan.log" 120 plan --detailed-exitcode
    grep -q "No changes." "$SCRATCH/p.plan.log" || die "the plan without migrations is not empty"
    WITHOUT+=("$LAST_US")
done
WITH_MEDIAN=$(median "${WITH[@]}")
WITHOUT_MEDIAN=$(median "${WITHOUT[@]}")

# ---------------------------------------------------------------------------------------------
# 2. The fleet
# ---------------------------------------------------------------------------------------------
FLEET_US=""
if ((FLEET > 0)); then
    check_deadline "part 2"
    FLEET_DIR="$SCRATCH/fleet"
    gen_dir "$FLEET_DIR" "$FLEET"
    use_migrations "$FLEET_DIR"
    create_fleet big "$FLEET_DIR" "$FLEET"
    FLEET_CREATE_US=$LAST_US
    # The column in the tenant's transaction, its index built concurrently after it (a
    # `-- tenantctl: no-transaction` migration: statement by statement, outside any
    # transaction, each statement recorded, the schema verified before the history row).
    printf 'ALTER TABLE conversations ADD COLUMN note_1 text;\n' >"$FLEET_DIR/migrations/0002_note_1.sql"
    printf -- '-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY conversations_note_1 ON conversations (note_1);\n' \
        >"$FLEET_DIR/migrations/0003_note_1_index.sql"
    check_deadline "the fleet's migration"
    say "big: migrating $FLEET tenants (ADD COLUMN, then CREATE INDEX CONCURRENTLY)"
    run_tc "$SCRATCH/big.migrate.log" 600 apply --auto-approve --parallelism "$PARALLELISM" --canary "$CANARY"
    FLEET_US=$LAST_US
    check_history "$CUR_DB" "$FLEET" 2
    check_history "$CUR_DB" "$FLEET" 3
    got=$(psql_admin -d "$CUR_DB" -c "SELECT count(*) FILTER (WHERE i.indisvalid), count(*) FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'conversations_note_1'")
    [[ "$got" == "$FLEET|$FLEET" ]] || die "$CUR_DB: valid|all indexes conversations_note_1: $got, expected $FLEET|$FLEET"
    # The no-op run at that size: everything applied, nothing to do.
    say "big: no-op apply at $FLEET tenants"
    run_tc "$SCRATCH/big.noop.log" 300 apply --auto-approve --parallelism "$PARALLELISM"
    grep -q "No changes." "$SCRATCH/big.noop.log" || die "the no-op apply found something to do"
    FLEET_NOOP_US=$LAST_US
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
CPU="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
PG_VERSION="$(psql_admin -d postgres -c 'SHOW server_version' | awk '{ print $1 }')"
echo
echo "tenantctl migrations benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  rev $GIT_REV"
echo "machine: nproc=$(nproc), ${CPU:-unknown cpu}; shared and noisy: compare ratios from one run"
echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (fsync off, dev settings); parallelism $PARALLELISM; canary $CANARY"
echo
echo "1. ADD COLUMN + CREATE INDEX on $TENANTS tenants, $ROUNDS rounds after a warm-up (median):"
echo "   tenantctl apply (whole run)        $(secs "$TC_MEDIAN") s   [$(for t in "${TC_TIMES[@]}"; do printf '%s ' "$(secs "$t")"; done)]"
echo "     of which the migration phase    $(secs "$PHASE_MEDIAN") s   [$(for t in "${PHASE_TIMES[@]}"; do printf '%s ' "$(secs "$t")"; done)]  (first to last tenant transaction)"
echo "   psql floor, 1 txn per tenant       $(secs "$FLOOR_MEDIAN") s   [$(for t in "${FLOOR_TIMES[@]}"; do printf '%s ' "$(secs "$t")"; done)]"
echo "   ratio, migration phase / floor     $(ratio "$PHASE_RATIO" 1000)x  (median of the rounds' ratios; target: 1.5x or less)"
echo "   ratio, whole run / floor           $(ratio "$WHOLE_RATIO" 1000)x  (the run also reads and plans the whole fleet first)"
if [[ -n "$FLEET_US" ]]; then
    echo
    echo "2. $FLEET tenants migrated           $(secs "$FLEET_US") s  (ADD COLUMN + CREATE INDEX CONCURRENTLY, canary $CANARY; target: under 60 s; created in $(secs "$FLEET_CREATE_US") s)"
    echo "   no-op apply afterwards             $(secs "$FLEET_NOOP_US") s  ($(ratio "$FLEET_NOOP_US" "$WITHOUT_MEDIAN")x the no-change plan without migrations of part 3, when both ran at the same size; target: 1.3x or less)"
fi
echo
echo "3. no-change plan, $TENANTS tenants (median of $RUNS):"
echo "   with 10 migrations                 $(ms "$WITH_MEDIAN") ms"
echo "   without (built-in only)            $(ms "$WITHOUT_MEDIAN") ms"
echo "   ratio                              $(ratio "$WITH_MEDIAN" "$WITHOUT_MEDIAN")x  (target: 1.3x or less)"
say "done in $((SECONDS - START)) s (build excluded); cleaning up"
