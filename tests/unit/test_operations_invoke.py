"""The CLI's invoke of the operations function: a migration is sent once, whatever the
client sees (a retry would start it again beside the first, still running); read-only
queries may be retried. The real boto3 Lambda client, against a Lambda endpoint on 127.0.0.1
that answers every invoke with a retryable 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError

from collections_ops.context import Context


class _Failing(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(json.loads(body)["action"])
        answer = json.dumps({"Type": "Service", "message": "try again"}).encode()
        self.send_response(500)
        self.send_header("x-amzn-ErrorType", "ServiceException")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def lambda_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[list[str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Failing.seen = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")  # the route's own retry settings must win
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    try:
        yield _Failing.seen
    finally:
        server.shutdown()


def test_a_migration_is_invoked_once_and_a_query_is_retried(lambda_endpoint: list[str]) -> None:
    route = Context("dev").operations_route()
    with pytest.raises(ClientError, match="ServiceException"):
        route.migrate()
    assert lambda_endpoint == ["migrate"]
    with pytest.raises(ClientError, match="ServiceException"):
        route.status()
    assert lambda_endpoint == ["migrate", "status", "status", "status"]
