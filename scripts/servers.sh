#!/usr/bin/env bash
# Local PostgreSQL 15, Chroma and S3-compatible servers for tenantctl development, tests and CI.
#
#   bash scripts/servers.sh [start|stop|status|reset]      (default: start)
#
# `reset` stops the servers and deletes their data (and the secrets up.sh delivered for them),
# so that the next `start` begins empty.
#
# The S3-compatible server is moto's (PyPI `moto[server]`), a stand-in for a real object store:
# it keeps its objects in memory, so they are gone when it stops. It starts with the buckets
# `tenantctl` (for your own tries) and `tenantctl-test` (the test suite's).
#
# Ports: TENANTCTL_PG_PORT (default 5432), TENANTCTL_CHROMA_PORT (default 8000),
# TENANTCTL_S3_PORT (default 9000).
# Every server listens on 127.0.0.1 only. State lives in <repo>/.local/ (git-ignored).
# `start` is idempotent: a server already answering on its port is reused, not duplicated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STATE="$ROOT/.local"
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT="${TENANTCTL_PG_PORT:-5432}"
CHROMA_PORT="${TENANTCTL_CHROMA_PORT:-8000}"
CHROMA_VERSION=1.5.9
S3_PORT="${TENANTCTL_S3_PORT:-9000}"
MOTO_VERSION=5.2.5
S3_BUCKETS=(tenantctl tenantctl-test)
DB_NAME=tenantctl

VENV="$STATE/chroma-venv"
CHROMA_DATA="$STATE/chroma-data"
CHROMA_LOG="$STATE/chroma.log"
CHROMA_PID="$STATE/chroma.pid"

S3_VENV="$STATE/s3-venv"
S3_LOG="$STATE/s3.log"
S3_PID="$STATE/s3.pid"
S3_URL_OUT="http://127.0.0.1:$S3_PORT"

DATABASE_URL_OUT="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"
CHROMA_URL_OUT="http://127.0.0.1:$CHROMA_PORT"

