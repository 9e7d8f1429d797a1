"""Where a request goes inside one Caddy site: refused, proxied to the API, or elsewhere.

Caddy runs a site's directives in its own fixed order, not as written (``handle``
before ``respond``: a top-level ``respond @blocked 403`` never runs when the API's
``reverse_proxy`` sits in a catch-all ``handle``); ``handle`` blocks are mutually
exclusive, the most specific path first; ``route`` keeps the written order. A
matcher that depends on what is not known here (a header, a host, a public
client address) counts both ways, so a path is refused only when no way through
reaches the API: the outsider is a client from a public address, without the
login (``login`` tells whether the login was asked on the way).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

#: Caddy's standard directive order (caddyconfig/httpcaddyfile/directives.go, 2.6 to 2.8).
ORDER = ("tracing", "map", "vars", "fs", "root", "log_append", "skip_log", "log_skip", "header",
         "copy_response_headers", "request_body", "redir", "method", "rewrite", "uri", "try_files",
         "basicauth", "basic_auth", "forward_auth", "request_header", "encode", "push", "intercept", "templates",
         "invoke", "handle", "handle_path", "route", "abort", "error", "copy_response", "respond", "metrics",
         "reverse_proxy", "php_fastcgi", "file_server", "acme_server")
_RANK = {name: i for i, name in enumerate(ORDER)}
AUTH = frozenset({"basicauth", "basic_auth", "forward_auth", "jwtauth", "authorize", "authenticate", "authp"})
_TERMINAL = frozenset({"respond", "abort", "error", "redir", "file_server", "php_fastcgi", "acme_server",
                       "reverse_proxy", "static_response"})
_BLOCKS = frozenset({"handle", "handle_path", "route"})
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|\S+')
MAX_DEPTH = 16
#: Directives looked at per request before giving up (and assuming the worst).
MAX_STEPS = 20000

API, REFUSED, OTHER, THROUGH = "api", "refused", "other", "through"


@dataclass(slots=True)
class Stmt:
    name: str
    args: list[str]
    children: list[Stmt] | None = None


def parse(body: str) -> list[Stmt]:
    """A site body (comments stripped, imports written in) as a tree of directives."""
    root: list[Stmt] = []
    stack: list[list[Stmt]] = [root]
    for line in body.split("\n"):
        words = [w[1:-1] if w[:1] in "\"`" and len(w) > 1 else w for w in _TOKEN.findall(line)]
        while words and words[0] == "}":
            if len(stack) > 1:
                stack.pop()
            words = words[1:]
        if not words:
            continue
        opens = words[-1] == "{"
        if opens:
            words = words[:-1]
        closes = bool(words) and words[-1] == "}" and not opens
        if closes:
            words = words[:-1]
        if not words:
            continue
        stmt = Stmt(words[0], words[1:], [] if opens else None)
        stack[-1].append(stmt)
        if opens and len(stack) < MAX_DEPTH:
            stack.append(stmt.children or [])
            stmt.children = stack[-1]
    return root


# -- matchers (three-valued: True, False, None for "depends on what is not known here") ---------------

def _covers(pattern: str, path: str) -> bool:
    """Caddy's path matcher: exact unless ``*``, which matches anything (case-insensitive)."""
    return fnmatch.fnmatchcase(path.lower(), pattern.lower())


def _private(arg: str) -> bool:
    if arg in ("private_ranges", "forwarded"):
        return arg == "private_ranges"
    try:
        net = ipaddress.ip_network(arg, strict=False)
    except ValueError:
        return False
    return net.is_private or net.is_loopback


def _condition(stmt: Stmt, path: str | None) -> bool | None:
    if stmt.name == "not":
        inner = _all(stmt.children, path) if stmt.children is not None else _condition(
            Stmt(stmt.args[0], stmt.args[1:]) if stmt.args else Stmt("", []), path)
        return None if inner is None else not inner
    if stmt.name == "path":
        return None if path is None else any(_covers(p, path) for p in stmt.args)
    if stmt.name == "path_regexp":
        pattern = stmt.args[-1] if stmt.args else ""
        try:
            return None if path is None else re.search(pattern, path) is not None
        except re.error:
            return None
    if stmt.name in ("remote_ip", "client_ip"):
        args = [a for a in stmt.args if a != "forwarded"]
        return False if args and all(_private(a) for a in args) else None  # an outsider is not on the LAN
    return None


def _and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return True if all(v is True for v in values) else None


def _all(conditions: list[Stmt], path: str | None) -> bool | None:
    by_kind: dict[str, list[bool | None]] = {}
    for c in conditions:
        by_kind.setdefault(c.name, []).append(_condition(c, path))
    # The same matcher twice is one matcher with both values (OR); different ones must all hold (AND).
    return _and([True if any(v is True for v in vs) else False if all(v is False for v in vs) else None
                 for vs in by_kind.values()])


