#!/usr/bin/env python3
"""The floor tenantctl is measured against by scripts/bench-scale.sh (python3, standard library only).

The floor issues the statements and HTTP requests tenantctl issues for the same change, raw:
PostgreSQL through psql sessions fed on standard input (one transaction per tenant, the same
statements in the same batches, parameters written as literals), Chroma through http.client
connections kept alive, and the same backup file work (files, manifest, fsync, rename). It was
derived from tenantctl's own traffic (the server log with `log_statement = 'all'` on a scratch
database, a logging proxy in front of Chroma) and from src/apply/steps.rs, src/backend/ and
src/backup/. When tenantctl changes what it sends, this file has to follow:
`BENCH_TRACE=1 bash scripts/bench.sh --tenants 5` prints where the two differ, and every run
checks that `tenantctl plan` sees in the floor's databases what it sees in its own.

    bench_floor.py gen DIR N STAGE [MIGRATIONS_DIR]
        write the generated tenant directory: plans.yaml, N tenant files for STAGE (create,
        update or delete), and a copy of the migrations
    bench_floor.py phase PHASE MODE [options]
        run one phase (create, plan, update, delete, purge) against a floor database in a MODE:
          seq   one psql session, one Chroma connection, one thread for the backup files;
                the three parts run one after the other
          par   the same parts split over --workers psql sessions / threads, one part at a time
          both  the PostgreSQL and the Chroma part at the same time (--workers each), then files
        prints one line `pg=S chroma=S files=S total=S` (seconds)
    bench_floor.py rss OUT CMD...
        run CMD, write its peak RSS in KiB to OUT (used where /usr/bin/time is missing)
    bench_floor.py proxy PORT_FILE UPSTREAM_PORT LOG
        a Chroma proxy on a free loopback port (written to PORT_FILE) that logs every request
        (BENCH_TRACE=1 of bench-scale.sh)
    bench_floor.py compare PG_TENANTCTL PG_FLOOR CHROMA_TENANTCTL CHROMA_FLOOR
        the statements (server log with log_statement = 'all') and requests (proxy log) of
        tenantctl and of the floor for one phase, normalized, and where they differ

What each phase sends: tenant_sql() (PostgreSQL, per tenant), observe_units() (the live-state
reading of every plan and apply), chroma_part() and files_part(); bench-scale.sh's report sums
it up.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

# ---------------------------------------------------------------------------------------------
# The generated directory: plans and tenants (one rule, shared by the files and the floor)
# ---------------------------------------------------------------------------------------------

# The plans of tenants/plans.yaml (names, descriptions, configs).
PLANS = {
    "trial": (
        "14-day evaluation, small model, chat only",
        {"model": "gpt-4o-mini", "max_tokens": 1000, "rate_limit_per_minute": 60,
         "features": {"basic_chat": True}},
    ),
    "pro": (
        "Teams in production, retrieval over their own documents",
        {"model": "gpt-4o", "max_tokens": 4000, "rate_limit_per_minute": 600,
         "features": {"basic_chat": True, "rag": True, "file_upload": True}},
    ),
    "enterprise": (
        "Large accounts, long context, every feature, negotiated limits",
        {"model": "gpt-4.1", "max_tokens": 16000, "rate_limit_per_minute": 3000,
         "features": {"basic_chat": True, "rag": True, "file_upload": True, "web_search": True,
                      "audit_export": True, "sso": True}},
    ),
}
PLAN_ORDER = ["trial", "pro", "enterprise"]
STAGES = ("create", "update", "delete")
RETENTION_DEFAULT = 30  # no Settings document in the generated directory


def tenant_ids(n):
    width = max(4, len(str(n)))
    return ["t%0*d" % (width, i) for i in range(1, n + 1)]


class Tenant:
    """One generated tenant at a stage: what its file says and what the registry holds."""

    def __init__(self, index, tenant_id, stage):
        self.index = index
        self.id = tenant_id
        self.name = "Generated tenant %s" % tenant_id
        self.plan = PLAN_ORDER[index % 3]
        # `update` changes config.max_tokens of every tenant; `delete` keeps that value.
        self.max_tokens = (2000 if stage == "create" else 3000) + index
        self.web_search = index % 8 == 0
        self.state = "deleted" if stage == "delete" else "active"

    def config(self):
        """The effective config: the plan's, with the tenant's own merged over it."""
        base = PLANS[self.plan][1]
        config = dict(base)
        config["features"] = dict(base["features"])
        config["max_tokens"] = self.max_tokens
        if self.web_search:
            config["features"]["web_search"] = True
        return config

    def yaml(self):
        lines = [
            "apiVersion: tenantctl/v1",
            "kind: Tenant",
            "id: %s" % self.id,
            "name: %s" % self.name,
            "state: %s" % self.state,
            "plan: %s" % self.plan,
            "config:",
            "  max_tokens: %d" % self.max_tokens,
        ]
        if self.web_search:
            lines += ["  features:", "    web_search: true"]
        return "\n".join(lines) + "\n"


def tenants(n, stage):
    return [Tenant(i, tenant_id, stage) for i, tenant_id in enumerate(tenant_ids(n), start=1)]


def generate(directory, n, stage, migrations_from=None):
    """Writes plans.yaml, the tenant files of `stage` (replacing those there) and migrations/."""
    os.makedirs(directory, exist_ok=True)
    docs = []
    for name in PLAN_ORDER:
        description, config = PLANS[name]
        docs.append(
            "apiVersion: tenantctl/v1\nkind: Plan\nname: %s\ndescription: %s\nconfig: %s\n"
            % (name, description, json.dumps(config))
        )
    write_atomically(os.path.join(directory, "plans.yaml"),
                     "# Generated by scripts/bench_floor.py\n" + "---\n".join(docs))
    for tenant in tenants(n, stage):
        write_atomically(os.path.join(directory, tenant.id + ".yaml"), tenant.yaml())
    if migrations_from:
        target = os.path.join(directory, "migrations")
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(migrations_from)):
            if name.endswith(".sql"):
                shutil.copyfile(os.path.join(migrations_from, name), os.path.join(target, name))


def write_atomically(path, text):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


class Migration:
    def __init__(self, path):
        base = os.path.basename(path)[: -len(".sql")]
        self.version = int(base.split("_", 1)[0])
        self.name = base
        with open(path, "rb") as f:
            data = f.read()
        self.checksum = hashlib.sha256(data).hexdigest()
        self.text = data.decode()
        # What the migrations create, for grants and backups (the floor's own migrations are
        # plain CREATE TABLE / CREATE INDEX files).
        self.tables = re.findall(r"(?im)^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", self.text)


def load_migrations(directory):
    files = sorted(
        (os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".sql")),
        key=lambda path: int(os.path.basename(path).split("_", 1)[0]),
    )
    if not files:
        raise SystemExit("bench_floor.py: no migrations in %s" % directory)
    return [Migration(path) for path in files]


# ---------------------------------------------------------------------------------------------
# SQL: tenantctl's statements, its parameters written as literals
# ---------------------------------------------------------------------------------------------

class Raw(str):
    """A literal already written as SQL (with its cast)."""


def literal(value):
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def inline(sql, *params):
    """tenantctl's statement text with $n replaced by the literal of its parameter."""
    return re.sub(r"\$(\d+)\b", lambda m: literal(params[int(m.group(1)) - 1]), sql)


