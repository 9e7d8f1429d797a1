"""nginx server blocks that proxy to the API: only what nginx really loads.

nginx reads ``nginx.conf`` and what it ``include``s (relative patterns are relative
to the configuration directory, as nginx resolves them); a site only in
``sites-available/`` is not loaded and is no front door. A protected path is
refused when the location nginx picks for it (exact, then the longest prefix,
``^~`` stopping there, then the first matching regex) denies it or returns
4xx/444, or does not proxy to the API at all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from checks.core.textio import shown
from checks.proxy.confread import PROBES, Reader, blocks, strip_comments, targets_port
from checks.proxy.model import FrontDoor

MAX_DEPTH = 8

#: Requests that stand for "the API" when asking whether a login guards it.
_GENERAL = ("/", "/api/v1/library", "/ws")

_INCLUDE = re.compile(r"^\s*include\s+([^;\s]+)\s*;", re.M)
_REFUSE = re.compile(r"\bdeny\s+all\s*;|\breturn\s+(4\d\d|444)\b")
_LOCATION = re.compile(r"^location\s+(=|~\*?|\^~)?\s*(\S+)$")

#: Maps an include pattern and the configuration directory to a path on this machine (None: unknown).
Resolve = Callable[[str, str], str | None]


@dataclass(slots=True)
class _Server:
    line: int
    body: str
    file: str


@dataclass(slots=True)
class _Load:
    reader: Reader
    resolve: Resolve
    conf_dir: str
    servers: list[_Server] = field(default_factory=list)
    upstreams: dict[str, str] = field(default_factory=dict)
    http_auth: bool | None = None
    """The ``http`` block's own login setting, which every server inherits (None: none set)."""
    loaded: set[str] = field(default_factory=set)

    def file(self, path: str, depth: int = 0) -> None:
        real = os.path.realpath(path)
        if real in self.loaded:
            return
        if depth > MAX_DEPTH:
            self.reader.notes.append(f"{self.reader.show(path)}: includes nested deeper than {MAX_DEPTH} not read")
            return
        src = self.reader.read(path)
        if src is None:
            return
        self.loaded.add(real)
        self._context(strip_comments(src.text), src.display, 0, depth)

    def _context(self, text: str, display: str, offset: int, depth: int) -> None:
        found, loose = blocks(text)
        for header, line, body, body_line in found:
            words = header.split()
            if header == "server":
                self.servers.append(_Server(offset + line, body, display))
            elif header == "http":
                own = _auth_setting("\n".join(t for _, t in blocks(body)[1]))
                if own is not None:
                    self.http_auth = own
                self._context(body, display, offset + body_line - 1, depth)
            elif len(words) == 2 and words[0] == "upstream":
                self.upstreams[words[1]] = body
        for _line, text_line in loose:
            for stmt in text_line.split(";"):
                words = stmt.split()
                if len(words) == 2 and words[0] == "include":
                    for hit in self._files(words[1]):
                        self.file(hit, depth + 1)

    def _files(self, pattern: str) -> list[str]:
        target = self.resolve(pattern.strip("\"'"), self.conf_dir)
        if target is None:
            self.reader.notes.append(f"include {shown(pattern)}: not followed "
                                     "(outside the root, or a container path no mount has)")
            return []
        return self.reader.glob(target)

    def expand(self, body: str, depth: int = 0) -> str:
        """A server block with the files it includes written in (snippets, auth files)."""
        if depth >= MAX_DEPTH:
            return body

        def inline(m: re.Match[str]) -> str:
            parts = []
            for hit in self._files(m.group(1)):
                src = self.reader.read(hit)
                if src is not None:
                    parts.append(self.expand(strip_comments(src.text), depth + 1))
            return "\n".join(parts)
        return _INCLUDE.sub(inline, body)

    def proxies_to(self, text: str, port: int) -> bool:
        for target in re.findall(r"proxy_pass\s+https?://([^;\s]+)", text):
            host = target.split("/", 1)[0]
            if host in self.upstreams:
                if targets_port(self.upstreams[host], port):
                    return True
            elif targets_port(" " + host, port):
                return True
        return False


