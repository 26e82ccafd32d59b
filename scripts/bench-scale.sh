#!/usr/bin/env bash
# Scale benchmark: N generated tenants through their lifecycle, tenantctl against the floor.
#
#   bash scripts/bench.sh --tenants N        (or: bash scripts/bench-scale.sh --tenants N)
#
# One run, for N tenants (a generated directory: scripts/bench_floor.py gen, the migrations of
# tenants/migrations/), on databases that already hold tenantctl's control schema (set up by an
# apply of a directory without tenants, not measured), each phase timed for tenantctl and for the
# floor:
#   1. create N tenants                 tenantctl apply (default parallelism unless
#                                       BENCH_PARALLELISM)
#   2. no-change plan                   tenantctl plan, median of BENCH_PLAN_RUNS, peak RSS
#   3. update config.max_tokens of all  the files rewritten, tenantctl apply
#   4. soft delete all (final backups)  `state: deleted`, tenantctl apply --retention-days 0
#                                       --max-deletes N --backup-dir DIR
#   5. purge all                        tenantctl apply --retention-days 0 --max-deletes N
# The floor (scripts/bench_floor.py) sends the statements and HTTP requests tenantctl sends for
# the same phase, raw: psql sessions (one transaction per tenant) and http.client keep-alive
# connections, plus the same backup file work. It runs three times, each on its own PostgreSQL
# database, Chroma database and role prefix, going through the same phases:
#   sequential: one psql session, one Chroma connection, one thread for files, one after the other;
#   parallel parts: the same split over BENCH_FLOOR_WORKERS (4) sessions / threads, part by part;
#   parallel, both at once: the PostgreSQL and Chroma parts at the same time (the floor the
#   ratio is taken against).
# After every phase `tenantctl plan` runs against each floor database and must show only what it
# shows for tenantctl's own (no changes; after the soft delete, the N due purges): the floor made
# what tenantctl makes. Peak RSS of tenantctl comes from /usr/bin/time (or python's getrusage
# where it is missing). Output: Markdown tables on stdout (also, cut short, when the run fails or
# is interrupted), progress on stderr.
#
# Environment:
#   BENCH_BIN=PATH            use this tenantctl binary; nothing is built
#   BENCH_MAX_SECONDS=3600    the whole run (build excluded) gives up, and cleans up, after this
#   BENCH_PARALLELISM=N       pass --parallelism N to tenantctl apply (default: its default)
#   BENCH_FLOOR_WORKERS=4     sessions / threads of the parallel floor
#   BENCH_PLAN_RUNS=3         runs per no-change plan figure (the median is reported)
#   BENCH_MIGRATIONS=examples examples: the migrations of tenants/migrations/ (two tables);
#                             builtin: no migrations/ folder (the built-in conversations table)
#   BENCH_CHECK_FLOOR=1       0 skips the `tenantctl plan` check of the floor databases
#   BENCH_TRACE=1             (N <= 100; figures are then not measurements) log the statements of
#                             tenantctl's and the sequential floor's databases (log_statement =
#                             'all' on those two only) and their Chroma requests (through a logging
#                             proxy), and print per phase where the two differ, normalized. To check
#                             the floor after tenantctl changed what it sends. BENCH_PG_LOG: the
#                             server log (default: the one scripts/servers.sh writes)
#   TENANTCTL_PG_PORT (5432), TENANTCTL_CHROMA_PORT (8000): the loopback servers to use
#
# Every external command runs under `timeout` with the time left. Everything this run creates
# (databases, roles with the run's prefix, Chroma databases, the scratch folder) is removed on
# exit, on Ctrl-C and when the time budget runs out. The servers
# run with fsync off (development settings) and the machine may be shared: compare the ratios of
# one run rather than absolute figures across runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT="${TENANTCTL_PG_PORT:-5432}"
CHROMA_PORT="${TENANTCTL_CHROMA_PORT:-8000}"
CHROMA_URL_LOCAL="http://127.0.0.1:$CHROMA_PORT"
CHROMA_TENANT_NAME=default_tenant
MAX_SECONDS="${BENCH_MAX_SECONDS:-3600}"
PLAN_RUNS="${BENCH_PLAN_RUNS:-3}"
WORKERS="${BENCH_FLOOR_WORKERS:-4}"
MIGRATIONS="${BENCH_MIGRATIONS:-examples}"
CHECK_FLOOR="${BENCH_CHECK_FLOOR:-1}"
TRACE="${BENCH_TRACE:-0}"
PARALLELISM="${BENCH_PARALLELISM:-}"
FLOOR="$ROOT/scripts/bench_floor.py"

