CREATE SCHEMA IF NOT EXISTS tenantctl;
COMMENT ON SCHEMA tenantctl IS 'tenantctl control schema: tenant registry and audit events';
CREATE TABLE tenantctl.schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    tool_version text NOT NULL
);
CREATE TABLE tenantctl.tenants (
    id text PRIMARY KEY,
    uid uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    plan text NOT NULL,
    config jsonb NOT NULL,
    protected boolean NOT NULL DEFAULT false,
    retention_days integer CHECK (retention_days >= 0),
    suspend_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    suspended_at timestamptz,
    deleted_at timestamptz,
    purge_after timestamptz
);
CREATE TABLE tenantctl.events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    run_id uuid NOT NULL,
    actor text NOT NULL,
    tenant_id text NOT NULL,
    tenant_uid uuid,
    action text NOT NULL,
    status_before text,
    status_after text,
    reason text,
    changes jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_tenant_at ON tenantctl.events (tenant_id, at);
-- The audit trail is append-only, for every role including the owner.
CREATE FUNCTION tenantctl.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tenantctl.events is append-only';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON tenantctl.events
    FOR EACH STATEMENT EXECUTE FUNCTION tenantctl.events_append_only();
