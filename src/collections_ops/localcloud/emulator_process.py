"""The AWS emulator part of the local cloud, in a process of its own:
`python -m collections_ops.localcloud.emulator_process STATE_DIR PORT`.

Its start-up joins three rooms, which is why it is in none of them: moto's server with the
durable store and IAM (`aws.emulator`), Lambda's rules for versions and the `live` alias
(`lambda_service.lambda_versions`, `lambda_service.watch`), and the pipeline's resources
provisioned from the definition (`provision`); then the kept data is restored and every
caller let in. Writes `emulator.json` when it answers. The supervisor (`daemon`) restarts it
when it dies; a restart loses nothing that was acknowledged.
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

from collections_ops.localcloud.state import StateDir, local_environment
from collections_ops.pipeline import LOCAL_ACCOUNT

log = logging.getLogger("collections.localcloud")


def run(state_dir: Path, port: int) -> None:
    env = local_environment()
    region = os.environ.get("AWS_DEFAULT_REGION") or env.region
    os.environ["AWS_DEFAULT_REGION"] = region
    started = time.monotonic()
    files = StateDir(state_dir)
    files.emulator.unlink(missing_ok=True)

    from collections_ops.localcloud.aws import emulator, iam
    from collections_ops.localcloud.aws.write_through import restore
    from collections_ops.localcloud.lambda_service import lambda_versions

    lambda_versions.install()  # version numbers never reused, as on AWS
    aws = emulator.start(state_dir, port, region=region)
    os.environ["AWS_ENDPOINT_URL"] = aws.endpoint

    import boto3

    from collections_ops.localcloud.lambda_service.watch import follow_live
    from collections_ops.localcloud.provision import code_fingerprint, provision

    session = boto3.session.Session(aws_access_key_id=emulator.PROVISIONING_KEY,
                                    aws_secret_access_key=aws.provisioning_secret,
                                    region_name=region)
    code = code_fingerprint()  # before provisioning reads the code: a later edit reloads again
    follow_live(env, state_dir, code=code)  # `live` decides what the dispatchers run
    aws.store.recording = False
    resources = provision(session, env, account=LOCAL_ACCOUNT, database_url=None,
                          history_dir=files.lambda_history)
    iam.issue_sessions(aws.credentials, env, account=LOCAL_ACCOUNT, region=region)
    restored = restore(aws.store, account=LOCAL_ACCOUNT, region=region)
    aws.store.recording = True
    aws.open()
    log.info("emulator ready on %s in %.2f s; restored %s", aws.endpoint,
             time.monotonic() - started, restored)
    ready = {"pid": os.getpid(), "endpoint_url": aws.endpoint, "region": region,
             "resources": asdict(resources), "restored": restored, "time": time.time(),
             "code": code}
    tmp = files.emulator.with_name(files.emulator.name + ".tmp")
    tmp.write_text(json.dumps(ready))
    os.replace(tmp, files.emulator)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    aws.server.shutdown()


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s emulator: %(message)s")
    logging.getLogger().handlers[0].addFilter(
        lambda record: record.name.startswith("collections.localcloud"))
    run(Path(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