say() { printf 'bench-scale.sh: %s\n' "$*" >&2; }
die() {
    printf 'bench-scale.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# Arguments and environment
# ---------------------------------------------------------------------------------------------
N=""
while (($# > 0)); do
    case "$1" in
    --tenants)
        (($# >= 2)) || die "--tenants needs a number"
        N=$2
        shift 2
        ;;
    --tenants=*)
        N=${1#--tenants=}
        shift
        ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (usage: bash scripts/bench.sh --tenants N)" ;;
    esac
done
[[ -n "$N" ]] || die "usage: bash scripts/bench.sh --tenants N"
if ! [[ "$N" =~ ^[1-9][0-9]{0,5}$ ]] || ((N > 100000)); then die "--tenants: '$N' is not a tenant count from 1 to 100000"; fi
for p in "$PG_PORT" "$CHROMA_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "invalid port '$p'"; fi
done
if ! [[ "$MAX_SECONDS" =~ ^[1-9][0-9]{0,5}$ ]]; then die "BENCH_MAX_SECONDS must be a number of seconds"; fi
if ! [[ "$PLAN_RUNS" =~ ^[1-9]$ ]]; then die "BENCH_PLAN_RUNS must be 1 to 9"; fi
if ! [[ "$WORKERS" =~ ^[1-9][0-9]?$ ]]; then die "BENCH_FLOOR_WORKERS must be 1 to 99"; fi
if [[ -n "$PARALLELISM" ]] && ! [[ "$PARALLELISM" =~ ^[1-9][0-9]?$ ]]; then die "BENCH_PARALLELISM must be 1 to 99"; fi
[[ "$MIGRATIONS" == examples || "$MIGRATIONS" == builtin ]] || die "BENCH_MIGRATIONS must be examples or builtin"
[[ "$CHECK_FLOOR" == 0 || "$CHECK_FLOOR" == 1 ]] || die "BENCH_CHECK_FLOOR must be 0 or 1"
[[ "$TRACE" == 0 || "$TRACE" == 1 ]] || die "BENCH_TRACE must be 0 or 1"
if ((TRACE && N > 100)); then die "BENCH_TRACE=1 logs every statement: use it with --tenants 100 at most"; fi

for tool in curl timeout awk sort git python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x "$PGBIN/psql" ]] || die "$PGBIN/psql is missing (run scripts/servers.sh start once as root)"
[[ -f "$FLOOR" ]] || die "$FLOOR is missing"

if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Settings from the caller's environment that would change what is measured.
unset TENANTCTL_DIR TENANTCTL_RETENTION_DAYS TENANTCTL_MAX_DELETES TENANTCTL_BACKUP_DIR \
    TENANTCTL_ROLE_PREFIX TENANTCTL_PARALLELISM TENANTCTL_SECRETS_DIR TENANTCTL_SECRETS_COMMAND \
    TENANTCTL_STATEMENT_TIMEOUT TENANTCTL_TENANT_LOCK_TIMEOUT TENANTCTL_MIGRATION_LOCK_TIMEOUT \
    TENANTCTL_RUN_TIMEOUT TENANTCTL_CHROMA_TIMEOUT TENANTCTL_PLAN_KEY \
    DATABASE_URL CHROMA_URL CHROMA_DATABASE CHROMA_TENANT CHROMA_TOKEN

# ---------------------------------------------------------------------------------------------
# Scratch folder, unique names and cleanup (bench-common.sh)
# ---------------------------------------------------------------------------------------------
# Databases bscale<pid>_<label>, roles bscale<pid>_<label>_<tenant>: all dropped on exit.
RUN_ID="bscale$$"
SCRATCH="$(mktemp -d "/tmp/tenantctl-bench-scale.XXXXXX")"
CREATED_DBS=()
CHROMA_DBS=()
ROLES_CREATED=0
CHILD=""
PROXY_PID="" # the Chroma logging proxy of BENCH_TRACE=1
REPORTED=0
declare -A R # results, R[phase:metric]: see report()

# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
# bench-common.sh's admin psql, bounded: a hung server must not hang the run or its cleanup.
psql_admin() {
    timeout -k 5 120 "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$CHILD" ]]; then
        # an interrupted command: `timeout` passes TERM on to the command's process group
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    if [[ -n "$PROXY_PID" ]]; then
        kill -TERM "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
    fi
    say "cleaning up: ${CREATED_DBS[*]:-no databases}, roles ${RUN_ID}_*, $SCRATCH"
    drop_bench_targets
    # A busy Chroma answers 500 to a database delete now and then: try those again for a while.
    local db attempt
    for db in "${CHROMA_DBS[@]}"; do
        for attempt in 1 2 3 4 5 6 7 8 9 10; do
            [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
                "$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$db")" == 200 ]] || break
            if ((attempt == 10)); then
                say "Chroma database $db is still there; delete it with:" \
                    "curl -X DELETE $CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$db"
                break
            fi
            sleep 3
            curl -s -o /dev/null --max-time 900 -X DELETE \
                "$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$db"
        done
    done
    rm -rf "$SCRATCH"
    exit "$rc"
}
interrupted() {
    # interrupted SIGNAL CODE: what was measured so far, then exit (cleanup runs on EXIT)
    trap - INT TERM
    if ((!REPORTED && ${#R[@]} > 0)); then
        FAILURE="interrupted by $1"
        report
    fi
    exit "$2"
}
trap cleanup EXIT
trap 'interrupted SIGINT 130' INT
trap 'interrupted SIGTERM 143' TERM

# ---------------------------------------------------------------------------------------------
# Servers and binary
# ---------------------------------------------------------------------------------------------
servers_answer() {
    timeout 10 "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -A -t -d postgres \
        -c 'SELECT 1' >/dev/null 2>&1 &&
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$CHROMA_URL_LOCAL/api/v2/heartbeat")" == 200 ]]
}
if ! servers_answer; then
    say "servers: scripts/servers.sh start"
    timeout 600 bash "$ROOT/scripts/servers.sh" start >/dev/null
fi

BIN_NOTE=""
if [[ -n "${BENCH_BIN:-}" ]]; then
    [[ -x "$BENCH_BIN" ]] || die "BENCH_BIN=$BENCH_BIN is not an executable"
    SOURCE_BIN="$BENCH_BIN"
    BIN_NOTE=" (binary: BENCH_BIN=$BENCH_BIN, not built by this run)"
else
    command -v cargo >/dev/null || die "cargo not found (or set BENCH_BIN)"
    build_release
    SOURCE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tenantctl"
fi
# A copy: a rebuild in the working tree during the run must not change the binary measured.
BIN="$SCRATCH/tenantctl"
cp "$SOURCE_BIN" "$BIN"
GIT_REV="$(timeout 30 git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(timeout 30 git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    GIT_REV="$GIT_REV+uncommitted changes"
fi

START=$SECONDS # the budget covers the measurements, not the build
LEFT=0
budget() {
    # sets LEFT: seconds left of BENCH_MAX_SECONDS; fails the run when none are
    LEFT=$((MAX_SECONDS - (SECONDS - START)))
    if ((LEFT <= 0)); then fail "over BENCH_MAX_SECONDS=$MAX_SECONDS s"; fi
}
fail() {
    # fail REASON: the report of what was measured so far, then the reason; exit 1 (cleaning up)
    FAILURE=$1
    if ((!REPORTED)) && declare -F report >/dev/null; then report; fi
    die "$1"
}
FAILURE=""

TIME_BIN=/usr/bin/time
if ! [[ -x "$TIME_BIN" ]] || ! "$TIME_BIN" -f %M -o /dev/null true 2>/dev/null; then TIME_BIN=""; fi

LAST_US=0
LAST_RSS_KB=0
run_bounded() {
    # run_bounded LOG EXPECTED_RC cmd...: runs cmd under `timeout` (the time left), in the
    # background and waited for, so that a signal to this script is handled at once.
    local log=$1 want=$2 rc
    shift 2
    budget
    timeout -k 5 "$LEFT" "$@" >"$log" 2>&1 </dev/null &
    CHILD=$!
    set +e
    wait "$CHILD"
    rc=$?
    set -e
    CHILD=
    if ((rc != want)); then
        tail -n 30 "$log" >&2
        if ((rc == 124 || rc == 137)); then fail "out of time (BENCH_MAX_SECONDS=$MAX_SECONDS) in: ${*:1:8} ... (log above)"; fi
        fail "${*:1:8} ... exited $rc, expected $want; $(grep -m1 -iE 'error' "$log" | cut -c1-300 || true)"
    fi
}

run_tc() {
    # run_tc LOG EXPECTED_RC tenantctl-args...: one timed tenantctl run with its peak RSS.
    local log=$1 want=$2 t0 t1 rss="$SCRATCH/rss"
    shift 2
    rm -f "$rss"
    t0=$(now_us)
    if [[ -n "$TIME_BIN" ]]; then
        run_bounded "$log" "$want" "$TIME_BIN" -f %M -o "$rss" "$BIN" "$@"
    else
        run_bounded "$log" "$want" python3 "$FLOOR" rss "$rss" "$BIN" "$@"
    fi
    t1=$(now_us)
    LAST_US=$((t1 - t0))
    LAST_RSS_KB=$(tail -n 1 "$rss" 2>/dev/null | tr -dc 0-9)
    LAST_RSS_KB=${LAST_RSS_KB:-0}
}

# ---------------------------------------------------------------------------------------------
# Targets: tenantctl's, and one per floor mode
# ---------------------------------------------------------------------------------------------
DIR="$SCRATCH/tenants"
EMPTY_DIR="$SCRATCH/empty"
mkdir -p "$DIR" "$EMPTY_DIR"
if [[ "$MIGRATIONS" == examples ]]; then
    MIGRATIONS_SRC="$ROOT/tenants/migrations"
    FLOOR_MIGRATIONS="$DIR/migrations"
else
    # The built-in migration is the copy in tenants/migrations (same checksum, per the README).
    MIGRATIONS_SRC=""
    FLOOR_MIGRATIONS="$SCRATCH/builtin-migrations"
    mkdir -p "$FLOOR_MIGRATIONS"
    cp "$ROOT/tenants/migrations/0001_conversations.sql" "$FLOOR_MIGRATIONS/"
fi
gen() { timeout 600 python3 "$FLOOR" gen "$DIR" "$N" "$1" ${MIGRATIONS_SRC:+"$MIGRATIONS_SRC"}; }
gen create
timeout 60 python3 "$FLOOR" gen "$EMPTY_DIR" 0 create

MODES=(seq par both)
declare -A FDB # floor database (= Chroma database, role prefix "<db>_") per mode
for mode in "${MODES[@]}"; do
    use_target "f$mode" "$DIR"
    FDB[$mode]=$CUR_DB
    mkdir -p "$SCRATCH/backups-f$mode"
done
use_target tc "$DIR" # last: its environment (DATABASE_URL, CHROMA_DATABASE, ...) stays set
TC_DB=$CUR_DB
BACKUPS="$SCRATCH/backups-tc"
TC_PAR=()
if [[ -n "$PARALLELISM" ]]; then TC_PAR=(--parallelism "$PARALLELISM"); fi

floor_flags() {
    # the connection flags of tenantctl for the floor database of a mode
    local db=${FDB[$1]}
    echo "--database-url postgres://postgres@127.0.0.1:$PG_PORT/$db --chroma-database $db --role-prefix ${db}_"
}

# Every database gets tenantctl's control schema (and its Chroma database) from an apply of a
# directory without tenants: set-up, not measured (phase 1 measures creating tenants only).
run_bounded "$SCRATCH/setup-tc.log" 0 "$BIN" apply --auto-approve --dir "$EMPTY_DIR" --backup-dir "$BACKUPS"
for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2046  # floor_flags is a list of words without spaces inside
    run_bounded "$SCRATCH/setup-$mode.log" 0 "$BIN" apply --auto-approve --dir "$EMPTY_DIR" \
        --backup-dir "$SCRATCH/backups-f$mode" $(floor_flags "$mode")
done

# ---------------------------------------------------------------------------------------------
# BENCH_TRACE=1: statement logging on tenantctl's and the sequential floor's databases, and a
# logging proxy in front of Chroma for both
# ---------------------------------------------------------------------------------------------
FLOOR_SEQ_CHROMA_PORT=$CHROMA_PORT
if ((TRACE)); then
    PG_LOG="${BENCH_PG_LOG:-}"
    if [[ -z "$PG_LOG" ]]; then
        # where scripts/servers.sh writes it
        PG_LOG="$ROOT/.local/postgres.log"
        hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
        if [[ ! -r "$PG_LOG" && -r "/tmp/tenantctl-pg-$hash/postgres.log" ]]; then PG_LOG="/tmp/tenantctl-pg-$hash/postgres.log"; fi
    fi
    [[ -r "$PG_LOG" ]] || die "BENCH_TRACE=1: cannot read the server log $PG_LOG (set BENCH_PG_LOG)"
    for db in "$TC_DB" "${FDB[seq]}"; do
        psql_admin -d postgres -c "ALTER DATABASE \"$db\" SET log_statement = 'all'" >/dev/null
    done
    probe="bench-scale trace probe $RUN_ID"
    psql_admin -d "$TC_DB" -c "SELECT '$probe'" >/dev/null
    sleep 0.5
    grep -qF "$probe" <(tail -c 100000 "$PG_LOG") || die "BENCH_TRACE=1: $PG_LOG is not the log of the server on port $PG_PORT (set BENCH_PG_LOG)"
    TRACE_CHROMA="$SCRATCH/chroma-requests.log"
    : >"$TRACE_CHROMA"
    timeout "$MAX_SECONDS" python3 "$FLOOR" proxy "$SCRATCH/proxy.port" "$CHROMA_PORT" "$TRACE_CHROMA" 2>"$SCRATCH/proxy.err" &
    PROXY_PID=$!
    for ((i = 0; i < 50; i++)); do
        [[ -s "$SCRATCH/proxy.port" ]] && break
        sleep 0.1
    done
    [[ -s "$SCRATCH/proxy.port" ]] || die "the Chroma logging proxy did not start: $(cat "$SCRATCH/proxy.err")"
    FLOOR_SEQ_CHROMA_PORT=$(tr -dc 0-9 <"$SCRATCH/proxy.port")
    export CHROMA_URL="http://127.0.0.1:$FLOOR_SEQ_CHROMA_PORT" # tenantctl's runs go through it too
    say "BENCH_TRACE=1: statements logged to $PG_LOG, Chroma requests through 127.0.0.1:$FLOOR_SEQ_CHROMA_PORT; the figures are not measurements"
fi
T_PG=0
T_CH=0
trace_begin() {
    ((TRACE)) || return 0
    sleep 0.3 # backends of the previous command log their last lines
    T_PG=$(stat -c %s "$PG_LOG")
    T_CH=$(wc -l <"$TRACE_CHROMA")
}
trace_end() {
    # trace_end NAME: appends what was logged since trace_begin to trace-NAME.{pg,chroma}
    ((TRACE)) || return 0
    local pg ch
    sleep 0.3
    pg=$(stat -c %s "$PG_LOG")
    ch=$(wc -l <"$TRACE_CHROMA")
    python3 -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2])); sys.stdout.buffer.write(f.read(int(sys.argv[3])))' \
        "$PG_LOG" "$T_PG" $((pg - T_PG)) >>"$SCRATCH/trace-$1.pg"
    if ((ch > T_CH)); then sed -n "$((T_CH + 1)),${ch}p" "$TRACE_CHROMA" >>"$SCRATCH/trace-$1.chroma"; fi
    touch "$SCRATCH/trace-$1.chroma"
}

