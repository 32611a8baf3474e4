"""A dispatcher process that dies holds messages its queue keeps invisible for the function's
timeout. Its successor hands them back from the journal, as Lambda treats an event whose
sandbox died: not started -> delivered again now; running -> again after the first retry
delay (the crash was its attempt); finished but not yet deleted -> deleted. Against moto's
real SQS, with the queues the local cloud provisions (visibility = the function's timeout).
"""

from __future__ import annotations

import json
from typing import Any

from collections_ops.localcloud.lambda_service.journal import FINISHED, HELD, RUNNING, Journal


def _receive(sqs: Any, url: str, wait: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                  MessageSystemAttributeNames=["ApproximateReceiveCount"]
                                  ).get("Messages", [])
        if not got:
            return out
        out += got
        wait = 0


def test_what_a_dead_dispatcher_held_is_handed_back_by_its_successor(pipeline, tmp_path):
    sqs = pipeline.client("sqs")
    url = pipeline.queue_urls["analyzer"]
    for state in (HELD, RUNNING, FINISHED):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"was": state}))
    held = _receive(sqs, url, wait=1)
    assert len(held) == 3
    assert _receive(sqs, url) == [], "received: invisible for the function's timeout"

    path = tmp_path / "dispatcher-0.journal.json"
    journal = Journal(path)  # what the dead process had written
    for message in held:
        journal.mark(message["ReceiptHandle"], "analyzer", json.loads(message["Body"])["was"])
    journal.flush()

    counts = Journal.recover(path, sqs, pipeline.queue_urls, retry_delay_s=2)

    assert counts == {HELD: 1, RUNNING: 1, FINISHED: 1}
    assert not path.exists(), "handed back once"
    now = _receive(sqs, url)
    assert [json.loads(m["Body"]) for m in now] == [{"was": HELD}], "not started: at once"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=now[0]["ReceiptHandle"])
    later = _receive(sqs, url, wait=5)
    assert [json.loads(m["Body"]) for m in later] == [{"was": RUNNING}], "after the delay"
    assert later[0]["Attributes"]["ApproximateReceiveCount"] == "2", "the crash was attempt 1"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=later[0]["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert attrs == {"ApproximateNumberOfMessages": "0",
                     "ApproximateNumberOfMessagesNotVisible": "0"}, "the finished one is gone"


def test_a_journal_without_a_predecessor_or_unreadable_hands_back_nothing(pipeline, tmp_path):
    sqs = pipeline.client("sqs")
    assert Journal.recover(tmp_path / "none.json", sqs, pipeline.queue_urls, 2) == {}
    torn = tmp_path / "torn.json"
    torn.write_text('{"abc": ["analyzer", "hel')
    assert Journal.recover(torn, sqs, pipeline.queue_urls, 2) == {}


def test_a_running_dispatcher_keeps_its_journal_to_what_it_holds(pipeline, db, tmp_path,
                                                                 monkeypatch):
    """Through retries, a dead letter and completions, the journal on disk ends naming nothing:
    every message it named was deleted or handed back to its queue by the dispatcher itself."""
    import time

    from collections_ops.localcloud.lambda_service.dispatcher import Dispatcher
    from collections_ops.localcloud.lambda_service.retry_policy import DispatchPolicy
    from tests import images

    path = tmp_path / "dispatcher-0.journal.json"
    monkeypatch.setenv("THUMBNAIL_SIZE", "big")  # the processor raises: retried, then parked
    dispatcher = Dispatcher(pipeline.session, pipeline.env, pipeline.queue_urls,
                            pipeline.dlq_urls, DispatchPolicy(workers_per_function=2,
                                                              max_retries=1,
                                                              retry_delays_s=(0,)),
                            journal=Journal(path))
    dispatcher.start()
    try:
        pipeline.upload("user123/fails.jpg", images.photo(seed=1))
        deadline = time.monotonic() + 60
        while not pipeline.receive("processor", dlq=True, wait=0):
            assert time.monotonic() < deadline, "the failing upload was never parked"
            time.sleep(0.1)
        monkeypatch.setenv("THUMBNAIL_SIZE", "512")
        for n in range(3):
            pipeline.upload(f"user123/ok {n}.jpg", images.photo(seed=10 + n))
        while db.execute("SELECT count(*) FROM embeddings WHERE user_id = 'user123'"
                         ).fetchone()[0] < 3:
            assert time.monotonic() < deadline + 60, "the good uploads never completed"
            time.sleep(0.1)
    finally:
        dispatcher.stop()
    assert dispatcher.invocations >= 2 + 3 * 3
    assert json.loads(path.read_text()) == {}, "nothing held after a clean stop"
