#!/usr/bin/env bash
# Shared by scripts/bench.sh and scripts/bench-watch.sh (sourced, not run): removes what a
# benchmark run created on the local servers.
#
# Expects: say, die, ROOT, PGBIN, PG_PORT, RUN_ID, SCRATCH, CREATED_DBS, CHROMA_DBS, ROLES_CREATED,
# CHROMA_URL_LOCAL, CHROMA_TENANT_NAME.

psql_admin() {
    # Admin SQL on the loopback server; no ~/.psqlrc, stop at the first error.
    "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

build_release() {
    # cargo build --release --locked, each try bounded to 15 minutes. The tree may be mid-edit:
    # a failing build is tried again, up to 6 times, 20 s apart.
    local attempt
    for attempt in 1 2 3 4 5 6; do
        say "cargo build --release --locked (attempt $attempt)"
        if (cd "$ROOT" && timeout 900 cargo build --release --locked) >"$SCRATCH/build.log" 2>&1; then
            return 0
        fi
        tail -n 5 "$SCRATCH/build.log" >&2
        if ((attempt < 6)); then sleep 20; fi
    done
    die "cargo build --release --locked failed 6 times (last output above)"
}

# Wall clock in microseconds, without starting a process.
now_us() { echo "${EPOCHREALTIME/./}"; }

# shellcheck disable=SC2034  # CUR_DB is read by the scripts that source this file
use_target() {
    # use_target LABEL DIR: a fresh PostgreSQL database and Chroma database for LABEL
    local label=$1 dir=$2 db="${RUN_ID}_$1" code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        "$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$db" || true)
    [[ "$code" == 404 ]] || die "Chroma database $db: expected 404 (absent), got '$code'"
    psql_admin -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    CREATED_DBS+=("$db")
    CHROMA_DBS+=("$db")
    ROLES_CREATED=1
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
    export CHROMA_URL="$CHROMA_URL_LOCAL"
    export CHROMA_TENANT="$CHROMA_TENANT_NAME"
    export CHROMA_DATABASE="$db"
    export TENANTCTL_ROLE_PREFIX="${db}_"
    export TENANTCTL_DIR="$dir"
    export TENANTCTL_BACKUP_DIR="$SCRATCH/backups-$label"
    CUR_DB=$db  # read by the scripts that source this file
}

drop_bench_targets() {
    local db code attempt
    for db in "${CREATED_DBS[@]}"; do
        psql_admin -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null ||
            say "could not drop database $db"
    done
    if ((ROLES_CREATED)); then
        # Roles are cluster-wide: drop every role carrying this run's prefix (their privileges
        # lived in the databases dropped above).
        psql_admin -d postgres -c "DO \$\$ DECLARE r name; BEGIN
            FOR r IN SELECT rolname FROM pg_roles WHERE starts_with(rolname, '${RUN_ID}_') LOOP
                EXECUTE format('DROP ROLE %I', r);
            END LOOP; END \$\$" >/dev/null || say "could not drop the roles ${RUN_ID}_*"
    fi
    for db in "${CHROMA_DBS[@]}"; do
        # 200 deleted (with its collections), 404 never created; retried: a busy server may fail.
        # A database of 10,000 collections takes minutes, and a request cut short deletes nothing.
        for attempt in 1 2 3; do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 900 -X DELETE \
                "$CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$db")
            if [[ "$code" == 200 || "$code" == 404 ]]; then break; fi
            if ((attempt == 3)); then
                say "could not delete Chroma database $db (HTTP $code); delete it with:" \
                    "curl -X DELETE $CHROMA_URL_LOCAL/api/v2/tenants/$CHROMA_TENANT_NAME/databases/$db"
            else
                sleep 2
            fi
        done
    done
}
