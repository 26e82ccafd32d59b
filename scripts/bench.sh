#!/usr/bin/env bash
# Benchmark of tenantctl against the local PostgreSQL and Chroma (scripts/servers.sh).
#
#   bash scripts/bench.sh
#   bash scripts/bench.sh --tenants N     the scale benchmark instead: N generated tenants created,
#                                         planned, updated, soft-deleted and purged, against the
#                                         floor of the same statements and requests sent raw
#                                         (scripts/bench-scale.sh, which documents its settings)
#
# Without arguments, measures, each on a fresh PostgreSQL database and a fresh Chroma database
# (unique names, created here and dropped on exit together with the roles, whose prefix is unique
# to the run):
#   - the example directory tenants/: apply creating it, no-change plan, no-change apply;
#   - generated directories of N tenants (BENCH_SIZES, default "100 1000"): apply creating them
#     (tenants/s and ratio to the DDL floor of /work/shared/docs/POSTGRES.md), no-change plan,
#     plan and apply of one changed tenant, and the server transactions one no-change plan costs
#     (pg_stat_database.xact_commit + xact_rollback deltas; they should not grow with N).
#
# Environment:
#   BENCH_SIZES="100 1000"   tenant counts of the generated directories
#   BENCH_RUNS=5             runs per plan figure (the median is reported)
#   BENCH_MAX_SECONDS=600    the run gives up (and cleans up) after this long, build excluded
#   BENCH_SKIP_BUILD=1       use target/release/tenantctl as it is (default: cargo build --release)
#   TENANTCTL_PG_PORT (5432), TENANTCTL_CHROMA_PORT (8000): the loopback servers to use
#
# The default run takes well under 3 minutes once the binary is built. The servers run with
# fsync off (development settings) and the machine may be shared: compare ratios taken from one
# run rather than absolute figures across runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
if [[ "${1:-}" == --tenants || "${1:-}" == --tenants=* ]]; then
    exec bash "$ROOT/scripts/bench-scale.sh" "$@"
fi
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT="${TENANTCTL_PG_PORT:-5432}"
CHROMA_PORT="${TENANTCTL_CHROMA_PORT:-8000}"
CHROMA_URL_LOCAL="http://127.0.0.1:$CHROMA_PORT"
CHROMA_TENANT_NAME=default_tenant
SIZES="${BENCH_SIZES:-100 1000}"
RUNS="${BENCH_RUNS:-5}"
MAX_SECONDS="${BENCH_MAX_SECONDS:-600}"
BIN="$ROOT/target/release/tenantctl"

# The floors tenantctl is compared with (measured on this kind of machine, 2 cores):
FLOOR_PG_S_PER_1000=2.5    # POSTGRES.md: 1,000 tenants' DDL in one psql session
CHROMA_MS_PER_CREATE=3.0   # CHROMA.md: 2.4-3.6 ms per collection create, writes serialized

