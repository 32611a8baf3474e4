-- migrate: outside-transaction
-- Approximate nearest-neighbour search over 1024-dimensional embeddings (voyage-3.5 and the
-- offline local model both produce 1024). Queries must use the same expression and predicate:
--   ORDER BY embedding::vector(1024) <=> $1 ... WHERE embedding_dimensions = 1024
-- Built concurrently (outside a transaction, see migrate.py): an HNSW build over many rows
-- takes minutes, and a plain CREATE INDEX would block every insert into embeddings meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS embeddings_hnsw_1024
    ON embeddings USING hnsw ((embedding::vector(1024)) vector_cosine_ops)
    WHERE embedding_dimensions = 1024;