# Messages go to stderr; only the URL lines of `start` go to stdout.
say() { printf 'servers.sh: %s\n' "$*" >&2; }
die() {
    printf 'servers.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

for p in "$PG_PORT" "$CHROMA_PORT" "$S3_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "invalid port '$p' (TENANTCTL_PG_PORT / TENANTCTL_CHROMA_PORT / TENANTCTL_S3_PORT)"; fi
done

IS_ROOT=0
if [[ $EUID -eq 0 ]]; then IS_ROOT=1; fi

# ---------------------------------------------------------------------------------------------
# Where the PostgreSQL data lives. initdb/pg_ctl refuse to run as root, so as root they run as the
# `postgres` OS user, which must be able to enter the data folder. A clone under /root is not
# enterable: then the data (and its log) go to /tmp/tenantctl-pg-<hash of the repo path>.
# ---------------------------------------------------------------------------------------------
PG_FALLBACK=0
PG_HOME="$STATE"
PG_LOG="$STATE/postgres.log"

as_pg() {
    # Run a PostgreSQL program as the OS user that owns the cluster, from a folder it can enter.
    if ((IS_ROOT)); then
        (cd / && runuser -u postgres -- "$@" 9>&-)
    else
        (cd / && "$@" 9>&-)
    fi
}

resolve_pg_home() {
    mkdir -p "$STATE"
    if ((IS_ROOT)) && id -u postgres >/dev/null 2>&1; then
        if ! (cd / && runuser -u postgres -- test -x "$STATE") 2>/dev/null; then
            local hash
            hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
            PG_FALLBACK=1
            PG_HOME="/tmp/tenantctl-pg-$hash"
            PG_LOG="$PG_HOME/postgres.log"
        fi
    fi
    PGDATA_DIR="$PG_HOME/pg"
}

pg_user_owns() {
    # true when $1 exists, is a real folder (not a symlink) and belongs to the cluster's OS user
    local want
    if ((IS_ROOT)); then want=postgres; else want="$(id -un)"; fi
    [[ -d "$1" && ! -L "$1" && "$(stat -c %U "$1")" == "$want" ]]
}

prepare_pg_home() {
    if ((PG_FALLBACK)); then
        if [[ ! -e "$PG_HOME" ]]; then
            mkdir -m 0700 "$PG_HOME"
            chown postgres:postgres "$PG_HOME"
        fi
        pg_user_owns "$PG_HOME" || die "$PG_HOME exists but is not a folder owned by postgres; remove it"
        # Let `ls .local/` show where things went.
        ln -sfn "$PG_HOME" "$STATE/pg-data-elsewhere"
    fi
    if [[ ! -e "$PGDATA_DIR" ]]; then
        mkdir -m 0700 "$PGDATA_DIR"
        if ((IS_ROOT)); then chown postgres:postgres "$PGDATA_DIR"; fi
    fi
    pg_user_owns "$PGDATA_DIR" || die "$PGDATA_DIR is not a folder owned by the cluster's OS user; remove it"
    if [[ ! -e "$PG_LOG" ]]; then
        : >"$PG_LOG"
        if ((IS_ROOT)); then chown postgres:postgres "$PG_LOG"; fi
    fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
install_postgres() {
    [[ -x "$PGBIN/initdb" ]] && return 0
    ((IS_ROOT)) || die "$PGBIN/initdb is missing; as root run: apt-get install postgresql-15 postgresql-client-15 (or run this script as root)"
    command -v apt-get >/dev/null || die "$PGBIN/initdb is missing and apt-get is not available"
    say "installing postgresql-15 with apt (first run only, ~1 min)..."
    # Keep Debian from creating and starting its own 'main' cluster on 5432.
    local conf=/etc/postgresql-common/createcluster.conf
    mkdir -p /etc/postgresql-common
    if [[ -f "$conf" ]] && grep -Eq '^[[:space:]]*#?[[:space:]]*create_main_cluster' "$conf"; then
        sed -i -E 's/^[[:space:]]*#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
    else
        printf 'create_main_cluster = false\n' >>"$conf"
    fi
    local log="$STATE/apt.log"
    export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
    if ! apt-get update >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "apt-get update failed (full log: $log)"
    fi
    if ! apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql-15 postgresql-client-15 >>"$log" 2>&1 </dev/null; then
        tail -n 30 "$log" >&2
        die "apt-get install postgresql-15 postgresql-client-15 failed (full log: $log)"
    fi
    [[ -x "$PGBIN/initdb" ]] || die "apt installed postgresql-15 but $PGBIN/initdb is still missing"
}

ensure_postgres_user() {
    ((IS_ROOT)) || return 0
    id -u postgres >/dev/null 2>&1 && return 0
    say "creating the OS user 'postgres'"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
        --shell /bin/bash postgres || die "could not create the OS user 'postgres'"
}

pg_answers() {
    # 0: accepting connections; 1: rejecting (starting/stopping); 2: no answer
    local rc=0
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 3 || rc=$?
    return "$rc"
}

pg_ours_running() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

pg_ours_port() {
    # port recorded by our running postmaster (line 4 of postmaster.pid)
    sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true
}

write_pg_conf() {
    # Rewritten at every start so that the port and the socket folder follow the environment and
    # the repo location. Included from postgresql.conf.
    local f="$PGDATA_DIR/tenantctl.conf" sockdir="$PGDATA_DIR"
    # A Unix socket path longer than 107 bytes makes the server refuse to start: go TCP-only then.
    if ((${#PGDATA_DIR} + 15 > 107)); then
        say "data folder path too long for a Unix socket; PostgreSQL will listen on TCP only"
        sockdir=""
    fi
    cat >"$f" <<EOF
# Written by scripts/servers.sh at every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '${sockdir//\'/\'\'}'
# fsync, synchronous_commit and full_page_writes off: FOR LOCAL DEVELOPMENT AND TESTS ONLY.
# They make DDL-heavy tests fast; a crash of the machine can corrupt this cluster. Never use them
# for data you care about.
fsync = off
synchronous_commit = off
full_page_writes = off
# tenantctl creates many schemas/roles; tests open one database per test.
max_connections = 200
max_locks_per_transaction = 256
EOF
    chmod 0644 "$f"
    if ((IS_ROOT)); then chown postgres:postgres "$f"; fi
}

init_pg() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
    if [[ -n "$(ls -A "$PGDATA_DIR")" ]]; then
        die "$PGDATA_DIR is not empty but holds no cluster (interrupted initdb?); remove it and retry"
    fi
    local out
    if ! out="$(as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "initdb failed for $PGDATA_DIR"
    fi
    printf "\n# tenantctl: local settings (port, listen address, test-only fast settings)\ninclude 'tenantctl.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
}

start_postgres() {
    install_postgres
    ensure_postgres_user
    resolve_pg_home
    if ((PG_FALLBACK)); then
        say "note: the postgres OS user cannot enter $ROOT; PostgreSQL data and log are in $PG_HOME"
    fi

    local rc=0
    pg_answers || rc=$?
    if ((rc == 1)); then
        # starting up or shutting down: give it a moment
        for _ in $(seq 1 30); do
            sleep 1
            rc=0
            pg_answers || rc=$?
            ((rc != 1)) && break
        done
    fi

    if ((rc == 0)); then
        if pg_ours_running && [[ "$(pg_ours_port)" == "$PG_PORT" ]]; then
            : # ours, already running: quiet
        else
            say "postgres: something already answers on 127.0.0.1:$PG_PORT; using it (not started by this script)"
        fi
    else
        prepare_pg_home
        if pg_ours_running && [[ "$(pg_ours_port)" == "$PG_PORT" ]]; then
            # registered as running on this port but not answering: starting up, or just killed
            # and not yet reaped. Give it a few seconds either way.
            for _ in $(seq 1 15); do
                sleep 1
                rc=0
                pg_answers || rc=$?
                ((rc == 0)) && break
                pg_ours_running || break
            done
        fi
        if pg_ours_running; then
            if ((rc == 0)) && [[ "$(pg_ours_port)" == "$PG_PORT" ]]; then
                ensure_database
                return 0
            fi
            die "the cluster in $PGDATA_DIR is registered as running (pid $(head -n1 "$PGDATA_DIR/postmaster.pid"), port $(pg_ours_port)) but does not answer on 127.0.0.1:$PG_PORT; run 'bash scripts/servers.sh stop' first (log: $PG_LOG)"
        fi
        local fresh=0
        [[ -f "$PGDATA_DIR/PG_VERSION" ]] || fresh=1
        init_pg
        write_pg_conf
        local out logsize
        logsize="$(stat -c %s "$PG_LOG")"
        if ! out="$(as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 start 2>&1)"; then
            printf '%s\n' "$out" >&2
            tail -c +$((logsize + 1)) "$PG_LOG" | tail -n 20 >&2 || true
            die "PostgreSQL failed to start on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
        fi
        if ((fresh)); then
            say "postgres: initialized and started $PGDATA_DIR on 127.0.0.1:$PG_PORT"
        else
            say "postgres: started on 127.0.0.1:$PG_PORT"
        fi
    fi
    ensure_database
}

ensure_database() {
    local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
    local exists out
    export PGCONNECT_TIMEOUT=10
    if ! exists="$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>&1)"; then
        printf '%s\n' "$exists" >&2
        die "cannot query 127.0.0.1:$PG_PORT as user postgres (is it a PostgreSQL server with trust auth?)"
    fi
    [[ "$exists" == 1 ]] && return 0
    if ! out="$("${psql[@]}" -c "CREATE DATABASE $DB_NAME OWNER postgres" 2>&1)"; then
        # a concurrent run may have created it in between
        exists="$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>/dev/null || true)"
        [[ "$exists" == 1 ]] && return 0
        printf '%s\n' "$out" >&2
        die "could not create database $DB_NAME on 127.0.0.1:$PG_PORT"
    fi
    say "postgres: created database $DB_NAME"
}

stop_postgres() {
    [[ -x "$PGBIN/pg_ctl" ]] || {
        say "postgres: not installed"
        return 0
    }
    resolve_pg_home
    if pg_ours_running; then
        if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null; then
            die "pg_ctl stop failed for $PGDATA_DIR (log: $PG_LOG)"
        fi
        say "postgres: stopped"
    else
        say "postgres: not running (from $PGDATA_DIR)"
    fi
}

status_postgres() {
    local rc=0 who="not started by this script"
    if [[ -x "$PGBIN/pg_isready" ]]; then pg_answers || rc=$?; else rc=2; fi
    resolve_pg_home
    if pg_ours_running; then who="data $PGDATA_DIR"; fi
    if ((rc == 0)); then
        echo "postgres: running   $DATABASE_URL_OUT ($who)"
    elif pg_ours_running; then
        echo "postgres: registered as running (port $(pg_ours_port)) but not answering on port $PG_PORT ($who)"
    else
        echo "postgres: stopped   (port $PG_PORT)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Chroma (the Rust server inside the chromadb wheel, installed without its Python dependencies)
# ---------------------------------------------------------------------------------------------
chroma_answers() {
    local code
    if command -v curl >/dev/null; then
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$CHROMA_URL_OUT/api/v2/heartbeat" 2>/dev/null || true)"
    else
        code="$(python3 - "$CHROMA_URL_OUT/api/v2/heartbeat" <<'EOF' 2>/dev/null || true
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except Exception:
    print(0)
EOF
)"
    fi
    [[ "$code" == 200 ]]
}

chroma_pid_ours() {
    # prints the pid from the pid file if that process is our Chroma server
    local pid
    [[ -f "$CHROMA_PID" ]] || return 1
    pid="$(tr -dc 0-9 <"$CHROMA_PID")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    # the launch command line carries the pid file path: guards against pid reuse
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$CHROMA_PID" || return 1
    echo "$pid"
}

install_chroma() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import chromadb_rust_bindings' >/dev/null 2>&1; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is required for the Chroma server"
    say "chroma: installing chromadb==$CHROMA_VERSION (server only, --no-deps) into $VENV..."
    local log="$STATE/chroma-install.log"
    if ! python3 -m venv --clear "$VENV" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "python3 -m venv failed (on Debian: apt-get install python3-venv); log: $log"
    fi
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet --no-deps "chromadb==$CHROMA_VERSION" >>"$log" 2>&1 </dev/null; then
        tail -n 20 "$log" >&2
        die "pip install chromadb==$CHROMA_VERSION failed; log: $log"
    fi
    "$VENV/bin/python" -c 'import chromadb_rust_bindings' >>"$log" 2>&1 ||
        die "chromadb_rust_bindings is not importable after install; log: $log"
}

start_chroma() {
    mkdir -p "$STATE"
    if chroma_answers; then
        if ! chroma_pid_ours >/dev/null; then
            say "chroma: something already answers on $CHROMA_URL_OUT; using it (not started by this script)"
        fi
        return 0
    fi
    local pid
    if pid="$(chroma_pid_ours)"; then
        die "chroma started by this script (pid $pid) is running but does not answer on $CHROMA_URL_OUT (other port?); run 'bash scripts/servers.sh stop' first"
    fi
    install_chroma
    mkdir -p "$CHROMA_DATA"
    rm -f "$CHROMA_PID"
    printf '\n=== %s servers.sh start (port %s) ===\n' "$(date -Is)" "$CHROMA_PORT" >>"$CHROMA_LOG"
    local logsize
    logsize="$(stat -c %s "$CHROMA_LOG")"
    # Detached: own session, no stdin, output to the log, so it outlives this script.
    # The Python process writes its own pid (it becomes the server process) before starting.
    RUST_LOG=warn setsid nohup "$VENV/bin/python" -c '
import os, sys
with open(sys.argv[3], "w") as f:
    f.write("%d\n" % os.getpid())
import chromadb_rust_bindings as c
c.cli(["chroma", "run", "--path", sys.argv[1], "--host", "127.0.0.1", "--port", sys.argv[2]])
' "$CHROMA_DATA" "$CHROMA_PORT" "$CHROMA_PID" >>"$CHROMA_LOG" 2>&1 </dev/null 9>&- &
    local deadline=$((SECONDS + 30))
    while ! chroma_answers; do
        if [[ -f "$CHROMA_PID" ]] && ! chroma_pid_ours >/dev/null; then
            tail -c +$((logsize + 1)) "$CHROMA_LOG" | tail -n 20 >&2
            die "chroma exited during startup (port $CHROMA_PORT in use?); log: $CHROMA_LOG"
        fi
        if ((SECONDS >= deadline)); then
            tail -c +$((logsize + 1)) "$CHROMA_LOG" | tail -n 20 >&2
            die "chroma did not answer $CHROMA_URL_OUT/api/v2/heartbeat within 30 s; log: $CHROMA_LOG"
        fi
        sleep 0.2
    done
    say "chroma: started on $CHROMA_URL_OUT (data $CHROMA_DATA)"
}

stop_daemon() {
    # stop_daemon NAME PID_FN ANSWERS_FN URL PIDFILE: SIGTERM (SIGKILL after 10 s) the server
    # this script started, found by its pid file; a server it did not start is left alone.
    local name=$1 pid_fn=$2 answers_fn=$3 url=$4 pidfile=$5 pid
    if ! pid="$("$pid_fn")"; then
        rm -f "$pidfile"
        if "$answers_fn"; then
            say "$name: $url answers but was not started by this script; left alone"
        else
            say "$name: not running"
        fi
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name: pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
    say "$name: stopped"
}

stop_chroma() {
    stop_daemon chroma chroma_pid_ours chroma_answers "$CHROMA_URL_OUT" "$CHROMA_PID"
}

status_chroma() {
    local pid who="not started by this script"
    if pid="$(chroma_pid_ours)"; then who="pid $pid"; fi
    if chroma_answers; then
        echo "chroma:   running   $CHROMA_URL_OUT ($who)"
    elif [[ -n "${pid:-}" ]]; then
        echo "chroma:   process $pid alive but $CHROMA_URL_OUT does not answer"
    else
        echo "chroma:   stopped   (port $CHROMA_PORT)"
    fi
}

# ---------------------------------------------------------------------------------------------
# The S3-compatible object store (moto's server; see the header)
# ---------------------------------------------------------------------------------------------
http_code() {
    # prints the HTTP status of a request ($1: method, $2: URL), 000 when nothing answers
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$1" "$2" 2>/dev/null || true
}

s3_answers() {
    [[ "$(http_code GET "$S3_URL_OUT/")" == 200 ]]
}

s3_pid_ours() {
    local pid
    [[ -f "$S3_PID" ]] || return 1
    pid="$(tr -dc 0-9 <"$S3_PID")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$S3_PID" || return 1
    echo "$pid"
}

install_s3() {
    if [[ -x "$S3_VENV/bin/moto_server" ]] && "$S3_VENV/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is required for the S3-compatible server"
    say "s3: installing moto[server]==$MOTO_VERSION into $S3_VENV..."
    local log="$STATE/s3-install.log"
    if ! python3 -m venv --clear "$S3_VENV" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "python3 -m venv failed (on Debian: apt-get install python3-venv); log: $log"
    fi
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$S3_VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" >>"$log" 2>&1 </dev/null; then
        tail -n 20 "$log" >&2
        die "pip install moto[server]==$MOTO_VERSION failed; log: $log"
    fi
}

create_buckets() {
    local bucket code
    for bucket in "${S3_BUCKETS[@]}"; do
        code="$(http_code PUT "$S3_URL_OUT/$bucket")"
        [[ "$code" == 200 || "$code" == 409 ]] || die "s3: could not create bucket $bucket (HTTP $code)"
    done
}

start_s3() {
    mkdir -p "$STATE"
    command -v curl >/dev/null || die "curl is required (apt-get install curl)"
    # Installed even when a server already answers: the tests start private ones to stop.
    install_s3
    if s3_answers; then
        if ! s3_pid_ours >/dev/null; then
            say "s3: something already answers on $S3_URL_OUT; using it (not started by this script)"
        fi
        create_buckets
        return 0
    fi
    local pid
    if pid="$(s3_pid_ours)"; then
        die "the s3 server started by this script (pid $pid) is running but does not answer on $S3_URL_OUT; run 'bash scripts/servers.sh stop' first"
    fi
    rm -f "$S3_PID"
    printf '\n=== %s servers.sh start (port %s) ===\n' "$(date -Is)" "$S3_PORT" >>"$S3_LOG"
    local logsize
    logsize="$(stat -c %s "$S3_LOG")"
    setsid nohup "$S3_VENV/bin/python" -c '
import os, sys
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % os.getpid())
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[2]])
' "$S3_PID" "$S3_PORT" >>"$S3_LOG" 2>&1 </dev/null 9>&- &
    local deadline=$((SECONDS + 30))
    while ! s3_answers; do
        if [[ -f "$S3_PID" ]] && ! s3_pid_ours >/dev/null; then
            tail -c +$((logsize + 1)) "$S3_LOG" | tail -n 20 >&2
            die "the s3 server exited during startup (port $S3_PORT in use?); log: $S3_LOG"
        fi
        if ((SECONDS >= deadline)); then
            tail -c +$((logsize + 1)) "$S3_LOG" | tail -n 20 >&2
            die "the s3 server did not answer $S3_URL_OUT within 30 s; log: $S3_LOG"
        fi
        sleep 0.2
    done
    create_buckets
    say "s3: started on $S3_URL_OUT (moto, in memory; buckets: ${S3_BUCKETS[*]})"
}

