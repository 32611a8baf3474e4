"""`collections_ops.services.search` against a real PostgreSQL with pgvector 0.8: the rows are
stored the way the embedder stores them (its `document_text` embedded with `local_embed`)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from collections_core import embedding_rules
from collections_core import search as core_search
from collections_ops.services import search as search_service

MODEL = "local-hash-v1"
HOSTILE = "x'; DROP TABLE items; --"

CATALOG: list[dict[str, Any]] = [
    {"item_id": "beach-dog", "category": "animals",
     "summary": "A golden retriever catches a red frisbee on a sandy beach",
     "description": "A wet dog leaps over the surf at low tide, the frisbee in its mouth.",
     "tags": ["dog", "beach", "frisbee", "retriever"], "colors": ["gold", "blue", "red"]},
    {"item_id": "city-night", "category": "urban",
     "summary": "Neon signs reflected in a rainy street at night in Tokyo",
     "description": "Taxis and umbrellas on a wet crossing under glowing billboards.",
     "tags": ["city", "night", "rain", "neon"], "colors": ["magenta", "cyan", "black"]},
    {"item_id": "receipt", "category": "document",
     "summary": "A crumpled grocery receipt listing milk, eggs and bread",
     "description": "Thermal paper receipt from a supermarket with a total of 23.40.",
     "tags": ["receipt", "groceries", "text"], "colors": ["white", "grey"]},
    {"item_id": "mountain-lake", "category": "landscape",
     "summary": "Snow-capped mountains mirrored in a calm alpine lake at sunrise",
     "description": "Pine forest on the shore and pink light on the peaks.",
     "tags": ["mountain", "lake", "sunrise", "alps"], "colors": ["pink", "blue", "green"]},
    {"item_id": "birthday-cake", "category": "food",
     "summary": "A chocolate birthday cake with lit candles on a kitchen table",
     "description": "Seven candles, sprinkles and a knife beside the plate.",
     "tags": ["cake", "birthday", "candles"], "colors": ["brown", "yellow"]},
    {"item_id": "cat-sofa", "category": "animals",
     "summary": "A grey tabby cat asleep on a green velvet sofa",
     "description": "Curled up in the afternoon sun next to a knitted blanket.",
     "tags": ["cat", "sofa", "sleeping"], "colors": ["grey", "green"]},
    {"item_id": "whiteboard", "category": "document",
     "summary": "A whiteboard with a system architecture diagram and arrows",
     "description": "Boxes labelled queue, database and worker, drawn in marker.",
     "tags": ["whiteboard", "diagram", "architecture"], "colors": ["white", "black", "red"]},
    {"item_id": "bicycle", "category": "objects",
     "summary": "A vintage blue bicycle leaning against a brick wall",
     "description": "A wicker basket with flowers hangs from the handlebars.",
     "tags": ["bicycle", "vintage", "street"], "colors": ["blue", "red", "brown"]},
]

_SUBJECTS = ["a dog", "a cat", "two children", "a cyclist", "a red car", "an old man",
             "a flock of birds", "a sailboat", "a woman with an umbrella", "a market stall"]
_ACTIONS = ["walking along", "resting near", "crossing", "photographed beside", "waiting at",
            "moving past", "standing in front of", "seen from above over"]
_PLACES = ["a busy harbour", "a quiet village square", "a snowy forest path", "a train station",
           "a desert road", "a flower field", "a stone bridge", "a modern office lobby",
           "a crowded beach", "a foggy river bank"]
_LIGHT = ["at dawn", "in harsh midday light", "at golden hour", "under street lights",
          "on an overcast afternoon"]


def _captions() -> list[str]:
    combos = itertools.product(_SUBJECTS, _ACTIONS, _PLACES, _LIGHT)
    return [f"{s} {a} {p} {light}".capitalize() for s, a, p, light in combos]


def add(db: Any, user_id: str, item_id: str, *, category: str = "scene", summary: str,
        description: str = "", tags: list[str] | None = None, colors: list[str] | None = None,
        model: str = MODEL, vector: list[float] | None = None) -> None:
    """An item, its analysis and its embedding, as the three handlers store them."""
    from pgvector import Vector

    import embedding

    analysis = {"category": category, "summary": summary, "description": description,
                "tags": tags or [], "colors": colors or []}
    if vector is None:
        vector = embedding.local_embed(embedding_rules.document_text(analysis))
    db.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES (%s, %s, %s, %s)",
               (item_id, user_id, "images", f"{user_id}/{item_id}.jpg"))
    [analysis_id] = db.execute(
        "INSERT INTO analyses (item_id, user_id, category, summary, description, tags, colors,"
        " provider, model, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, 'local', 'local', %s::jsonb)"
        " RETURNING id",
        (item_id, user_id, category, summary, description, analysis["tags"],
         analysis["colors"], json.dumps(analysis))).fetchone()
    db.execute(
        "INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
        " embedding_dimensions, embedding, content_hash) VALUES (%s, %s, %s, %s, %s, %s, 'h')",
        (item_id, user_id, analysis_id, model, len(vector), Vector(vector)))


def add_many(db: Any, user_id: str, count: int, *, prefix: str, offset: int = 0) -> None:
    captions = _captions()
    for i in range(count):
        caption = captions[(offset + i * 7) % len(captions)]
        add(db, user_id, f"{prefix}-{i:04d}", summary=caption, tags=caption.split()[:3])


def query(text: str) -> list[float]:
    return search_service.embed_query(text, provider="local", model=MODEL)


@pytest.fixture
def catalog(db: Any) -> Any:
    for entry in CATALOG:
        add(db, "user123", **entry)
    return db


def test_the_nearest_item_is_the_one_whose_summary_shares_the_query_words(catalog):
    hits = search_service.search(catalog, query("golden retriever with a frisbee on the beach"),
                                 model=MODEL, dimensions=1024, limit=3)
    assert hits[0].item_id == "beach-dog"
    assert hits[0].user_id == "user123" and hits[0].category == "animals"
    assert hits[0].summary.startswith("A golden retriever")
    assert len(hits) == 3
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert hits[0].similarity == pytest.approx(1 - hits[0].distance)

    receipt = search_service.search(catalog, query("grocery receipt milk eggs bread total"),
                                    model=MODEL, dimensions=1024, limit=1)
    assert [h.item_id for h in receipt] == ["receipt"]


def test_the_index_answer_matches_exact_search_and_an_identical_text_is_at_distance_zero(
        catalog):
    import embedding

    text = embedding_rules.document_text(CATALOG[3])
    approx = search_service.search(catalog, embedding.local_embed(text), model=MODEL,
                                   dimensions=1024, limit=8)
    exact = search_service.search(catalog, embedding.local_embed(text), model=MODEL,
                                  dimensions=1024, limit=8, exact=True)
    assert [h.item_id for h in approx] == [h.item_id for h in exact]
    assert approx[0].item_id == "mountain-lake"
    assert approx[0].distance == pytest.approx(0, abs=1e-6)
    assert [h.distance for h in approx] == pytest.approx([h.distance for h in exact], abs=1e-6)


def test_only_embeddings_of_the_requested_model_are_compared(catalog):
    add(catalog, "user123", "other-model", summary="golden retriever frisbee beach",
        model="voyage-3.5")
    hits = search_service.search(catalog, query("golden retriever frisbee beach"),
                                 model=MODEL, dimensions=1024, limit=20)
    assert "other-model" not in {h.item_id for h in hits}
    assert len(hits) == len(CATALOG)
    [only] = search_service.search(catalog, query("golden retriever frisbee beach"),
                                   model="voyage-3.5", dimensions=1024, limit=20)
    assert only.item_id == "other-model"


def test_the_user_filter_returns_only_that_users_items(catalog):
    add(catalog, "someone-else", "beach-dog", category="animals",
        summary="A golden retriever catches a red frisbee on a sandy beach")
    hits = search_service.search(catalog, query("golden retriever frisbee beach"),
                                 model=MODEL, dimensions=1024, user_id="someone-else")
    assert [(h.user_id, h.item_id) for h in hits] == [("someone-else", "beach-dog")]
    mine = search_service.search(catalog, query("golden retriever frisbee beach"),
                                 model=MODEL, dimensions=1024, user_id="user123", limit=5)
    assert len(mine) == 5 and {h.user_id for h in mine} == {"user123"}
    assert search_service.search(catalog, query("dog"), model=MODEL, dimensions=1024,
                                 user_id="nobody") == []


class Recorder:
    """A connection that records the SQL the service sends."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def cursor(self) -> Any:
        recorder, cursor = self, self.conn.cursor()

        class RecordingCursor:
            def __enter__(self) -> Any:
                cursor.__enter__()
                return self

            def __exit__(self, *exc: Any) -> Any:
                return cursor.__exit__(*exc)

            def execute(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
                recorder.statements.append(sql)
                return cursor.execute(sql, params, **kwargs)

            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

        return RecordingCursor()


def test_a_filtered_search_still_returns_limit_rows_through_the_index(db, monkeypatch):
    """Alice owns 15 of 415 rows (3.6%). With ef_search = 10 a post-filtered index scan sees
    about 10 candidates, so without iterative scans it returns well under 10 of hers."""
    add_many(db, "crowd", 400, prefix="c")
    add_many(db, "alice", 15, prefix="a", offset=3)
    db.execute("ANALYZE embeddings")
    q = query("a dog walking along a busy harbour at dawn")
    sql = core_search.search_sql(1024, filtered=True)
    params = {"q": search_service._as_vector(db, q, 1024), "model": MODEL, "limit": 10,
              "user_id": "alice", "dimensions": 1024}

    counts = {}
    for iterative in (False, True):
        with db.transaction():
            ef, relaxed, tuples = core_search.settings_params(ef_search=10, limit=10,
                                                                 filtered=False)
            mode = relaxed if iterative else "off"
            db.execute(core_search.SETTINGS_SQL, (ef, mode, tuples))
            plan = json.dumps(db.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0])
            assert '"Index Name": "embeddings_hnsw_1024"' in plan, plan
            counts[mode] = len(db.execute(sql, params).fetchall())
    assert counts["off"] < 10 <= counts["relaxed_order"], counts

    # Alice is below the exact-scan threshold; lower it so the service takes the index path.
    monkeypatch.setattr(core_search, "EXACT_SCAN_MAX_ROWS", 5)
    recorder = Recorder(db)
    hits = search_service.search(recorder, q, model=MODEL, dimensions=1024, user_id="alice",
                                 limit=10, ef_search=10)
    assert len(hits) == 10 and {h.user_id for h in hits} == {"alice"}
    assert sql in recorder.statements  # the index query answered it ...
    assert core_search.search_sql(1024, filtered=True, exact=True) not in \
        recorder.statements  # ... without the exact fallback
    exact = search_service.search(db, q, model=MODEL, dimensions=1024, user_id="alice",
                                  limit=10, exact=True)
    assert {h.item_id for h in hits} == {h.item_id for h in exact}
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_a_user_with_few_rows_is_searched_exactly(db):
    add_many(db, "crowd", 100, prefix="c")
    add_many(db, "bob", 12, prefix="b", offset=5)
    q = query("two children crossing a stone bridge at golden hour")
    recorder = Recorder(db)
    hits = search_service.search(recorder, q, model=MODEL, dimensions=1024, user_id="bob",
                                 limit=10)
    assert core_search.search_sql(1024, filtered=True, exact=True) in recorder.statements
    assert core_search.SETTINGS_SQL not in recorder.statements
    exact = search_service.search(db, q, model=MODEL, dimensions=1024, user_id="bob",
                                  limit=10, exact=True)
    assert hits == exact and len(hits) == 10


