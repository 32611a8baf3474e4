"""A stand-in for Lambda's Invoke API on 127.0.0.1 that runs the pipeline's handlers in this
process, as the local cloud does (moto can invoke a function only through Docker).

It speaks the wire format boto3 uses -- `POST /2015-03-31/functions/{name}/invocations`, the
qualifier as `?Qualifier=` (or a `name:qualifier` suffix), the invocation type in
`X-Amz-Invocation-Type`, the payload as the body, the handler's JSON result as the response,
`X-Amz-Function-Error` when it raised -- so the CLI's real Lambda client reaches it through
`AWS_ENDPOINT_URL_LAMBDA`.

As Lambda does, a qualifier that names no version or alias of the function is
ResourceNotFoundException (404), and an asynchronous invoke (`Event`) is answered 202 with an
empty body once accepted. Lambda then runs it later, with its own retries; this stand-in only
records it (`invocations`), unless `run_events` is set, when it runs it in a thread after
answering. Every invoke is recorded with its qualifier and type.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from collections_ops.pipeline import DEPLOYED_FUNCTIONS, LIVE_ALIAS, Environment

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"


@dataclass(frozen=True)
class Invocation:
    function_name: str
    qualifier: str | None  # None: unqualified, i.e. $LATEST
    invocation_type: str  # RequestResponse | Event | DryRun
    payload: Any


class FakeLambda:
    def __init__(self, env: Environment, *, qualifiers: tuple[str, ...] = ("$LATEST", LIVE_ALIAS),
                 run_events: bool = False) -> None:
        self.env = env
        self.qualifiers = qualifiers  # the versions and aliases every function has
        self.run_events = run_events
        self.calls: list[tuple[str, Any]] = []  # (function name, payload), synchronous calls
        self.invocations: list[Invocation] = []  # every accepted invoke, in order
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeLambda:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
                    return self._send(404, {"Type": "User", "message": "unknown route"})
                name, _, suffix = unquote(path[len(PREFIX):-len(SUFFIX)]).partition(":")
                query = parse_qs(urlsplit(self.path).query).get("Qualifier")
                qualifier = query[0] if query else (suffix or None)
                fn = next((f for f in DEPLOYED_FUNCTIONS
                           if f.function_name(fake.env.name) == name), None)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fn is None or (qualifier is not None and qualifier not in fake.qualifiers):
                    shown = f"{name}:{qualifier}" if qualifier else name
                    return self._send(404, {"Type": "User", "message": f"Function not found: "
                                            f"{shown}"}, error="ResourceNotFoundException")
                kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
                payload = json.loads(body or b"{}")
                fake.invocations.append(Invocation(name, qualifier, kind, payload))
                if kind == "DryRun":
                    return self._send(204, None)
                if kind == "Event":
                    self._send(202, None)
                    if fake.run_events:
                        threading.Thread(target=fake._run, args=(fn, payload),
                                         daemon=True).start()
                    return None
                fake.calls.append((name, payload))
                result = fake._run(fn, payload)
                if result.ok:
                    return self._send(200, result.result)
                return self._send(200, {"errorMessage": result.error_message,
                                        "errorType": result.error_type},
                                  function_error="Unhandled")

            def _send(self, code: int, body: Any, *, error: str | None = None,
                      function_error: str | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Amz-Executed-Version", "1")
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                if function_error:
                    self.send_header("X-Amz-Function-Error", function_error)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="fake-lambda").start()
        return self

    def _run(self, fn: Any, payload: Any) -> Any:
        from collections_core import state
        from collections_ops.localcloud.lambda_service import lambda_runtime

        state.reset()  # a cold container per call: nothing cached between them
        return lambda_runtime.invoke(fn, self.env, payload)

    def of(self, function_name: str) -> list[Invocation]:
        return [i for i in self.invocations if i.function_name == function_name]

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
