"""A stand-in for DesterLib's Go scanner service (the newer layout's ``scanner-service``, port 8080).

Like the real one (../shared/DESTERLIB-FACTS.md) it has no authentication: ``POST /scan`` takes any
``root_path`` and walks it; ``GET /health`` answers 200. It runs in the lab's images (built by the
install's own ``apps/go-service/Dockerfile``, which the live lab writes), not in the test suite.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("SCANNER_PORT", "8080") or "8080")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] == "/health":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] != "/scan":
            self._send(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            root = str(json.loads(self.rfile.read(length) or b"{}").get("root_path") or "/media")
        except (ValueError, AttributeError):
            self._send(400, {"error": "invalid JSON"})
            return
        count = sum(len(files) for _dirs, _subdirs, files in os.walk(root))
        self._send(200, {"root_path": root, "files": count})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        print(f"{self.client_address[0]} {format % args}", flush=True)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"scanner stand-in listening on 0.0.0.0:{PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