def ident(name):
    return '"' + name.replace('"', '""') + '"'


def array_text(values):
    return "{" + ",".join(values) + "}"


# The apply lock and the lock of changes to role memberships (src/backend/postgres/lock.rs,
# src/apply/steps.rs ROLE_GRAPH_LOCK_KEY).
APPLY_LOCK_KEY = 1952804449
ROLE_GRAPH_LOCK_KEY = 0x74656E63

# Reading the live state: every plan (and every apply, under its lock). $1 is the schema prefix
# `tenant_`, $2 the role prefix. In tenantctl's order; tenantctl runs them on three sessions
# (this list on one, SHAPE_BY_PREFIX on another, the reference schema on a third).
OBSERVE_CONTROL = [
    "SELECT to_regclass('tenantctl.schema_migrations') IS NOT NULL",
    "SELECT coalesce(max(version), 0) FROM tenantctl.schema_migrations",
]
OBSERVE_MAIN = [
    ("SELECT now(), current_user::text", ()),
    ("SELECT id, uid, name, status, plan, config::text, protected, retention_days, suspend_reason, created_at, updated_at, suspended_at, deleted_at, purge_after FROM tenantctl.tenants", ()),
    ("SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text, coalesce(obj_description(n.oid, 'pg_namespace'), '') FROM pg_namespace n WHERE starts_with(n.nspname::text, $1) AND $2::text IS NOT NULL", "SR"),
    ("SELECT n.nspname::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a WHERE starts_with(n.nspname::text, $1) OR (a.grantee <> 0 AND starts_with(pg_get_userbyid(a.grantee)::text, $2))", "SR"),
    ("SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, 0) ELSE pg_get_expr(d.adbin, d.adrelid) END, coalesce(a.attnum = ANY (i.indkey), false), pg_get_userbyid(c.relowner)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary WHERE starts_with(n.nspname::text, $1) AND c.relkind IN ('r', 'p') AND $2::text IS NOT NULL", "SR"),
    ("SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_userbyid(c.relowner)::text, a::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL unnest(c.relacl) a WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND (starts_with(n.nspname::text, $1) OR EXISTS (SELECT 1 FROM aclexplode(ARRAY[a]) e WHERE e.grantee <> 0 AND starts_with(pg_get_userbyid(e.grantee)::text, $2)))", "SR"),
    ("SELECT n.nspname::text, p.oid::regprocedure::text, p.oid::bigint, pg_get_userbyid(p.proowner)::text, p.prosecdef, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace LEFT JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a ON true WHERE starts_with(n.nspname::text, $1) AND $2::text IS NOT NULL", "SR"),
    ("SELECT r.rolname::text, r.rolcanlogin, coalesce(shobj_description(r.oid, 'pg_authid'), ''), r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls, r.rolconnlimit FROM pg_roles r WHERE starts_with(r.rolname::text, $2) AND $1::text IS NOT NULL", "SR"),
    ("SELECT g.rolname::text, m.rolname::text FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member WHERE (starts_with(g.rolname::text, $2) OR starts_with(m.rolname::text, $2)) AND $1::text IS NOT NULL", "SR"),
    ("WITH tenant_roles AS ( SELECT oid, rolname FROM pg_roles WHERE starts_with(rolname::text, $2) AND $1::text IS NOT NULL) SELECT r.rolname::text, o.description FROM ( SELECT c.relowner AS owner, format('%s %s.%s', CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' WHEN 'c' THEN 'type' ELSE 'table' END, n.nspname, c.relname) AS description FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind NOT IN ('t', 'i') AND c.relowner IN (SELECT oid FROM tenant_roles) UNION ALL SELECT p.proowner, format('function %s', p.oid::regprocedure) FROM pg_proc p WHERE p.proowner IN (SELECT oid FROM tenant_roles) UNION ALL SELECT n.nspowner, format('schema %s', n.nspname) FROM pg_namespace n WHERE n.nspowner IN (SELECT oid FROM tenant_roles) ) o JOIN tenant_roles r ON r.oid = o.owner", "SR"),
    ("SELECT tenant_uid, array_agg(version ORDER BY version) FROM tenantctl.tenant_migrations GROUP BY tenant_uid", ()),
    ("SELECT tenant_uid, rotation, password_fingerprint FROM tenantctl.credentials", ()),
    ("SELECT tenant_uid, prefix, name, expires_at, retire_after FROM tenantctl.api_keys WHERE revoked_at IS NULL ORDER BY created_at, prefix", ()),
    ("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')", ()),
    ("SELECT usename::text, count(*) FROM pg_stat_activity WHERE starts_with(usename::text, $1) GROUP BY 1", "R"),
    ("SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a WHERE p.oid = 'tenantctl.authenticate(text)'::regprocedure AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'", ()),
    ("SELECT version, name, checksum, count(*) FROM tenantctl.tenant_migrations GROUP BY version, name, checksum ORDER BY version, name, checksum", ()),
    ("SELECT rolname::text, CASE WHEN rolpassword IS NULL THEN NULL ELSE encode(sha256(convert_to(rolpassword, 'UTF8')), 'hex') END FROM pg_catalog.pg_authid WHERE starts_with(rolname::text, $1)", "R"),
]
# The shape of the tenant schemas (by prefix) and of the reference schema (by name, $1).
SHAPE_COLUMNS = "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, 0) ELSE pg_get_expr(d.adbin, d.adrelid) END FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum WHERE n.nspname::text = $1 AND c.relkind IN ('r', 'p')"
SHAPE_REST = [
    "SELECT n.nspname::text, ci.relname::text, CASE WHEN k.conname IS NULL THEN pg_get_indexdef(i.indexrelid) END, k.conname::text FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ci.relnamespace LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x') WHERE {where}",
    "SELECT n.nspname::text, c.relname::text, con.conname::text, pg_get_constraintdef(con.oid) FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {where}",
    "SELECT n.nspname::text, c.relname::text, c.relkind::text, CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {where} AND c.relkind IN ('v', 'm', 'S')",
    "SELECT n.nspname::text, p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {where}",
]
BY_PREFIX = "starts_with(n.nspname::text, $1)"
BY_NAME = "n.nspname::text = $1"

