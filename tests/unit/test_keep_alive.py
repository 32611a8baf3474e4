"""The local cloud's HTTP/1.1 keep-alive: each request on a connection ends where its
Content-Length says, whatever the application read of it, so the next request on the same
connection is parsed from its own first byte."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from collections_ops.localcloud.aws.emulator import _keep_alive_handler


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers without reading the body on /early (as a refusal does), reads it elsewhere."""
    path = environ["PATH_INFO"]
    body = b"refused" if path == "/early" else b"%s read %d" % (
        environ["REQUEST_METHOD"].encode()[-20:],
        len(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))))
    start_response("403 Forbidden" if path == "/early" else "200 OK",
                   [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def server() -> Iterator[int]:
    srv = make_server("127.0.0.1", 0, _app, threaded=True, request_handler=_keep_alive_handler())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_port
    srv.shutdown()


def _request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + body


def _response(conn: socket.socket, reader: Any) -> tuple[int, bytes]:
    status = reader.readline()
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", 0)))
    return int(status.split()[1]), body


@pytest.mark.parametrize("size", [100, 5_000, 300_000])
def test_an_unread_body_does_not_become_the_next_request(server: int, size: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as conn:
        reader = conn.makefile("rb")
        # A body the application never reads: in one write with its headers (as small
        # requests arrive), or larger than the server's read buffer.
        conn.sendall(_request("/early", b"x" * size))
        assert _response(conn, reader) == (403, b"refused")
        # The next request on the same connection, a while later (a pooled connection's next
        # call), is answered as itself.
        time.sleep(0.2)
        conn.sendall(_request("/read", b"y" * 10))
        assert _response(conn, reader) == (200, b"POST read 10")


def test_a_body_sent_after_an_early_answer_is_still_framed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as conn:
        reader = conn.makefile("rb")
        head, body = _request("/early", b"z" * 50_000).split(b"\r\n\r\n", 1)
        conn.sendall(head + b"\r\n\r\n" + body[:1000])  # the rest comes after the answer
        assert _response(conn, reader) == (403, b"refused")
        time.sleep(0.2)
        conn.sendall(body[1000:])
        time.sleep(0.2)
        conn.sendall(_request("/read", b"w" * 7))
        assert _response(conn, reader) == (200, b"POST read 7")


def test_an_unread_body_over_the_limit_closes_the_connection(
        server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections_ops.localcloud.aws import emulator

    monkeypatch.setattr(emulator, "MAX_DISCARDED_BODY", 1000)
    with socket.create_connection(("127.0.0.1", server), timeout=10) as conn:
        reader = conn.makefile("rb")
        conn.sendall(_request("/early", b"x" * 5000))
        assert _response(conn, reader) == (403, b"refused")
        assert reader.read() == b"", "the server closed the connection rather than read it"
