"""A stand-in for DesterLib's Node API (image ``desterlib/api:latest`` in the live lab).

It behaves like DesterLib where dester-harden can see it (../shared/DESTERLIB-FACTS.md):

* at start it logs ``Database: <DATABASE_URL>`` (password included) to stdout and to
  ``$API_LOG_PATH/combined.log`` (default ``/app/logs``), then logs in to the database
  (PostgreSQL through psycopg2, Prisma's ``?schema=`` dropped; ``file:`` URLs with sqlite3)
  and exits 1 when that fails, as ``prisma db push`` makes the real one do;
* ``GET /health`` is always 200, even when the database is gone;
* ``GET /api/v1/health`` logs in afresh: 200, or 500 with the error;
* ``GET /api/v1/logs`` serves the last 500 lines of combined.log, ``DELETE`` clears it;
* ``GET /api/v1/settings`` returns the TMDB key in clear;
* ``/api/docs`` is a page titled "Swagger UI", its spec at ``/api/docs/swagger.json``;
* ``/api/*`` is rate limited (``RATE_LIMIT_MAX`` per ``RATE_LIMIT_WINDOW_MS``, default 100 per
  15 minutes) with 429 ``{"error": "Too many requests"}``;
* one access-log line per request, with its status, to stdout and combined.log;
* SIGTERM stops it at once (PID 1 would otherwise ignore it and ``docker stop`` wait 10 s).

It runs inside the lab's image (Debian's python3 and python3-psycopg2), not in the project's
environment: nothing in the test suite imports it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.2.0-standin"
DATABASE_URL = os.environ.get("DATABASE_URL", "")
PORT = int(os.environ.get("PORT", "3001") or "3001")
LOG_DIR = os.environ.get("API_LOG_PATH", "/app/logs")
COMBINED = os.path.join(LOG_DIR, "combined.log")
STARTED = time.time()
_LOCK = threading.Lock()


def _leading_int(text: str | None, default: int) -> int:
    """``100  # comment`` from an env file still means 100, as parseInt reads it."""
    match = re.match(r"\s*(\d+)", text or "")
    return int(match.group(1)) if match else default


RATE_MAX = _leading_int(os.environ.get("RATE_LIMIT_MAX"), 100)
RATE_WINDOW = _leading_int(os.environ.get("RATE_LIMIT_WINDOW_MS"), 900_000) / 1000.0


def log(level: str, message: str) -> None:
    """One line to stdout and to combined.log, like DesterLib's winston logger."""
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{level}]: {message}"
    with _LOCK:
        print(line, flush=True)
        try:
            os.makedirs(LOG_DIR, exist_ok=True)
            with open(COMBINED, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:
            print(f"cannot write {COMBINED}: {exc}", file=sys.stderr, flush=True)


def libpq_dsn(url: str) -> str:
    """Prisma's URL without the parameters libpq refuses (``schema`` above all)."""
    parts = urllib.parse.urlsplit(url)
    keep = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query)
            if k in ("sslmode", "connect_timeout", "application_name", "options")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(keep)))


def db_login() -> str:
    """Log in to DATABASE_URL once; return what answered. Raises on any failure."""
    url = DATABASE_URL
    if url.startswith("file:"):
        path = url[len("file:"):].split("?", 1)[0]
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise OSError(f"the directory of {path} does not exist")
        conn = sqlite3.connect(path, timeout=3)
        try:
            # What `prisma db push` leaves: the file exists and holds the schema.
            conn.execute("CREATE TABLE IF NOT EXISTS _standin (id INTEGER PRIMARY KEY)")
            conn.commit()
            return "sqlite " + sqlite3.sqlite_version
        finally:
            conn.close()
    if url.startswith(("postgresql:", "postgres:")):
        import psycopg2  # type: ignore[import-untyped, import-not-found, unused-ignore]  # in the image

        pg = psycopg2.connect(libpq_dsn(url), connect_timeout=3)
        try:
            with pg.cursor() as cur:
                cur.execute("SELECT current_user")
                return "postgresql as " + str(cur.fetchone()[0])
        finally:
            pg.close()
    raise ValueError("DATABASE_URL is missing or not a postgresql:// or file: URL")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Limiter:
    """express-rate-limit's fixed window, per client address."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.hits: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with _LOCK:
            hits = self.hits.setdefault(client, deque())
            while hits and now - hits[0] > self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True


LIMITER = _Limiter(RATE_MAX, RATE_WINDOW)

SWAGGER_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8"><title>Swagger UI</title></head>
<body><div id="swagger-ui">DesterLib API (stand-in): try it out at /api/docs/swagger.json</div></body></html>
"""

SWAGGER_SPEC = {
    "openapi": "3.0.0",
    "info": {"title": "DesterLib API", "version": VERSION},
    "paths": {p: {} for p in ("/health", "/api/v1/health", "/api/v1/logs", "/api/v1/settings")},
}


class Handler(BaseHTTPRequestHandler):
    server_version = "desterlib-api-standin/" + VERSION
    protocol_version = "HTTP/1.0"

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _route(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        if path.startswith("/api") and not LIMITER.allow(self.client_address[0]):
            self._send(429, {"error": "Too many requests"})
            return
        if path == "/health":
            self._send(200, {"status": "OK", "version": VERSION, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                             time.gmtime()), "uptime": round(time.time() - STARTED, 1)})
        elif path == "/api/v1/health":
            try:
                who = db_login()
            except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
                log("error", "Database health check failed: " + _first_line(exc))
                self._send(500, {"status": "error", "database": "unavailable", "error": _first_line(exc)})
            else:
                self._send(200, {"status": "OK", "database": who})
        elif path == "/api/v1/logs" and self.command == "DELETE":
            with _LOCK, open(COMBINED, "w", encoding="utf-8"):
                pass
            self._send(200, {"success": True})
        elif path == "/api/v1/logs":
            try:
                with open(COMBINED, encoding="utf-8", errors="replace") as fh:
                    lines = [line.rstrip("\n") for line in deque(fh, maxlen=500)]
            except FileNotFoundError:
                lines = []
            self._send(200, {"logs": lines})
        elif path == "/api/v1/settings":
            self._send(200, {"tmdbApiKey": os.environ.get("TMDB_API_KEY", ""), "port": PORT,
                             "enableRouteGuards": False, "mediaPath": os.environ.get("CONTAINER_MEDIA_PATH", "")})
        elif path == "/api/docs":
            self._send(200, SWAGGER_HTML, "text/html; charset=utf-8")
        elif path in ("/api/docs/swagger.json", "/api/docs.json"):
            self._send(200, SWAGGER_SPEC)
        elif path == "/":
            self._send(200, {"name": "DesterLib API", "version": VERSION})
        else:
            self._send(404, {"error": "Not found"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route()

    do_HEAD = do_GET
    do_DELETE = do_GET
    do_PUT = do_GET

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log("info", f"{self.client_address[0]} {self.command} {self.path} {code}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


def main() -> int:
    # PID 1 ignores SIGTERM unless it installs a handler.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    log("info", f"Starting DesterLib API {VERSION} on port {PORT}")
    log("info", "Database: " + DATABASE_URL)
    try:
        who = db_login()
    except Exception as exc:  # noqa: BLE001 - the real API exits on any database error at start
        log("error", "Database connection failed: " + _first_line(exc))
        return 1
    log("info", "Database connected (" + who + ")")
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    log("info", f"Server listening on 0.0.0.0:{PORT}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