# ---------------------------------------------------------------------------------------------
# Report (also of a run cut short: what was measured, then why it stopped)
# ---------------------------------------------------------------------------------------------
# R[phase:metric]: tc (us), rss (KiB), seq / par (s, whole floor), pg_* ch_* fs_* (parts)
PHASES=(create plan update delete purge)

s3() { if [[ -n "$1" ]]; then awk -v s="$1" 'BEGIN { printf "%.3f s", s }'; else echo "-"; fi; }
us3() { if [[ -n "$1" ]]; then awk -v us="$1" 'BEGIN { printf "%.3f s", us / 1000000 }'; else echo "-"; fi; }
ratio() { if [[ -n "$1" && -n "$2" ]]; then awk -v us="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1fx", us / 1000000 / s; else print "-" }'; else echo "-"; fi; }
mb() { if [[ -n "$1" ]]; then awk -v kb="$1" 'BEGIN { printf "%.0f MB", kb / 1024 }'; else echo "-"; fi; }

report() {
    REPORTED=1
    local cpu ram pg_version chroma_version parallelism migrations n phase title check
    cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
    ram="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)"
    pg_version="$(timeout 10 "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -A -t -d postgres -c 'SELECT version()' 2>/dev/null || echo '?')"
    chroma_version="$(curl -s --max-time 5 "$CHROMA_URL_LOCAL/api/v2/version" | tr -d '"' || true)"
    if [[ -n "$PARALLELISM" ]]; then
        parallelism="$PARALLELISM (--parallelism)"
    else
        parallelism="$(timeout 10 "$BIN" apply --help 2>/dev/null | grep -o 'PARALLELISM[^]]*\] \[default: [0-9]*' | grep -o '[0-9]*$' || true)"
        parallelism="${parallelism:-?} (tenantctl's default)"
    fi
    migrations="tenants/migrations/ ($(find "$FLOOR_MIGRATIONS" -name '*.sql' | wc -l) migrations)"
    if [[ "$MIGRATIONS" == builtin ]]; then migrations="the built-in 0001_conversations"; fi
    check="skipped (BENCH_CHECK_FLOOR=0)"
    if ((CHECK_FLOOR)); then check="after every phase, \`tenantctl plan\` against each floor database showed only what it shows against tenantctl's (no changes; after the soft delete, N to purge)"; fi

    echo
    echo "## tenantctl at scale: N=$N tenants"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); rev $GIT_REV$BIN_NOTE"
    echo "- machine: nproc=$(nproc), ${cpu:-unknown cpu}, RAM ${ram:-?}; shared and noisy: compare ratios from one run"
    echo "- PostgreSQL: $pg_version (127.0.0.1:$PG_PORT, fsync off: development settings)"
    echo "- Chroma: ${chroma_version:-?} (GET /api/v2/version, 127.0.0.1:$CHROMA_PORT)"
    echo "- tenants: N=$N generated (3 plans, config overrides), schema from $migrations, no rows or records"
    echo "- tenantctl parallelism: $parallelism; floor: 1 worker (seq) and $WORKERS workers (par)"
    echo "- floor check: $check"
    if ((TRACE)); then echo "- BENCH_TRACE=1: statement logging and a Chroma proxy were on: the figures are not measurements"; fi
    echo
    echo "| # | phase | floor seq | floor par ($WORKERS) | tenantctl | tenantctl / floor par | tenantctl peak RSS |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    n=0
    for phase in "${PHASES[@]}"; do
        n=$((n + 1))
        case $phase in
        create) title="create $N tenants (apply)" ;;
        plan) title="no-change plan (median of $PLAN_RUNS)" ;;
        update) title="update config.max_tokens of all (apply)" ;;
        delete) title="soft delete all, final backups (apply)" ;;
        purge) title="purge all (apply)" ;;
        esac
        echo "| $n | $title | $(s3 "${R[$phase:seq]:-}") | $(s3 "${R[$phase:par]:-}") | $(us3 "${R[$phase:tc]:-}") | $(ratio "${R[$phase:tc]:-}" "${R[$phase:par]:-}") | $(mb "${R[$phase:rss]:-}") |"
    done
    echo
    echo "Floor by part (each part includes its share of reading the live state; par = $WORKERS sessions / threads):"
    echo
    echo "| phase | PostgreSQL seq | PostgreSQL par | Chroma seq | Chroma par | files seq | files par | seq: the parts one after the other | par: PostgreSQL and Chroma at once, then files |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for phase in "${PHASES[@]}"; do
        echo "| $phase | $(s3 "${R[$phase:pg_seq]:-}") | $(s3 "${R[$phase:pg_par]:-}") | $(s3 "${R[$phase:ch_seq]:-}") | $(s3 "${R[$phase:ch_par]:-}") | $(s3 "${R[$phase:fs_seq]:-}") | $(s3 "${R[$phase:fs_par]:-}") | $(s3 "${R[$phase:seq]:-}") | $(s3 "${R[$phase:par]:-}") |"
    done
    echo
    echo "tenantctl: wall time of the process. Floor: timed inside scripts/bench_floor.py (psql sessions"
    echo "started and connected inside the timing, Python's own start-up outside). What the floor sends:"
    echo "the statements and requests tenantctl sends (read from the server log with log_statement = 'all'"
    echo "and a proxy in front of Chroma; BENCH_TRACE=1 compares them again), one transaction per tenant:"
    echo "- every phase reads the live state: the control-schema check, ~20 catalog and registry queries,"
    echo "  the reference schema built and read in a rolled-back transaction; Chroma: the tenant, the"
    echo "  database, collections_count and the collections in pages of 500. An apply adds its advisory"
    echo "  lock, the control-schema check again and the session timeouts, and on Chroma the"
    echo "  create-if-missing of the tenant and the database."
    echo "- create, per tenant: the create_started event (a statement of its own), then one transaction:"
    echo "  schema + comment + REVOKE FROM PUBLIC (one batch), the migrations under SET LOCAL search_path,"
    echo "  their history rows, role + comment + grants (one batch), the registry row, the event; Chroma:"
    echo "  create the collection."
    echo "- update, per tenant: a transaction with the registry UPDATE and the event; no Chroma request."
    echo "- soft delete: the plan counts the rows of every table (one UNION ALL statement per 500 tables)"
    echo "  (records are counted by the backup, not the plan); per tenant a REPEATABLE READ"
    echo "  transaction: REVOKE USAGE, registry UPDATE, the tables' columns, COPY ... TO STDOUT per table"
    echo "  into its file, the event; Chroma: get (a page of 500; more pages between two counts for a"
    echo "  bigger collection) and a count, into records.jsonl; files: manifest, fsync of every file and"
    echo "  folder, rename into place."
    echo "- purge: the plan counts rows, and records (8 requests in flight); per tenant a transaction: DROP SCHEMA CASCADE + DROP ROLE (one"
    echo "  batch), DELETE of the registry row, the event; Chroma: delete the collection; files: the size"
    echo "  of the backups (shown by the plan), then their removal."
    if [[ -n "$FAILURE" ]]; then
        echo
        echo "**The run stopped:** $FAILURE"
    fi
    if ((TRACE)) && [[ -z "$FAILURE" ]]; then
        echo
        echo "### BENCH_TRACE=1: what tenantctl and the sequential floor sent, normalized (names, literals)"
        echo
        echo "(\`SET statement_timeout ...; SET lock_timeout ...\` is sent once per session: tenantctl opens one"
        echo "per worker, the sequential floor one.)"
        echo
        echo '```'
        for phase in "${PHASES[@]}"; do
            echo "$phase:"
            python3 "$FLOOR" compare "$SCRATCH/trace-$phase-tc.pg" "$SCRATCH/trace-$phase-floor.pg" \
                "$SCRATCH/trace-$phase-tc.chroma" "$SCRATCH/trace-$phase-floor.chroma"
        done
        echo '```'
    fi
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

