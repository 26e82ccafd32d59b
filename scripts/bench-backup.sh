#!/usr/bin/env bash
# Benchmark of final backups: how long soft-deleting (and then purging) BENCH_TENANTS tenants
# with BENCH_MB of table data each takes when the backups go to a local folder, and when they
# go to the S3-compatible object store of scripts/servers.sh, in one run.
#
#   bash scripts/bench-backup.sh
#
# Each round and store gets a fresh PostgreSQL database and Chroma database (dropped on exit,
# with the run's roles): the tenants are created, each gets BENCH_MB of rows (copied from one
# table of random text, so the CSV does not compress to nothing), then one `apply` soft-deletes
# them all (backup: export, upload, read back, manifest) and a second one purges them
# (retention 0: the backups are deleted). Rounds alternate local and object store.
#
# Environment:
#   BENCH_TENANTS=100        tenants soft-deleted at once
#   BENCH_MB=10              MB of CSV per tenant
#   BENCH_ROUNDS=2           rounds (each: local, then object store)
#   BENCH_PARALLELISM=4      apply --parallelism
#   BENCH_SKIP_BUILD=1       use target/release/tenantctl as it is (default: cargo build --release)
#   TENANTCTL_PG_PORT (5432), TENANTCTL_CHROMA_PORT (8000), TENANTCTL_S3_PORT (9000)
#
# The object store is moto's server (Python, in memory) on loopback, not a remote S3: the
# figures compare the two code paths on one machine. The machine is shared and has 2 cores:
# compare the figures of one run, not absolute figures across runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT="${TENANTCTL_PG_PORT:-5432}"
CHROMA_PORT="${TENANTCTL_CHROMA_PORT:-8000}"
S3_PORT="${TENANTCTL_S3_PORT:-9000}"
CHROMA_URL_LOCAL="http://127.0.0.1:$CHROMA_PORT"
S3_URL_LOCAL="http://127.0.0.1:$S3_PORT"
S3_BUCKET=tenantctl
CHROMA_TENANT_NAME=default_tenant
TENANTS="${BENCH_TENANTS:-100}"
MB="${BENCH_MB:-10}"
ROUNDS="${BENCH_ROUNDS:-2}"
PARALLELISM="${BENCH_PARALLELISM:-4}"
BIN="$ROOT/target/release/tenantctl"

say() { printf 'bench-backup.sh: %s\n' "$*" >&2; }
die() {
    printf 'bench-backup.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ $# -eq 0 ]] || die "no arguments expected (configure with the BENCH_* variables)"
for p in "$PG_PORT" "$CHROMA_PORT" "$S3_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "invalid port '$p'"; fi
done
if ! [[ "$TENANTS" =~ ^[1-9][0-9]{0,3}$ ]] || ((TENANTS > 1000)); then die "BENCH_TENANTS must be 1 to 1000"; fi
if ! [[ "$MB" =~ ^[1-9][0-9]?$ ]]; then die "BENCH_MB must be 1 to 99"; fi
if ! [[ "$ROUNDS" =~ ^[1-9]$ ]]; then die "BENCH_ROUNDS must be 1 to 9"; fi
if ! [[ "$PARALLELISM" =~ ^[1-9]$|^1[0-6]$ ]]; then die "BENCH_PARALLELISM must be 1 to 16"; fi
for tool in curl timeout awk python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
unset TENANTCTL_DIR TENANTCTL_BACKUP_DIR TENANTCTL_ROLE_PREFIX TENANTCTL_SECRETS_DIR \
    TENANTCTL_SECRETS_COMMAND DATABASE_URL CHROMA_URL CHROMA_DATABASE CHROMA_TENANT \
    TENANTCTL_BACKUP_TIMEOUT AWS_PROFILE AWS_SESSION_TOKEN

RUN_ID="bb$$"
SCRATCH="$(mktemp -d "/tmp/tenantctl-bench-backup.XXXXXX")"
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

write_tenants() {
    # write_tenants DIR EXTRA: BENCH_TENANTS tenant files with EXTRA lines appended
    local dir=$1 extra=$2 i id
    for ((i = 1; i <= TENANTS; i++)); do
        printf -v id 't%04d' "$i"
        printf 'apiVersion: tenantctl/v1\nkind: Tenant\nid: %s\nname: Tenant %s\nplan: pro\n%s' \
            "$id" "$id" "$extra" >"$dir/$id.yaml"
    done
}

s3_objects() {
    # s3_objects PREFIX: "<objects> <bytes>" the bucket holds under PREFIX/ (moto answers
    # unsigned listings; follows continuation tokens)
    python3 - "$S3_URL_LOCAL/$S3_BUCKET" "$1/" <<'PY'
import sys, urllib.parse, urllib.request, xml.etree.ElementTree as tree
base, prefix = sys.argv[1], sys.argv[2]
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
count, size, token = 0, 0, None
while True:
    query = {"list-type": "2", "prefix": prefix}
    if token:
        query["continuation-token"] = token
    with urllib.request.urlopen(base + "?" + urllib.parse.urlencode(query), timeout=60) as answer:
        root = tree.parse(answer).getroot()
    for item in root.findall(ns + "Contents"):
        count += 1
        size += int(item.findtext(ns + "Size"))
    token = root.findtext(ns + "NextContinuationToken")
    if not token:
        break
print(count, size)
PY
}

seconds() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1e6 }'; }

