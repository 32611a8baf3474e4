"""The per-container cache: an entry whose factory caches something itself is kept."""

from __future__ import annotations

import threading

from collections_core import state


def test_a_factory_that_caches_something_itself_keeps_its_own_entry() -> None:
    # GIVEN an empty container (a cold start, or just after a snapshot restore)
    state.reset()
    made: list[str] = []

    def connect() -> str:
        state.cached("secret", lambda: "s3cr3t")  # as the connection reads DATABASE_URL
        made.append("connection")
        return "connection"

    # WHEN the connection is asked for twice
    assert state.cached("db", connect) == "connection"
    assert state.cached("db", connect) == "connection"
    # THEN it was made once, and both entries are there
    assert made == ["connection"]
    assert state.peek("db") == "connection" and state.peek("secret") == "s3cr3t"
    state.forget("db")
    assert state.peek("db") is None and state.peek("secret") == "s3cr3t"
    state.reset()
    assert state.peek("secret") is None


def test_each_thread_is_a_container_of_its_own() -> None:
    state.reset()
    state.cached("db", lambda: "main")
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(state.peek("db")))
    worker.start()
    worker.join()
    assert seen == [None] and state.peek("db") == "main"
    state.reset()