count_schemas() { psql_admin -d "$1" -c "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'tenant_')"; }
count_collections() { curl -s --max-time 60 "$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$1/collections_count"; }
verify_counts() {
    # verify_counts DB WANT: tenant schemas and collections of a target
    local db=$1 want=$2 schemas collections
    schemas=$(count_schemas "$db")
    collections=$(count_collections "$db")
    if [[ "$schemas" != "$want" || "$collections" != "$want" ]]; then
        fail "$db: $schemas tenant schemas and '$collections' collections, expected $want each"
    fi
}

floor() {
    # floor PHASE MODE: the floor of a phase in a mode, on that mode's target; sets F_PG,
    # F_CHROMA, F_FILES, F_TOTAL (seconds)
    local phase=$1 mode=$2 db=${FDB[$2]} workers=$WORKERS line port=$CHROMA_PORT
    say "  floor $mode"
    budget
    if [[ "$mode" == seq ]]; then port=$FLOOR_SEQ_CHROMA_PORT; fi
    run_bounded "$SCRATCH/floor-$phase-$mode.log" 0 python3 "$FLOOR" phase "$phase" "$mode" \
        --db "$db" --role-prefix "${db}_" --chroma-db "$db" --chroma-port "$port" \
        --pg-port "$PG_PORT" --psql "$PGBIN/psql" --backup-dir "$SCRATCH/backups-f$mode" \
        --dir "$DIR" --migrations "$FLOOR_MIGRATIONS" --tenants "$N" --workers "$workers" \
        --state "$SCRATCH/uids-$mode.json" --runs "$PLAN_RUNS" --seconds "$LEFT"
    line=$(tail -n 1 "$SCRATCH/floor-$phase-$mode.log")
    [[ "$line" =~ ^pg=([0-9.]+)\ chroma=([0-9.]+)\ files=([0-9.]+)\ total=([0-9.]+)$ ]] ||
        fail "unexpected floor output: $line"
    F_PG=${BASH_REMATCH[1]}
    F_CHROMA=${BASH_REMATCH[2]}
    F_FILES=${BASH_REMATCH[3]}
    F_TOTAL=${BASH_REMATCH[4]}
}

