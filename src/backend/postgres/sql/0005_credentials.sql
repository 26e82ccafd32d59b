-- Credentials of tenant incarnations. Nothing here is a secret: the password itself is never
-- stored (its verifier is in pg_authid, set by the client), and of an API key only a SHA-256
-- digest is kept. Rows go with their tenant (a purge). The checks are deferred so that a create
-- can write them before its registry row, in the same transaction.

-- What tenantctl last applied: the `rotate` value, and a digest of the verifier it set (to
-- notice a password changed outside tenantctl).
CREATE TABLE tenantctl.credentials (
    tenant_uid uuid PRIMARY KEY REFERENCES tenantctl.tenants (uid) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    rotation text,
    password_fingerprint text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- API keys: `tct_<12 hex>_<secret>`; the prefix identifies the key and is public.
CREATE TABLE tenantctl.api_keys (
    prefix text PRIMARY KEY CHECK (prefix ~ '^tct_[0-9a-f]{12}$'),
    tenant_uid uuid NOT NULL REFERENCES tenantctl.tenants (uid) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    name text NOT NULL,
    digest bytea NOT NULL CHECK (length(digest) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    -- Replaced by a rotation: works until then, and the first run after revokes it.
    retire_after timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON tenantctl.api_keys (tenant_uid);

-- The one call an application makes to verify a key: the tenant it belongs to, if the key is
-- known, not expired, not retired past its grace, not revoked, and the tenant is active.
-- SECURITY DEFINER so that the application's role needs EXECUTE on this function and nothing
-- else; the search path is pinned so that no object of the caller's can stand in. PL/pgSQL
-- keeps the query's plan for the session (a SQL function with these attributes is planned
-- again at every call).
CREATE FUNCTION tenantctl.authenticate(key text)
RETURNS TABLE (tenant_id text, status text, config jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF key IS NULL OR length(key) NOT BETWEEN 18 AND 200 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT t.id, t.status, t.config
    FROM tenantctl.api_keys k
    JOIN tenantctl.tenants t ON t.uid = k.tenant_uid
    WHERE k.prefix = substr(key, 1, 16)
      AND k.digest = sha256(convert_to(key, 'UTF8'))
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
      AND (k.retire_after IS NULL OR k.retire_after > now())
      AND t.status = 'active';
END
$$;
REVOKE ALL ON FUNCTION tenantctl.authenticate(text) FROM PUBLIC;
