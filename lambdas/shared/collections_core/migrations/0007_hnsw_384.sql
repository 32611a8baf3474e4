-- migrate: outside-transaction
-- Approximate search for 384-dimensional embeddings (multilingual-e5-small-q4, the local
-- cloud's model, was searched by exact scan only). Same form as 0002's 1024 index, built
-- concurrently for the same reason; queries repeat its expression and predicate:
--   ORDER BY embedding::vector(384) <=> $1 ... WHERE embedding_dimensions = 384
CREATE INDEX CONCURRENTLY IF NOT EXISTS embeddings_hnsw_384
    ON embeddings USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WHERE embedding_dimensions = 384;