floors() {
    # floors PHASE: the three floor modes of a phase, into R
    local phase=$1
    trace_begin
    floor "$phase" seq
    trace_end "$phase-floor"
    R[$phase:seq]=$F_TOTAL
    R[$phase:pg_seq]=$F_PG
    R[$phase:ch_seq]=$F_CHROMA
    R[$phase:fs_seq]=$F_FILES
    floor "$phase" par
    R[$phase:pg_par]=$F_PG
    R[$phase:ch_par]=$F_CHROMA
    R[$phase:fs_par]=$F_FILES
    floor "$phase" both
    R[$phase:par]=$F_TOTAL
}

check_floor() {
    # check_floor PHASE WANT_SCHEMAS WANT_SUMMARY EXTRA-PLAN-FLAGS...: what the floor made, as
    # tenantctl sees it: its plan against each floor database must end with WANT_SUMMARY (the
    # line tenantctl's own database gives) and report nothing else (no drift, orphan, conflict,
    # leftover backup or warning).
    local phase=$1 want=$2 summary=$3 mode log rc
    shift 3
    for mode in "${MODES[@]}"; do
        verify_counts "${FDB[$mode]}" "$want"
        ((CHECK_FLOOR)) || continue
        log="$SCRATCH/check-$phase-$mode.log"
        rc=0
        if [[ "$summary" != No\ changes* ]]; then rc=2; fi
        # shellcheck disable=SC2046  # floor_flags is a list of words without spaces inside
        run_bounded "$log" "$rc" "$BIN" plan --detailed-exitcode \
            --backup-dir "$SCRATCH/backups-f$mode" $(floor_flags "$mode") "$@"
        if ! grep -qxF "$summary" "$log" || grep -qiE 'warning|orphan|conflict|leftover|drift|repair' "$log"; then
            tail -n 30 "$log" >&2
            fail "tenantctl plan against the $mode floor's database, after $phase: expected only '$summary' (log above)"
        fi
    done
}