local_files() {
    # local_files DIR: "<files> <bytes>" under DIR
    find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{ n++; b += $1 } END { printf "%d %d\n", n, b }'
}

declare -A DELETE_US PURGE_US BYTES FLOOR_US
s3_floor() {
    # s3_floor DIR LABEL: the files of a local backup folder uploaded to the object store and
    # read back by boto3 (AWS's Python SDK, installed with moto), $PARALLELISM at a time: what
    # moving those bytes costs without tenantctl. Prints nothing; sets FLOOR_US[LABEL].
    local dir=$1 label=$2 t0
    t0=$(now_us)
    "$ROOT/.local/s3-venv/bin/python" - "$dir" "$S3_URL_LOCAL" "$S3_BUCKET" "$RUN_ID-floor-$label" "$PARALLELISM" <<'PY' ||
import boto3, concurrent.futures, os, sys
folder, endpoint, bucket, prefix, workers = sys.argv[1:6]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
files = [os.path.relpath(os.path.join(root, name), folder)
         for root, _, names in os.walk(folder) for name in names]
def move(relative):
    key = f"{prefix}/{relative}"
    with open(os.path.join(folder, relative), "rb") as body:
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return key
with concurrent.futures.ThreadPoolExecutor(int(workers)) as pool:
    keys = list(pool.map(move, files))
for start in range(0, len(keys), 1000):
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
PY
        die "$label: the boto3 floor failed"
    FLOOR_US[$label]=$(($(now_us) - t0))
}

