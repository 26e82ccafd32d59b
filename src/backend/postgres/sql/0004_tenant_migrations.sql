-- The tenant schema's migrations applied to each tenant incarnation. A purge removes the
-- registry row and, with it, its history; the check is deferred so that a create can run its
-- migrations before its registry row is inserted, in the same transaction.
CREATE TABLE tenantctl.tenant_migrations (
    tenant_uid uuid NOT NULL REFERENCES tenantctl.tenants (uid) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    version integer NOT NULL CHECK (version > 0),
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    run_id uuid,
    PRIMARY KEY (tenant_uid, version)
);