def test_the_search_query_uses_the_hnsw_index(db):
    """From about 2,000 rows the planner picks the index by itself at pgvector's default
    ef_search (40); with the service's settings it is the only way to produce the order, at any
    ef_search (on 100,000 rows the planner alone prefers a 200-350 ms scan at
    ef_search = 100)."""
    add_many(db, "crowd", 2500, prefix="c")
    db.execute("ANALYZE embeddings")
    params = {"q": search_service._as_vector(db, query("a cat resting near a train station"),
                                             1024),
              "model": MODEL, "limit": 10, "user_id": None, "dimensions": 1024}
    sql = core_search.search_sql(1024, filtered=False)
    [[plan]] = db.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()
    text = json.dumps(plan)
    assert '"Index Name": "embeddings_hnsw_1024"' in text, text
    assert '"Node Type": "Sort"' not in json.dumps(_cte(plan))  # ordered by the index itself
    for ef_search in (40, 100, 200, 1000):
        with db.transaction():
            db.execute(core_search.SETTINGS_SQL, core_search.settings_params(
                ef_search=ef_search, limit=10, filtered=False))
            [[plan]] = db.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()
        assert '"Index Name": "embeddings_hnsw_1024"' in json.dumps(_cte(plan)), ef_search
    # The exact variant must not touch the index (it is the recall baseline).
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")
        [[exact_plan]] = db.execute("EXPLAIN (FORMAT JSON) "
                                    + core_search.search_sql(1024, filtered=False,
                                                                exact=True), params
                                    ).fetchall()
    assert "embeddings_hnsw_1024" not in json.dumps(exact_plan)
    hits = search_service.search(db, params["q"], model=MODEL, dimensions=1024)
    assert len(hits) == 10
    assert hits[0].summary.startswith("A cat resting near a train station")


