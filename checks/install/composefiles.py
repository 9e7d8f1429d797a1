"""Which compose files Compose reads, and how it makes one model of them.

:func:`compose_paths` finds the files Compose is given (``-f``, ``COMPOSE_FILE``,
the main file and its override); :func:`merge` merges override files.
Discovery hands each of them to :class:`ComposeLoader`, which imports what the
file includes and resolves ``extends`` the way Compose does:

- ``include:`` (short form: a list of paths; long form: ``path`` (string or
  list), ``env_file`` (string or list), ``project_directory``). Paths are
  relative to the including project's directory; an included file is
  interpolated with the including project's variables first, then its own
  env files (``project_directory/.env`` by default); its own relative paths
  resolve against its project directory (its own directory by default). A
  resource it defines that the including file defines differently is an
  input error, as in Compose.
- ``extends:`` (``extends: name``, ``{service: name}``, ``{file: f, service:
  name}``): the base service is merged under the extending one with the
  rules of override files; relative paths of a base from another file stay
  relative to that file.

Every node keeps the position of the file that writes it, so evidence cites,
and fixes edit, the file that holds the line. What cannot be followed (a
missing or unreadable file, a remote include, a cycle, an unknown form) is
recorded in :attr:`ComposeLoader.unfollowed`; the audit then reports every
check that would pass as ``error``, never ``pass``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from checks.core.errors import InputError
from checks.core.interpolate import interpolate
from checks.core.textio import Source
from checks.core.yamlpos import Node, parse_yaml
from checks.install.model import EnvFile

#: Service keys whose lists Compose concatenates when merging override files.
_CONCAT_KEYS = {"ports", "expose", "dns", "dns_search", "tmpfs", "cap_add", "cap_drop", "security_opt",
                "env_file", "extra_hosts", "external_links", "devices", "volumes", "configs", "secrets"}
_MAP_OR_LIST_KEYS = {"environment", "labels"}

#: Top-level sections an included file contributes (Compose's importResources).
_RESOURCES = ("services", "networks", "volumes", "configs", "secrets")
_INCLUDE_KEYS = {"path", "env_file", "project_directory"}
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@")

#: Real installs include a handful of files; includes that fan out (each file
#: including two others, twenty deep) would be read a million times.
MAX_INCLUDED_LOADS = 200
#: A service extends one that extends another...: real chains are two or three long.
MAX_EXTENDS_DEPTH = 50

#: How a file entered the model besides being named on the command line (``Installation.reached``).
VIA_INCLUDE = "include"
VIA_EXTENDS = "extends"


#: Compose's own search order for the main file in a directory.
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def compose_paths(root: str, files: list[str] | None, root_env: EnvFile | None,
                  exists: Callable[[str], bool] = os.path.lexists) -> list[str]:
    """The files Compose is given: ``-f`` files, ``COMPOSE_FILE`` in .env, else the main
    file (and its override) here or in docker/."""
    if files:
        paths = [os.path.abspath(f) for f in files]
        for p in paths:
            if not exists(p):
                raise InputError("compose file not found", p)
        return paths
    if root_env is not None:
        entry = root_env.get("COMPOSE_FILE")
        if entry is not None and entry.value:
            sep_entry = root_env.get("COMPOSE_PATH_SEPARATOR")
            sep = sep_entry.value if sep_entry is not None and sep_entry.value else os.pathsep
            paths = [os.path.normpath(os.path.join(root, p)) for p in entry.value.split(sep) if p]
            for p in paths:
                if not exists(p):
                    raise InputError(f"COMPOSE_FILE names a file that does not exist: {os.path.relpath(p, root)}",
                                     root_env.display, entry.line)
            return paths
    for base in (root, os.path.join(root, "docker")):
        for name in COMPOSE_NAMES:
            main = os.path.join(base, name)
            if exists(main):
                paths = [main]
                stem, ext = os.path.splitext(name)
                for oext in (ext, ".yaml" if ext == ".yml" else ".yml"):
                    override = os.path.join(base, f"{stem}.override{oext}")
                    if exists(override):
                        paths.append(override)
                        break
                return paths
    raise InputError(
        "no compose file found (looked for compose.yaml, compose.yml, docker-compose.yaml, "
        "docker-compose.yml here and in docker/)", root)


@dataclass(slots=True)
class FileCtx:
    """How one compose file is read: where its relative paths point, which variables it sees."""

    workdir: str
    """Where relative ``include`` paths (and ``project_directory``, ``env_file``) resolve."""
    env: dict[str, str]
    """Variables for ``${VAR}`` interpolation."""
    env_files: list[EnvFile] = field(default_factory=list)
    """The env files those variables come from, the one that wins first (for fixes)."""
    paths_dir: str | None = None
    """Where the file's service paths (volumes, env_file) resolve; None: the file's own directory."""


def clone(node: Node, value: Any) -> Node:
    """A copy of ``node`` (position, tag, keys) holding ``value``."""
    out = object.__new__(Node)
    for slot in Node.__slots__:
        setattr(out, slot, getattr(node, slot))
    out.value = value
    return out


def merge(base: Node, over: Node, path: tuple[str, ...]) -> Node | None:
    """Merge an override file's node into the base as Compose does."""
    if over.tag == "!reset":
        return None
    if over.tag == "!override":
        return over
    key = path[-1] if path else ""
    in_service = len(path) == 3 and path[0] == "services"
    if base.is_map() and over.is_map():
        value = dict(base.value)
        keys = dict(base.keys or {})
        for k, v in over.items():
            if k in value:
                m = merge(value[k], v, path + (k,))
                if m is None:
                    del value[k]
                else:
                    value[k] = m
            elif v.tag != "!reset":
                value[k] = v
                if over.keys and k in over.keys:
                    keys[k] = over.keys[k]
        out = clone(base, value)
        out.keys = keys
        return out
    if in_service and key in _MAP_OR_LIST_KEYS:
        # Keep both: the service builder reads them in order, later entries winning.
        return clone(over, [base, over])
    if in_service and key in _CONCAT_KEYS and base.is_seq() and over.is_seq():
        return clone(base, list(base.value) + list(over.value))
    return over


