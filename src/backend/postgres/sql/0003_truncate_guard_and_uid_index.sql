-- TRUNCATE fires neither UPDATE nor DELETE triggers: refuse it too, so the audit trail stays
-- append-only for every statement.
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON tenantctl.events
    FOR EACH STATEMENT EXECUTE FUNCTION tenantctl.events_append_only();
-- Events are looked up by incarnation: interrupted creates (adoption of a leftover collection)
-- and the backups a soft delete recorded.
CREATE INDEX events_tenant_uid ON tenantctl.events (tenant_uid);
