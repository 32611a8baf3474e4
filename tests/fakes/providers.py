"""A fake of the model providers' HTTP APIs, for driving the real SDKs in tests.

One threaded HTTP server on 127.0.0.1 (port 0) serves three routes, each speaking its
provider's wire format:

- ``POST /v1/messages``          Anthropic Messages API: a ``message`` whose content is one
  ``tool_use`` block (the analysis is its ``input``), ``stop_reason: "tool_use"``, ``usage``.
  Errors are ``{"type": "error", "error": {"type": ..., "message": ...}}``.
- ``POST /v1/embeddings``        Voyage AI embeddings: ``{"object": "list", "data": [...],
  "model", "usage": {"total_tokens"}}``. The voyageai SDK sends ``encoding_format: "base64"``
  unless told otherwise and then decodes each embedding as base64 little-endian float32, so
  that is what this fake returns when asked. Errors are ``{"detail": ...}`` (the SDK maps
  400/401/422/429 by status only when the body has ``detail``).
- ``POST /v1/chat/completions``  OpenAI chat completions: the analysis as the JSON text of the
  assistant message. Errors are ``{"error": {"message", "type", "param", "code"}}``.

Every success carries the token usage where the real API puts it, counted from the request the
way the provider counts (to within a rounding): Anthropic ``usage.input_tokens`` /
``usage.output_tokens`` (an image costs about width x height / 750 tokens), OpenAI
``usage.prompt_tokens`` / ``usage.completion_tokens`` / ``usage.total_tokens`` (85 tokens plus
170 per 512-pixel tile of the scaled image), Voyage ``usage.total_tokens``. ``ok(usage=...)``
scripts other figures (a reply's ``usage`` object, as is). Each recorded request keeps the body
it was answered with (``Recorded.answered``), so a test can compare what was stored with what
the provider reported.

Both ``x-api-key`` (Anthropic) and ``Authorization: Bearer`` (Voyage, OpenAI) are accepted and
recorded. If the server is given ``api_key=``, any other key gets a 401 in the route's format.

Each route has a queue of scripted replies; when it is empty the route answers with a valid
success. Replies are built with the helpers below::

    with FakeProviders(api_key="k") as fake:
        fake.messages.script(rate_limited(retry_after=0.2), ok())
        ...  # point the SDK at fake.anthropic_base_url
        assert len(fake.messages.requests) == 2
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import random
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC_PATH = "/v1/messages"
VOYAGE_PATH = "/v1/embeddings"
OPENAI_PATH = "/v1/chat/completions"

VALID_ANALYSIS: dict[str, Any] = {
    "category": "photo",
    "summary": "A red kayak on a calm lake at sunrise.",
    "description": "A single red kayak floats on still water; mist and pine trees behind.",
    "tags": ["kayak", "lake", "sunrise", "mist"],
    "colors": ["red", "blue", "orange"],
    "text_content": None,
    "confidence": 0.92,
}

# Violates ANALYSIS_SCHEMA three ways: unknown category, confidence > 1, extra field.
INVALID_ANALYSIS: dict[str, Any] = {
    **VALID_ANALYSIS,
    "category": "selfie",
    "confidence": 7,
    "mood": "happy",
}


# --------------------------------------------------------------------------- scripted replies


@dataclass
class Reply:
    """One scripted answer. Unset bodies are rendered in the route's own wire format."""

    status: int = 200
    retry_after: str | None = None  # value of the retry-after header, if any
    message: str | None = None  # error message for an error body
    output: Any = None  # success payload: the analysis (vision) or the vectors (embeddings)
    stop_reason: str | None = None  # anthropic stop_reason / openai finish_reason override
    json_body: Any = None  # explicit JSON body, used as is
    raw_body: bytes | None = None  # explicit raw body, used as is
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0  # wait this long before answering (longer than the client timeout)
    gate: threading.Event | None = None  # answer only once this is set (a test holds a call)
    usage: Any = None  # the reply's `usage` object, replacing the one counted from the request