@dataclass(slots=True)
class _Location:
    modifier: str
    pattern: str
    own: str
    """The location's directives without its nested blocks."""
    body: str


def _locations(body: str) -> list[_Location]:
    out = []
    for header, _line, inner, _ in blocks(body)[0]:
        m = _LOCATION.match(" ".join(header.split()))
        if m is None:
            continue
        own = "\n".join(text for _, text in blocks(inner)[1])
        out.append(_Location(m.group(1) or "", m.group(2).strip("\"'"), own, inner))
    return out


def _select(locations: list[_Location], path: str) -> _Location | None:
    """The location nginx uses for ``path``."""
    for loc in locations:
        if loc.modifier == "=" and loc.pattern == path:
            return loc
    prefixes = [loc for loc in locations if loc.modifier in ("", "^~") and path.startswith(loc.pattern)]
    longest = max(prefixes, key=lambda loc: len(loc.pattern), default=None)
    if longest is not None and longest.modifier == "^~":
        return longest
    for loc in locations:
        if loc.modifier.startswith("~"):
            try:
                if re.search(loc.pattern, path, re.I if loc.modifier == "~*" else 0):
                    return loc
            except re.error:
                continue
    return longest


def _server(load: _Load, server: _Server, port: int) -> FrontDoor | None:
    body = load.expand(server.body)
    if not load.proxies_to(body, port):
        return None
    listens = re.findall(r"^\s*listen\s+([^;]+);", body, re.M)
    https = any(re.search(r"\bssl\b|\bquic\b", ln) or re.search(r"(^|:)443\b", ln.split()[0]) for ln in listens)
    own = _auth_setting("\n".join(t for _, t in blocks(body)[1]))
    server_auth = own if own is not None else bool(load.http_auth)
    names = re.findall(r"^\s*server_name\s+([^;]+);", body, re.M)
    hosts = tuple(h for n in names for h in n.split() if h not in ("_", '""', "localhost"))
    locations = _locations(body)
    blocked = set()
    for key, probes in PROBES.items():
        picked = [_select(locations, p) for p in probes]
        if all(loc is None or _REFUSE.search(loc.own) or not load.proxies_to(loc.body, port) for loc in picked):
            blocked.add(key)
    # The login holds when every location that proxies the API's ordinary paths asks for it (a
    # location's own auth_basic, on or off, overrides the server's, which overrides http's).
    served = [loc for loc in (_select(locations, p) for p in _GENERAL) if loc is not None
              and load.proxies_to(loc.body, port)]
    auth = all((_auth_setting(loc.own) if _auth_setting(loc.own) is not None else server_auth) for loc in served) \
        if served else server_auth
    return FrontDoor("nginx", server.file, server.line, hosts, https, auth, frozenset(blocked))


def _auth_setting(own: str) -> bool | None:
    """A context's own login setting: True (auth_basic REALM, auth_request URI), False (off), None."""
    basic = re.findall(r"(?:^|[;\s])auth_basic\s+([^;]+);", own)
    request = re.findall(r"(?:^|[;\s])auth_request\s+([^;]+);", own)
    values = [v.strip().strip("\"'") for v in basic + request]
    if not values:
        return None
    return any(v != "off" for v in values)


def nginx_doors(reader: Reader, entries: list[str], conf_dir: str, port: int, resolve: Resolve) -> list[FrontDoor]:
    """The server blocks of ``entries`` (``nginx.conf``, or files read on their own) and what they
    include that proxy to ``port``."""
    load = _Load(reader, resolve, conf_dir)
    for path in entries:
        load.file(path)
    return [d for d in (_server(load, s, port) for s in load.servers) if d is not None]