tc_apply() {
    # tc_apply PHASE: a timed tenantctl apply of the current files, which must apply N tenants
    local phase=$1
    shift
    trace_begin
    run_tc "$SCRATCH/tc-$phase.log" 0 apply --auto-approve --backup-dir "$BACKUPS" "${TC_PAR[@]}" "$@"
    trace_end "$phase-tc"
    R[$phase:tc]=$LAST_US
    R[$phase:rss]=$LAST_RSS_KB
    grep -q "^Apply complete: $N tenants applied" "$SCRATCH/tc-$phase.log" ||
        fail "tenantctl apply ($phase) did not apply $N tenants: $(grep -m1 '^Apply' "$SCRATCH/tc-$phase.log" || echo '?')"
}

DELETE_FLAGS=(--retention-days 0 --max-deletes "$N")

say "N=$N: 1/5 create (tenantctl apply)"
tc_apply create
verify_counts "$TC_DB" "$N"
floors create
check_floor create "$N" "No changes. Live state matches the desired state ($N tenants)."

say "N=$N: 2/5 no-change plan x$PLAN_RUNS"
times=()
rss_max=0
for ((i = 1; i <= PLAN_RUNS; i++)); do
    trace_begin
    run_tc "$SCRATCH/tc-plan.log" 0 plan --detailed-exitcode
    trace_end plan-tc
    times+=("$LAST_US")
    if ((LAST_RSS_KB > rss_max)); then rss_max=$LAST_RSS_KB; fi