def drop_resets(node: Node) -> Node | None:
    """``node`` without the ``!reset`` entries that nothing was merged into."""
    if node.tag == "!reset":
        return None
    if node.is_map():
        value = {}
        for k, v in node.items():
            kept = drop_resets(v)
            if kept is not None:
                value[k] = kept
        out = clone(node, value)
        out.keys = node.keys
        return out
    if node.is_seq():
        return clone(node, [n for n in (drop_resets(v) for v in node.value) if n is not None])
    return node


def _without(node: Node, key: str) -> Node:
    out = clone(node, {k: v for k, v in node.items() if k != key})
    out.keys = {k: v for k, v in (node.keys or {}).items() if k != key}
    return out


def _with(node: Node, key: str, value: Node, key_node: Node) -> Node:
    out = clone(node, {**node.value, key: value})
    out.keys = {**(node.keys or {}), key: key_node}
    return out


class ComposeLoader:
    """Reads compose files with what they include and extend.

    ``reader`` is discovery's: ``read(path, kind)`` returns a :class:`Source`
    (raising :class:`InputError`), ``exists(path)``, ``display(path)``, and
    ``contexts`` (display path -> :class:`FileCtx`), where each file's context
    is recorded for the service builder. ``load_env(source, lookup)`` turns an
    env file's source into an :class:`EnvFile`.
    """

    def __init__(self, reader: Any, load_env: Callable[[Source, dict[str, str]], EnvFile]) -> None:
        self._read = reader.read
        self._exists = reader.exists
        self._display = reader.display
        self._load_env = load_env
        self.contexts: dict[str, FileCtx] = reader.contexts
        self.unfollowed: list[str] = []
        """One line per include or extends that could not be followed: ``file:line: why``."""
        self.reached: dict[str, str] = {}
        """Absolute path -> VIA_INCLUDE or VIA_EXTENDS, for files not named on the command line."""
        self.sources: list[Source] = []
        """Those files' sources, in the order they were first read."""
        self.env_files: list[EnvFile] = []
        """Env files named by (or defaulted for) an ``include``."""
        self._loads = 0
        self._parsed: dict[str, Node | None] = {}
        self._resolved: dict[tuple[str, str], Node] = {}

    # -- files ------------------------------------------------------------------------
    def parse(self, src: Source) -> Node | None:
        """The file's top-level mapping as written (None for an empty file)."""
        doc = parse_yaml(src.text, src.display)
        if doc is None:
            return None
        if not doc.is_map():
            raise InputError("a compose file must be a mapping (services: ...) at the top level", src.display, doc.line)
        svcs = doc.get("services")
        if svcs is not None and svcs.value is not None and not svcs.is_map():
            raise InputError("'services' must be a mapping of service names", src.display, svcs.line)
        return doc

    def load(self, src: Source, ctx: FileCtx, stack: tuple[str, ...] = ()) -> Node | None:
        """``src``'s mapping with its includes imported and its ``extends`` resolved."""
        self.contexts.setdefault(src.display, ctx)
        doc = self.parse(src)
        if doc is None:
            return None
        stack = stack + (os.path.realpath(src.path),)
        doc = self._includes(doc, src, ctx, stack)
        return self._extends(doc, src, ctx)

    def _cannot(self, node: Node, why: str) -> None:
        line = f"{node.file}:{node.line}: {why}"
        if line not in self.unfollowed:
            self.unfollowed.append(line)

    def _shown(self, path: str, at: Node) -> str:
        """``path`` for a message; a name built by ``${VAR}`` could hold a secret, so then only "the file"."""
        return "the file it names" if "$" in self._written(at) else self._display(path)

    @staticmethod
    def _written(node: Node) -> str:
        if node.is_scalar():
            return str(node.value)
        if node.is_map():
            return " ".join(ComposeLoader._written(v) for _, v in node.items())
        return " ".join(ComposeLoader._written(v) for v in node.value)

    def _open(self, path: str, how: str, at: Node, kind: str = "compose file") -> Source | None:
        """The file's source, or None (recorded as not followed) when it cannot be read."""
        if not self._exists(path):
            self._cannot(at, f"cannot follow {how}: {self._shown(path, at)} not found")
            return None
        try:
            src: Source = self._read(path, kind)
        except InputError as exc:
            self._cannot(at, f"cannot follow {how}: {exc if '$' not in self._written(at) else exc.message}")
            return None
        if kind == "compose file" and all(s.path != src.path for s in self.sources):
            self.sources.append(src)
        return src

    # -- include ------------------------------------------------------------------------
    def _strings(self, node: Node | None, env: dict[str, str], what: str) -> list[str] | None:
        """A string or list of strings, interpolated; None (recorded) for anything else."""
        if node is None or node.value is None:
            return []
        items = node.value if node.is_seq() else [node]
        out = []
        for item in items:
            if not item.is_scalar() or item.value is None or isinstance(item.value, bool):
                self._cannot(item, f"cannot follow include: {what} must be a string or a list of strings")
                return None
            text = str(item.value)
            out.append(interpolate(text, env).value if "$" in text else text)
        return out

    def _includes(self, doc: Node, src: Source, ctx: FileCtx, stack: tuple[str, ...]) -> Node:
        inc = doc.get("include")
        if inc is None:
            return doc
        doc = _without(doc, "include")
        if inc.value is None:
            return doc
        if not inc.is_seq():
            self._cannot(inc, "cannot follow include: it must be a list")
            return doc
        for item in inc.value:
            model = self._include(item, ctx, stack)
            if model is not None:
                doc = self._import(doc, model, item)
        return doc

    def _include(self, item: Node, ctx: FileCtx, stack: tuple[str, ...]) -> Node | None:
        """The merged model of one ``include`` entry, or None when it cannot be followed."""
        if item.is_map():
            unknown = sorted(k for k in item.value if k not in _INCLUDE_KEYS)
            if unknown:
                named = ", ".join(f"'{k}'" for k in unknown[:3] if re.fullmatch(r"[\w.-]{1,40}", k))
                known = "(path, env_file and project_directory are known)"
                self._cannot(item, "cannot follow include: unknown key " + (named or known))
                return None
            paths = self._strings(item.get("path"), ctx.env, "path")
            env_names = self._strings(item.get("env_file"), ctx.env, "env_file")
            pdir = self._strings(item.get("project_directory"), ctx.env, "project_directory")
            if paths is None or env_names is None or pdir is None:
                return None
            if len(pdir) > 1:
                self._cannot(item, "cannot follow include: project_directory must be one string")
                return None
        elif item.is_scalar() and isinstance(item.value, str):
            paths, env_names, pdir = self._strings(item, ctx.env, "path") or [], None, []
        else:
            self._cannot(item, "cannot follow include: an entry must be a path or a mapping with path:")
            return None
        if not paths:
            self._cannot(item, "cannot follow include: no path")
            return None
        for p in paths + (env_names or []) + pdir:
            if _REMOTE.match(p):
                self._cannot(item, "cannot follow include: a remote (URL or git) include is not read by dester-harden")
                return None
            if p.startswith("~"):
                # Whose home? Compose's user's, not root's: never guess a file to read.
                self._cannot(item, "cannot follow include: a path starting with ~ (use a relative or absolute path)")
                return None
        resolved = [os.path.normpath(os.path.join(ctx.workdir, p)) for p in paths]
        project = os.path.normpath(os.path.join(ctx.workdir, pdir[0])) if pdir else os.path.dirname(resolved[0])
        if env_names:
            env_paths = [os.path.normpath(os.path.join(ctx.workdir, e)) for e in env_names]
        else:
            default = os.path.join(project, ".env")
            env_paths = [default] if self._exists(default) else []
        # The including project's variables win over the included file's own env files.
        own: dict[str, str] = {}
        files: list[EnvFile] = []
        for path in env_paths:
            esrc = self._open(path, "include", item, "env file")
            if esrc is None:
                return None
            ef = next((e for e in self.env_files if e.path == esrc.path), None) or self._load_env(esrc, ctx.env)
            if ef not in self.env_files:
                self.env_files.append(ef)
            files.insert(0, ef)  # a later env file wins over an earlier one
            own.update(ef.as_dict())
        child = FileCtx(project, {**own, **ctx.env}, ctx.env_files + files, project)
        model: Node | None = None
        for path in resolved:
            if os.path.realpath(path) in stack:
                self._cannot(item,
                             f"cannot follow include: {self._shown(path, item)} includes itself (an include cycle)")
                return None
            self._loads += 1
            if self._loads > MAX_INCLUDED_LOADS:
                self._cannot(item, f"cannot follow include: more than {MAX_INCLUDED_LOADS} included files")
                return None
            isrc = self._open(path, "include", item)
            if isrc is None:
                return None
            self.reached.setdefault(isrc.path, VIA_INCLUDE)
            doc = self.load(isrc, child, stack)
            if doc is not None:
                model = doc if model is None else merge(model, doc, ())
        return drop_resets(model) if model is not None else None

    def _import(self, doc: Node, model: Node, item: Node) -> Node:
        """Add an included model's resources to ``doc``; one defined differently in both is an input error."""
        for section in _RESOURCES:
            theirs = model.get(section)
            if theirs is None or not theirs.is_map():
                continue
            ours = doc.get(section)
            if ours is None or not ours.is_map():
                key_node = (model.keys or {}).get(section) or theirs
                doc = _with(doc, section, theirs, key_node)
                continue
            value, keys = dict(ours.value), dict(ours.keys or {})
            for name, node in theirs.items():
                if name in value:
                    if value[name].plain() != node.plain():
                        at = keys.get(name) or value[name]
                        shown = f" '{name}'" if re.fullmatch(r"[\w.-]{1,64}", name) else ""
                        raise InputError(f"{section}{shown} conflicts with the one of the file included at line "
                                         f"{item.line} (Compose refuses this)", at.file, at.line)
                    continue
                value[name] = node
                keys[name] = (theirs.keys or {}).get(name) or node
            merged = clone(ours, value)
            merged.keys = keys
            doc = _with(doc, section, merged, (doc.keys or {}).get(section) or ours)
        return doc

    # -- extends ------------------------------------------------------------------------
    def _extends(self, doc: Node, src: Source, ctx: FileCtx) -> Node:
        svcs = doc.get("services")
        if svcs is None or not svcs.is_map() or not any(n.is_map() and "extends" in n.value for _, n in svcs.items()):
            return doc
        value = {name: self._resolve(name, svcs, src, ctx, ctx.workdir, ()) for name in svcs.value}
        out = clone(svcs, value)
        out.keys = svcs.keys
        return _with(doc, "services", out, (doc.keys or {}).get("services") or svcs)

    def _resolve(self, name: str, svcs: Node, src: Source, ctx: FileCtx, rel_dir: str,
                 seen: tuple[tuple[str, str], ...]) -> Node:
        """Service ``name`` of ``svcs`` (in ``src``) with what it extends merged under it.

        ``extends: {file: ...}`` is relative to ``rel_dir``: the project's directory in a
        file of the project, the extended file's own directory in a file reached by extends.
        """
        node: Node = svcs.value[name]
        if not node.is_map() or "extends" not in node.value:
            return node
        me = (os.path.realpath(src.path), name)
        done = self._resolved.get(me)
        if done is not None:
            return done
        ext = node.value["extends"]
        if len(seen) >= MAX_EXTENDS_DEPTH:
            self._cannot(ext, f"cannot follow extends: a chain of more than {MAX_EXTENDS_DEPTH} services")
            return _without(node, "extends")
        own = _without(node, "extends")
        base_name, base_file = None, None
        if ext.is_scalar() and isinstance(ext.value, str):
            base_name = ext.value
        elif ext.is_map() and set(ext.value) <= {"service", "file"}:
            svc_node, file_node = ext.get("service"), ext.get("file")
            if svc_node is not None and isinstance(svc_node.value, str):
                base_name = svc_node.value
            if file_node is not None:
                base_file = file_node.value if isinstance(file_node.value, str) else None
                if base_file is None:
                    base_name = None
        if not base_name:
            self._cannot(ext, "cannot follow extends: expected a service name or {service: name, file: path}")
            return own
        base_name = interpolate(base_name, ctx.env).value if "$" in base_name else base_name
        base_svcs: Node | None = svcs
        base_src: Source | None = src
        base_dir = rel_dir
        if base_file is not None:
            base_file = interpolate(base_file, ctx.env).value if "$" in base_file else base_file
            if _REMOTE.match(base_file) or base_file.startswith("~"):
                self._cannot(ext, "cannot follow extends: a remote file or a path starting with ~ "
                             "is not read by dester-harden")
                return own
            path = os.path.normpath(os.path.join(rel_dir, base_file))
            base_src = self._open(path, "extends", ext)
            if base_src is None:
                return own
            self.reached.setdefault(base_src.path, VIA_EXTENDS)
            self.contexts.setdefault(base_src.display, FileCtx(ctx.workdir, ctx.env, ctx.env_files))
            if base_src.path not in self._parsed:
                self._parsed[base_src.path] = self.parse(base_src)
            base_doc = self._parsed[base_src.path]
            base_dir = os.path.dirname(base_src.path)
            base_svcs = base_doc.get("services") if base_doc is not None else None
        assert base_src is not None  # None returned above
        target = (os.path.realpath(base_src.path), base_name)
        if target in seen or target == me:
            self._cannot(ext, f"cannot follow extends: service '{name}' extends itself (an extends cycle)"
                         if re.fullmatch(r"[\w.-]{1,64}", name) else "cannot follow extends: an extends cycle")
            return own
        base = base_svcs.get(base_name) if base_svcs is not None and base_svcs.is_map() else None
        if base is None or not base.is_map():
            shown = f"'{base_name}'" if re.fullmatch(r"[\w.-]{1,64}", base_name) else "the service it names"
            self._cannot(ext, f"cannot follow extends: {base_src.display} defines no service {shown}")
            return own
        assert base_svcs is not None
        base = self._resolve(base_name, base_svcs, base_src, ctx, base_dir, seen + (me,))
        merged = merge(base, own, ("services", name))
        if merged is None:  # pragma: no cover - a service mapping is never !reset here
            return own
        # The extending service's own mapping is the one fixes add keys to.
        out = clone(own, merged.value)
        out.keys = merged.keys
        self._resolved[me] = out
        return out
