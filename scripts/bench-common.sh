#!/usr/bin/env bash
# Shared by scripts/bench.sh and scripts/bench-watch.sh (sourced, not run): removes what a
# benchmark run created on the local servers.
#
# Expects: say, psql_admin, CREATED_DBS, ROLES_CREATED, RUN_ID, CHROMA_DBS, CHROMA_URL_LOCAL,
# CHROMA_TENANT_NAME.

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
        # 200 deleted (with its collections), 404 never created; retried: a busy server may fail
        for attempt in 1 2 3; do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 -X DELETE \
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
