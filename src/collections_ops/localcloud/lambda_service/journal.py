"""The messages a dispatcher process holds, written down for the process that replaces it.

Its own module because it is the dispatcher's crash contract, tested on its own
(`tests/reliability/test_dispatcher_journal.py`): what a successor hands back, and how, decides
whether a `kill -9` costs an event its retry delay, an early redelivery, or nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("collections.localcloud")

HELD, RUNNING, FINISHED = "held", "running", "finished"
JOURNAL_FLUSH_S = 0.1


class Journal:
    """The messages a dispatcher process holds, on disk, for the process that replaces it.

    A message a dispatcher has received stays invisible in its queue for the function's
    timeout. When the process dies (`kill -9`, a freeze the supervisor ends), Lambda would
    not wait that long: an event whose sandbox died is a function error, retried after the
    first retry delay, and an event no sandbox had started is handed to another at once. So
    each process writes what it holds -- at once when it receives messages, and every
    JOURNAL_FLUSH_S while their states change (a crash within that window costs a running
    event its retry delay, or an early redelivery) -- and its successor, before it polls,
    hands each message
    back (`recover`): one not started, visible now; one running, visible after the retry
    delay (the crash counts as its attempt); one finished but not yet deleted, deleted.
    """

    def __init__(self, path: Any) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, str]] = {}  # receipt handle -> (function, state)
        self._dirty = False
        self._write = threading.Lock()  # one writer of the file at a time

    def mark(self, handle: str, function_key: str, state: str) -> None:
        with self._lock:
            self._entries[handle] = (function_key, state)
            self._dirty = True

    def drop(self, handle: str) -> None:
        with self._lock:
            if self._entries.pop(handle, None) is not None:
                self._dirty = True

    def flush(self) -> None:
        with self._write:
            with self._lock:
                if not self._dirty:
                    return
                text, self._dirty = json.dumps(self._entries), False
            tmp = self._path.with_suffix(".tmp")
            try:
                tmp.write_text(text)
                os.replace(tmp, self._path)
            except OSError as exc:  # a full disk: the messages still reappear, only later
                log.warning("cannot write %s: %s", self._path.name, exc)
                with self._lock:
                    self._dirty = True

    @staticmethod
    def recover(path: Any, sqs: Any, queue_urls: Mapping[str, str],
                retry_delay_s: int) -> dict[str, int]:
        """Hand back what a dead predecessor held (see the class); the counts by state."""
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        counts = dict.fromkeys((HELD, RUNNING, FINISHED), 0)
        for handle, (key, state) in entries.items():
            url = queue_urls.get(key)
            if url is None or state not in counts:
                continue
            try:
                if state == FINISHED:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
                else:
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=handle,
                        VisibilityTimeout=0 if state == HELD else retry_delay_s)
            except Exception as exc:  # gone already, or the emulator restarted: all visible
                log.debug("not handing back a %s message of %s: %s", state, key, exc)
                continue
            counts[state] += 1
        with contextlib.suppress(OSError):
            path.unlink()
        return counts
