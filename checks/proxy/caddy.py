"""Caddy sites that proxy to the API: the main Caddyfile and what it imports.

``import PATTERN`` at the top level loads files (globs, relative to the importing
file's directory, nested, cycles and depth bounded); ``import NAME`` of a snippet
``(NAME) { ... }`` is the snippet, not a file. An import inside a site block is
read as part of that site (a snippet with the login or the refusals).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from checks.core.textio import shown
from checks.proxy.caddyroute import API, Site, Stmt
from checks.proxy.confread import PROBES, Reader, blocks, strip_comments, targets_port
from checks.proxy.model import FrontDoor

#: Imports nested deeper than this are not followed (Caddy itself stops at a cycle).
MAX_DEPTH = 8

_AUTH = re.compile(r"^\s*(basicauth|basic_auth|forward_auth|jwtauth|authorize|authenticate|authp)\b", re.M)

#: Maps an import pattern and the importing file's directory to a path on this machine (or None:
#: it names a container path no mount provides).
#: Requests that stand for "the API" when asking whether a login guards it.
_GENERAL = ("/", "/api/v1/library", "/ws")

Resolve = Callable[[str, str], str | None]


@dataclass(slots=True)
class _Site:
    header: str
    line: int
    body: str
    file: str
    dir: str


@dataclass(slots=True)
class _Load:
    reader: Reader
    resolve: Resolve
    snippets: dict[str, str] = field(default_factory=dict)
    sites: list[_Site] = field(default_factory=list)
    auto_https_off: bool = False
    loaded: set[str] = field(default_factory=set)

    def file(self, path: str, depth: int = 0) -> None:
        real = os.path.realpath(path)
        if real in self.loaded:
            return  # a cycle, or a file both imported and found on its own
        if depth > MAX_DEPTH:
            self.reader.notes.append(f"{self.reader.show(path)}: imports nested deeper than {MAX_DEPTH} not read")
            return
        src = self.reader.read(path)
        if src is None:
            return
        self.loaded.add(real)
        here = os.path.dirname(path)
        text = strip_comments(src.text)
        found, loose = blocks(text)
        for header, _line, body, _ in found:
            if header.startswith("(") and header.endswith(")"):
                self.snippets[header[1:-1].strip()] = body
        first_site = min((line for header, line, _, _ in found if header and not header.startswith("(")), default=None)
        bare = next((ln for ln, t in loose if t.split()[0] != "import"), None) if depth == 0 else None
        if bare is not None and (first_site is None or bare < first_site):
            # One site without braces: its address on this line, its directives the rest of the file.
            lines = text.split("\n")
            self.sites.append(_Site(lines[bare - 1].strip(), bare, "\n".join(lines[bare:]), src.display, here))
            found = [b for b in found if b[1] < bare]
        for header, line, body, _ in found:
            if header.startswith("("):
                continue
            if header == "":
                self.auto_https_off |= re.search(r"^\s*auto_https\s+off\b", body, re.M) is not None
                continue
            self.sites.append(_Site(header, line, body, src.display, here))
        for _line, text in loose:
            words = text.split()
            if len(words) >= 2 and words[0] == "import" and words[1] not in self.snippets:
                for hit in self._files(words[1], here):
                    self.file(hit, depth + 1)

    def _files(self, pattern: str, here: str) -> list[str]:
        target = self.resolve(pattern.strip("\"'"), here)
        if target is None:
            self.reader.notes.append(f"import {shown(pattern)}: not followed "
                                     "(outside the root, or a container path no mount has)")
            return []
        return self.reader.glob(target)

    def expand(self, body: str, here: str, depth: int = 0, chain: frozenset[str] = frozenset()) -> str:
        """The body with its imports (snippets, files) written in."""
        out = []
        for line in body.split("\n"):
            words = line.split()
            if len(words) >= 2 and words[0] == "import" and depth < MAX_DEPTH:
                name = words[1].strip("\"'")
                if name in self.snippets:
                    if name not in chain:
                        out.append(self.expand(self.snippets[name], here, depth + 1, chain | {name}))
                    continue
                for hit in self._files(name, here):
                    real = os.path.realpath(hit)
                    src = self.reader.read(hit)
                    if src is not None and real not in chain:
                        text = strip_comments(src.text)
                        out.append(self.expand(text, os.path.dirname(hit), depth + 1, chain | {real}))
                continue
            out.append(line)
        return "\n".join(out)


def _site(site: _Site, body: str, port: int, auto_https_off: bool) -> FrontDoor | None:
    upstreams = re.findall(r"reverse_proxy\s+([^{\n]*)", body) + re.findall(r"^\s*to\s+([^\n]+)", body, re.M)
    if not any(targets_port(u, port) for u in upstreams):
        return None
    addrs = [a.strip() for a in re.split(r"[,\s]+", site.header) if a.strip()]
    tls = re.search(r"^\s*tls\s", body + "\n", re.M) is not None
    https = tls or (not auto_https_off and any(_https_address(a) for a in addrs))
    hosts = tuple(h for h in (_host(a) for a in addrs) if h)

    def is_api(stmt: Stmt) -> bool:
        words = stmt.args + [a for c in stmt.children or [] if c.name == "to" for a in c.args]
        return any(targets_port(w, port) for w in words)

    routes = Site.of(body, is_api)
    ends = {p: routes.outcomes(p) for p in _GENERAL + tuple(q for ps in PROBES.values() for q in ps)}
    blocked = frozenset(k for k, probes in PROBES.items() if not any(o[0] == API for p in probes for o in ends[p]))
    reached = [login for got in ends.values() for where, login in got if where == API]
    auth = all(reached) if reached else _AUTH.search(body) is not None
    return FrontDoor("caddy", site.file, site.line, hosts, https, auth, blocked)


def _https_address(addr: str) -> bool:
    if addr.startswith("http://") or addr.endswith(":80"):
        return False
    if re.fullmatch(r":\d+", addr):
        return addr == ":443"
    return True


def _host(addr: str) -> str:
    host = re.sub(r"^\w+://", "", addr).split("/", 1)[0]
    host = re.sub(r":\d+$", "", host)
    return host if host and host != "*" else ""


def caddy_doors(reader: Reader, entries: list[str], port: int, resolve: Resolve) -> list[FrontDoor]:
    """The sites of the Caddyfiles ``entries`` (and what they import) that proxy to ``port``."""
    load = _Load(reader, resolve)
    for path in entries:
        load.file(path)
    out = []
    for site in load.sites:
        door = _site(site, load.expand(site.body, site.dir), port, load.auto_https_off)
        if door is not None:
            out.append(door)
    return out