def _cte(plan: Any) -> Any:
    """The plan of the MATERIALIZED CTE (the nearest-neighbour part)."""
    def walk(node: Any) -> Any:
        if node.get("Subplan Name", "").startswith("CTE nearest"):
            return node
        for child in node.get("Plans", []):
            found = walk(child)
            if found is not None:
                return found
        return None

    found = walk(plan[0]["Plan"])
    assert found is not None, plan
    return found


def test_the_index_expression_in_the_query_is_the_one_in_the_schema(db):
    [indexdef] = db.execute("SELECT indexdef FROM pg_indexes"
                            " WHERE indexname = 'embeddings_hnsw_1024'").fetchone()
    assert "((embedding)::vector(1024)) vector_cosine_ops" in indexdef
    assert "WHERE (embedding_dimensions = 1024)" in indexdef
    sql = core_search.search_sql(1024, filtered=False)
    assert "ORDER BY e.embedding::vector(1024) <=> %(q)s::vector(1024)" in sql
    assert "e.embedding_dimensions = 1024 AND e.embedding_model = %(model)s" in sql


def test_hostile_strings_are_data_not_sql(catalog):
    add(catalog, HOSTILE, HOSTILE, category=HOSTILE, summary=f"golden retriever {HOSTILE}")
    q = query("golden retriever frisbee beach")
    hits = search_service.search(catalog, q, model=MODEL, dimensions=1024, user_id=HOSTILE)
    assert [(h.user_id, h.item_id, h.category) for h in hits] == [(HOSTILE, HOSTILE, HOSTILE)]
    assert search_service.search(catalog, q, model=HOSTILE, dimensions=1024) == []
    assert search_service.search(catalog, q, model=MODEL, dimensions=1024,
                                 user_id="' OR '1'='1") == []
    everything = search_service.search(catalog, q, model=MODEL, dimensions=1024, limit=50)
    assert HOSTILE in {h.item_id for h in everything}
    assert catalog.execute("SELECT count(*) FROM items").fetchone()[0] == len(CATALOG) + 1
    assert catalog.execute("SELECT to_regclass('items') IS NOT NULL").fetchone()[0]


