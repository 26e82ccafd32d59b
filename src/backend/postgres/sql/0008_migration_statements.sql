-- The progress of a `-- tenantctl: no-transaction` migration on a tenant: one row per
-- statement that finished (an index built or dropped concurrently). Such a migration runs
-- statement by statement outside any transaction, so a run that dies in the middle resumes
-- after the last statement recorded here. The rows of a migration go in the transaction that
-- records it in `tenant_migrations`; a purge removes them with the registry row. `checksum`
-- is the file's: progress made by a file that changed since is not taken for this one.
CREATE TABLE tenantctl.migration_statements (
    tenant_uid uuid NOT NULL REFERENCES tenantctl.tenants (uid) ON DELETE CASCADE,
    version integer NOT NULL CHECK (version > 0),
    checksum text NOT NULL,
    statement integer NOT NULL CHECK (statement > 0),
    run_id uuid NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_uid, version, statement)
);
