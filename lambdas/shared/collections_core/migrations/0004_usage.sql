-- What each row cost in model tokens, as the provider reported it for the call that produced
-- the row (`collections cost` prices it). Nullable: rows written before this migration, and
-- rows of the offline `local` providers, have no reported usage.
--   analyses.input_tokens / output_tokens   Anthropic usage.input_tokens / output_tokens,
--                                           OpenAI usage.prompt_tokens / completion_tokens
--   embeddings.input_tokens                 Voyage usage.total_tokens (all of it is input)
--   embeddings.embedding_provider           voyage | local (analyses already store provider)
-- A retry or replay that calls the provider again overwrites the figures with its own, so a
-- row is never counted twice. Adding nullable columns without a default rewrites nothing; the
-- checks are NOT VALID so adding them does not scan the tables (old rows are NULL anyway) while
-- every new or updated row is checked.
ALTER TABLE analyses ADD COLUMN IF NOT EXISTS input_tokens integer;
ALTER TABLE analyses ADD COLUMN IF NOT EXISTS output_tokens integer;
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS embedding_provider text;
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS input_tokens integer;
ALTER TABLE analyses ADD CONSTRAINT analyses_tokens_not_negative
    CHECK (input_tokens >= 0 AND output_tokens >= 0) NOT VALID;
ALTER TABLE embeddings ADD CONSTRAINT embeddings_tokens_not_negative
    CHECK (input_tokens >= 0) NOT VALID;