say() { printf 'bench.sh: %s\n' "$*" >&2; }
die() {
    printf 'bench.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Arguments and environment
# ---------------------------------------------------------------------------------------------
[[ $# -eq 0 ]] || die "no arguments expected but --tenants N (configure with BENCH_SIZES, BENCH_RUNS, BENCH_MAX_SECONDS)"
for p in "$PG_PORT" "$CHROMA_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "invalid port '$p'"; fi
done
read -r -a SIZE_LIST <<<"$SIZES"
((${#SIZE_LIST[@]} > 0)) || die "BENCH_SIZES is empty"
for n in "${SIZE_LIST[@]}"; do
    if ! [[ "$n" =~ ^[1-9][0-9]{0,4}$ ]] || ((n > 20000)); then
        die "BENCH_SIZES: '$n' is not a tenant count from 1 to 20000"
    fi
done
if ! [[ "$RUNS" =~ ^[1-9][0-9]?$ ]]; then die "BENCH_RUNS must be 1 to 99"; fi
if ! [[ "$MAX_SECONDS" =~ ^[1-9][0-9]{0,5}$ ]]; then die "BENCH_MAX_SECONDS must be a number of seconds"; fi

for tool in curl timeout awk sort git; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x "$PGBIN/psql" ]] || die "$PGBIN/psql is missing (run scripts/servers.sh start once as root)"

# A non-login shell may not have rustup's folder on PATH.
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Settings from the caller's environment that would change what is measured.
unset TENANTCTL_DIR TENANTCTL_RETENTION_DAYS TENANTCTL_MAX_DELETES TENANTCTL_BACKUP_DIR \
    TENANTCTL_ROLE_PREFIX DATABASE_URL CHROMA_URL CHROMA_DATABASE CHROMA_TENANT \
    TENANTCTL_SECRETS_DIR TENANTCTL_SECRETS_COMMAND

# ---------------------------------------------------------------------------------------------
# Scratch folder, unique names and cleanup
# ---------------------------------------------------------------------------------------------
# Prefix of this run's databases, Chroma databases and roles. tenantctl allows role prefixes of at
# most 23 characters: "bench<pid>_<label>_" with labels "ex" and "n<N>" stays within that.
RUN_ID="bench$$"
SCRATCH="$(mktemp -d "/tmp/tenantctl-bench.XXXXXX")"
CREATED_DBS=()     # PostgreSQL databases this run created
CHROMA_DBS=()      # Chroma databases this run's applies may create
ROLES_CREATED=0
CHILD=""           # pid of the running `timeout tenantctl ...`, if any
APP_ROLE_CREATED=0 # this run created the role example_app (dropped again on exit)

# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$CHILD" ]]; then
        # a tenantctl run interrupted by a signal: stop it (timeout passes TERM on) first
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    drop_bench_targets
    if ((APP_ROLE_CREATED)); then
        # Refused while another database still grants it something: then it stays.
        psql_admin -d postgres -c "DROP ROLE IF EXISTS example_app" >/dev/null 2>&1 ||
            say "left the role example_app (another database uses it now)"
    fi
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
START=$SECONDS  # the budget covers the measurements, not the build
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    GIT_REV="$GIT_REV+uncommitted changes"
fi

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
LAST_US=0  # wall time of the last run_tc, microseconds
LAST_RC=0


run_tc() {
    # run_tc LOG LIMIT_SECONDS EXPECTED_RC tenantctl-args...: times one tenantctl run.
    local log=$1 limit=$2 want=$3 t0 t1
    shift 3
    t0=$(now_us)
    # In the background and waited for, so that a signal to this script is handled at once
    # (the trap stops the run) rather than after the tenantctl run.
    timeout -k 5 "$limit" "$BIN" "$@" >"$log" 2>&1 </dev/null &
    CHILD=$!
    set +e
    wait "$CHILD"
    LAST_RC=$?
    set -e
    CHILD=
    t1=$(now_us)
    LAST_US=$((t1 - t0))
    if ((LAST_RC != want)); then
        tail -n 25 "$log" >&2
        if ((LAST_RC == 124)); then die "tenantctl $* timed out after $limit s (log above)"; fi
        die "tenantctl $* exited $LAST_RC, expected $want (log above)"
    fi
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
secs() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000000 }'; }

plan_median() {
    # plan_median LABEL EXPECTED_RC LIMIT: median wall time (us) of RUNS plans, in MEDIAN_US
    local label=$1 want=$2 limit=$3 i times=()
    for ((i = 1; i <= RUNS; i++)); do
        run_tc "$SCRATCH/$label.plan.log" "$limit" "$want" plan --detailed-exitcode
        times+=("$LAST_US")
    done
    MEDIAN_US=$(median "${times[@]}")
}

db_counters() {
    # transactions (commits + rollbacks) and sessions of a database, from the stats system
    psql_admin -d postgres -c \
        "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = '$1'"
}

settled_counters() {
    # The backend of a finished client flushes its statistics as it exits, a moment after the
    # client is gone: read until two reads 0.2 s apart agree.
    local prev cur i
    sleep 0.2
    prev=$(db_counters "$1")
    for ((i = 0; i < 25; i++)); do
        sleep 0.2
        cur=$(db_counters "$1")
        if [[ "$cur" == "$prev" ]]; then break; fi
        prev=$cur
    done
    echo "$cur"
}

plan_transactions() {
    # Server transactions and sessions one no-change plan costs: three samples, the smallest
    # (a background autovacuum of the database can only add). Sets XACTS, XACTS_ALL (the three
    # samples) and SESSIONS.
    local db=$1 label=$2 i before after x s xs=() ss=()
    for ((i = 0; i < 3; i++)); do
        before=$(settled_counters "$db")
        run_tc "$SCRATCH/$label.count.log" 120 0 plan --detailed-exitcode
        after=$(settled_counters "$db")
        x=$((${after%|*} - ${before%|*}))
        s=$((${after#*|} - ${before#*|}))
        xs+=("$x")
        ss+=("$s")
    done
    XACTS=$(printf '%s\n' "${xs[@]}" | sort -n | head -n 1)
    XACTS_ALL="${xs[*]}"
    SESSIONS=$(printf '%s\n' "${ss[@]}" | sort -n | head -n 1)
}

chroma_listing() {
    # The Chroma half of a plan's reading, alone: list every collection of the database in pages
    # of 100 (as tenantctl does) over one keep-alive connection. Median of 3 in LIST_US, bytes
    # of JSON in LIST_BYTES.
    local n=$1 pages i t0 args=() times=() url
    url="$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$CUR_DB/collections"
    pages=$((n / 100 + 1))
    for ((i = 0; i < pages; i++)); do args+=(-o /dev/null "$url?limit=100&offset=$((i * 100))"); done
    for ((i = 0; i < 3; i++)); do
        t0=$(now_us)
        LIST_BYTES=$(curl -s --max-time 60 -w '%{size_download}\n' "${args[@]}" | awk '{ s += $1 } END { print s }')
        times+=($(($(now_us) - t0)))
    done
    LIST_US=$(median "${times[@]}")
}

verify_counts() {
    # verify_counts N: tenant schemas in PostgreSQL and collections in Chroma both equal N
    local want=$1 schemas collections
    schemas=$(psql_admin -d "$CUR_DB" -c \
        "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'tenant_')")
    collections=$(curl -s --max-time 30 \
        "$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$CUR_DB/collections_count")
    if [[ "$schemas" != "$want" || "$collections" != "$want" ]]; then
        die "after apply: $schemas tenant schemas and '$collections' collections, expected $want each"
    fi
}

gen_dir() {
    # gen_dir DIR N: plans.yaml (from tenants/) and N tenant files t0001.yaml...
    local dir=$1 n=$2 width=4 i id plan
    if ((${#n} > width)); then width=${#n}; fi
    mkdir -p "$dir"
    cp "$ROOT/tenants/plans.yaml" "$dir/plans.yaml"
    local plans=(trial pro enterprise)
    for ((i = 1; i <= n; i++)); do
        printf -v id 't%0*d' "$width" "$i"
        plan=${plans[i % 3]}
        {
            printf 'apiVersion: tenantctl/v1\nkind: Tenant\nid: %s\n' "$id"
            printf 'name: Generated tenant %s\nstate: active\nplan: %s\n' "$id" "$plan"
            if ((i % 4 == 0)); then
                printf 'config:\n  max_tokens: %d\n' $((2000 + i))
                if ((i % 8 == 0)); then printf '  features:\n    web_search: true\n'; fi
            fi
        } >"$dir/$id.yaml"
    done
    FIRST_ID=$(printf 't%0*d' "$width" 1)
}

declare -A R  # results: R[label:metric]
LABELS=()

ensure_app_role() {
    # The application role tenants/settings.yaml names (`auth.app_role`), created as
    # scripts/up.sh does when it is missing; roles are cluster-wide, so an existing one is used
    # as it is and left alone.
    if [[ "$(psql_admin -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname = 'example_app'")" == 0 ]]; then
        psql_admin -d postgres -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_app') THEN
                CREATE ROLE example_app LOGIN;
            END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$" >/dev/null
        APP_ROLE_CREATED=1
    fi
}

bench_examples() {
    local label=ex dir="$SCRATCH/examples" n
    check_deadline "tenants/"
    cp -R "$ROOT/tenants" "$dir"
    # Acme's password and API keys need a secrets sink (scripts/up.sh uses .local/secrets/),
    # and the Settings document an application role.
    export TENANTCTL_SECRETS_DIR="$SCRATCH/secrets"
    ensure_app_role
    n=$(grep -rlE '^kind:[[:space:]]*Tenant' "$dir" | wc -l)
    use_target "$label" "$dir"
    LABELS+=("$label")
    R[$label:title]="tenants/ ($n)"
    say "$label: apply creating $n tenants"
    run_tc "$SCRATCH/$label.apply.log" 120 0 apply --auto-approve
    R[$label:apply]=$LAST_US
    verify_counts "$n"
    say "$label: no-change plan x$RUNS"
    plan_median "$label" 0 60
    R[$label:plan]=$MEDIAN_US
    run_tc "$SCRATCH/$label.noop.log" 60 0 apply --auto-approve
    R[$label:noop]=$LAST_US
    plan_transactions "$CUR_DB" "$label"
    R[$label:xacts]=$XACTS
    R[$label:xacts_all]=$XACTS_ALL
    R[$label:sessions]=$SESSIONS
}

bench_size() {
    local n=$1 label="n$1" dir="$SCRATCH/n$1"
    check_deadline "N=$n"
    gen_dir "$dir" "$n"
    use_target "$label" "$dir"
    LABELS+=("$label")
    R[$label:title]="N=$n"
    say "$label: apply creating $n tenants"
    run_tc "$SCRATCH/$label.apply.log" $((120 + n / 5)) 0 apply --auto-approve
    R[$label:apply]=$LAST_US
    verify_counts "$n"
    check_deadline "N=$n no-change plan"
    say "$label: no-change plan x$RUNS"
    plan_median "$label" 0 $((60 + n / 50))
    R[$label:plan]=$MEDIAN_US
    run_tc "$SCRATCH/$label.noop.log" $((60 + n / 50)) 0 apply --auto-approve
    R[$label:noop]=$LAST_US
    plan_transactions "$CUR_DB" "$label"
    R[$label:xacts]=$XACTS
    R[$label:xacts_all]=$XACTS_ALL
    R[$label:sessions]=$SESSIONS
    chroma_listing "$n"
    R[$label:list]=$LIST_US
    R[$label:listkb]=$((LIST_BYTES / 1024))
    R[$label:rest]=$((${R[$label:plan]} - LIST_US))
    check_deadline "N=$n one change"
    say "$label: one tenant renamed: plan x$RUNS, apply"
    sed -i "s/^name: .*/name: Renamed tenant $FIRST_ID/" "$dir/$FIRST_ID.yaml"
    plan_median "$label.change" 2 $((60 + n / 50))
    R[$label:plan1]=$MEDIAN_US
    R[$label:plan1summary]=$(grep -m1 '^Plan:' "$SCRATCH/$label.change.plan.log" || echo '?')
    run_tc "$SCRATCH/$label.change.apply.log" $((60 + n / 50)) 0 apply --auto-approve
    R[$label:apply1]=$LAST_US
    run_tc "$SCRATCH/$label.after.log" $((60 + n / 50)) 0 plan --detailed-exitcode
    # Lifecycle at scale: soft-delete every tenant (access revoked, final backup written), then
    # purge them all (retention 0: due at the next apply).
    check_deadline "N=$n soft delete"
    say "$label: soft-deleting all $n tenants, then purging them"
    local file
    for file in "$dir"/t*.yaml; do
        sed -i 's/^state: active/state: deleted\nretention_days: 0/' "$file"
    done
    run_tc "$SCRATCH/$label.delete.log" $((120 + n / 5)) 0 apply --auto-approve --max-deletes "$n"
    R[$label:delete]=$LAST_US
    R[$label:backups]=$(find "$TENANTCTL_BACKUP_DIR" -name manifest.json | wc -l)
    run_tc "$SCRATCH/$label.purge.log" $((120 + n / 5)) 0 apply --auto-approve --max-deletes "$n"
    R[$label:purge]=$LAST_US
    verify_counts 0
}

bench_examples
for n in "${SIZE_LIST[@]}"; do bench_size "$n"; done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
row() {
    # row TITLE VALUES...: one line of the table
    local title=$1 v
    shift
    printf '%-46s' "$title"
    for v in "$@"; do printf '%14s' "$v"; done
    printf '\n'
}

cells() {
    # cells METRIC FORMATTER: the metric for every label, formatted, "-" when absent
    local metric=$1 fmt=$2 label out=()
    for label in "${LABELS[@]}"; do
        if [[ -n "${R[$label:$metric]:-}" ]]; then out+=("$("$fmt" "${R[$label:$metric]}")"); else out+=("-"); fi
    done
    printf '%s\n' "${out[@]}"
}
as_is() { echo "$1"; }

mapfile -t TITLES < <(for l in "${LABELS[@]}"; do echo "${R[$l:title]}"; done)
for l in "${LABELS[@]}"; do
    [[ "$l" == ex ]] && continue
    n=${l#n}
    us=${R[$l:apply]}
    R[$l:rate]=$(awk -v n="$n" -v us="$us" 'BEGIN { printf "%.0f", n / (us / 1000000) }')
    R[$l:floor]=$(awk -v n="$n" -v us="$us" -v f="$FLOOR_PG_S_PER_1000" \
        'BEGIN { printf "%.1fx", (us / 1000000) / (f * n / 1000) }')
    R[$l:floor2]=$(awk -v n="$n" -v us="$us" -v f="$FLOOR_PG_S_PER_1000" -v c="$CHROMA_MS_PER_CREATE" \
        'BEGIN { printf "%.1fx", (us / 1000000) / (f * n / 1000 + c * n / 1000) }')
done

CPU="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
PG_VERSION="$(psql_admin -d postgres -c 'SHOW server_version' | awk '{ print $1 }')"
CHROMA_VERSION="$(curl -s --max-time 5 "$CHROMA_URL_LOCAL/api/v2/version" | tr -d '"' || true)"

echo
echo "tenantctl benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  rev $GIT_REV"
echo "machine: nproc=$(nproc), ${CPU:-unknown cpu}; shared and noisy: compare ratios from one run"
echo "servers: PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (fsync off, dev settings), Chroma (API ${CHROMA_VERSION:-?}) on 127.0.0.1:$CHROMA_PORT"
echo "fresh database and Chroma database per column; plan figures: median of $RUNS runs"
echo
kb() { echo "$1 KB"; }
mapfile -t C < <(cells apply secs)
row "" "${TITLES[@]}"
row "apply, create all (s, incl. control schema)" "${C[@]}"
mapfile -t C < <(cells rate as_is);    row "  tenants/s" "${C[@]}"
mapfile -t C < <(cells floor as_is);   row "  vs PG DDL floor ($FLOOR_PG_S_PER_1000 s/1000)" "${C[@]}"
mapfile -t C < <(cells floor2 as_is);  row "  vs PG floor + Chroma creates (~${CHROMA_MS_PER_CREATE} ms)" "${C[@]}"
mapfile -t C < <(cells plan ms);       row "plan, no change (ms)" "${C[@]}"
mapfile -t C < <(cells list ms);       row "  of which Chroma listing alone, curl (ms)" "${C[@]}"
mapfile -t C < <(cells listkb kb);     row "    its JSON (result-set size)" "${C[@]}"
mapfile -t C < <(cells rest ms);       row "  rest: PostgreSQL + tenantctl (ms)" "${C[@]}"
mapfile -t C < <(cells noop ms);       row "apply, no change (ms)" "${C[@]}"
mapfile -t C < <(cells plan1 ms);      row "plan, one tenant renamed (ms)" "${C[@]}"
mapfile -t C < <(cells apply1 ms);     row "apply, one tenant renamed (ms)" "${C[@]}"
mapfile -t C < <(cells delete secs);   row "apply, soft-delete all (s, with final backups)" "${C[@]}"
mapfile -t C < <(cells backups as_is); row "  backups written (manifests)" "${C[@]}"
mapfile -t C < <(cells purge secs);    row "apply, purge all (s)" "${C[@]}"
mapfile -t C < <(cells xacts as_is);   row "server transactions per no-change plan" "${C[@]}"
mapfile -t C < <(cells sessions as_is); row "connections per no-change plan" "${C[@]}"
echo

# Scaling of the no-change plan between the smallest and the largest generated size.
mapfile -t SORTED < <(printf '%s\n' "${SIZE_LIST[@]}" | sort -n | uniq)
if ((${#SORTED[@]} >= 2)); then
    lo=${SORTED[0]}
    hi=${SORTED[${#SORTED[@]} - 1]}
    awk -v lo="$lo" -v hi="$hi" -v a="${R[n$lo:plan]}" -v b="${R[n$hi:plan]}" 'BEGIN {
        printf "no-change plan, N=%d vs N=%d: %.1f ms vs %.1f ms = %.2fx for %.0fx the tenants\n",
            hi, lo, b / 1000, a / 1000, b / a, hi / lo }'
    awk -v lo="$lo" -v hi="$hi" -v a="${R[n$lo:rest]}" -v b="${R[n$hi:rest]}" 'BEGIN {
        printf "  without the Chroma listing (PostgreSQL + tenantctl): %.1f ms vs %.1f ms = %.2fx\n",
            b / 1000, a / 1000, (a > 0) ? b / a : 0 }'
    echo "server transactions per no-change plan, N=$lo vs N=$hi: ${R[n$lo:xacts]} vs ${R[n$hi:xacts]}" \
        "($([[ "${R[n$lo:xacts]}" == "${R[n$hi:xacts]}" ]] && echo equal || echo DIFFERENT);" \
        "samples ${R[n$lo:xacts_all]// /,} and ${R[n$hi:xacts_all]// /,})"
fi
for n in "${SIZE_LIST[@]}"; do
    echo "N=$n one-change plan said: ${R[n$n:plan1summary]}"
done
echo "(transactions = pg_stat_database xact_commit + xact_rollback deltas, smallest of 3 plans:"
echo " each autocommit statement counts one, and so does each separate prepare; connection setup included)"
say "done in $((SECONDS - START)) s (build excluded); cleaning up"
