-- Embeddings per model. `embeddings` already keeps each row's model and dimension and its
-- vector column has no fixed dimension (0001), so rows of several models live side by side and
-- nothing moves: every existing row stays where it is. What was missing is which model an
-- environment searches with. `embedding_models` records each model the table holds:
--   active    the model `collections search` and the embedder use (at most one)
--   filling   `collections reembed` is filling its vectors from the stored analyses; the
--             embedder embeds every new analysis with it too, so the fill never falls behind
--   retired   a model that was active; its rows stay until `collections reembed --drop`
-- `index_name`: the model's own partial HNSW index (built by reembed, concurrently), or NULL
-- when a dimension's index from a migration (0002: 1024, 0007: 384) serves it.
-- The existing rows' models are recorded: the one with most rows active, any other retired.
CREATE TABLE IF NOT EXISTS embedding_models (
    model        text        PRIMARY KEY,
    dimensions   integer     NOT NULL CHECK (dimensions > 0 AND dimensions <= 16000),
    state        text        NOT NULL CHECK (state IN ('active', 'filling', 'retired')),
    index_name   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS embedding_models_one_active
    ON embedding_models ((true)) WHERE state = 'active';

INSERT INTO embedding_models (model, dimensions, state, activated_at)
SELECT embedding_model, min(embedding_dimensions),
       CASE WHEN row_number() OVER (ORDER BY count(*) DESC, embedding_model) = 1
            THEN 'active' ELSE 'retired' END,
       CASE WHEN row_number() OVER (ORDER BY count(*) DESC, embedding_model) = 1
            THEN now() END
FROM embeddings
GROUP BY embedding_model
ON CONFLICT (model) DO NOTHING;

-- The per-function roles of 0005: the embedder reads the registry (which models to embed
-- with) and records its configured model as active when none is recorded yet (a new
-- database); nobody else touches it. Role names as 0005 makes them.
DO $roles$
DECLARE
    processor text := left(current_database(), 63 - length('_processor')) || '_processor';
    analyzer text := left(current_database(), 63 - length('_analyzer')) || '_analyzer';
    embedder text := left(current_database(), 63 - length('_embedder')) || '_embedder';
    role text;
BEGIN
    FOREACH role IN ARRAY ARRAY[processor, analyzer, embedder] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = role) THEN
            EXECUTE format('REVOKE ALL ON embedding_models FROM %I', role);
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = embedder) THEN
        EXECUTE format('GRANT SELECT, INSERT (model, dimensions, state, activated_at)'
                       ' ON embedding_models TO %I', embedder);
    END IF;
END
$roles$;
