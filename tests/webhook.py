"""A real HTTP server on 127.0.0.1 that keeps what Apprise's json:// posts to it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    def __init__(self, status: int = 200):
        self.messages: list[dict] = []
        self.status = status
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                owner.messages.append(json.loads(self.rfile.read(min(length, 1 << 20))))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass  # keep the test output to what failed

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/"

    def write_config(self, path) -> str:
        """An Apprise configuration file (its text format: one URL a line), mode 0600."""
        path.write_text(f"{self.url}\n")
        path.chmod(0o600)
        return str(path)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} messages: {self.messages}"
        return self.messages

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
