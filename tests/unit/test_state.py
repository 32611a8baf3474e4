"""The per-container cache: what a factory builds is kept, even when the factory itself uses
the cache (a client is made from the cached session)."""

from __future__ import annotations

import threading

from collections_core import state


def test_a_factory_that_uses_the_cache_keeps_its_result() -> None:
    state.reset()
    made: list[object] = []

    def client() -> object:
        state.cached("session", object)  # nested use of the cache, as aws.client does
        made.append(object())
        return made[-1]

    first = state.cached("client", client)
    assert state.cached("client", client) is first
    assert len(made) == 1
    state.reset()


def test_each_thread_is_its_own_container() -> None:
    state.reset()
    mine = state.cached("k", object)
    theirs: list[object] = []
    t = threading.Thread(target=lambda: theirs.append(state.cached("k", object)))
    t.start()
    t.join()
    assert theirs[0] is not mine
    assert state.cached("k", object) is mine
    state.reset()
