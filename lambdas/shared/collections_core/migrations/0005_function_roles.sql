-- One login role per pipeline function, with only what its handler's statements need; the
-- owner (who runs this) keeps the schema. A role is named after its database
-- (`<database>_processor`, the database's name shortened to fit PostgreSQL's 63 characters, see
-- collections_core/roles.py): roles belong to the server, so two environments' databases on
-- one server never share one. No password here: the operations
-- function (on AWS) or the local cloud sets each from the function's own credentials, and
-- until then the role cannot log in. Safe to run again: a role that exists is kept, and each
-- role's table privileges are revoked and granted anew, so they end exactly as listed here.
--
--   processor  items:      SELECT, INSERT, UPDATE of what a re-upload changes (its upsert
--                          and the stale-version checks); never id, user_id, original_key
--   analyzer   items:      SELECT (the claim is checked against the item's row)
--              analyses:   SELECT, INSERT, UPDATE of the analysis (its upsert, `_advance`)
--   embedder   items, analyses: SELECT (what is embedded is read from the database)
--              embeddings: SELECT, INSERT, UPDATE of the embedding (its upsert)
-- No role may DELETE or TRUNCATE; rows go only by the owner's hand (ON DELETE CASCADE). The
-- identity columns' sequences (analyses.id, embeddings.id) need no grant: an identity
-- default is drawn by the server without a privilege check on its sequence. The advisory lock
-- the analyzer takes (pg_advisory_xact_lock) is PUBLIC's to execute.
DO $roles$
DECLARE
    -- left(): a long database name is shortened, never the suffix (63 = NAMEDATALEN - 1).
    processor text := left(current_database(), 63 - length('_processor')) || '_processor';
    analyzer text := left(current_database(), 63 - length('_analyzer')) || '_analyzer';
    embedder text := left(current_database(), 63 - length('_embedder')) || '_embedder';
    role text;
BEGIN
    FOREACH role IN ARRAY ARRAY[processor, analyzer, embedder] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT',
                           role);
        END IF;
        EXECUTE format('REVOKE ALL ON items, analyses, embeddings, schema_migrations FROM %I',
                       role);
    END LOOP;

    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE (bucket, thumbnail_bucket, thumbnail_key, content_type,'
        ' width, height, size_bytes, etag, sequencer, correlation_id, status, updated_at)'
        ' ON items TO %I', processor);

    EXECUTE format('GRANT SELECT ON items TO %I', analyzer);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE (category, summary, description, tags, colors,'
        ' text_content, provider, model, source_etag, source_sequencer, raw, correlation_id,'
        ' input_tokens, output_tokens, updated_at)'
        ' ON analyses TO %I', analyzer);

    EXECUTE format('GRANT SELECT ON items, analyses TO %I', embedder);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE (analysis_id, embedding_dimensions, embedding,'
        ' content_hash, correlation_id, embedding_provider, input_tokens, updated_at)'
        ' ON embeddings TO %I', embedder);
END
$roles$;
