"""Scanning log lines for what matters, keeping counts and line numbers, never text.

Three findings: a database URL with a password in it (DesterLib logs ``Database: <DATABASE_URL>``
at every start, in plain and JSON-escaped forms), lines of 429 "Too many requests", and 5xx
access lines. 429 and 5xx are counted per UTC hour of the line's own timestamp (docker's
``--timestamps`` RFC 3339 prefix, any ISO 8601 time, or a common-log-format ``[01/Dec/2026:14:03:22
+0000]``); a line without one counts under the hour of the scan and adds to ``undated``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from checks.live.model import LogFinding

_SLASH = r"(?:\\?/)"
"""``/`` or its JSON-escaped ``\\/``."""

LEAK = re.compile(
    r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|redis|rediss|mongodb(?:\+srv)?|amqps?)"
    r":" + _SLASH + _SLASH +
    r"[^:@/\s\"'\\]*:"  # user (may be empty: redis://:PASS@)
    r"(?P<pw>[^@/\s\"']+)@"
)
"""A URL whose userinfo holds a password (``postgresql://user:PASS@host``)."""

_MASKED = re.compile(r"^(?:\*+|x{3,}|\\?\*+|<[^>]*>|\$\{[^}]*\}|%s|redacted|\[redacted\]|\.\.\.)$", re.I)
"""Passwords already masked or placeholders: not a leak."""

_TOO_MANY = re.compile(r"(?i)too many requests")
_STATUS = re.compile(
    r"(?:\"\s(?P<clf>\d{3})\s)"  # common log format: "GET / HTTP/1.1" 503 12
    r"|(?:\b(?:GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS)\s+/\S*\s+(?P<dev>\d{3})\b)"  # morgan dev: GET /x 500 1 ms
    r"|(?:\"?(?:status|statusCode)\\?\"?\s*[:=]\s*\"?(?P<json>\d{3})\b)"  # {"status":500} / status=500
)

_ISO = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::\d{2}(?:[.,]\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)
_CLF = re.compile(r"\[(?P<d>\d{2})/(?P<mo>[A-Z][a-z]{2})/(?P<y>\d{4}):(?P<h>\d{2}):(?P<mi>\d{2}):\d{2}"
                  r"(?:\s(?P<tz>[+-]\d{4}))?\]")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}


def _offset(tz: str | None) -> timedelta:
    if not tz or tz == "Z":
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def hour_of(line: str) -> str | None:
    """The UTC hour (``2026-12-01T14``) of the first timestamp in ``line``; None without one."""
    for pattern in (_ISO, _CLF):
        m = pattern.search(line)
        if m is None:
            continue
        try:
            month = int(m["mo"]) if m["mo"].isdigit() else _MONTHS[m["mo"]]
            local = datetime(int(m["y"]), month, int(m["d"]), int(m["h"]), int(m["mi"]), tzinfo=UTC)
        except (KeyError, ValueError):
            continue
        return (local - _offset(m["tz"])).strftime("%Y-%m-%dT%H")
    return None


def leaks(line: str) -> bool:
    """Whether ``line`` holds a database URL with a real (unmasked, non-placeholder) password."""
    return any(not _MASKED.match(m["pw"]) for m in LEAK.finditer(line))


def status_of(line: str) -> int | None:
    """The HTTP status an access line reports, if it looks like one."""
    m = _STATUS.search(line)
    if m is None:
        return None
    return int(m["clf"] or m["dev"] or m["json"])


def scan(lines: Iterable[str], source: str, *, now: float | None = None) -> LogFinding:
    """What ``lines`` hold: line numbers (1-based) of password leaks, 429 and 5xx counts per hour.

    Only numbers leave this function: the text of no line is kept.
    """
    scan_hour = time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() if now is None else now))
    leaked: list[int] = []
    too_many: dict[str, int] = {}
    errors: dict[str, int] = {}
    undated = 0
    count = 0
    for count, line in enumerate(lines, start=1):
        if leaks(line):
            leaked.append(count)
        status = status_of(line)
        bucket: dict[str, int] | None = None
        if status == 429 or _TOO_MANY.search(line):
            bucket = too_many
        elif status is not None and 500 <= status <= 599:
            bucket = errors
        if bucket is None:
            continue
        hour = hour_of(line)
        if hour is None:
            hour = scan_hour
            undated += 1
        bucket[hour] = bucket.get(hour, 0) + 1
    return LogFinding(source, tuple(leaked), too_many, errors, count, undated)
