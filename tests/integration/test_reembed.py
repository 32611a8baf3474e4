"""services/reembed.py against a real PostgreSQL: an interrupted fill resumed embeds no row
twice; activation switches the active model at once; the model's own index serves search."""

from __future__ import annotations

import json
from typing import Any

from collections_core import search as core_search
from collections_ops.services import reembed, search

E5, HASH = "multilingual-e5-small-q4", "local-hash-v1"


def _analyses(db: Any, n: int) -> None:
    for i in range(n):
        db.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES"
                   " (%s, 'u', 'b', %s)", (f"i{i}", f"u/i{i}.jpg"))
        db.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider, model,"
                   " raw) VALUES (%s, 'u', 'photo', %s, 'local', 'local', '{}')",
                   (f"i{i}", f"a photo of thing number {i}"))


def test_an_interrupted_fill_resumed_embeds_every_analysis_exactly_once(db):
    # GIVEN 10 analyses and an embedding function that counts what it embeds
    _analyses(db, 10)
    reembed.start(db, HASH)
    embed = reembed.local_embedder(HASH)
    calls: list[str] = []

    def counting(texts: list[str]) -> list[list[float]]:
        calls.extend(texts)
        return embed(texts)

    # WHEN the fill is interrupted after its first batch of 4 (the generator closed, as a
    # Ctrl-C leaves it) ...
    fill = reembed.fill_local(db, HASH, counting, batch=4)
    first = next(fill)
    fill.close()
    assert (first.embedded, first.pending) == (4, 6)
    stored = db.execute("SELECT item_id, xmin::text FROM embeddings ORDER BY item_id"
                        ).fetchall()
    # ... and run again
    rest = list(reembed.fill_local(db, HASH, counting, batch=4))

    # THEN the second run embedded the other 6 only; no text was embedded twice, and the
    # first run's rows were not written again
    assert [p.embedded for p in rest] == [4, 6] and rest[-1].pending == 0
    assert len(calls) == 10 and len(set(calls)) == 10
    assert db.execute("SELECT count(*) FROM embeddings WHERE embedding_model = %s",
                      (HASH,)).fetchone()[0] == 10
    assert set(stored) <= set(db.execute("SELECT item_id, xmin::text FROM embeddings"
                                          ).fetchall())
    assert reembed.pending(db, HASH) == 0
    assert list(reembed.fill_local(db, HASH, counting)) == [] and len(calls) == 10


def test_activation_is_refused_while_analyses_lack_the_vector_then_switches_search(db):
    from collections_ops.services.dataroute import DirectRoute

    _analyses(db, 3)
    db.execute("INSERT INTO embedding_models (model, dimensions, state) VALUES"
               " (%s, 384, 'active')", (E5,))
    reembed.start(db, HASH)
    import pytest

    from collections_ops import errors

    with pytest.raises(errors.UsageError, match="3 analyses have no"):
        reembed.activate(db, HASH)
    list(reembed.fill_local(db, HASH, reembed.local_embedder(HASH)))
    reembed.activate(db, HASH)
    assert search.search_model(DirectRoute(db), configured_model=E5,
                               configured_provider="local") == (HASH, "local")
    assert dict(db.execute("SELECT model, state FROM embedding_models").fetchall()) == {
        E5: "retired", HASH: "active"}


def test_the_models_own_index_serves_its_search(db):
    # GIVEN 300 analyses filled with local-hash-v1 and its own index
    _analyses(db, 300)
    reembed.start(db, HASH)
    list(reembed.fill_local(db, HASH, reembed.local_embedder(HASH), batch=100))
    name = reembed.build_index(db, HASH, 1024)
    db.execute("DROP INDEX embeddings_hnsw_1024")  # only the model's own index is left
    try:
        db.execute("ANALYZE embeddings")
        vector = reembed.local_embedder(HASH)(["a photo of thing number 7"])[0]
        params = {"q": search._as_vector(db, vector, 1024), "model": HASH, "limit": 10,
                  "user_id": None, "dimensions": 1024}
        sql = core_search.search_sql(1024, filtered=False)
        with db.transaction():
            db.execute(core_search.SETTINGS_SQL, core_search.settings_params(ef_search=100, limit=10,
                                                                   filtered=False))
            plan = json.dumps(db.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0])
        # THEN the planner takes it with the model a bound parameter, and search answers
        assert f'"Index Name": "{name}"' in plan, plan
        hits = search.search(db, vector, model=HASH, dimensions=1024)
        assert len(hits) == 10 and {h.user_id for h in hits} == {"u"}
    finally:
        db.execute("DROP INDEX IF EXISTS " + name)
        db.execute("CREATE INDEX IF NOT EXISTS embeddings_hnsw_1024 ON embeddings USING hnsw"
                   " ((embedding::vector(1024)) vector_cosine_ops)"
                   " WHERE embedding_dimensions = 1024")
