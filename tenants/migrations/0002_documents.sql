-- The documents each tenant's assistant answers from: the source text of what Chroma holds
-- as embeddings, so a collection can be rebuilt and an answer can cite its source.
CREATE TABLE documents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title text NOT NULL,
    source_url text,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The newest documents first, as the admin screen lists them.
CREATE INDEX documents_created_at ON documents (created_at DESC);
