#!/usr/bin/env bash
# What an application does with a tenant's credentials, on the servers scripts/up.sh started:
#
#   bash examples/auth/connect.sh [TENANT]        (default: acme)
#
# 1. The tenant's workers connect as the tenant's role with the URL tenantctl delivered (in the
#    secrets folder), and see their schema only.
# 2. The application's API verifies an API key in one call, as the application role named in
#    Settings (`auth.app_role`): tenantctl.authenticate(key) returns the tenant, its status and
#    its config, or no row (unknown, expired, revoked key, or a tenant that is not active).
#
# Nothing secret is printed. The local server trusts loopback connections (development
# settings), so it would accept any password: on a real server, pg_hba.conf asks for one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
TENANT="${1:-acme}"
SECRETS="${TENANTCTL_SECRETS_DIR:-$ROOT/.local/secrets}"
FILE="$SECRETS/$TENANT.json"
PSQL=/usr/lib/postgresql/15/bin/psql
APP_URL="${APP_DATABASE_URL:-postgres://example_app@127.0.0.1:${TENANTCTL_PG_PORT:-5432}/tenantctl}"

die() {
    printf 'connect.sh: %s\n' "$*" >&2
    exit 1
}
[[ "$TENANT" =~ ^[a-z][a-z0-9_]{1,39}$ ]] || die "'$TENANT' is not a tenant id"
[[ -r "$FILE" ]] || die "no $FILE: run 'bash scripts/up.sh' first (it applies tenants/ with a secrets folder)"
command -v python3 >/dev/null || die "python3 reads the JSON file"

# One field of the secrets file (`database_url`, or the key of the first API key).
field() {
    python3 - "$FILE" "$1" <<'PY'
import json, sys
document = json.load(open(sys.argv[1]))
if sys.argv[2] == "database_url":
    print(document.get("database_url", ""))
else:
    keys = document.get("api_keys", [])
    print(keys[0]["key"] if keys else "")
PY
}

URL="$(field database_url)"
if [[ -n "$URL" ]]; then
    echo "1. The tenant's workers connect as its role:"
    "$PSQL" "$URL" -X -v ON_ERROR_STOP=1 <<SQL
SELECT current_user AS role, count(*) AS conversations FROM tenant_$TENANT.conversations;
SQL
    echo "   ...and cannot read the registry:"
    "$PSQL" "$URL" -X -q -c "SELECT count(*) FROM tenantctl.tenants" 2>&1 | sed 's/^/   /' || true
else
    echo "1. $TENANT has no login (\`auth.login\` is not true)."
fi

KEY="$(field api_key)"
if [[ -n "$KEY" ]]; then
    echo "2. The API verifies a key of $TENANT as the application role:"
    # Through standard input, so that psql binds the key as a literal (:'key').
    "$PSQL" "$APP_URL" -X -v ON_ERROR_STOP=1 -v key="$KEY" <<'SQL'
SELECT tenant_id, status, config->>'model' AS model, config->>'max_tokens' AS max_tokens
FROM tenantctl.authenticate(:'key');
SQL
    echo "   an unknown key gives no row:"
    "$PSQL" "$APP_URL" -X -v ON_ERROR_STOP=1 <<'SQL'
SELECT count(*) AS tenants FROM tenantctl.authenticate('tct_000000000000_not-a-key');
SQL
else
    echo "2. $TENANT has no API key."
fi
