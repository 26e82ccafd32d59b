-- The fingerprint (sha256 of its shape) of the tenant schema a migration run left, verified
-- against the schema the migrations make before the run committed. NULL for rows recorded by
-- an earlier release.
ALTER TABLE tenantctl.tenant_migrations ADD COLUMN schema_fingerprint text;
