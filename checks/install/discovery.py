"""Find and model a DesterLib installation from its directory.

Layouts (see docs/CHECKS.md): the CLI install (``docker-compose.yml`` + ``.env``),
the setup-script install (a repository clone with ``env_file: apps/api/.env``)
and the newer layout (``docker/docker-compose.yml`` + root ``.env``). Discovery
reads every compose file Compose would read (with what they ``include:`` and
``extends:``, see :mod:`checks.install.composefiles`), every env file they name, and
interpolates ``${VAR}`` from the project's ``.env`` like Compose does.

Some 540 lines: the service builder is one pass over a service's keys that
shares the reader's state (overlay, env files, positions); Compose's short
syntaxes, which need none of it, live in :mod:`checks.install.specs`.
"""

from __future__ import annotations

import os
import posixpath
import pwd
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from checks.core.errors import InputError
from checks.core.interpolate import interpolate
from checks.core.paths import display_path
from checks.core.perf import paused_gc
from checks.core.textio import Source, decode_source, read_source
from checks.core.yamlpos import Node
from checks.install.composefiles import COMPOSE_NAMES, ComposeLoader, FileCtx
from checks.install.composefiles import compose_paths as _compose_paths
from checks.install.composefiles import drop_resets as _drop_resets
from checks.install.composefiles import merge as _merge
from checks.install.envfile import load_env_file
from checks.install.model import (
    LAYOUT_CLI,
    LAYOUT_CUSTOM,
    LAYOUT_NEWER,
    LAYOUT_SETUP_SCRIPT,
    EnvFile,
    EnvVar,
    Installation,
    Mount,
    Port,
    Service,
    Setting,
    Where,
)
from checks.install.secretsources import collect_secrets
from checks.install.specs import _is_path, normalize_host_path, parse_port_spec, parse_volume_spec


def default_install_dir() -> str:
    """``$DESTERLIB_DIR``, else ``~/.desterlib``."""
    return os.environ.get("DESTERLIB_DIR") or os.path.join(os.path.expanduser("~"), ".desterlib")


@dataclass
class Overlay:
    """Planned contents and modes that discovery reads instead of the disk.

    The fix planner re-audits its plan in memory through this, with every
    path exactly where it is on disk, before anything is written.
    """

    contents: dict[str, bytes] = field(default_factory=dict)
    """Absolute path -> the bytes the file will have."""
    modes: dict[str, int] = field(default_factory=dict)
    """Absolute path -> the permission bits it will have."""
    links: dict[str, str] = field(default_factory=dict)
    """Absolute path -> the target of a symbolic link that will be created there."""


class _Reader:
    """Reads files once and turns nodes into positioned evidence."""

    def __init__(self, root: str, overlay: Overlay | None = None) -> None:
        self.root = root
        self.overlay = overlay or Overlay()
        self.sources: dict[str, Source] = {}
        self._lines: dict[str, list[str]] = {}
        self.contexts: dict[str, FileCtx] = {}
        """Display path -> how that compose file is read (included files: their own env and directory)."""

    def exists(self, path: str) -> bool:
        return os.path.abspath(path) in self.overlay.contents or os.path.lexists(path)

    def display(self, path: str) -> str:
        return display_path(path, self.root)

    def read(self, path: str, kind: str) -> Source:
        path = os.path.abspath(path)
        src = self.sources.get(path)
        if src is None:
            planned = self.overlay.contents.get(path)
            if planned is None:
                src = read_source(path, self.display(path), kind)
            else:
                src = decode_source(path, self.display(path), kind, planned, _planned_stat(path, planned))
            if path in self.overlay.modes:
                src = replace(src, mode=self.overlay.modes[path])
            self.sources[path] = src
            self.sources[src.display] = src
        return src

    def where(self, node: Node) -> Where:
        lines = self._lines.get(node.file)
        if lines is None:
            src = self.sources.get(node.file)
            lines = src.text.splitlines() if src else []
            self._lines[node.file] = lines
        text = lines[node.line - 1] if 0 < node.line <= len(lines) else ""
        return Where(node.file, node.line, text)

    def dir_of(self, node: Node) -> str:
        """Where relative paths written at ``node`` resolve."""
        ctx = self.contexts.get(node.file)
        if ctx is not None and ctx.paths_dir is not None:
            return ctx.paths_dir
        src = self.sources.get(node.file)
        return os.path.dirname(src.path) if src else self.root

    def env_of(self, node: Node) -> dict[str, str] | None:
        """The variables ``${VAR}`` at ``node`` sees, when its file has its own (an included file)."""
        ctx = self.contexts.get(node.file)
        return ctx.env if ctx is not None else None


