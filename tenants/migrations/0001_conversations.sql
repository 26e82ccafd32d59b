-- The table every tenant schema held before migrations existed. A directory without a
-- `migrations/` folder gets this one migration; a directory with one starts with a copy of it.
CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    messages jsonb NOT NULL DEFAULT '[]'::jsonb
);