done
R[plan:tc]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }')
R[plan:rss]=$rss_max
floors plan

say "N=$N: 3/5 update config.max_tokens of every tenant"
gen update
tc_apply update
floors update
check_floor update "$N" "No changes. Live state matches the desired state ($N tenants)."

say "N=$N: 4/5 soft delete of every tenant, with final backups"
gen delete
tc_apply delete "${DELETE_FLAGS[@]}"
backups=$(find "$BACKUPS" -name manifest.json | wc -l)
((backups == N)) || fail "tenantctl wrote $backups backups, expected $N"
floors delete
check_floor delete "$N" "Plan: $N to purge." "${DELETE_FLAGS[@]}"
for mode in "${MODES[@]}"; do
    backups=$(find "$SCRATCH/backups-f$mode" -name manifest.json | wc -l)
    ((backups == N)) || fail "the $mode floor wrote $backups backups, expected $N"
done

say "N=$N: 5/5 purge of every tenant"
tc_apply purge "${DELETE_FLAGS[@]}"
verify_counts "$TC_DB" 0
[[ -z "$(find "$BACKUPS" -name manifest.json)" ]] || fail "backups left after tenantctl's purge"
floors purge
check_floor purge 0 "No changes. Live state matches the desired state ($N tenants)." "${DELETE_FLAGS[@]}"
for mode in "${MODES[@]}"; do
    [[ -z "$(find "$SCRATCH/backups-f$mode" -name manifest.json)" ]] || fail "backups left after the $mode floor's purge"
done

report
say "done in $((SECONDS - START)) s (build excluded)"