def test_other_dimensions_fall_back_to_an_exact_scan(catalog):
    add(catalog, "user123", "small-1", summary="tiny", model="tiny-8", vector=[1.0] + [0.0] * 7)
    add(catalog, "user123", "small-2", summary="tiny", model="tiny-8",
        vector=[0.0, 1.0] + [0.0] * 6)
    hits = search_service.search(catalog, [0.9, 0.1] + [0.0] * 6, model="tiny-8",
                                 dimensions=8)
    assert [h.item_id for h in hits] == ["small-1", "small-2"]
    assert hits[1].distance == pytest.approx(1 - 0.1 / (0.81 + 0.01) ** 0.5, abs=1e-6)
    # No index serves 8 dimensions: the exact statement answers.
    recorder = Recorder(catalog)
    search_service.search(recorder, [0.9, 0.1] + [0.0] * 6, model="tiny-8", dimensions=8)
    assert core_search.search_sql(8, filtered=False, exact=True) in recorder.statements
    assert core_search.SETTINGS_SQL not in recorder.statements
    # 1024-d rows of the same model name never reach the 8-d distance operator.
    add(catalog, "user123", "big", summary="tiny", model="tiny-8")
    assert len(search_service.search(catalog, [1.0] * 8, model="tiny-8", dimensions=8)) == 2


def test_a_connection_without_pgvector_types_registered_works(catalog, migrated_db):
    import psycopg

    with psycopg.connect(migrated_db, autocommit=True) as plain:
        hits = search_service.search(plain, query("neon rainy street at night"), model=MODEL,
                                     dimensions=1024, limit=2)
    assert hits[0].item_id == "city-night"