INSERT_EVENT_STARTED = "INSERT INTO tenantctl.events (run_id, actor, tenant_id, tenant_uid, action) VALUES ($1, $2, $3, $4, $5)"
INSERT_EVENT = "INSERT INTO tenantctl.events (run_id, actor, tenant_id, tenant_uid, action, status_before, status_after, reason, changes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
RECORD_MIGRATIONS = "INSERT INTO tenantctl.tenant_migrations (tenant_uid, version, name, checksum, run_id) SELECT $1, version, name, checksum, $5 FROM unnest($2::integer[], $3::text[], $4::text[]) AS m (version, name, checksum) ON CONFLICT (tenant_uid, version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum, applied_at = now(), run_id = excluded.run_id"
INSERT_REGISTRY = "INSERT INTO tenantctl.tenants (id, uid, name, status, plan, config, protected, retention_days, suspend_reason, activated_at, suspended_at) VALUES ($1, $9, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $3 = 'active' THEN now() END, CASE WHEN $3 = 'suspended' THEN now() END)"
UPDATE_REGISTRY = "UPDATE tenantctl.tenants SET name = $2, status = $3, plan = $4, config = $5, protected = $6, retention_days = $7, suspend_reason = $8, updated_at = now(), activated_at = CASE WHEN $3 = 'active' AND status <> 'active' THEN now() ELSE activated_at END, suspended_at = CASE WHEN $3 = 'suspended' AND status <> 'suspended' THEN now() WHEN $3 = 'suspended' THEN suspended_at END, deleted_at = CASE WHEN $3 = 'deleted' AND status <> 'deleted' THEN now() WHEN $3 = 'deleted' THEN deleted_at END, purge_after = CASE WHEN $3 = 'deleted' THEN coalesce(CASE WHEN status = 'deleted' THEN deleted_at END, now()) + make_interval(days => $7) END WHERE id = $1"
BACKUP_COLUMNS = "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped WHERE n.nspname = $1 AND c.relname = ANY($2) ORDER BY c.relname, a.attnum"
DELETE_REGISTRY = "DELETE FROM tenantctl.tenants WHERE id = $1 AND uid = $2 AND status = 'deleted' AND purge_after <= now()"
SESSION_TIMEOUTS = ("SET statement_timeout = 300000", "SET lock_timeout = 10000")


def batch(*statements):
    """Statements psql sends as one query string (one round trip), as tenantctl batches DDL."""
    return " \\; ".join(s.rstrip().rstrip(";") for s in statements) + ";\n"


def one(statement):
    return statement.rstrip().rstrip(";") + ";\n"


# ---------------------------------------------------------------------------------------------
# psql sessions
# ---------------------------------------------------------------------------------------------

class Failure(Exception):
    pass


SYNC = "__bench_floor_sync__"


class Psql:
    """One psql session fed on standard input; query output discarded, errors stop it."""

    def __init__(self, ctx, label):
        self.label = label
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [ctx.psql, "-h", ctx.pg_host, "-p", str(ctx.pg_port), "-U", ctx.pg_user, "-d", ctx.db,
             "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
            text=True, bufsize=1 << 16,
        )
        self.send("\\o /dev/null\n")

    def send(self, text):
        try:
            self.process.stdin.write(text)
        except BrokenPipeError:
            self.fail("psql exited early")

    def sync(self):
        """Waits until everything sent so far has run."""
        self.send("\\echo %s\n" % SYNC)
        try:
            self.process.stdin.flush()
        except BrokenPipeError:
            self.fail("psql exited early")
        while True:
            line = self.process.stdout.readline()
            if not line:
                self.fail("psql exited early")
            if line.strip() == SYNC:
                return

    def finish(self, timeout):
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.fail("psql did not finish within %d s" % timeout)
        if code != 0:
            self.fail("psql exited %d" % code)

    def fail(self, what):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.errors.seek(0)
        tail = self.errors.read()[-3000:]
        raise Failure("%s (session %s): %s" % (what, self.label, tail.strip() or "no message"))


# ---------------------------------------------------------------------------------------------
# Chroma: http.client, one kept-alive connection per thread
# ---------------------------------------------------------------------------------------------

