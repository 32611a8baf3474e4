"""The AWS emulator part of the local cloud, in a process of its own:
`python -m collections_ops.localcloud.emulator STATE_DIR PORT`.

moto's server on a fixed loopback port (kept across restarts, so clients' endpoint stays
valid), its backends writing through to the durable store (`store`), the pipeline's resources
provisioned from the definition, then the kept data restored. Writes `emulator.json` when it
answers. The supervisor (`daemon`) restarts it when it dies; a restart loses nothing that was
acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from collections_ops.localcloud.store import STORE_DIR, Store, install, restore, s3_middleware
from collections_ops.pipeline import LOCAL_ACCOUNT

log = logging.getLogger("collections.localcloud")
EMULATOR_FILE = "emulator.json"
# The access key of the emulator's own provisioning requests (an IAM user of its own, whose
# secret lives in this process only): the only ones served before the data is restored
# (anything else waits, so a handler never sees a bucket without its objects or a missing
# parameter during a restart).
PROVISIONING_KEY = "collections-provision"
GATE_WAIT_S = 120.0


def run(state_dir: Path, port: int) -> None:
    from collections_ops.localcloud.daemon import local_environment

    env = local_environment()
    region = os.environ.get("AWS_DEFAULT_REGION") or env.region
    os.environ["AWS_DEFAULT_REGION"] = region
    started = time.monotonic()
    (state_dir / EMULATOR_FILE).unlink(missing_ok=True)

    from werkzeug.serving import make_server

    from collections_ops.localcloud.moto_tuning import tune_in_process_moto

    tune_in_process_moto()
    store = Store(state_dir / STORE_DIR)
    install(store)
    from collections_ops.localcloud import iam

    credentials = iam.load_or_create(state_dir)
    provisioning_secret = iam.create_users(LOCAL_ACCOUNT, admin=credentials["admin"],
                                           provisioning_key=PROVISIONING_KEY)
    if iam.enforced():
        iam.install()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    buckets = {env.images_bucket(LOCAL_ACCOUNT), env.thumbnails_bucket(LOCAL_ACCOUNT)}
    ready_event = threading.Event()
    app = _gate(s3_middleware(DomainDispatcherApplication(create_backend_app), store, buckets,
                              account=LOCAL_ACCOUNT), ready_event)
    server = make_server("127.0.0.1", port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="moto").start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint

    import boto3

    from collections_ops.localcloud.provision import code_fingerprint, provision

    session = boto3.session.Session(aws_access_key_id=PROVISIONING_KEY,
                                    aws_secret_access_key=provisioning_secret,
                                    region_name=region)
    code = code_fingerprint()  # before provisioning reads the code: a later edit reloads again
    history = state_dir / STORE_DIR / "lambda"
    _keep_rollbacks(env, history)
    store.recording = False
    resources = provision(session, env, account=LOCAL_ACCOUNT, database_url=None,
                          history_dir=history)
    iam.issue_sessions(credentials, env, account=LOCAL_ACCOUNT, region=region)
    restored = restore(store, account=LOCAL_ACCOUNT, region=region)
    store.recording = True
    ready_event.set()
    log.info("emulator ready on %s in %.2f s; restored %s", endpoint,
             time.monotonic() - started, restored)
    ready = {"pid": os.getpid(), "endpoint_url": endpoint, "region": region,
             "resources": asdict(resources), "restored": restored, "time": time.time(),
             "code": code}
    tmp = state_dir / (EMULATOR_FILE + ".tmp")
    tmp.write_text(json.dumps(ready))
    os.replace(tmp, state_dir / EMULATOR_FILE)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()


def _gate(app: Any, ready: threading.Event) -> Any:
    marker = f"Credential={PROVISIONING_KEY}/"

    def gated(environ: dict[str, Any], start_response: Any) -> Any:
        if not ready.is_set() and marker not in environ.get("HTTP_AUTHORIZATION", "") \
                and not environ.get("PATH_INFO", "").startswith("/moto-api"):
            ready.wait(GATE_WAIT_S)
        return app(environ, start_response)

    return gated


def _keep_rollbacks(env: Any, history: Path) -> None:
    """`rollback --function` moves the `live` alias; remember where, for the next start."""
    from moto.awslambda.models import LambdaBackend

    from collections_ops.localcloud.provision import record_live_version
    from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS

    keys = {fn.function_name(env.name): fn.key for fn in FUNCTIONS}
    update_alias = LambdaBackend.update_alias

    def hook(self: Any, name: str, function_name: str, function_version: str,
             *args: Any, **kwargs: Any) -> Any:
        alias = update_alias(self, name, function_name, function_version, *args, **kwargs)
        short = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") \
            else function_name
        if name == LIVE_ALIAS and short in keys:
            record_live_version(history, keys[short], str(alias.function_version))
        return alias

    LambdaBackend.update_alias = hook  # type: ignore[method-assign]


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s emulator: %(message)s")
    logging.getLogger().handlers[0].addFilter(
        lambda record: record.name.startswith("collections.localcloud"))
    run(Path(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
