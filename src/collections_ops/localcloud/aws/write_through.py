"""moto's backends written through to the durable store, and the store read back into moto:
the two calls the emulator makes (`install` before it serves, `restore` after the resources
are provisioned). What is kept and why is said in `store`; each service's hooks live in
`store_objects` (S3), `store_messages` (SQS) and `store_ssm_logs` (SSM, CloudWatch Logs).
"""

from __future__ import annotations

from collections_ops.localcloud.aws import store_messages, store_objects, store_ssm_logs
from collections_ops.localcloud.aws.store import Store

_installed: Store | None = None


def install(store: Store) -> None:
    """Make moto's S3, SQS, SSM and Logs backends write through to `store`. Call once, in
    the emulator's process, before it serves requests; the hooks of a second call would
    wrap the first's, so it does nothing."""
    global _installed
    if _installed is not None:
        return
    _installed = store
    store_messages.install(store)
    store_objects.install_notifications()
    store_ssm_logs.install(store)


def restore(store: Store, *, account: str, region: str) -> dict[str, int]:
    """Put the kept data back into a freshly provisioned moto. Restored writes are not
    written again, and restored objects send no S3 notification (they were sent once)."""
    objects = store_objects.restore(store, account=account)
    messages = store_messages.restore(store, account=account, region=region)
    parameters, log_events = store_ssm_logs.restore(store, account=account, region=region)
    return {"objects": objects, "messages": messages, "parameters": parameters,
            "log_events": log_events}
