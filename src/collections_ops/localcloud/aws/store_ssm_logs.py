"""SSM parameters and CloudWatch Logs events kept as AWS keeps them: moto holds them in memory
only, so these hooks write each `PutParameter` (a SecureString sealed, see `Store`), delete
what `DeleteParameter(s)` deleted, and append each `PutLogEvents`; `restore` puts them back.
Log events older than CloudWatch's 14-day window are not restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from collections_ops.localcloud.aws.store import Store

_originals: dict[str, Callable[..., Any]] = {}
LOG_RETENTION_S = 14 * 86400


def install(store: Store) -> None:
    """Make moto's SSM and Logs backends write through to `store`."""
    from moto.logs.models import LogsBackend
    from moto.ssm.models import SimpleSystemManagerBackend

    put_parameter = SimpleSystemManagerBackend.put_parameter

    def put_parameter_hook(self: Any, name: str, description: str, value: str,
                           parameter_type: str, *args: Any, **kwargs: Any) -> Any:
        result = put_parameter(self, name, description, value, parameter_type, *args, **kwargs)
        if store.recording:
            store.put_parameter(name, {"name": name, "description": description,
                                       "value": value, "type": parameter_type})
        return result

    delete_parameter = SimpleSystemManagerBackend.delete_parameter

    def delete_parameter_hook(self: Any, name: str) -> None:
        delete_parameter(self, name)
        store.delete_parameter(name)

    delete_parameters = SimpleSystemManagerBackend.delete_parameters

    def delete_parameters_hook(self: Any, names: list[str]) -> list[str]:
        # moto answers the names it deleted (DeletedParameters); the rest did not exist
        deleted = delete_parameters(self, names)
        for name in deleted:
            store.delete_parameter(name)
        return deleted

    put_log_events = LogsBackend.put_log_events

    def put_log_events_hook(self: Any, log_group_name: str, log_stream_name: str,
                            log_events: list[dict[str, Any]]) -> Any:
        result = put_log_events(self, log_group_name, log_stream_name, log_events)
        if store.recording:
            store.append_log(log_group_name, log_stream_name, log_events)
        return result

    create_log_stream = LogsBackend.create_log_stream

    def create_log_stream_hook(self: Any, log_group_name: str, log_stream_name: str) -> None:
        create_log_stream(self, log_group_name, log_stream_name)
        if store.recording:
            store.append_log(log_group_name, log_stream_name, [])

    SimpleSystemManagerBackend.put_parameter = put_parameter_hook  # type: ignore[method-assign]
    SimpleSystemManagerBackend.delete_parameter = delete_parameter_hook  # type: ignore[method-assign]
    SimpleSystemManagerBackend.delete_parameters = delete_parameters_hook  # type: ignore[method-assign]
    LogsBackend.put_log_events = put_log_events_hook  # type: ignore[method-assign]
    LogsBackend.create_log_stream = create_log_stream_hook  # type: ignore[method-assign]
    _originals.update(put_parameter=put_parameter, put_log_events=put_log_events,
                      create_log_stream=create_log_stream)


def restore(store: Store, *, account: str, region: str) -> tuple[int, int]:
    """Put the kept parameters and log events back into a freshly provisioned moto (log
    events only of groups it has). Returns (parameters, log events)."""
    from moto.logs.models import logs_backends
    from moto.ssm.models import ssm_backends

    parameters = log_events = 0
    ssm = ssm_backends[account][region]
    put_parameter = _originals["put_parameter"]
    for record in store.parameters():
        put_parameter(ssm, record["name"], record.get("description") or "", record["value"],
                      record.get("type") or "String", None, None, True, [], "text", None, None)
        parameters += 1

    logs = logs_backends[account][region]
    put_log_events = _originals["put_log_events"]
    create_log_stream = _originals["create_log_stream"]
    oldest = (time.time() - LOG_RETENTION_S + 3600) * 1000
    for group, stream, events in store.log_batches():
        if group not in logs.groups:
            continue
        if stream not in logs.groups[group].streams:
            create_log_stream(logs, group, stream)
        kept = [e for e in events if e.get("timestamp", 0) >= oldest]
        if kept:
            put_log_events(logs, group, stream, kept)
            log_events += len(kept)
    return parameters, log_events
