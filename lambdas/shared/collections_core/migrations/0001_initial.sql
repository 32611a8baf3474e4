-- The pipeline's schema. The guide's queries are the contract:
--   SELECT * FROM items WHERE id = 'test-image';
--   SELECT id, item_id, category, summary FROM analyses WHERE item_id = 'test-image';
--   SELECT id, item_id, embedding_model, embedding_dimensions FROM embeddings WHERE item_id = 'test-image';
-- An item is identified by (user_id, id), so two users uploading the same file name never
-- overwrite each other while `WHERE id = 'test-image'` still reads as the guide wrote it.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS items (
    id              text        NOT NULL,
    user_id         text        NOT NULL,
    bucket          text        NOT NULL,
    original_key    text        NOT NULL,
    thumbnail_bucket text,
    thumbnail_key   text,
    content_type    text,
    width           integer,
    height          integer,
    size_bytes      bigint,
    etag            text,
    sequencer       text        NOT NULL DEFAULT '',
    correlation_id  text,
    status          text        NOT NULL DEFAULT 'processed',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
CREATE INDEX IF NOT EXISTS items_id_idx ON items (id);

CREATE TABLE IF NOT EXISTS analyses (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id         text        NOT NULL,
    user_id         text        NOT NULL,
    category        text        NOT NULL,
    summary         text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    tags            text[]      NOT NULL DEFAULT '{}',
    colors          text[]      NOT NULL DEFAULT '{}',
    text_content    text,
    provider        text        NOT NULL,
    model           text        NOT NULL,
    source_etag     text,
    source_sequencer text       NOT NULL DEFAULT '',
    raw             jsonb       NOT NULL,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, item_id),
    FOREIGN KEY (user_id, item_id) REFERENCES items (user_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS analyses_item_id_idx ON analyses (item_id);

-- `embedding` has no fixed dimension: dimensions belong to the model and are recorded per row.
-- HNSW indexes are per dimension (partial expression indexes), see 0002.
CREATE TABLE IF NOT EXISTS embeddings (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id              text        NOT NULL,
    user_id              text        NOT NULL,
    analysis_id          bigint      NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    embedding_model      text        NOT NULL,
    embedding_dimensions integer     NOT NULL CHECK (embedding_dimensions > 0),
    embedding            vector      NOT NULL,
    content_hash         text        NOT NULL,
    correlation_id       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, item_id, embedding_model),
    CHECK (vector_dims(embedding) = embedding_dimensions),
    FOREIGN KEY (user_id, item_id) REFERENCES items (user_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS embeddings_item_id_idx ON embeddings (item_id);