stop_s3() {
    stop_daemon s3 s3_pid_ours s3_answers "$S3_URL_OUT" "$S3_PID"
}

status_s3() {
    local pid who="not started by this script"
    if pid="$(s3_pid_ours)"; then who="pid $pid"; fi
    if s3_answers; then
        echo "s3:       running   $S3_URL_OUT ($who)"
    elif [[ -n "${pid:-}" ]]; then
        echo "s3:       process $pid alive but $S3_URL_OUT does not answer"
    else
        echo "s3:       stopped   (port $S3_PORT)"
    fi
}

# ---------------------------------------------------------------------------------------------
ensure_gitignore() {
    local gi="$ROOT/.gitignore" line
    [[ -f "$gi" ]] || : >"$gi"
    for line in /.local/ /target/; do
        # "/target", "target/" and "target" ignore it as well
        local bare="${line//\//}"
        if ! grep -qxF -e "/$bare/" -e "/$bare" -e "$bare/" -e "$bare" "$gi"; then
            # keep the last existing line intact if it has no trailing newline
            if [[ -s "$gi" && -n "$(tail -c1 "$gi")" ]]; then printf '\n' >>"$gi"; fi
            printf '%s\n' "$line" >>"$gi"
        fi
    done
}

with_lock() {
    # Serialize concurrent runs (e.g. two test.sh at once) on the same repo.
    mkdir -p "$STATE"
    exec 9>"$STATE/servers.lock"
    flock -w 180 9 || die "another servers.sh holds $STATE/servers.lock for more than 3 min"
}