def ok(output: Any = None, **kw: Any) -> Reply:
    """A success. `output` is what the model "returns": the analysis for the vision routes
    (default VALID_ANALYSIS), the list of vectors for embeddings (default: one per input)."""
    return Reply(output=output, **kw)


def status(code: int, *, retry_after: float | str | None = None,
           message: str | None = None) -> Reply:
    return Reply(status=code, message=message,
                 retry_after=None if retry_after is None else str(retry_after))


def rate_limited(retry_after: float | str | None = None) -> Reply:
    return status(429, retry_after=retry_after)


def overloaded() -> Reply:
    return status(529)


def server_error() -> Reply:
    return status(500)


def unauthorized() -> Reply:
    return status(401)


def bad_request(message: str = "invalid request") -> Reply:
    return status(400, message=message)


def hang(seconds: float = 30.0) -> Reply:
    """Accept the request and say nothing for `seconds` (the server's stop() cuts it short)."""
    return Reply(hang_s=seconds)


def not_json(content_type: str = "application/json") -> Reply:
    """A 200 whose body is not JSON -- e.g. a proxy's HTML page or a truncated body."""
    return Reply(raw_body=b"<html><body>502 Bad Gateway (upstream reset)</body></html>",
                 content_type=content_type)


def invalid_analysis() -> Reply:
    """A 200 whose structured output violates ANALYSIS_SCHEMA."""
    return ok(INVALID_ANALYSIS)


# --------------------------------------------------------------------------- recorded requests


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    body: Any  # parsed JSON, or None if the body was not JSON
    at: float  # time.monotonic() when the request arrived
    answered: Any = None  # the JSON body it was answered with (None: not JSON, or unanswered)

    @property
    def api_key(self) -> str | None:
        """The key from `x-api-key` or from `Authorization: Bearer ...`."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @property
    def auth_scheme(self) -> str | None:
        if "x-api-key" in self.headers:
            return "x-api-key"
        if self.headers.get("authorization", "").lower().startswith("bearer "):
            return "bearer"
        return None


# --------------------------------------------------------------------------- routes


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for `text` (same text, same vector)."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vec = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def text_tokens(text: str) -> int:
    """About four characters a token, as the providers' tokenizers average on English."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _image_size(data: str) -> tuple[int, int]:
    """Width and height of a base64 image (data-URL prefix allowed); (0, 0) if unreadable."""
    import io

    from PIL import Image

    try:
        raw = base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data)
        with Image.open(io.BytesIO(raw)) as image:
            return image.size
    except Exception:
        return 0, 0


def _content_parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, dict))
    return parts


# Anthropic's system prompt for tool use with tool_choice "tool" (Claude 4 models), in tokens.
ANTHROPIC_TOOL_OVERHEAD = 313


def anthropic_input_tokens(request: dict[str, Any]) -> int:
    """Messages API input tokens: text, images at width x height / 750, tool definitions."""
    total = ANTHROPIC_TOOL_OVERHEAD if request.get("tools") else 0
    total += text_tokens(json.dumps(request["tools"])) if request.get("tools") else 0
    for part in _content_parts(request):
        if part.get("type") == "text":
            total += text_tokens(str(part.get("text", "")))
        elif part.get("type") == "image":
            width, height = _image_size(str((part.get("source") or {}).get("data", "")))
            total += math.ceil(width * height / 750)
    return total


