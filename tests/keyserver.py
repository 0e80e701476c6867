"""A real HTTP server on 127.0.0.1 publishing ``<user>.keys``, as GitHub does."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers import Key


class KeyServer:
    """Serves ``/<user>.keys`` from a directory and counts every request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server.requests.append(self.path)
                name = self.path.lstrip("/")
                target = server.root / name
                if "/" in name or not name.endswith(".keys") or not target.is_file():
                    self.send_error(404, "Not Found")
                    return
                body = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def publish(self, user: str, *keys: Key, extra: str = "") -> None:
        (self.root / f"{user}.keys").write_text("".join(k.public_line + "\n" for k in keys) + extra)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