class Chroma:
    def __init__(self, ctx):
        self.host = ctx.chroma_host
        self.port = ctx.chroma_port
        self.tenant = ctx.chroma_tenant
        self.database = ctx.chroma_db
        self.local = threading.local()

    @property
    def collections(self):
        return "/api/v2/tenants/%s/databases/%s/collections" % (self.tenant, self.database)

    def request(self, method, path, body=None, expect=(200,)):
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.local.connection = connection
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed meanwhile: reconnect once.
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        if response.status not in expect:
            raise Failure("chroma answered %d to %s %s: %s" % (response.status, method, path, payload[:300]))
        return json.loads(payload) if payload else None


PAGE_SIZE = 500      # src/backend/chroma.rs: collections per page of the listing
PAGES_AT_ONCE = 4    # pages requested at once
RECORDS_PAGE = 500   # src/backup/mod.rs CHROMA_PAGE_SIZE
COUNTS_AT_ONCE = 8   # src/reconcile.rs measure_at_risk: record counts in flight at once


def run_all(workers, function, items):
    """function(item) for every item: in order with one worker, else on a pool of threads."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def split(items, parts):
    """Tenants dealt round-robin to `parts` sessions or threads."""
    return [items[i::parts] for i in range(parts)]


# ---------------------------------------------------------------------------------------------
# One phase
# ---------------------------------------------------------------------------------------------

class Context:
    pass


def observe_units(ctx):
    """The live-state reading as units of SQL text, in tenantctl's order; each unit runs on one
    session. Returns (main, shape_by_prefix, reference)."""
    prefix = "tenant_"
    main = []
    for sql, kind in OBSERVE_MAIN:
        if kind == "SR":
            main.append(one(inline(sql, prefix, ctx.role_prefix)))
        elif kind == "R":
            main.append(one(inline(sql, ctx.role_prefix)))
        else:
            main.append(one(sql))
    shape = "".join(one(inline(s.format(where=BY_PREFIX), prefix)) for s in SHAPE_REST)
    # The reference schema: every migration in a scratch schema, its shape read after the first
    # and after the last migration (tenantctl reads both even when there is only one), then
    # rolled back.
    scratch = "tenantctl_reference_" + uuid.uuid4().hex
    reference = [batch("BEGIN", "SET LOCAL lock_timeout = '5s'", "SET LOCAL statement_timeout = '5min'",
                       "CREATE SCHEMA %s" % ident(scratch), "SET LOCAL search_path TO %s" % ident(scratch))]
    read_shape = one(inline(SHAPE_COLUMNS, scratch)) + "".join(
        one(inline(s.format(where=BY_NAME), scratch)) for s in SHAPE_REST)
    for number, migration in enumerate(ctx.migrations):
        reference.append(migration.text.rstrip() + "\n")
        if number == 0:
            reference.append(read_shape)
    reference.append(read_shape)
    reference.append(one("ROLLBACK"))
    return main, shape, "".join(reference)


COUNT_CHUNK = 500  # src/backend/postgres/registry.rs: tables counted by one statement


def row_counts_query(ctx):
    """The plan of a soft delete or purge counts the rows of every table at risk: one UNION ALL
    statement per 500 tables (tenantctl pipelines them on one session)."""
    tables = [(ident("tenant_" + tenant.id), ident(table)) for tenant in ctx.tenants for table in ctx.tables]
    statements = []
    for start in range(0, len(tables), COUNT_CHUNK):
        parts = ["SELECT %d AS i, count(*) AS n FROM %s.%s" % (i, schema, table)
                 for i, (schema, table) in enumerate(tables[start:start + COUNT_CHUNK])]
        statements.append(one(" UNION ALL ".join(parts) + " ORDER BY i"))
    return "".join(statements)


def event_changes(ctx, phase, tenant, uid, collection_id=None):
    """The `changes` of the tenant's event, shaped as tenantctl writes them."""
    schema = "tenant_" + tenant.id
    role = ctx.role_prefix + tenant.id
    record = {"name": tenant.name, "plan": tenant.plan, "config": tenant.config(),
              "status": "deleted" if phase == "delete" else "active", "protected": False,
              "retention_days": ctx.retention(phase), "suspension_reason": None}
    if phase == "create":
        steps = [{"kind": "create_schema", "schema": schema},
                 {"kind": "run_migrations", "schema": schema, "versions": [m.version for m in ctx.migrations]},
                 {"kind": "create_role", "role": role},
                 {"kind": "grant_schema_usage", "role": role, "schema": schema}]
        steps += [{"kind": "grant_table_privileges", "role": role, "table": t, "schema": schema} for t in ctx.tables]
        steps += [{"kind": "insert_registry", "record": record},
                  {"kind": "create_collection", "collection": schema}]
        fields = [{"new": v, "old": None, "path": p} for p, v in flatten_fields(record)]
        return {"drift": [], "steps": steps, "fields": fields}
    if phase == "update":
        return {"drift": [], "steps": [{"kind": "update_registry", "record": record}],
                "fields": [{"new": tenant.max_tokens, "old": tenant.max_tokens - 1000, "path": "config.max_tokens"}]}
    if phase == "delete":
        steps = [{"kind": "revoke_schema_usage", "role": role, "schema": schema},
                 {"kind": "update_registry", "record": record},
                 {"uid": uid, "kind": "export_backup", "schema": schema, "tables": ctx.tables,
                  "collection": schema, "collection_id": collection_id or str(uuid.UUID(int=0)),
                  "migration_version": ctx.migrations[-1].version}]
        return {"drift": [], "steps": steps, "backup": ctx.stamp,
                "fields": [{"new": "deleted", "old": "active", "path": "status"},
                           {"new": 0, "old": RETENTION_DEFAULT, "path": "retention_days"}]}
    return {"drift": [], "fields": [],
            "steps": [{"kind": "drop_schema", "schema": schema}, {"kind": "drop_role", "role": role},
                      {"uid": uid, "kind": "delete_registry"},
                      {"kind": "delete_collection", "collection": schema},
                      {"uid": uid, "kind": "delete_backups"}]}


