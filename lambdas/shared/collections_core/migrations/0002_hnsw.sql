-- Approximate nearest-neighbour search over 1024-dimensional embeddings (voyage-3.5 and the
-- offline local model both produce 1024). Queries must use the same expression and predicate:
--   ORDER BY embedding::vector(1024) <=> $1 ... WHERE embedding_dimensions = 1024
CREATE INDEX IF NOT EXISTS embeddings_hnsw_1024
    ON embeddings USING hnsw ((embedding::vector(1024)) vector_cosine_ops)
    WHERE embedding_dimensions = 1024;
