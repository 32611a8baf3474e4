"""Per-user search through the HNSW index keeps its recall because of the iterative scan: many
users' vectors in one table, each user's top 10 compared with the exact answer (a smaller
version of bench/bench_user_search.py, whose 50,000-vector figures are in docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from collections_core import search as core_search
from collections_ops.services import search as search_service

MODEL = "voyage-3.5"
DIM = 1024
ROWS, USERS = 3000, 30  # 100 rows each: 3.3% of the table per user
EF_SEARCH = 100  # search()'s default


def clustered_vectors(n: int, *, seed: int) -> np.ndarray:
    """Unit vectors around 60 centres (uniform noise has no neighbours worth the name)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, DIM)).astype(np.float32)
    points = centres[rng.integers(0, 60, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(
        np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def load(db: Any, vectors: np.ndarray) -> None:
    """Items, analyses and embeddings by binary COPY, user `u-NN` owning every USERS-th row."""
    with db.cursor() as cur:
        with cur.copy("COPY items (id, user_id, bucket, original_key) FROM STDIN") as copy:
            for i in range(len(vectors)):
                copy.write_row((f"i{i}", f"u-{i % USERS:02d}", "images", f"k{i}.jpg"))
        with cur.copy("COPY analyses (item_id, user_id, category, summary, provider, model,"
                      " raw) FROM STDIN") as copy:
            for i in range(len(vectors)):
                copy.write_row((f"i{i}", f"u-{i % USERS:02d}", "photo", "s", "t", "t", "{}"))
        ids = dict(cur.execute("SELECT item_id, id FROM analyses").fetchall())
        with cur.copy("COPY embeddings (item_id, user_id, analysis_id, embedding_model,"
                      " embedding_dimensions, embedding, content_hash)"
                      " FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "int8", "text", "int4", "vector", "text"])
            for i, vector in enumerate(vectors):
                copy.write_row((f"i{i}", f"u-{i % USERS:02d}", ids[f"i{i}"], MODEL, DIM,
                                vector, "h"))
    db.execute("ANALYZE embeddings")


def index_top10(db: Any, query: np.ndarray, user_id: str, *, iterative: bool) -> list[str]:
    """The service's filtered index SQL under its own settings, iterative scan on or off."""
    sql = core_search.search_sql(DIM, filtered=True)
    _ef, mode, tuples = core_search.settings_params(ef_search=EF_SEARCH, limit=10,
                                                       filtered=True)
    with db.transaction():
        db.execute(core_search.SETTINGS_SQL,
                   (str(EF_SEARCH), mode if iterative else "off", tuples))
        rows = db.execute(sql, {"q": query, "model": MODEL, "limit": 10, "user_id": user_id,
                                "dimensions": DIM}).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def crowded(db: Any) -> Any:
    load(db, clustered_vectors(ROWS, seed=11))
    return db


def test_each_users_top_10_through_the_index_matches_exact_search_with_iterative_scan(
        crowded: Any) -> None:
    # GIVEN 3,000 vectors spread over 30 users in one table, and one query per user
    queries = clustered_vectors(USERS, seed=12)
    recall: dict[bool, list[float]] = {True: [], False: []}

    # WHEN each user's top 10 is asked through the index, iterative scan on and off
    for n, query in enumerate(queries):
        user_id = f"u-{n:02d}"
        exact = {h.item_id for h in search_service.search(
            crowded, query, model=MODEL, dimensions=DIM, limit=10, user_id=user_id,
            exact=True)}
        assert len(exact) == 10
        for iterative in recall:
            found = index_top10(crowded, query, user_id, iterative=iterative)
            recall[iterative].append(len(set(found) & exact) / 10)

    # THEN with it the index answers as the exact search does; without it, the filter keeps
    # only the user's few rows among ef_search candidates
    assert float(np.mean(recall[True])) >= 0.95, recall[True]
    assert float(np.mean(recall[False])) < 0.5, recall[False]


def test_search_answers_each_user_within_0_01_of_exact_because_small_users_are_exact(
        crowded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same 3,000 vectors and queries, every user below EXACT_SCAN_MAX_ROWS
    queries = clustered_vectors(USERS, seed=12)

    def recall_of_search() -> float:
        recalls = []
        for n, query in enumerate(queries):
            user_id = f"u-{n:02d}"
            exact = {h.item_id for h in search_service.search(
                crowded, query, model=MODEL, dimensions=DIM, limit=10, user_id=user_id,
                exact=True)}
            found = {h.item_id for h in search_service.search(
                crowded, query, model=MODEL, dimensions=DIM, limit=10, user_id=user_id)}
            recalls.append(len(found & exact) / 10)
        return float(np.mean(recalls))

    # WHEN each user searches through the service, THEN it is exact
    assert recall_of_search() >= 0.99
    # and the same data without the per-user threshold (the index path at the pre-fix
    # ef_search of 100) is not within 0.01 of exact
    monkeypatch.setattr(core_search, "EXACT_SCAN_MAX_ROWS", 1)
    monkeypatch.setattr(core_search, "FILTERED_EF_SEARCH", EF_SEARCH)
    assert recall_of_search() < 0.99


@pytest.mark.parametrize(("version", "available"), [
    ("0.8.0", True), ("0.8.6", True), ("0.10.1", True), ("1.0.0", True),
    ("0.7.4", False), ("0.6.2", False), ("", False), (None, False)])
def test_a_pgvector_without_iterative_scan_is_searched_exactly(version: str | None,
                                                               available: bool) -> None:
    assert core_search.iterative_scan_available(version) is available