def flatten_fields(record):
    out = [("name", record["name"]), ("plan", record["plan"])]
    config = record["config"]
    for flag in sorted(config["features"]):
        out.append(("config.features." + flag, config["features"][flag]))
    for key in ("max_tokens", "model", "rate_limit_per_minute"):
        out.append(("config." + key, config[key]))
    out += [("protected", False), ("retention_days", record["retention_days"]), ("status", "active")]
    return out


def tenant_sql(ctx, phase, tenant):
    """One tenant's work: the statements tenantctl sends, one transaction (a create also records
    its start first, in a statement of its own)."""
    schema = "tenant_" + tenant.id
    role = ctx.role_prefix + tenant.id
    uid = ctx.uids[tenant.id]
    run, actor = ctx.run_id, ctx.actor
    changes = json.dumps(event_changes(ctx, phase, tenant, uid))
    config = json.dumps(tenant.config())
    out = []
    if phase == "create":
        out.append(one(inline(INSERT_EVENT_STARTED, run, actor, tenant.id, uid, "create_started")))
        out.append(one("START TRANSACTION ISOLATION LEVEL READ COMMITTED"))
        out.append(batch("CREATE SCHEMA %s" % ident(schema),
                         "COMMENT ON SCHEMA %s IS 'managed by tenantctl'" % ident(schema),
                         "REVOKE ALL ON SCHEMA %s FROM PUBLIC" % ident(schema)))
        out.append(batch("SET LOCAL search_path TO %s" % ident(schema),
                         "SET LOCAL lock_timeout = '%dms'" % ctx.migration_lock_ms))
        out.extend(m.text.rstrip() + "\n" for m in ctx.migrations)
        out.append(batch("SET LOCAL search_path TO DEFAULT", "SET LOCAL lock_timeout = '%dms'" % ctx.lock_ms))
        out.append(one(inline(RECORD_MIGRATIONS, Raw(literal(uid) + "::uuid"),
                              array_text(str(m.version) for m in ctx.migrations),
                              array_text(m.name for m in ctx.migrations),
                              array_text(m.checksum for m in ctx.migrations),
                              Raw(literal(run) + "::uuid"))))
        grants = ["CREATE ROLE %s NOLOGIN" % ident(role),
                  "COMMENT ON ROLE %s IS 'managed by tenantctl'" % ident(role),
                  "GRANT USAGE ON SCHEMA %s TO %s" % (ident(schema), ident(role))]
        grants += ["GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s.%s TO %s" % (ident(schema), ident(t), ident(role))
                   for t in ctx.tables]
        out.append(batch(*grants))
        out.append(one(inline(INSERT_REGISTRY, tenant.id, tenant.name, "active", tenant.plan, config,
                              False, RETENTION_DEFAULT, None, uid)))
        out.append(one(inline(INSERT_EVENT, run, actor, tenant.id, uid, "create", None, "active", None, changes)))
    elif phase == "update":
        out.append(one("START TRANSACTION ISOLATION LEVEL READ COMMITTED"))
        out.append(one(inline(UPDATE_REGISTRY, tenant.id, tenant.name, "active", tenant.plan, config,
                              False, RETENTION_DEFAULT, None)))
        out.append(one(inline(INSERT_EVENT, run, actor, tenant.id, uid, "update", "active", "active", None, changes)))
    elif phase == "delete":
        folder = ctx.partial[tenant.id]
        out.append(one("START TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        out.append(batch("REVOKE ALL ON SCHEMA %s FROM %s" % (ident(schema), ident(role))))
        out.append(one(inline(UPDATE_REGISTRY, tenant.id, tenant.name, "deleted", tenant.plan, config,
                              False, 0, None)))
        out.append(one(inline(BACKUP_COLUMNS, schema, array_text(ctx.tables))))
        for table in ctx.tables:
            target = os.path.join(folder, "postgres", table + ".csv")
            # psql's \copy sends `COPY (...) TO STDOUT` and writes what comes back to the file.
            out.append("\\copy (SELECT * FROM %s.%s) TO %s WITH (FORMAT csv, HEADER)\n" % (
                ident(schema), ident(table), literal(target)))
        reason = "`state: deleted` in %s" % os.path.join(ctx.tenant_dir, tenant.id + ".yaml")
        out.append(one(inline(INSERT_EVENT, run, actor, tenant.id, uid, "delete", "active", "deleted", reason, changes)))
    elif phase == "purge":
        out.append(one("START TRANSACTION ISOLATION LEVEL READ COMMITTED"))
        # tenantctl takes the role-membership lock (ROLE_GRAPH_LOCK_KEY) before DROP ROLE only
        # when the role has memberships, which these roles never have.
        out.append(batch("DROP SCHEMA %s CASCADE" % ident(schema), "DROP ROLE %s" % ident(role)))
        out.append(one(inline(DELETE_REGISTRY, tenant.id, uid)))
        out.append(one(inline(INSERT_EVENT, run, actor, tenant.id, uid, "purge", "deleted", None,
                              "retention of 0 days elapsed", changes)))
    out.append(one("COMMIT"))
    return "".join(out)


def pg_part(ctx, phase, workers):
    """The PostgreSQL half: the live-state reading, then (for an apply) every tenant's
    transaction; `workers` sessions. Returns seconds."""
    start = time.perf_counter()
    sessions = [Psql(ctx, "%d" % i) for i in range(workers)]
    try:
        applying = phase != "plan"
        main, shape, reference = observe_units(ctx)
        if applying:
            sessions[0].send(one("SELECT pg_try_advisory_lock(%d)" % APPLY_LOCK_KEY))
        control = "".join(one(s) for s in OBSERVE_CONTROL)
        if workers == 1:
            sessions[0].send(control + "".join(main) + shape + reference)
        else:
            # As tenantctl: the reference schema and the shape by prefix on sessions of their
            # own; the main reading spread over what is left.
            sessions[-1].send(reference)
            sessions[-2 if workers > 2 else 0].send(shape)
            rest = sessions[:-2] if workers > 2 else sessions[:1]
            sessions[0].send(control)
            for i, unit in enumerate(main):
                rest[i % len(rest)].send(unit)
        if phase in ("delete", "purge"):
            sessions[0].send(row_counts_query(ctx))
        if applying:
            sessions[0].send(control)
            for session in sessions:
                session.send(batch(*SESSION_TIMEOUTS))
        # Every tenant's change starts once the whole state is read (as in tenantctl).
        for session in sessions:
            session.sync()
        if applying:
            shares = split(ctx.tenants, workers)
            threads = []
            for session, share in zip(sessions, shares):
                text = "".join(tenant_sql(ctx, phase, tenant) for tenant in share)
                if session is sessions[0]:
                    text += one("SELECT pg_advisory_unlock(%d)" % APPLY_LOCK_KEY)
                # Written from one thread per session: a full pipe must not hold up the others.
                thread = threading.Thread(target=session.send, args=(text,))
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
        for session in sessions:
            session.finish(ctx.remaining())
    except BaseException:
        for session in sessions:
            if session.process.poll() is None:
                session.process.kill()
        raise
    return time.perf_counter() - start


def list_collections(ctx, chroma, workers):
    """tenantctl's listing: the count, then the pages it announces (four at once), then on while
    pages come full. Returns {name: (id, metadata)}."""
    count = chroma.request("GET", "/api/v2/tenants/%s/databases/%s/collections_count" % (
        chroma.tenant, chroma.database))
    pages = count // PAGE_SIZE + 1
    path = chroma.collections + "?limit=%d&offset=%d"
    found = {}
    results = run_all(min(workers, PAGES_AT_ONCE) if workers > 1 else 1,
                      lambda page: chroma.request("GET", path % (PAGE_SIZE, page * PAGE_SIZE)),
                      range(pages))
    offset = pages * PAGE_SIZE
    last = results[-1]
    while len(last) == PAGE_SIZE:
        last = chroma.request("GET", path % (PAGE_SIZE, offset))
        results.append(last)
        offset += PAGE_SIZE
    for page in results:
        for collection in page:
            found[collection["name"]] = (collection["id"], collection.get("metadata") or {})
    return found


def chroma_part(ctx, phase, workers):
    """The Chroma half: scope and listing, the counts a delete or purge plan shows, then every
    tenant's requests; `workers` threads. Returns seconds."""
    start = time.perf_counter()
    chroma = Chroma(ctx)
    chroma.request("GET", "/api/v2/tenants/%s" % chroma.tenant)
    chroma.request("GET", "/api/v2/tenants/%s/databases/%s" % (chroma.tenant, chroma.database))
    live = list_collections(ctx, chroma, workers)
    mine = [t for t in ctx.tenants if "tenant_" + t.id in live] if phase in ("delete", "purge") else []
    if phase in ("delete", "purge"):
        if len(mine) != len(ctx.tenants):
            raise Failure("%d of %d collections found before the %s" % (len(mine), len(ctx.tenants), phase))
    if phase == "purge":
        # The records at risk, shown by the plan of a purge (a soft delete's backup counts its
        # own): one count per collection, as many in flight as tenantctl has (the parallel
        # floor) or one at a time.
        run_all(COUNTS_AT_ONCE if workers > 1 else 1, lambda t: chroma.request(
            "GET", "%s/%s/count" % (chroma.collections, live["tenant_" + t.id][0])), mine)
    if phase != "plan":
        chroma.request("POST", "/api/v2/tenants", {"name": chroma.tenant}, expect=(200, 409))
        chroma.request("POST", "/api/v2/tenants/%s/databases" % chroma.tenant,
                       {"name": chroma.database}, expect=(200, 409))

    def create(tenant):
        chroma.request("POST", chroma.collections, {
            "name": "tenant_" + tenant.id,
            "metadata": {"managed_by": "tenantctl", "tenant_id": tenant.id, "tenant_uid": ctx.uids[tenant.id]},
            "get_or_create": False})

    def export(tenant):
        # src/backup/export.rs: the first page; a collection that fits in it is confirmed by one
        # count after, a bigger one is read again from the start between two counts.
        collection_id, metadata = live["tenant_" + tenant.id]
        base = "%s/%s" % (chroma.collections, collection_id)

        def page(offset):
            return chroma.request("POST", base + "/get", {
                "limit": RECORDS_PAGE, "offset": offset,
                "include": ["embeddings", "documents", "metadatas", "uris"]})

        with open(os.path.join(ctx.partial[tenant.id], "chroma", "records.jsonl"), "w") as out:
            def write(records):
                for i, record_id in enumerate(records["ids"]):
                    out.write(json.dumps({"id": record_id, "embedding": records["embeddings"][i]}) + "\n")
                return len(records["ids"])

            first = page(0)
            if len(first["ids"]) < RECORDS_PAGE:
                written = before = write(first)
            else:
                before = chroma.request("GET", base + "/count")
                written = offset = 0
                while True:
                    records = page(offset)
                    written += write(records)
                    if len(records["ids"]) < RECORDS_PAGE:
                        break
                    offset += len(records["ids"])
        after = chroma.request("GET", base + "/count")
        if not before == written == after:
            raise Failure("records of %s changed during the export" % tenant.id)
        if metadata.get("tenant_uid") != ctx.uids[tenant.id]:
            raise Failure("collection of %s carries another uid" % tenant.id)

    def delete(tenant):
        chroma.request("DELETE", "%s/%s" % (chroma.collections, "tenant_" + tenant.id))

    work = {"create": create, "delete": export, "purge": delete}.get(phase)
    if work:
        run_all(workers, work, ctx.tenants)
    return time.perf_counter() - start


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files_prepare(ctx):
    """The folders of a soft delete's backups (backups/<tenant>/<uid>/.<stamp>.partial-<random>),
    before any part writes into them. Returns seconds."""
    start = time.perf_counter()
    ctx.partial = {}
    ctx.created = {}
    for tenant in ctx.tenants:
        tenant_dir = os.path.join(ctx.backup_dir, tenant.id)
        uid_dir = os.path.join(tenant_dir, ctx.uids[tenant.id])
        created = [d for d in (tenant_dir, uid_dir) if not os.path.isdir(d)]
        os.makedirs(uid_dir, mode=0o700, exist_ok=True)
        partial = os.path.join(uid_dir, ".%s.partial-%s" % (ctx.stamp, uuid.uuid4().hex))
        for sub in ("", "postgres", "chroma"):
            os.mkdir(os.path.join(partial, sub) if sub else partial, 0o700)
        ctx.partial[tenant.id] = partial
        ctx.created[tenant.id] = created
    return time.perf_counter() - start


def files_part(ctx, phase, workers):
    """What tenantctl does on the file system per tenant: for a soft delete, the manifest (with
    the sha256 of every file), fsync of every file and folder, the rename into place and the
    fsync of the parents; for a purge, the size of the backups (the plan shows it), then their
    removal. Returns seconds."""
    start = time.perf_counter()

    def finish_backup(tenant):
        partial = ctx.partial[tenant.id]
        uid_dir = os.path.dirname(partial)
        files = [os.path.join("postgres", t + ".csv") for t in ctx.tables] + [os.path.join("chroma", "records.jsonl")]
        entries = []
        for name in files:
            path = os.path.join(partial, name)
            with open(path, "rb") as f:
                data = f.read()
            fsync_path(path)
            entries.append({"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        manifest = os.path.join(partial, "manifest.json")
        with open(manifest, "w") as f:
            json.dump({"format_version": 1, "tenant": tenant.id, "uid": ctx.uids[tenant.id],
                       "taken_at": ctx.stamp, "schema": "tenant_" + tenant.id,
                       "migration_version": ctx.migrations[-1].version, "files": entries}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        for sub in ("postgres", "chroma", ""):
            fsync_path(os.path.join(partial, sub) if sub else partial)
        os.rename(partial, os.path.join(uid_dir, ctx.stamp))
        fsync_path(uid_dir)
        for folder in ctx.created[tenant.id]:
            fsync_path(os.path.dirname(folder))

    def remove_backups(tenant):
        tenant_dir = os.path.join(ctx.backup_dir, tenant.id)
        uid_dir = os.path.join(tenant_dir, ctx.uids[tenant.id])
        for _ in range(2):  # the plan's usage, then delete_all's
            total = 0
            for folder, _, names in os.walk(uid_dir):
                total += sum(os.lstat(os.path.join(folder, n)).st_size for n in names)
        if os.path.isdir(uid_dir):
            shutil.rmtree(uid_dir)
        if os.path.isdir(tenant_dir) and not os.listdir(tenant_dir):
            os.rmdir(tenant_dir)

    work = {"delete": finish_backup, "purge": remove_backups}.get(phase)
    if work:
        run_all(workers, work, ctx.tenants)
    return time.perf_counter() - start


def run_phase(ctx, phase, mode):
    """Returns (pg, chroma, files, total) in seconds."""
    ctx.run_id = str(uuid.uuid4())
    ctx.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    workers = 1 if mode == "seq" else ctx.workers
    if phase == "create":
        ctx.uids = {t.id: str(uuid.uuid4()) for t in ctx.tenants}
    start = time.perf_counter()
    files = files_prepare(ctx) if phase == "delete" else 0.0
    if mode == "both":
        results = {}
        errors = []

        def half(name, function):
            try:
                results[name] = function(ctx, phase, workers)
            except BaseException as error:  # reported below, from the main thread
                errors.append(error)

        threads = [threading.Thread(target=half, args=("pg", pg_part)),
                   threading.Thread(target=half, args=("chroma", chroma_part))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        pg, chroma = results["pg"], results["chroma"]
    else:
        pg = pg_part(ctx, phase, workers)
        chroma = chroma_part(ctx, phase, workers)
    files += files_part(ctx, phase, workers)
    total = time.perf_counter() - start
    return pg, chroma, files, total



# ---------------------------------------------------------------------------------------------
# Tracing: what tenantctl and the floor send, compared (BENCH_TRACE=1 of bench-scale.sh)
# ---------------------------------------------------------------------------------------------

def proxy(port_file, upstream_port, log_path):
    import http.server

    log = open(log_path, "a", buffering=1)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = getattr(self, "upstream", None)
            if upstream is None:
                upstream = self.upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            with lock:
                log.write("%s %s\n" % (self.command, self.path))
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    write_atomically(port_file, "%d\n" % server.server_address[1])
    server.serve_forever()


def logged_statements(path):
    """Statements of a PostgreSQL log excerpt (stderr format, log_statement = 'all'), with the
    parameters of extended-protocol statements written in."""
    records = []
    with open(path, errors="replace") as f:
        for line in f.read().split("\n"):
            m = re.match(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[(\d+)\] (\w+):  (.*)$", line)
            if m:
                records.append([m.group(2), m.group(3)])
            elif records and line.startswith("\t"):
                records[-1][1] += "\n" + line[1:]
    out = []
    for level, text in records:
        if level == "LOG" and text.startswith("execute "):
            out.append(text.split(": ", 1)[1])
        elif level == "LOG" and text.startswith("statement: "):
            out.append(text[len("statement: "):])
        elif level == "DETAIL" and text.startswith("parameters: ") and out:
            params = {int(k): v for k, v in re.findall(r"\$(\d+) = ('(?:[^']|'')*'|NULL)", text)}
            out[-1] = re.sub(r"\$(\d+)\b", lambda m: params.get(int(m.group(1)), m.group(0)), out[-1])
    return out


def normalize_names(text):
    text = re.sub(r"tenantctl_reference_[0-9a-f]{32}", "REF", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    text = re.sub(r"bscale\d+_[a-z]+", "DB", text)
    return re.sub(r"\bt\d{4,}\b", "ID", text)


def normalize_statement(sql):
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = normalize_names(sql)
    sql = re.sub(r"'(?:[^']|'')*'(::uuid)?", "?", sql)
    sql = re.sub(r"\b(\d+|true|false|NULL)\b", "?", sql)
    sql = re.sub(r"\s+", " ", sql).strip()
    sql = re.sub(r"\s*;\s*", "; ", sql).rstrip("; ")
    sql = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", sql))
    sql = re.sub(r"\s*\.\s*", ".", sql)
    if sql.upper().startswith("COPY "):
        sql = sql.upper()  # psql's \copy sends the same COPY in its own spelling
    return sql


def compare(pg_tenantctl, pg_floor, chroma_tenantctl, chroma_floor):
    import collections

    def count(items):
        return collections.Counter(items)

    def requests(path):
        with open(path) as f:
            return [re.sub(r"offset=\d+", "offset=N", normalize_names(line.strip())) for line in f if line.strip()]

    for what, a, b in (
        ("statements", count(normalize_statement(x) for x in logged_statements(pg_tenantctl)),
         count(normalize_statement(x) for x in logged_statements(pg_floor))),
        ("Chroma requests", count(requests(chroma_tenantctl)), count(requests(chroma_floor))),
    ):
        differing = [k for k in sorted(set(a) | set(b)) if a[k] != b[k]]
        print("  %s: tenantctl %d, floor %d%s" % (what, sum(a.values()), sum(b.values()),
                                                  "; the same" if not differing else "; differing:"))
        for k in differing:
            print("    tenantctl %d, floor %d: %s" % (a[k], b[k], k if len(k) <= 200 else k[:200] + "..."))

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def parse_options(argv):
    options = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if not key.startswith("--") or i + 1 >= len(argv):
            raise SystemExit("bench_floor.py: bad option %r" % key)
        options[key[2:].replace("-", "_")] = argv[i + 1]
        i += 2
    return options


def main(argv):
    if len(argv) >= 4 and argv[1] == "gen":
        stage = argv[4] if len(argv) > 4 else ""
        if stage not in STAGES:
            raise SystemExit("bench_floor.py gen DIR N STAGE [MIGRATIONS_DIR]: STAGE is one of %s" % ", ".join(STAGES))
        generate(argv[2], int(argv[3]), stage, argv[5] if len(argv) > 5 else None)
        return 0
    if len(argv) >= 4 and argv[1] == "rss":
        completed = subprocess.run(argv[3:])
        with open(argv[2], "w") as f:
            f.write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        return completed.returncode if completed.returncode >= 0 else 128 - completed.returncode
    if len(argv) == 5 and argv[1] == "proxy":
        proxy(argv[2], int(argv[3]), argv[4])
        return 0
    if len(argv) == 6 and argv[1] == "compare":
        compare(*argv[2:6])
        return 0
    if len(argv) >= 4 and argv[1] == "phase":
        phase, mode = argv[2], argv[3]
        if phase not in ("create", "plan", "update", "delete", "purge") or mode not in ("seq", "par", "both"):
            raise SystemExit("bench_floor.py phase create|plan|update|delete|purge seq|par|both ...")
        o = parse_options(argv[4:])
        ctx = Context()
        ctx.psql = o.get("psql", "/usr/lib/postgresql/15/bin/psql")
        ctx.pg_host = o.get("pg_host", "127.0.0.1")
        ctx.pg_port = int(o.get("pg_port", "5432"))
        ctx.pg_user = o.get("pg_user", "postgres")
        ctx.db = o["db"]
        ctx.role_prefix = o["role_prefix"]
        ctx.chroma_host = o.get("chroma_host", "127.0.0.1")
        ctx.chroma_port = int(o.get("chroma_port", "8000"))
        ctx.chroma_tenant = o.get("chroma_tenant", "default_tenant")
        ctx.chroma_db = o["chroma_db"]
        ctx.backup_dir = o["backup_dir"]
        ctx.tenant_dir = o["dir"]
        ctx.workers = int(o.get("workers", "4"))
        ctx.lock_ms = 10000
        ctx.migration_lock_ms = 5000
        ctx.actor = "%s@%s" % (os.environ.get("USER") or "unknown", socket.gethostname())
        deadline = time.time() + float(o.get("seconds", "3600"))
        ctx.remaining = lambda: max(1.0, deadline - time.time())
        ctx.migrations = load_migrations(o["migrations"])
        ctx.tables = [t for m in ctx.migrations for t in m.tables]
        stage = {"create": "create", "plan": "create", "update": "update"}.get(phase, "delete")
        ctx.tenants = tenants(int(o["tenants"]), stage)
        ctx.retention = lambda p: 0 if p in ("delete", "purge") else RETENTION_DEFAULT
        state_file = o["state"]
        if phase != "create":
            with open(state_file) as f:
                ctx.uids = json.load(f)
        runs = int(o.get("runs", "1")) if phase == "plan" else 1
        samples = []
        try:
            for _ in range(runs):
                samples.append(run_phase(ctx, phase, mode))
        except Failure as error:
            print("bench_floor.py: %s %s: %s" % (phase, mode, error), file=sys.stderr)
            return 1
        if phase == "create":
            with open(state_file, "w") as f:
                json.dump(ctx.uids, f)
        pg, chroma, files, total = (statistics.median(column) for column in zip(*samples))
        print("pg=%.6f chroma=%.6f files=%.6f total=%.6f" % (pg, chroma, files, total))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