def _planned_stat(path: str, data: bytes) -> os.stat_result:
    """The stat a planned file will have: the real one, or a new file's (0600, owned like its directory)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        parent = os.stat(os.path.dirname(path))
        now = time.time()
        return os.stat_result((stat.S_IFREG | 0o600, 0, parent.st_dev, 1, parent.st_uid, parent.st_gid, len(data),
                               now, now, now))


def discover(root: str, files: list[str] | None = None, host_root: str = "/", now: float | None = None,
             overlay: Overlay | None = None) -> Installation:
    """Model the installation in ``root``; raise :class:`InputError` on bad input.

    With ``overlay``, planned contents and modes are read instead of the disk's.
    """
    with paused_gc():
        return _discover(root, files, host_root, now, overlay)


def _discover(root: str, files: list[str] | None, host_root: str, now: float | None,
              overlay: Overlay | None) -> Installation:
    shown = root
    root = os.path.abspath(os.path.expanduser(root))
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise InputError("install directory not found (use --dir or set DESTERLIB_DIR)", shown) from None
    except PermissionError:
        raise InputError("install directory is not accessible (permission denied)", shown) from None
    if not stat.S_ISDIR(st.st_mode):
        raise InputError("not a directory (--dir must name the DesterLib install directory)", shown)
    try:
        os.listdir(root)
    except PermissionError:
        raise InputError("install directory is not readable (permission denied)", shown) from None

    reader = _Reader(root, overlay)
    root_env_path = os.path.join(root, ".env")
    root_env: EnvFile | None = None
    if reader.exists(root_env_path):
        root_env = load_env_file(reader.read(root_env_path, "env file"), "root")

    compose_paths = _compose_paths(root, files, root_env, reader.exists)
    project_dir = os.path.dirname(compose_paths[0])

    # Compose reads .env from the project directory (the first file's); the
    # newer layout keeps it at the install root, so fall back to that.
    project_env_file = root_env
    project_env_path = os.path.join(project_dir, ".env")
    if project_dir != root and reader.exists(project_env_path):
        project_env_file = load_env_file(reader.read(project_env_path, "env file"), "project")
    elif project_env_file is not None:
        project_env_file.roles.append("project")
    project_env = project_env_file.as_dict() if project_env_file else {}

    sources: list[Source] = []
    docs: list[Node] = []
    merged: Node | None = None
    loader = ComposeLoader(reader, lambda esrc, lookup: load_env_file(esrc, "include", lookup))
    top_ctx = FileCtx(project_dir, project_env, [project_env_file] if project_env_file is not None else [])
    for path in compose_paths:
        src = reader.read(path, "compose file")
        sources.append(src)
        doc = loader.load(src, top_ctx)
        if doc is None:
            continue
        docs.append(doc)
        merged = doc if merged is None else _merge(merged, doc, ())
    if merged is None:
        raise InputError("compose file is empty", sources[0].display)
    merged = _drop_resets(merged)
    assert merged is not None

    top_paths = {s.path for s in sources}
    inst = Installation(
        root=root,
        layout=LAYOUT_CUSTOM,
        compose_files=sources + [s for s in loader.sources if s.path not in top_paths],
        project_dir=project_dir,
        project_env=project_env,
        env_files=[],
        services=[],
        top=merged,
        host_root=host_root,
        now=time.time() if now is None else now,
        root_mode=(overlay.modes[root] if overlay and root in overlay.modes else stat.S_IMODE(st.st_mode)),
        mode_overlay=dict(overlay.modes) if overlay else {},
        planned=dict(overlay.contents) if overlay else {},
        planned_links=dict(overlay.links) if overlay else {},
        root_uid=st.st_uid,
        reached={p: how for p, how in loader.reached.items() if p not in top_paths},
        unfollowed=list(loader.unfollowed),
        interp_env_files={f: list(c.env_files) for f, c in reader.contexts.items()},
        file_env={f: c.env for f, c in reader.contexts.items() if c.env is not project_env},
    )
    env_files: dict[str, EnvFile] = {}
    for ef in (root_env, project_env_file, *loader.env_files):
        if ef is not None:
            env_files.setdefault(ef.path, ef)

    builder = _ServiceBuilder(inst, reader, env_files, docs)
    services = merged.get("services")
    if services is not None and services.is_map():
        for name, node in services.items():
            if not node.is_map():
                if node.value is None:
                    continue
                raise InputError(f"service '{name}' must be a mapping", node.file, node.line)
            inst.services.append(builder.build(name, node))
    inst.env_files = list(env_files.values())
    inst.layout = _layout(inst)
    api = find_api_service(inst)
    media = api.environment.get("CONTAINER_MEDIA_PATH") if api else None
    if media is not None and media.value:
        inst.media_path = posixpath.normpath(media.value)
    inst.secrets = collect_secrets(inst)
    return inst


class _ServiceBuilder:
    def __init__(self, inst: Installation, reader: _Reader, env_files: dict[str, EnvFile],
                 docs: list[Node] | None = None) -> None:
        self.inst = inst
        self.docs = docs or []  # each compose file's own top-level mapping, before merging
        self.reader = reader
        self.env_files = env_files
        top = inst.top
        vols = top.get("volumes") if top is not None else None
        self.volume_defs = vols if vols is not None and vols.is_map() else None
        self._home: str | None = None

    # -- scalars --
    def setting(self, node: Node) -> Setting:
        raw = node.value
        if isinstance(raw, str) and "$" in raw:
            env = self.reader.env_of(node)
            r = interpolate(raw, self.inst.project_env if env is None else env)
            return Setting(r.value, raw, node, r.refs, r.missing, r.literal, r.defaults)
        literal = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        return Setting(raw, raw, node, literal=literal)

    def text(self, node: Node | None) -> str | None:
        if node is None or not node.is_scalar() or node.value is None:
            return None
        value = self.setting(node).value
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def build(self, name: str, node: Node) -> Service:
        compose_src = self.reader.sources.get(node.file) or self.inst.compose_files[0]
        services = self.inst.top.get("services") if self.inst.top is not None else None
        key_node = services.keys.get(name) if services is not None and services.keys else None
        svc = Service(name=name, node=node, where=self.reader.where(key_node or node), compose_file=compose_src)
        image = node.get("image")
        if image is not None and image.is_scalar() and image.value is not None:
            svc.image = self.setting(image)
        self._env_files(svc)
        self._environment(svc)
        if len(self.docs) > 1:
            # The merged model keeps only the winning entries; what each file says
            # (an overridden literal password too) is read from the file itself.
            svc.compose_env_written = []
            for doc in self.docs:
                svcs = doc.get("services")
                own = svcs.get(name) if svcs is not None and svcs.is_map() else None
                env = own.get("environment") if own is not None and own.is_map() else None
                if env is not None and env.value is not None:
                    self._environment(svc, env, effective=False)
        self._ports(svc)
        self._mounts(svc)
        return svc

    # -- environment --
    def _env_files(self, svc: Service) -> None:
        node = svc.opt("env_file")
        if node is None or node.value is None:
            return
        items = node.value if node.is_seq() else [node]
        for item in self._flatten(items):
            required = True
            path_node = item
            if item.is_map():
                named = item.get("path")
                req = item.get("required")
                if req is not None:
                    required = _truthy(self.text(req))
                if named is None:
                    continue
                path_node = named
            rel = self.text(path_node)
            if not rel:
                continue
            path = os.path.normpath(os.path.join(self.reader.dir_of(path_node), os.path.expanduser(rel)))
            ef = self.env_files.get(path)
            if ef is None:
                if self.reader.exists(path):
                    ef = load_env_file(self.reader.read(path, "env file"), "env_file", self.inst.project_env)
                else:
                    ef = EnvFile(path=path, display=self.reader.display(path), source=None, roles=["env_file"],
                                 required=required)
                    if required:
                        self.inst.notes.append(f"{ef.display}: named by env_file of service '{svc.name}' but missing; "
                                               "docker compose would refuse to start")
                self.env_files[path] = ef
            elif "env_file" not in ef.roles:
                ef.roles.append("env_file")
            ef.referenced_by.append((svc.name, self.reader.where(path_node)))
            svc.env_files.append(ef)
            for entry in ef.entries:
                var = EnvVar.from_env_entry(ef, entry)
                svc.env_file_vars.append(var)
                svc.environment[entry.key] = var

    @staticmethod
    def _flatten(items: list[Node]) -> Iterator[Node]:
        for item in items:
            if item.is_seq():
                yield from _ServiceBuilder._flatten(item.value)
            else:
                yield item

    def _env_items(self, node: Node) -> Iterator[tuple[str, Node | None, Node]]:
        """(key, value node or None, node to cite) for map, list or merged forms."""
        if node.is_map():
            assert node.keys is not None
            for k, v in node.items():
                yield k, v, v if v.value is not None else node.keys[k]
        elif node.is_seq():
            for item in node.value:
                if item.is_seq() or item.is_map():
                    yield from self._env_items(item)
                elif item.value is not None:
                    yield str(item.value).split("=", 1)[0], item, item

    def _environment(self, svc: Service, node: Node | None = None, effective: bool = True) -> None:
        """The service's environment; with ``effective=False`` only ``compose_env_written`` grows."""
        node = svc.opt("environment") if node is None else node
        if node is None or node.value is None:
            return
        for key, value_node, cite in self._env_items(node):
            where = self.reader.where(cite)
            if value_node is None or value_node.value is None:
                var = EnvVar(key, None, None, "compose", where)
            elif (value_node.is_scalar() and value_node is cite and isinstance(value_node.value, str)
                  and value_node.value.startswith(key) and self._is_list_item(node, value_node)):
                text = value_node.value
                if "=" not in text:
                    var = EnvVar(key, None, None, "compose", where)  # taken from the shell
                else:
                    raw: str | None = text.split("=", 1)[1]
                    s = self.setting(value_node)
                    has_value = isinstance(s.value, str) and "=" in s.value
                    value: str | None = s.value.split("=", 1)[1] if has_value else None
                    literal = s.literal.split("=", 1)[1] if "=" in s.literal else s.literal
                    s = Setting(value, raw, value_node, s.refs, s.missing, literal, s.defaults)
                    var = EnvVar(key, value, raw, "compose", where, s)
            else:
                s = self.setting(value_node)
                value = s.value
                if isinstance(value, bool):
                    value = "true" if value else "false"
                elif value is not None:
                    value = str(value)
                raw = s.raw if isinstance(s.raw, str) else (None if s.raw is None else str(s.raw))
                var = EnvVar(key, value, raw, "compose", where, s)
            svc.compose_env_written.append(var)
            if effective:
                svc.compose_env[key] = var
                svc.environment[key] = var

    @staticmethod
    def _is_list_item(container: Node, item: Node) -> bool:
        if container.is_seq():
            return any(i is item or (i.is_seq() and _ServiceBuilder._is_list_item(i, item)) for i in container.value)
        return False

    # -- ports --
    def _ports(self, svc: Service) -> None:
        node = svc.opt("ports")
        if node is None or not node.is_seq():
            return
        for item in node.value:
            where = self.reader.where(item)
            if item.is_map():
                target = self.text(item.get("target"))
                if not target:
                    continue
                published = self.text(item.get("published"))
                host_ip = self.text(item.get("host_ip"))
                proto = self.text(item.get("protocol")) or "tcp"
                interp = any(isinstance(v.value, str) and "$" in v.value for _, v in item.items())
                svc.ports.append(Port(host_ip or None, published or None, target, proto.lower(), where, item, True,
                                      interp))
                continue
            if item.value is None:
                continue
            s = self.setting(item)
            spec = str(s.value)
            port = parse_port_spec(spec)
            if port is None:
                self.inst.notes.append(f"{where.file}:{where.line}: cannot read port '{_safe(spec)}'")
                continue
            host_ip, published, target, proto = port
            svc.ports.append(Port(host_ip, published, target, proto, where, item, False, s.interpolated))

    # -- volumes --
    def _home_dir(self) -> str:
        if self._home is None:
            try:
                self._home = pwd.getpwuid(self.inst.root_uid).pw_dir
            except KeyError:
                self._home = os.path.expanduser("~")
        return self._home

    def host_path(self, source: str, base_dir: str) -> str:
        if source.startswith("~"):
            # compose-go's ExpandUser is filepath.Join(home, p[1:]): "~x" is home/x, never "homex".
            source = self._home_dir().rstrip("/") + "/" + source[1:]
        if not source.startswith("/"):
            source = os.path.join(base_dir, source)
        return normalize_host_path(source)

    def _mounts(self, svc: Service) -> None:
        node = svc.opt("volumes")
        if node is None or not node.is_seq():
            return
        by_target: dict[str, int] = {}
        for item in node.value:
            where = self.reader.where(item)
            base_dir = self.reader.dir_of(item)
            if item.is_map():
                kind = (self.text(item.get("type")) or "").lower()
                source = self.text(item.get("source"))
                target = self.text(item.get("target"))
                read_only = _truthy(self.text(item.get("read_only")))
                if not kind:
                    kind = "bind" if source and _is_path(source) else "volume"
                interp = any(isinstance(v.value, str) and "$" in v.value for _, v in item.items())
                mount = Mount(kind, source, target, read_only, where, item, True, interp)
            elif item.value is not None:
                s = self.setting(item)
                mount = parse_volume_spec(str(s.value), where, item, s.interpolated)
            else:
                continue
            if mount.kind == "bind" and mount.source:
                mount.host_path = self.host_path(mount.source, base_dir)
            elif mount.kind == "volume" and mount.source:
                self._bind_backed(mount)
            # Compose keys service volumes by target (compose-go's EnforceUnicity):
            # an override's `./media:/media:ro` replaces the base's mount in place
            # rather than adding a second, read-write one that never exists.
            same = by_target.get(mount.target) if mount.target else None
            if same is None:
                if mount.target:
                    by_target[mount.target] = len(svc.mounts)
                svc.mounts.append(mount)
            else:
                svc.mounts[same] = mount

    def _bind_backed(self, mount: Mount) -> None:
        """A local-driver named volume with ``type: none``/``o: bind`` is a bind mount."""
        if self.volume_defs is None or mount.source is None:
            return
        vdef = self.volume_defs.get(mount.source)
        if vdef is None or not vdef.is_map():
            return
        if _truthy(self.text(vdef.get("external"))):
            return
        driver = (self.text(vdef.get("driver")) or "local").lower()
        opts = vdef.get("driver_opts")
        if driver != "local" or opts is None or not opts.is_map():
            return
        device = self.text(opts.get("device"))
        vtype = (self.text(opts.get("type")) or "").lower()
        flags = {f.strip().lower() for f in (self.text(opts.get("o")) or "").split(",")}
        if not device:
            return
        if vtype in ("none", "bind") or (not vtype and flags & {"bind", "rbind"}):
            mount.host_path = self.host_path(device, self.reader.dir_of(vdef))
            mount.via_volume = mount.source


