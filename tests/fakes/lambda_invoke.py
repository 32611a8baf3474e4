"""A stand-in for Lambda's Invoke API on 127.0.0.1 that runs the pipeline's handlers in this
process, as the local cloud does (moto can invoke a function only through Docker).

It speaks the wire format boto3 uses -- `POST /2015-03-31/functions/{name}/invocations`, the
payload as the body, the handler's JSON result as the response, `X-Amz-Function-Error` when it
raised -- so the CLI's real Lambda client reaches it through `AWS_ENDPOINT_URL_LAMBDA`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from collections_ops.pipeline import DEPLOYED_FUNCTIONS, Environment

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"


class FakeLambda:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self.calls: list[tuple[str, Any]] = []  # (function name, payload)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeLambda:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
                    return self._send(404, {"Type": "User", "message": "unknown route"})
                name = unquote(path[len(PREFIX):-len(SUFFIX)]).split(":")[0]
                fn = next((f for f in DEPLOYED_FUNCTIONS
                           if f.function_name(fake.env.name) == name), None)
                if fn is None:
                    return self._send(404, {"Type": "User", "message": f"Function not found: "
                                            f"{name}"}, error="ResourceNotFoundException")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = json.loads(body or b"{}")
                fake.calls.append((name, payload))
                from collections_core import state
                from collections_ops.localcloud import lambda_runtime

                state.reset()  # a cold container per call: nothing cached between them
                result = lambda_runtime.invoke(fn, fake.env, payload)
                if result.ok:
                    return self._send(200, result.result)
                return self._send(200, {"errorMessage": result.error_message,
                                        "errorType": result.error_type},
                                  function_error="Unhandled")

            def _send(self, code: int, body: Any, *, error: str | None = None,
                      function_error: str | None = None) -> None:
                data = json.dumps(body).encode()
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