def test_the_settings_do_not_outlive_the_search(catalog, monkeypatch):
    monkeypatch.setattr(core_search, "EXACT_SCAN_MAX_ROWS", 1)  # take the index path
    catalog.execute("SET hnsw.ef_search = 40")
    before = {name: catalog.execute(f"SHOW {name}").fetchone()[0]
              for name in ("hnsw.iterative_scan", "enable_seqscan", "enable_bitmapscan",
                           "enable_sort")}
    for user_id in (None, "user123"):
        recorder = Recorder(catalog)
        search_service.search(recorder, query("cake"), model=MODEL, dimensions=1024,
                              ef_search=200, user_id=user_id)
        assert core_search.SETTINGS_SQL in recorder.statements
        assert catalog.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"
        assert {name: catalog.execute(f"SHOW {name}").fetchone()[0] for name in before} == \
            before == {"hnsw.iterative_scan": "off", "enable_seqscan": "on",
                       "enable_bitmapscan": "on", "enable_sort": "on"}
    # Inside the caller's transaction too (the search runs in a savepoint, rolled back).
    with catalog.transaction():
        catalog.execute("INSERT INTO items (id, user_id, bucket, original_key)"
                        " VALUES ('kept', 'user123', 'b', 'k')")
        hits = search_service.search(catalog, query("cake"), model=MODEL, dimensions=1024,
                                     ef_search=200, user_id="user123")
        assert hits[0].item_id == "birthday-cake"
        assert catalog.execute("SHOW enable_seqscan").fetchone()[0] == "on"
        assert catalog.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"
    assert catalog.execute("SELECT count(*) FROM items WHERE id = 'kept'").fetchone()[0] == 1
    catalog.execute("RESET hnsw.ef_search")


def test_no_statement_is_prepared_on_the_server(catalog):
    """A cached generic plan knows neither the LIMIT nor the user: every search is planned
    with its own values, however often it runs."""
    for _ in range(8):
        search_service.search(catalog, query("cake"), model=MODEL, dimensions=1024)
        search_service.search(catalog, query("cake"), model=MODEL, dimensions=1024,
                               user_id="user123")
    prepared = [r[0] for r in catalog.execute("SELECT statement FROM pg_prepared_statements")]
    assert not [sql for sql in prepared
                if "nearest" in sql or "set_config" in sql or "capped" in sql], prepared


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dimensions": 1024, "limit": 0}, "limit"),
    ({"dimensions": 1024, "limit": 1001}, "limit"),
    ({"dimensions": 1024, "ef_search": 0}, "ef_search"),
    ({"dimensions": 512}, "512"),
    ({"dimensions": 1024, "model": ""}, "model"),
])
def test_bad_arguments_are_refused_before_any_sql(db, kwargs, message):
    args = {"model": MODEL, **kwargs}
    with pytest.raises(ValueError, match=message):
        search_service.search(db, [0.5] * 1024, **args)


def test_a_zero_or_nan_query_vector_is_refused(db):
    with pytest.raises(ValueError, match="zero"):
        search_service.search(db, [0.0] * 1024, model=MODEL, dimensions=1024)
    with pytest.raises(ValueError, match="NaN"):
        search_service.search(db, [float("nan")] * 1024, model=MODEL, dimensions=1024)


def test_embed_query_uses_the_pipelines_local_model():
    import embedding

    text = "golden retriever on the beach"
    assert search_service.embed_query(text, provider="local", model=MODEL) == \
        embedding.local_embed(text)
    with pytest.raises(ValueError, match="local-hash-v1"):
        search_service.embed_query(text, provider="local", model="voyage-3.5")
    with pytest.raises(ValueError, match="unknown embedding provider"):
        search_service.embed_query(text, provider="openai", model="x")
    with pytest.raises(ValueError, match="empty"):
        search_service.embed_query("  ", provider="local", model=MODEL)


def test_embed_query_asks_voyage_for_a_query_embedding(monkeypatch):
    import embedding

    calls = []

    def fake(texts, *, api_key, model, input_type, remaining_s):
        calls.append((texts, api_key, model, input_type, remaining_s() > 0))
        return [[0.25] * 1024]

    monkeypatch.setattr(embedding, "voyage_embed", fake)
    vector = search_service.embed_query("red bicycle", provider="voyage", model="voyage-3.5",
                                        api_key="k")
    assert vector == [0.25] * 1024
    assert calls == [(["red bicycle"], "k", "voyage-3.5", "query", True)]
    with pytest.raises(ValueError, match="API key"):
        search_service.embed_query("red bicycle", provider="voyage", model="voyage-3.5")