cmd="${1:-start}"
case "$cmd" in
start)
    with_lock
    ensure_gitignore
    start_postgres
    start_chroma
    start_s3
    echo "DATABASE_URL=$DATABASE_URL_OUT"
    echo "CHROMA_URL=$CHROMA_URL_OUT"
    echo "AWS_ENDPOINT=$S3_URL_OUT"
    ;;
stop)
    with_lock
    stop_s3
    stop_chroma
    stop_postgres
    ;;
status)
    status_postgres
    status_chroma
    status_s3
    ;;
reset)
    with_lock
    stop_s3
    stop_chroma
    stop_postgres
    resolve_pg_home
    # Only what this script made: the cluster folder and the Chroma data folder.
    if pg_ours_running || chroma_pid_ours >/dev/null; then
        die "a server still runs; nothing was deleted"
    fi
    # The credentials scripts/up.sh had delivered for those servers' tenants go with them.
    rm -rf -- "$PGDATA_DIR" "$CHROMA_DATA" "$STATE/secrets"
    say "data deleted ($PGDATA_DIR, $CHROMA_DATA, $STATE/secrets); the next start begins empty"
    ;;
-h | --help | help)
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    ;;
*)
    die "unknown command '$cmd' (use start, stop, status or reset)"
    ;;
esac