def openai_image_tokens(width: int, height: int) -> int:
    """High-detail image tokens: fit in 2048 x 2048, shortest side to 768, 170 per 512 tile."""
    if not width or not height:
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def openai_prompt_tokens(request: dict[str, Any]) -> int:
    total = 0
    for part in _content_parts(request):
        if part.get("type") == "text":
            total += text_tokens(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            total += openai_image_tokens(*_image_size(url))
    schema = (request.get("response_format") or {}).get("json_schema")
    return total + (text_tokens(json.dumps(schema)) if schema else 0)


class Route:
    """A provider endpoint: a queue of scripted replies plus every request it received."""

    error_types: dict[int, str] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._ids = itertools.count(1)

    # -- scripting
    def script(self, *replies: Reply) -> Route:
        """Answer the next requests with `replies`, in order; then fall back to success."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def last(self) -> Recorded:
        with self._lock:
            if not self.requests:
                raise AssertionError(f"no request reached {self.path}")
            return self.requests[-1]

    def _take(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self._queue.popleft() if self._queue else Reply()

    # -- rendering
    def render(self, reply: Reply, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": reply.content_type, **reply.headers}
        headers.setdefault("request-id", f"req_fake_{next(self._ids)}")
        if reply.retry_after is not None:
            headers["retry-after"] = reply.retry_after
        if reply.raw_body is not None:
            return reply.status, headers, reply.raw_body
        if reply.json_body is not None:
            body = reply.json_body
        elif reply.status >= 400:
            body = self.error_body(reply.status, reply.message or self.default_message(reply))
        else:
            body = self.success_body(reply, request.body if isinstance(request.body, dict) else {})
            if reply.usage is not None:
                body["usage"] = reply.usage
        request.answered = body
        return reply.status, headers, json.dumps(body).encode()

    def default_message(self, reply: Reply) -> str:
        return {401: "invalid x-api-key", 429: "rate limited", 529: "Overloaded",
                500: "internal server error"}.get(reply.status, f"fake error {reply.status}")

    def error_body(self, code: int, message: str) -> Any:
        raise NotImplementedError

    def success_body(self, reply: Reply, request: dict[str, Any]) -> Any:
        raise NotImplementedError


class AnthropicMessages(Route):
    error_types = {400: "invalid_request_error", 401: "authentication_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}

    def error_body(self, code: int, message: str) -> Any:
        return {"type": "error",
                "error": {"type": self.error_types.get(code, "api_error"), "message": message}}

    def success_body(self, reply: Reply, request: dict[str, Any]) -> Any:
        tool_choice = request.get("tool_choice") or {}
        tools = request.get("tools") or [{}]
        name = tool_choice.get("name") or tools[0].get("name") or "record_analysis"
        n = len(self.requests)
        tool_input = VALID_ANALYSIS if reply.output is None else reply.output
        return {
            "id": f"msg_fake_{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "claude-fake"),
            "content": [{
                "type": "tool_use", "id": f"toolu_fake_{n:04d}", "name": name,
                "input": tool_input,
            }],
            "stop_reason": reply.stop_reason or "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": anthropic_input_tokens(request),
                      "output_tokens": text_tokens(json.dumps(tool_input)) + 20,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "service_tier": "standard"},
        }


class VoyageEmbeddings(Route):
    def __init__(self, path: str, dimensions: int = 1024) -> None:
        super().__init__(path)
        self.dimensions = dimensions

    def default_message(self, reply: Reply) -> str:
        if reply.status == 401:
            return "Provided API key is invalid."
        return super().default_message(reply)

    def error_body(self, code: int, message: str) -> Any:
        return {"detail": message}

    def success_body(self, reply: Reply, request: dict[str, Any]) -> Any:
        texts = request.get("input") or []
        if isinstance(texts, str):
            texts = [texts]
        dims = int(request.get("output_dimension") or self.dimensions)
        vectors = (reply.output if reply.output is not None
                   else [fake_embedding(t, dims) for t in texts])
        data = []
        for i, vec in enumerate(vectors):
            emb: Any = vec
            if request.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "embedding": emb, "index": i})
        tokens = sum(text_tokens(str(t)) for t in texts)
        return {"object": "list", "data": data, "model": request.get("model", "voyage-fake"),
                "usage": {"total_tokens": tokens}}


class OpenAIChat(Route):
    error_types = {400: "invalid_request_error", 401: "invalid_request_error",
                   429: "rate_limit_exceeded", 500: "server_error"}

    def error_body(self, code: int, message: str) -> Any:
        return {"error": {"message": message, "type": self.error_types.get(code, "api_error"),
                          "param": None, "code": None}}

    def success_body(self, reply: Reply, request: dict[str, Any]) -> Any:
        content = reply.output if reply.output is not None else VALID_ANALYSIS
        text = content if isinstance(content, str) else json.dumps(content)
        n = len(self.requests)
        return {
            "id": f"chatcmpl-fake{n:04d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "gpt-fake"),
            "choices": [{"index": 0, "finish_reason": reply.stop_reason or "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": {"prompt_tokens": (prompt := openai_prompt_tokens(request)),
                      "completion_tokens": (completion := text_tokens(text)),
                      "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
        }


# --------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        recorded = Recorded(method=self.command, path=path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            raw=raw, body=body, at=time.monotonic())
        fake = self.server.fake
        route = fake.routes.get(path)
        if route is None or self.command != "POST":
            fake.unrouted.append(recorded)
            self._send(404, {"content-type": "application/json"},
                       json.dumps({"error": f"no fake route {self.command} {path}"}).encode())
            return
        reply = route._take(recorded)
        if fake.api_key is not None and recorded.api_key != fake.api_key and reply.status < 400:
            reply = unauthorized()
        if reply.hang_s > 0:
            fake._stopping.wait(reply.hang_s)
        if reply.gate is not None:  # held until the test opens it; never past 30 s or stop()
            deadline = time.monotonic() + 30
            while not reply.gate.wait(0.05) and not fake._stopping.is_set() \
                    and time.monotonic() < deadline:
                pass
        code, headers, payload = route.render(reply, recorded)
        self._send(code, headers, payload)

    def _send(self, code: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) and closed the socket
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeProviders

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet
        pass


class FakeProviders:
    """The fake server. Use as a context manager (or call start()/stop())."""

    def __init__(self, *, api_key: str | None = None, dimensions: int = 1024) -> None:
        self.api_key = api_key
        self.messages = AnthropicMessages(ANTHROPIC_PATH)
        self.embeddings = VoyageEmbeddings(VOYAGE_PATH, dimensions=dimensions)
        self.chat = OpenAIChat(OPENAI_PATH)
        self.routes: dict[str, Route] = {
            r.path: r for r in (self.messages, self.embeddings, self.chat)}
        self.unrouted: list[Recorded] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> FakeProviders:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-providers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # release hung handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def anthropic_base_url(self) -> str:
        """For `anthropic.Anthropic(base_url=...)`: the SDK appends /v1/messages."""
        return self.url

    @property
    def openai_base_url(self) -> str:
        """For `openai.OpenAI(base_url=...)`: the SDK appends /chat/completions."""
        return self.url + "/v1"

    @property
    def voyage_base_url(self) -> str:
        """For `voyageai.Client(base_url=...)` / VOYAGE_BASE_URL: the SDK appends /embeddings."""
        return self.url + "/v1"

    def all_requests(self) -> list[Recorded]:
        return sorted([r for route in self.routes.values() for r in route.requests]
                      + self.unrouted, key=lambda r: r.at)



def point_pipeline_at(fake: FakeProviders, monkeypatch: Any) -> None:
    """Select the real providers (anthropic, voyage) and aim their SDKs at `fake`."""
    monkeypatch.setenv("ANALYZER_PROVIDER", "anthropic")
    monkeypatch.setenv("ANALYZER_MODEL", "claude-sonnet-4-6")
    monkeypatch.setenv("EMBEDDING_PROVIDER", "voyage")
    monkeypatch.setenv("EMBEDDING_MODEL", "voyage-3.5")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.anthropic_base_url)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    monkeypatch.setenv("VOYAGE_BASE_URL", fake.voyage_base_url)
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "5")
