"""Caching two pure functions in moto's request path, for the local cloud's throughput.

Runs in the local cloud's daemon, where moto's server lives, before the server starts.
"""

from __future__ import annotations

import functools
import logging
import os

log = logging.getLogger("collections.localcloud")
MOTO_TUNING_ENV = "COLLECTIONS_LOCAL_MOTO_TUNING"  # "0": leave moto as it is


def tune_in_process_moto() -> list[str]:
    """Cache two pure functions that moto's server recomputes on every request.

    - `moto.backends.list_of_moto_modules` lists moto's package directory (a `stat` per entry,
      ~150) to route each request, twice per request, under the server's global lock;
    - `jsonpath_ng.ext.parse` builds a JSONPath parser (PLY tables) from scratch, eight times
      for every event a rule delivers (moto's default input transformer).

    - `moto.core.utils.camelcase_to_underscores` converts attribute names character by
      character; SQS's `Queue.attributes` runs it 28 times each time it is read, and every
      delivery of an S3 notification or an EventBridge event to a queue reads it two or three
      times (~0.7 ms each).

    All depend only on their input, so caching changes no answer. Measured on the local
    cloud's load test: put_events 8.2 -> 4.1 ms and ~0.8 ms less per request of any kind, about
    a fifth of the local cloud's CPU per image (the first two); see docs/benchmarks.md for the
    third. Returns what was tuned; anything moto or jsonpath_ng no longer has is left alone.
    `COLLECTIONS_LOCAL_MOTO_TUNING=0` turns it off.
    """
    if os.environ.get(MOTO_TUNING_ENV, "1").strip() == "0":
        return []
    tuned = []
    try:
        from moto import backends

        listing = backends.list_of_moto_modules
        if not getattr(listing, "collections_cached", False):
            modules = tuple(listing())

            def cached_listing() -> tuple[str, ...]:
                return modules

            cached_listing.collections_cached = True  # type: ignore[attr-defined]
            backends.list_of_moto_modules = cached_listing
            tuned.append("moto.backends.list_of_moto_modules")
    except Exception as exc:  # an older or newer moto: run it as it is
        log.debug("not caching moto's module list: %s", exc)
    try:
        tuned += _cache_camelcase()
    except Exception as exc:
        log.debug("not caching moto's name conversion: %s", exc)
    try:
        import jsonpath_ng.ext as jsonpath_ext

        if not hasattr(jsonpath_ext.parse, "cache_info"):
            jsonpath_ext.parse = functools.lru_cache(maxsize=512)(jsonpath_ext.parse)
            tuned.append("jsonpath_ng.ext.parse")
    except Exception as exc:
        log.debug("not caching JSONPath parsers: %s", exc)
    return tuned


def _cache_camelcase() -> list[str]:
    """Cache moto's camelCase -> snake_case conversion, where it is defined and in every moto
    module that imported it already (modules imported later take the cached one)."""
    import sys

    from moto.core import utils

    original = utils.camelcase_to_underscores
    if hasattr(original, "cache_info"):
        return []
    cached = functools.lru_cache(maxsize=4096)(original)
    utils.camelcase_to_underscores = cached
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.") and getattr(module, "camelcase_to_underscores",
                                                None) is original:
            module.camelcase_to_underscores = cached  # type: ignore[attr-defined]
    return ["moto.core.utils.camelcase_to_underscores"]
