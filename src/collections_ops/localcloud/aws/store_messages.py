"""SQS messages kept as SQS keeps them, and an upload's notifications held back until its
object is kept.

moto keeps queued messages in memory only; these hooks write each one to the store when it
is sent (S3 notifications and EventBridge deliveries, which moto makes in-process, too) and
remove it when it is deleted or purged. A message sent while a request is inside
`held_messages` (an S3 write, see `store_objects`) reaches neither its queue nor the disk
until `HeldMessages.keep`: S3 never announces an object it has not kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from collections_ops.localcloud.aws.store import Store

_held = threading.local()  # this thread's messages waiting for their object (held_messages)
_originals: dict[str, Callable[..., Any]] = {}


class HeldMessages:
    """The messages one request sent while its object was not yet kept: in no queue yet
    (no consumer can see them), and on no disk."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any, dict[str, Any]]] = []  # what keep writes
        self.deferred: list[tuple[Any, Any]] = []  # (queue, message) keep adds to moto

    def keep(self, store: Store) -> None:
        """The object is kept: write the messages, then queue them. If one cannot be
        written, none is kept or queued, and the error is raised (the upload is refused)."""
        with store.lock:
            written: list[tuple[str, str]] = []
            try:
                for queue_name, message, record in self.records:
                    store.put_message(queue_name, message.id, record)
                    written.append((queue_name, message.id))
            except BaseException:
                for queue_name, message_id in written:
                    with contextlib.suppress(OSError):
                        store.delete_message(queue_name, message_id)
                raise
            add = _originals["add_message"]
            for queue, message in self.deferred:
                add(queue, message)
            self.records, self.deferred = [], []

    def drop(self) -> None:
        """The object was not kept (the upload is refused): its messages go too."""
        self.records, self.deferred = [], []


@contextlib.contextmanager
def held_messages() -> Iterator[HeldMessages]:
    """Messages sent by this thread inside the block reach their queues (and the store)
    only through `keep`, after the object they announce is kept; `drop` forgets them."""
    held = HeldMessages()
    _held.current = held
    try:
        yield held
    finally:
        _held.current = None


def install(store: Store) -> None:
    """Make moto's SQS backend write through to `store`, and hold the messages a request
    sends inside `held_messages`."""
    from moto.sqs.models import Queue, SQSBackend

    send = SQSBackend.send_message

    def send_message(self: Any, queue_name: str, message_body: str,
                     *args: Any, **kwargs: Any) -> Any:
        with store.lock:  # a delete cannot slip between moto's add and the file
            message = send(self, queue_name, message_body, *args, **kwargs)
            if store.recording:
                record = {"body": message.body, "attributes": message.message_attributes,
                          "group_id": message.group_id,
                          "deduplication_id": message.deduplication_id, "sent": time.time()}
                held: HeldMessages | None = getattr(_held, "current", None)
                if held is not None:
                    held.records.append((queue_name, message, record))
                else:
                    store.put_message(queue_name, message.id, record)
        return message

    add_message = Queue.add_message

    def add_message_hook(self: Any, message: Any) -> None:
        held: HeldMessages | None = getattr(_held, "current", None)
        if held is not None:
            held.deferred.append((self, message))
            return
        add_message(self, message)

    queue_delete = Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with store.lock:
            ids = [m.id for m in self._messages if m.had_receipt_handle(receipt_handle)]
            queue_delete(self, receipt_handle)
            for message_id in ids:
                store.delete_message(self.name, message_id)

    purge = SQSBackend.purge_queue

    def purge_queue(self: Any, queue_name: str) -> None:
        with store.lock:
            purge(self, queue_name)
            store.purge_queue(queue_name)

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    Queue.add_message = add_message_hook  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.purge_queue = purge_queue  # type: ignore[method-assign]
    _originals.update(send_message=send, add_message=add_message)


def restore(store: Store, *, account: str, region: str) -> int:
    """Send the kept messages again into a freshly provisioned moto, each kept under its new
    id; those of a queue that no longer exists are dropped. Returns how many."""
    from moto.sqs.models import sqs_backends

    restored = 0
    sqs = sqs_backends[account][region]
    send = _originals["send_message"]
    for queue, old_id, record in list(store.messages()):
        if queue not in sqs.queues:
            store.delete_message(queue, old_id)
            continue
        with store.lock:
            message = send(sqs, queue, record["body"],
                           message_attributes=record.get("attributes") or None,
                           group_id=record.get("group_id"),
                           deduplication_id=record.get("deduplication_id"))
            store.put_message(queue, message.id, record)
            store.delete_message(queue, old_id)
        restored += 1
    return restored