run_store() {
    # run_store STORE ROUND: create, fill, soft-delete (timed), purge (timed)
    local store=$1 round=$2 label="${1}${2}" dir t0 backup_dir count bytes
    dir="$SCRATCH/tenants-$label"
    mkdir -p "$dir"
    cp "$ROOT/tenants/plans.yaml" "$dir/plans.yaml"
    use_target "$label" "$dir"
    if [[ "$store" == s3 ]]; then
        backup_dir="s3://$S3_BUCKET/$RUN_ID-$label"
        export AWS_ENDPOINT="$S3_URL_LOCAL" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
            AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
    else
        backup_dir="$SCRATCH/backups-$label"
        unset AWS_ENDPOINT AWS_ALLOW_HTTP AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    fi
    export TENANTCTL_BACKUP_DIR="$backup_dir"

    write_tenants "$dir" $'retention_days: 0\n'
    timeout 900 "$BIN" apply --auto-approve --parallelism "$PARALLELISM" >"$SCRATCH/create-$label.log" 2>&1 ||
        { tail -n 20 "$SCRATCH/create-$label.log" >&2; die "$label: create failed"; }
    # ~2 kB of random text per row: BENCH_MB MB of CSV per tenant.
    psql_admin -d "$CUR_DB" -c "CREATE TABLE bench_rows AS
        SELECT gen_random_uuid() AS id, now() AS created_at,
               jsonb_build_array(jsonb_build_object('role', 'user', 'content',
                   (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 60) AS j))) AS messages
        FROM generate_series(1, $((MB * 500))) AS i" >/dev/null
    local i id sql=""
    for ((i = 1; i <= TENANTS; i++)); do
        printf -v id 't%04d' "$i"
        sql+="INSERT INTO tenant_$id.conversations SELECT gen_random_uuid(), created_at, messages FROM bench_rows;"
    done
    psql_admin -d "$CUR_DB" -c "$sql" >/dev/null

    write_tenants "$dir" $'retention_days: 0\nstate: deleted\n'
    sync
    t0=$(now_us)
    timeout 1800 "$BIN" apply --auto-approve --parallelism "$PARALLELISM" --max-deletes "$TENANTS" \
        >"$SCRATCH/delete-$label.log" 2>&1 ||
        { tail -n 20 "$SCRATCH/delete-$label.log" >&2; die "$label: soft delete failed"; }
    DELETE_US[$label]=$(($(now_us) - t0))
    if [[ "$store" == s3 ]]; then
        read -r count bytes < <(s3_objects "$RUN_ID-$label")
    else
        read -r count bytes < <(local_files "$backup_dir")
    fi
    # Three files per backup: the table, the (empty) collection's records, the manifest.
    [[ "$count" == $((TENANTS * 3)) ]] || die "$label: $count backup files, expected $((TENANTS * 3))"
    BYTES[$label]=$bytes
    if [[ "$store" == local ]]; then
        s3_floor "$backup_dir" "$round"
    fi

    t0=$(now_us)
    timeout 1800 "$BIN" apply --auto-approve --parallelism "$PARALLELISM" --max-deletes "$TENANTS" \
        >"$SCRATCH/purge-$label.log" 2>&1 ||
        { tail -n 20 "$SCRATCH/purge-$label.log" >&2; die "$label: purge failed"; }
    PURGE_US[$label]=$(($(now_us) - t0))
    if [[ "$store" == s3 ]]; then
        read -r count bytes < <(s3_objects "$RUN_ID-$label")
    else
        read -r count bytes < <(local_files "$backup_dir")
    fi
    [[ "$count" == 0 ]] || die "$label: $count backup files left after the purge"
    say "$label: soft delete $(seconds "${DELETE_US[$label]}") s, purge $(seconds "${PURGE_US[$label]}") s"
}

for ((round = 1; round <= ROUNDS; round++)); do
    run_store local "$round"
    run_store s3 "$round"
done

echo
echo "tenantctl final backups  $(date -u '+%Y-%m-%d %H:%M UTC')  rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: nproc=$(nproc); shared and noisy: compare the figures of one run"
echo "$TENANTS tenants x ~$MB MB of CSV each ($(awk -v b="${BYTES[local1]}" 'BEGIN { printf "%.0f", b / 1e6 }') MB of backups in all), soft-deleted by one apply --parallelism $PARALLELISM, then purged by another"
echo "local: a folder on this machine's disk (fsync on); object store: moto's S3 server on 127.0.0.1:$S3_PORT (in memory)"
echo
printf '%-6s %18s %18s %10s %16s %16s %10s %20s\n' round "soft delete local" "soft delete s3" ratio "purge local" "purge s3" ratio "floor: boto3 up+down"
for ((round = 1; round <= ROUNDS; round++)); do
    l=${DELETE_US[local$round]} s=${DELETE_US[s3$round]} pl=${PURGE_US[local$round]} ps=${PURGE_US[s3$round]}
    printf '%-6s %16s s %16s s %9sx %14s s %14s s %9sx %18s s\n' "$round" "$(seconds "$l")" "$(seconds "$s")" \
        "$(awk -v a="$l" -v b="$s" 'BEGIN { printf "%.2f", b / a }')" \
        "$(seconds "$pl")" "$(seconds "$ps")" "$(awk -v a="$pl" -v b="$ps" 'BEGIN { printf "%.2f", b / a }')" \
        "$(seconds "${FLOOR_US[$round]}")"
done
echo
echo "per tenant, the soft delete exports the table with COPY, writes it (locally, fsynced; or up in"
echo "parts of 8 MiB), reads it back and checks its sha256, then writes the manifest; the floor"
echo "moves the same files (the local round's backups) up and back down with boto3, $PARALLELISM at a"
echo "time (delete included), with no database, no export and no checks"
