"""LangSmith tracing of the analyzer through the real `langsmith` SDK, against a fake
LangSmith server on 127.0.0.1: runs recorded when the key exists, never the image or the key,
and an unreachable LangSmith never costs an analysis."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests import images

CANARY = "ls-canary-3e4f5a6b7c8d"


class FakeLangSmith(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            data = json.loads(body) if body else None
        except json.JSONDecodeError:
            data = None
        self.requests.append({"method": self.command, "path": self.path, "body": data,
                              "raw": body, "api_key": self.headers.get("x-api-key")})
        payload = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = _handle


@pytest.fixture
def langsmith(pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    FakeLangSmith.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLangSmith)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    pipeline.client("ssm").put_parameter(Name="/collections/LANGSMITH_API_KEY", Value=CANARY,
                                         Type="SecureString", Overwrite=True)
    yield FakeLangSmith.requests
    server.shutdown()


def test_the_analysis_is_traced_when_the_key_exists(pipeline, db, langsmith):
    results = pipeline.run_to_end("user123/traced.jpg", images.photo())
    assert results["analyzer"].result["status"] == "analyzed"

    posts = [r for r in langsmith if r["method"] == "POST" and r["path"] == "/runs"]
    patches = [r for r in langsmith if r["method"] == "PATCH" and r["path"].startswith("/runs/")]
    assert len(posts) == 1 and len(patches) == 1
    run = posts[0]["body"]
    assert run["name"] == "analyze-image" and run["run_type"] == "llm"
    assert run["inputs"]["item_id"] == "traced" and run["inputs"]["provider"] == "local"
    assert patches[0]["path"] == f"/runs/{run['id']}"
    category = db.execute("SELECT category FROM analyses WHERE item_id = 'traced'").fetchone()[0]
    assert patches[0]["body"]["outputs"]["category"] == category
    assert posts[0]["api_key"] == CANARY
    for request in langsmith:
        assert len(request["raw"]) < 4000, "no image data in a trace"
        assert CANARY.encode() not in request["raw"]
    logs = "\n".join(m for r in results.values() for _, m in r.log_events)
    assert CANARY not in logs


def test_an_unreachable_langsmith_does_not_cost_the_analysis(pipeline, db, langsmith,
                                                             monkeypatch):
    monkeypatch.setenv("LANGSMITH_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    results = pipeline.run_to_end("user123/untraced.jpg", images.photo())
    assert results["analyzer"].result["status"] == "analyzed"
    assert "tracing start failed" in "\n".join(m for _, m in results["analyzer"].log_events)


def test_no_key_means_no_tracing(pipeline, db, langsmith):
    pipeline.client("ssm").delete_parameter(Name="/collections/LANGSMITH_API_KEY")
    pipeline.run_to_end("user123/plain.jpg", images.photo())
    assert langsmith == []