@dataclass(slots=True)
class Site:
    """One site's directives and named matchers."""

    stmts: list[Stmt]
    matchers: dict[str, list[Stmt]] = field(default_factory=dict)
    is_api: Callable[[Stmt], bool] = lambda _s: True
    """Whether a ``reverse_proxy`` statement's upstreams are the API."""
    _budget: int = MAX_STEPS

    @classmethod
    def of(cls, body: str, is_api: Callable[[Stmt], bool]) -> Site:
        stmts = parse(body)
        site = cls([], {}, is_api)
        site.stmts = site._take_matchers(stmts)
        return site

    def _take_matchers(self, stmts: list[Stmt]) -> list[Stmt]:
        out = []
        for s in stmts:
            if s.name.startswith("@"):
                if s.children is not None:
                    self.matchers[s.name] = s.children
                elif s.args:
                    self.matchers[s.name] = [Stmt(s.args[0], s.args[1:])]
                continue
            if s.children is not None and s.name in _BLOCKS:
                s.children = self._take_matchers(s.children)
            out.append(s)
        return out

    def _match(self, stmt: Stmt, path: str | None) -> tuple[bool | None, int]:
        """Whether ``stmt``'s matcher takes the request, and how many of its args it used."""
        if not stmt.args:
            return True, 0
        first = stmt.args[0]
        if first == "*":
            return True, 1
        if first.startswith("/"):
            return (None if path is None else _covers(first, path)), 1
        if first.startswith("@"):
            conds = self.matchers.get(first)
            return (None if conds is None else _all(conds, path)), 1
        return True, 0

    def outcomes(self, path: str | None) -> set[tuple[str, bool]]:
        """Where a request for ``path`` may end: (API/REFUSED/OTHER, whether it passed a login)."""
        self._budget = MAX_STEPS
        got = self._run(_sorted(self.stmts), path, False, 0, frozenset())
        return {(o if o != THROUGH else OTHER, login) for o, login in got}

    def _run(self, stmts: list[Stmt], path: str | None, login: bool, depth: int,
             handled: frozenset[int]) -> set[tuple[str, bool]]:
        """Straight through the directives; a branch (a matcher that may or may not take the request, a
        block that may fall through) recurses, bounded in depth and in steps."""
        out: set[tuple[str, bool]] = set()
        for i, s in enumerate(stmts):
            self._budget -= 1
            if depth > MAX_DEPTH or self._budget < 0:
                return out | {(API, False)}  # too much to follow: assume the worst
            if id(s) in handled:
                continue  # another handle of its group took the request
            matched, used = self._match(s, path)
            if matched is False or not self._acts(s, login, path):
                continue
            if matched is None:
                out |= self._run(stmts[i + 1:], path, login, depth + 1, handled)  # the way that skips it
            if s.name in _TERMINAL:
                return out | {(self._terminal(s, used), login)}
            if s.name in _BLOCKS and s.children is not None:
                inner_path = None if s.name == "handle_path" else path  # the API sees the path without the prefix
                children = s.children if s.name == "route" else _sorted(s.children)
                inner = self._run(children, inner_path, login, depth + 1, frozenset())
                out |= {o for o in inner if o[0] != THROUGH}
                throughs = {through_login for o, through_login in inner if o == THROUGH}
                if not throughs:
                    return out
                if s.name != "route":
                    handled = handled | _group(stmts, i)
                if len(throughs) > 1:
                    for through_login in throughs:
                        out |= self._run(stmts[i + 1:], path, through_login, depth + 1, handled)
                    return out
                login = throughs.pop()
            elif s.name in AUTH:
                login = True
            elif s.name in ("rewrite", "uri", "try_files"):
                path = None  # the path is no longer the one asked for
        return out | {(THROUGH, login)}

    @staticmethod
    def _acts(s: Stmt, login: bool, path: str | None) -> bool:
        """Whether taking ``s`` changes where the request goes (a header directive does not)."""
        if s.name in _TERMINAL or (s.name in _BLOCKS and s.children is not None):
            return True
        if s.name in AUTH:
            return not login
        return s.name in ("rewrite", "uri", "try_files") and path is not None

    def _terminal(self, s: Stmt, used: int) -> str:
        args = s.args[used:]
        if s.name == "reverse_proxy":
            return API if self.is_api(s) else OTHER
        if s.name == "abort":
            return REFUSED
        status = next((a for a in args if re.fullmatch(r"[1-5]\d\d", a)), "")
        if s.name == "error":
            return REFUSED if not status or status[0] in "45" else OTHER
        if s.name == "respond":
            return REFUSED if status[:1] in ("4", "5") else OTHER
        return OTHER


def _group(stmts: list[Stmt], i: int) -> frozenset[int]:
    """The mutually exclusive run of ``handle`` blocks around statement ``i`` (their ids)."""
    start, end = i, i + 1
    while start > 0 and stmts[start - 1].name in ("handle", "handle_path"):
        start -= 1
    while end < len(stmts) and stmts[end].name in ("handle", "handle_path"):
        end += 1
    return frozenset(id(s) for s in stmts[start:end])


def _sorted(stmts: list[Stmt]) -> list[Stmt]:
    """Caddy's order: by directive, then a single path matcher (longest first) before other matchers,
    no matcher last."""
    def key(item: tuple[int, Stmt]) -> tuple[int, int, int, int]:
        i, s = item
        first = s.args[0] if s.args else ""
        if first.startswith("/"):
            spec = (0, -len(first.rstrip("*")))
        elif first.startswith("@"):
            spec = (1, 0)
        else:
            spec = (2, 0)
        return (_RANK.get(s.name, len(ORDER)), spec[0], spec[1], i)
    return [s for _, s in sorted(enumerate(stmts), key=key)]
