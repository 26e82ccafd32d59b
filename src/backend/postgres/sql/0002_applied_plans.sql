-- Saved plans applied with `apply FILE`: a plan id is recorded before its first change, so the
-- same saved plan never applies twice.
CREATE TABLE tenantctl.applied_plans (
    plan_id uuid PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    run_id uuid NOT NULL,
    actor text NOT NULL
);
