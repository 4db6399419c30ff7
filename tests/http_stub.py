"""The HTTP handling the scripted servers share (``fake_server``, ``vllm_like_server``, ``benchmarks/kd_scoring``):
a loopback server that takes many connections at once and stays quiet when a client gives up, and a handler that
reads and writes JSON. Test code only: not in the wheel."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 whose threads never keep the process alive."""

    # the listen backlog is set when the socket is bound, in the constructor: a class attribute, not an
    # assignment afterwards (the default of 5 drops SYNs when 64 clients connect at once: 1 s retransmits)
    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", port), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout in a test) is not an error worth a traceback."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class JSONHandler(BaseHTTPRequestHandler):
    """Keep-alive JSON over HTTP/1.1, no request log."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return

    def read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def send_json(self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
