"""Probing the API's unauthenticated admin surface on this host's own addresses.

DesterLib's API has no authentication: whoever reaches its port gets Swagger UI with
"try it out" (``/api/docs``), its OpenAPI description, its settings with the TMDB key in clear
(``/api/v1/settings``) and its logs (``/api/v1/logs``). Each path is asked once per
(address, port) with plain GETs: short timeouts, threads in parallel under one total
budget, no redirect followed, no proxy from the environment. What an answer gives away
is kept as a phrase; no body is kept.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from checks.live.model import Probe

PATHS = ("/api/docs", "/api/docs/swagger.json", "/api/docs.json", "/api/v1/settings", "/api/v1/logs")
TIMEOUT = 0.5
BUDGET = 1.5
_MAX_BODY = 512 * 1024
_WORKERS = 16


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a place to go (it could point at another host)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def opener() -> urllib.request.OpenerDirector:
    """urllib without proxies (``ProxyHandler({})``: never send a probe through ``http_proxy``) or redirects."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def url_for(address: str, port: int, path: str) -> str:
    """``http://addr:port/path``, IPv6 in brackets."""
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"http://{host}:{port}{path}"


def _has_tmdb_key(data: Any) -> bool:
    """A non-empty value under any key naming TMDB, anywhere in the settings."""
    if isinstance(data, dict):
        for key, value in data.items():
            if "tmdb" in str(key).lower() and isinstance(value, str | int) and str(value).strip():
                return True
            if _has_tmdb_key(value):
                return True
    elif isinstance(data, list):
        return any(_has_tmdb_key(v) for v in data)
    return False


def exposes(path: str, status: int | None, body: bytes) -> str | None:
    """What a 200 answer to ``path`` gives away, as a phrase (never a value from it)."""
    if status != 200:
        return None
    if path == "/api/docs":
        return "Swagger UI" if b"swagger" in body.lower() else None
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        data = None
    if path.endswith(".json"):
        return "the API description (OpenAPI)" if isinstance(data, dict) and (
            "openapi" in data or "swagger" in data or "paths" in data) else None
    if path == "/api/v1/settings":
        if data is None:
            return None
        return "the TMDB API key" if _has_tmdb_key(data) else "the API's settings"
    if path == "/api/v1/logs":
        return "the API's logs"
    return None


def fetch(url: str, timeout: float = TIMEOUT) -> tuple[int | None, bytes]:
    """(status, first bytes of the body) of a GET; (None, b"") when nothing answered in time."""
    try:
        with opener().open(urllib.request.Request(url, headers={"User-Agent": "dester-harden"}),
                           timeout=timeout) as resp:
            return int(resp.status), resp.read(_MAX_BODY)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code), b""
    except (OSError, ValueError):
        return None, b""


def _one(address: str, port: int, path: str, timeout: float) -> Probe:
    url = url_for(address, port, path)
    status, body = fetch(url, timeout)
    return Probe(url, path, status, exposes(path, status, body))


def probe(targets: Iterable[tuple[str, int]], *, paths: Iterable[str] = PATHS, timeout: float = TIMEOUT,
          budget: float = BUDGET) -> tuple[Probe, ...]:
    """Every path on every (address, port), in parallel; what did not finish within ``budget`` has status None."""
    jobs = [(a, p, path) for a, p in dict.fromkeys(targets) for path in paths]
    if not jobs:
        return ()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(_WORKERS, len(jobs)), thread_name_prefix="probe")
    try:
        futures = [pool.submit(_one, a, p, path, timeout) for a, p, path in jobs]
        concurrent.futures.wait(futures, timeout=budget)
        out = []
        for (a, p, path), fut in zip(jobs, futures, strict=True):
            done = fut.done() and not fut.cancelled() and fut.exception() is None
            out.append(fut.result() if done else Probe(url_for(a, p, path), path, None))
        return tuple(out)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