def _safe(text: str) -> str:
    return text if re.fullmatch(r"[\w.:\[\]/\-${}]{0,64}", text) else "…"


def _truthy(value: str | None) -> bool:
    """Compose's boolean spellings (compose-go accepts y/yes/true/on)."""
    return value is not None and value.strip().lower() in ("y", "yes", "true", "on", "1")


API_IMAGE = re.compile(r"(^|/)desterlib[-/]?api(:|@|$)|(^|/)dester-?api(:|@|$)", re.I)


def find_api_service(inst: Installation) -> Service | None:
    """The DesterLib API service: named ``api``, or the desterlib/api image, or desterlib-api."""
    for svc in inst.services:
        if svc.name == "api":
            return svc
    for svc in inst.services:
        cn = svc.opt("container_name")
        if API_IMAGE.search(svc.image_name) or (cn is not None and str(cn.value) in ("desterlib-api", "dester-api")):
            return svc
    return None


def api_port(svc: Service) -> int:
    """The port the API listens on inside its container (``PORT``, default 3001)."""
    var = svc.environment.get("PORT")
    # str.isdigit() accepts "²", which int() refuses: only ASCII digits are a port.
    if var is not None and var.value and re.fullmatch(r"[0-9]{1,5}", var.value.strip()):
        return int(var.value.strip())
    return 3001


def _layout(inst: Installation) -> str:
    first = inst.compose_files[0].path
    if os.path.dirname(first) == os.path.join(inst.root, "docker"):
        return LAYOUT_NEWER
    for ef in inst.env_files:
        if "env_file" in ef.roles and ef.path == os.path.join(inst.root, "apps", "api", ".env"):
            return LAYOUT_SETUP_SCRIPT
    if os.path.isdir(os.path.join(inst.root, "apps", "api")):
        return LAYOUT_SETUP_SCRIPT
    at_root = os.path.basename(first) in COMPOSE_NAMES and os.path.dirname(first) == inst.root
    if at_root and find_api_service(inst) is not None:
        return LAYOUT_CLI
    return LAYOUT_CUSTOM
