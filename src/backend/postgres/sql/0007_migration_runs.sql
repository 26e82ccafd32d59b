-- The state of each existing tenant in each apply that migrates tenants: `pending` when the run
-- starts, `applied` in the tenant's own transaction (so it commits with the migrations),
-- `failed` or `retried` after a rollback. A run that was killed, or stopped by a failed canary
-- or `--on-error stop`, leaves `pending` rows: the next plan reports them, the next apply
-- resumes them (their migrations are still pending).
CREATE TABLE tenantctl.migration_runs (
    run_id uuid NOT NULL,
    tenant_uid uuid NOT NULL,
    tenant_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'applied', 'failed', 'retried')),
    retries integer NOT NULL DEFAULT 0,
    error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, tenant_uid)
);
CREATE INDEX migration_runs_updated_at ON tenantctl.migration_runs (updated_at);
