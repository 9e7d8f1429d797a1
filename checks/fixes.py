"""Fixes: how each fixable check turns into a plan.

The planner never writes to disk. It edits an in-memory :class:`Overlay` of
planned contents and modes, re-discovering the installation through it after
every edit (so each edit is placed by fresh node positions), and at the end
re-audits the result: a fix that would not fix its check, or that would make
another check fail, is an error, not a plan.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
import stat
import subprocess
import tempfile
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import quote, unquote

from . import edit, envedit
from .audit import run_audit
from .catalog import BY_ID
from .discovery import Overlay, discover
from .edit import EditRefused
from .findings import FAIL
from .interpolate import interpolate
from .model import EnvEntry, EnvFile, EnvVar, Installation, Service
from .plan import FileEdit, ModeChange, Plan, Refusal, TreeChmod
from .rules.common import db_ports, is_postgres, is_redis, parse_db_url, service_hosts, api_service, api_port
from .rules.dkr import DANGEROUS_CAPS, is_docker_socket, normalize_cap
from .rules.fs import media_mounts as _media_mounts, stray_copies
from .rules.net import _allowed
from .rules.sec import _DEFAULT_SECRET, _literal_secret_note, _needs_encoding, requirepass_args, weakness
from .secrets import is_secret_key, url_parts, url_password_span
from .yamlpos import Node

#: secrets.token_urlsafe(32): 43 characters of A-Z a-z 0-9 - _, so DATABASE_URL needs no encoding.
PASSWORD_BYTES = 32
APP_SECRET_BYTES = 48


class PlanError(Exception):
    """The planned changes failed their own validation; nothing will be written."""


@dataclass(frozen=True, slots=True)
class Fixer:
    id: str
    default: bool
    """Part of ``dester-harden fix`` without ``--only`` (else offered: only when asked for)."""
    run: Callable[["Planner"], None]


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _pure_ref(raw: str | None) -> str | None:
    """NAME when ``raw`` is exactly ``${NAME}``, ``${NAME:-x}`` or ``$NAME``."""
    if raw is None:
        return None
    m = _REF.fullmatch(raw.strip())
    if not m:
        return None
    return m.group(1) or m.group(3)


class Planner:
    """Builds the plan for an installation, one fixer at a time."""

    def __init__(self, root: str, profile: str = "local", files: list[str] | None = None, host_root: str = "/",
                 now: float | None = None, new_secret: Callable[[int], str] | None = None) -> None:
        self.root = os.path.abspath(root)
        self.profile = profile
        self.files = files
        self.host_root = host_root
        self.now = now
        self.overlay = Overlay()
        self._new_secret = new_secret or _secrets.token_urlsafe
        self.refusals: list[Refusal] = []
        self.notes: list[str] = []
        self.generated: set[str] = set()
        self.trees: list[TreeChmod] = []
        self._disk: dict[str, bytes | None] = {}
        self._disk_modes: dict[str, int] = {}
        self._refused: set[tuple] = set()
        self._bom: dict[str, bool] = {}
        self.base = self.inst()
        self.base_report = run_audit(self.base, profile)

    # -- the planned state ------------------------------------------------------
    def inst(self) -> Installation:
        return discover(self.root, self.files, self.host_root, self.now, overlay=self.overlay)

    def failing(self, check_id: str, inst: Installation | None = None):
        rep = run_audit(inst or self.inst(), self.profile, only={check_id})
        f = rep.findings[0] if rep.findings else None
        return f if f is not None and f.status == FAIL else None

    def path_of(self, inst: Installation, display: str) -> str:
        for src in inst.compose_files:
            if src.display == display:
                return src.path
        for ef in inst.env_files:
            if ef.display == display:
                return ef.path
        return display if os.path.isabs(display) else os.path.join(self.root, display)

    def read_text(self, path: str) -> str:
        path = os.path.abspath(path)
        data = self.overlay.contents.get(path)
        if data is None:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return ""
        bom = data.startswith(b"\xef\xbb\xbf")
        self._bom.setdefault(path, bom)
        return (data[3:] if bom else data).decode("utf-8")

    def write_text(self, path: str, text: str) -> None:
        path = os.path.abspath(path)
        if path not in self._disk:
            try:
                with open(path, "rb") as fh:
                    self._disk[path] = fh.read()
            except FileNotFoundError:
                self._disk[path] = None
        prefix = b"\xef\xbb\xbf" if self._bom.get(path) else b""
        self.overlay.contents[path] = prefix + text.encode("utf-8")

    def chmod(self, path: str, mode: int) -> None:
        path = os.path.abspath(path)
        if path not in self._disk_modes:
            self._disk_modes[path] = stat.S_IMODE(os.lstat(path).st_mode)
        self.overlay.modes[path] = mode

    def mode(self, path: str) -> int:
        path = os.path.abspath(path)
        return self.overlay.modes.get(path, stat.S_IMODE(os.lstat(path).st_mode))

    def refuse(self, check: str, reason: str, key: tuple | None = None) -> None:
        if key is not None:
            if key in self._refused:
                return
            self._refused.add(key)
        self.refusals.append(Refusal(check, reason, BY_ID[check].fix))

    def new_secret(self, nbytes: int = PASSWORD_BYTES) -> str:
        value = self._new_secret(nbytes)
        self.generated.add(value)
        return value

    # -- edits by node -----------------------------------------------------------
    def edit_node(self, inst: Installation, node: Node, fn: Callable[[str], str]) -> None:
        path = self.path_of(inst, node.file)
        self.write_text(path, fn(self.read_text(path)))

    def project_env_path(self, inst: Installation) -> str:
        return os.path.join(inst.project_dir, ".env")

    def project_env(self, inst: Installation) -> EnvFile | None:
        path = self.project_env_path(inst)
        for ef in inst.env_files:
            if ef.path == path:
                return ef
        return None

    def set_env_var(self, inst: Installation, name: str, value: str, comment: str) -> None:
        """Define ``name`` in the project's .env (created 0600), or change its value."""
        path = self.project_env_path(inst)
        ef = self.project_env(inst)
        entry = ef.get(name) if ef is not None else None
        text = self.read_text(path)
        if entry is not None:
            self.write_text(path, envedit.set_value(text, entry, value))
        else:
            self.write_text(path, envedit.append(text, [(name, value)], comment))

    def edit_env_entry(self, ef: EnvFile, entry: EnvEntry, value: str) -> None:
        self.write_text(ef.path, envedit.set_value(self.read_text(ef.path), entry, value))

    # -- driving fixers ------------------------------------------------------------
    def each(self, check: str, targets: Callable[[Installation], Iterable[tuple[tuple, Callable[[Installation], None]]]]) -> None:
        """Fix targets one at a time, re-discovering after each edit; refused ones are skipped."""
        for _ in range(1000):
            inst = self.inst()
            for key, apply in targets(inst):
                if key in self._refused:
                    continue
                try:
                    apply(inst)
                except EditRefused as exc:
                    self.refuse(check, str(exc), key)
                    continue
                break
            else:
                return
        raise PlanError(f"{check}: the fix did not converge")

    def build(self, only: set[str] | None = None) -> Plan:
        failing = {f.id for f in self.base_report.findings if f.status == FAIL}
        selected = []
        for fixer in FIXERS:
            if fixer.id not in failing:
                continue
            if only is not None and fixer.id not in only:
                continue
            if only is None and not fixer.default:
                continue
            selected.append(fixer.id)
            fixer.run(self)
        if only:
            for cid in sorted(only & failing):
                if cid not in {f.id for f in FIXERS}:
                    chk = BY_ID[cid]
                    why = "a live check: arrives with the live-system work" if chk.live else (
                        "explained only: no change dester-harden can make safely" if not chk.fixable else
                        "not automated yet")
                    self.refusals.append(Refusal(cid, why, chk.fix))
        plan = self._assemble(selected)
        self._validate(plan, selected)
        return plan

    def _assemble(self, selected: list[str]) -> Plan:
        plan = Plan(checks=selected, refusals=self.refusals, notes=self.notes)
        for path, after in self.overlay.contents.items():
            before = self._disk.get(path)
            if before == after:
                continue
            mode = 0o600 if before is None else None
            plan.changes.append(FileEdit(path, before, after, mode))
        for path, mode in self.overlay.modes.items():
            before = self._disk_modes.get(path)
            if before is not None and before != mode and self._disk.get(path, b"") is not None:
                plan.changes.append(ModeChange(path, before, mode))
        plan.changes.extend(self.trees)
        plan.secrets = set(self.base.secrets) | set(self.generated) | set(self.inst().secrets)
        return plan

    def _validate(self, plan: Plan, selected: list[str]) -> None:
        if plan.empty:
            return
        final = self.inst()  # re-parses every planned file: a syntax error raises here
        report = run_audit(final, self.profile)
        before = {f.id: f.status for f in self.base_report.findings}
        refused = {r.check for r in self.refusals}
        for f in report.findings:
            if f.id == "FS-005":
                continue  # the media rule is applied by the engine, not visible in the overlay
            if f.status == FAIL and before.get(f.id) != FAIL:
                raise PlanError(f"internal error: the planned fixes would make {f.id} fail; nothing was changed")
            if f.status == FAIL and f.id in selected and f.id not in refused:
                raise PlanError(f"internal error: the planned fix for {f.id} does not fix it; nothing was changed")
        compose_check(self, final)
        self.final_report = report


# -- compose validation by Docker Compose itself -------------------------------------


def compose_available() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def compose_check(planner: Planner, inst: Installation) -> None:
    """Where ``docker compose`` is installed, let it validate the planned compose files.

    The flags keep it from resolving variables or env files: without them it
    prints secrets. Files are mirrored into a private temporary directory.
    """
    changed = [p for p in planner.overlay.contents if any(p == s.path for s in inst.compose_files)]
    if not changed or not compose_available():
        return
    # A private (0700) directory outside the install: planning, and so a dry
    # run, must leave the installation exactly as it was.
    tmp = tempfile.mkdtemp(prefix="dester-harden-validate-")
    try:
        args = ["docker", "compose"]
        for src in inst.compose_files:
            rel = os.path.relpath(src.path, planner.root)
            dest = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            data = planner.overlay.contents.get(src.path)
            if data is None:
                with open(src.path, "rb") as fh:
                    data = fh.read()
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            args += ["-f", dest]
        project = os.path.join(tmp, os.path.relpath(inst.project_dir, planner.root))
        args += ["--project-directory", project, "config", "--no-interpolate", "--no-env-resolution", "-q"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp,
                              env={**os.environ, "COMPOSE_DISABLE_ENV_FILE": "1"})
        if proc.returncode != 0:
            from .secrets import Masker

            masker = Masker(set(inst.secrets) | planner.generated)
            msg = " ".join(masker.text(proc.stderr.replace(tmp + "/", "")).split())[:300]
            raise PlanError(f"docker compose rejects the planned compose file: {msg}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- NET ------------------------------------------------------------------------------


def _rebind(planner: Planner, inst: Installation, port, ip: str) -> None:
    if port.interpolated:
        raise EditRefused(f"the port at {port.where.file}:{port.where.line} comes from ${{...}} interpolation; set the variable in .env to bind it to {ip}")
    node = port.node
    if port.long:
        if node.get("host_ip") is not None:
            planner.edit_node(inst, node, lambda t: edit.replace_scalar(t, node.get("host_ip"), ip))
        else:
            planner.edit_node(inst, node, lambda t: edit.insert_lines(t, node, [f"host_ip: {ip}"]))
        return
    raw = str(node.value)
    proto = "/" + raw.rsplit("/", 1)[1] if "/" in raw else ""
    spec = f"{ip}:{port.published or ''}:{port.target}{proto}"
    style = node.style or '"'
    planner.edit_node(inst, node, lambda t: edit.ensure_editable(node, "the port") or t[:node.start] + edit.render_scalar(spec, style) + t[node.end:])


def fix_net_001(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for port in db_ports(svc):
                if port.all_interfaces:
                    yield (("NET-001", svc.name, port.where.text.strip()), lambda i, port=port: _rebind(p, i, port, "127.0.0.1"))
    p.each("NET-001", targets)


def fix_net_002(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for port in db_ports(svc):
                def apply(i, svc=svc, port=port):
                    seq = svc.opt("ports")
                    if len(seq.value) == 1:
                        p.edit_node(i, svc.node, lambda t: edit.delete_key(t, svc.node, "ports"))
                    else:
                        p.edit_node(i, port.node, lambda t: edit.delete_item(t, seq, port.node))
                yield (("NET-002", svc.name, port.where.text.strip()), apply)
    p.each("NET-002", targets)


def fix_net_003(p: Planner) -> None:
    if p.profile == "tailscale":
        p.notes.append("NET-003: the API is rebound to 127.0.0.1; reach it over the tailnet with `tailscale serve --bg 3001`.")

    def targets(inst):
        svc = api_service(inst)
        if svc is None:
            return
        port_no = api_port(svc)
        for port in svc.ports:
            if (port_no in port.target_ports or port_no in port.published_ports) and not _allowed(port.host_ip, p.profile):
                yield (("NET-003", svc.name, port.where.text.strip()), lambda i, port=port: _rebind(p, i, port, "127.0.0.1"))
    p.each("NET-003", targets)


def fix_net_004(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for key in ("network_mode", "pid", "ipc", "userns_mode"):
                node = svc.opt(key)
                if node is not None and isinstance(node.value, str) and node.value.strip().lower() == "host":
                    yield (("NET-004", svc.name, key), lambda i, svc=svc, key=key: p.edit_node(i, svc.node, lambda t: edit.delete_key(t, svc.node, key)))
    p.each("NET-004", targets)
    p.notes.append("NET-004: a service taken off the host network must publish the ports it serves (ports:).")


def fix_net_005(p: Planner) -> None:
    inst = p.inst()
    if any(svc.opt("networks") is not None for svc in inst.services):
        p.refuse("NET-005", "some services already name networks; moving the others could cut them off from each other")
        return

    def targets(inst):
        for svc in inst.services:
            mode = svc.opt("network_mode")
            if mode is not None and mode.value not in (None, "bridge"):
                continue
            if svc.opt("networks") is None:
                def apply(i, svc=svc):
                    text = p.read_text(p.path_of(i, svc.node.file))
                    ci = edit.child_indent(text, svc.node)
                    p.edit_node(i, svc.node, lambda t: edit.insert_lines(t, svc.node, ["networks:", f"{ci}- desterlib-net"]))
                yield (("NET-005", svc.name), apply)
        top = inst.top
        nets = top.get("networks") if top is not None else None
        if nets is None or not nets.is_map() or "desterlib-net" not in nets.value:
            def add_top(i):
                t_node = i.top
                path = p.path_of(i, t_node.file)
                text = p.read_text(path)
                existing = t_node.get("networks")
                if existing is not None and existing.is_map() and existing.keys:
                    ci = edit.child_indent(text, existing) if any(v.is_map() for v in existing.value.values()) else "  "
                    p.write_text(path, edit.insert_lines(text, existing, ["desterlib-net:", f"{ci}driver: bridge"]))
                elif existing is None:
                    ci = edit.child_indent(text, t_node)
                    p.write_text(path, edit.insert_lines(text, t_node, ["networks:", f"{ci}desterlib-net:", f"{ci}{ci}driver: bridge"]))
                else:
                    raise EditRefused("the top-level networks: section is not a block mapping")
            yield (("NET-005", "top"), add_top)
    p.each("NET-005", targets)


# -- SEC -----------------------------------------------------------------------------


def _password_vars(inst: Installation, user_filter: Callable[[str | None, str], bool]):
    """(service or None, EnvVar, kind) for every place that sets the database password."""
    hosts = service_hosts(inst)
    seen = set()
    for svc in inst.services:
        for var in svc.compose_env_written + svc.env_file_vars:
            k = (var.where.file, var.where.line)
            if k in seen:
                continue
            seen.add(k)
            yield from _classify(svc, var, hosts, user_filter)
    for ef in inst.env_files:
        for entry in ef.entries:
            k = (ef.display, entry.line)
            if k in seen:
                continue
            seen.add(k)
            from .model import Where

            var = EnvVar(entry.key, entry.value, entry.raw, "env_file", Where(ef.display, entry.line, entry.text), env_file=ef)
            yield from _classify(None, var, hosts, user_filter)


def _classify(svc, var: EnvVar, hosts, user_filter):
    if not var.value:
        return
    if var.key in ("POSTGRES_PASSWORD", "MYSQL_PASSWORD", "MARIADB_PASSWORD"):
        user_key = {"POSTGRES_PASSWORD": "POSTGRES_USER", "MYSQL_PASSWORD": "MYSQL_USER", "MARIADB_PASSWORD": "MARIADB_USER"}[var.key]
        user = None
        if svc is not None and svc.environment.get(user_key) is not None:
            user = svc.environment[user_key].value
        if user_filter(user or ("postgres" if var.key == "POSTGRES_PASSWORD" else None), var.value):
            yield svc, var, "plain"
    elif var.key.upper().endswith("URL"):
        parsed = parse_db_url(var.value)
        if parsed is None:
            return
        user, pw, host, _ = parsed
        if host in hosts or host in ("localhost", "127.0.0.1"):
            if user_filter(user, unquote(pw)):
                yield svc, var, "url"


def _set_password(p: Planner, inst: Installation, svc, var: EnvVar, kind: str, new: str, check: str) -> None:
    """Put ``new`` where ``var`` sets the password, following ``${VAR}`` to the .env that holds it."""
    raw = var.raw or ""
    whole = _pure_ref(raw)
    if kind == "url" and whole is not None:
        # DATABASE_URL: ${NAME:-postgresql://...}: define NAME in .env with the new password.
        parts = url_password_span(var.value or "")
        if parts is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}")
        value = var.value or ""
        p.set_env_var(inst, whole, value[:parts[0]] + quote(new, safe="") + value[parts[1]:], f"set by dester-harden ({check})")
        return
    if kind == "url":
        span = url_password_span(raw)
        if span is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}")
        pw_raw = raw[span[0]:span[1]]
        ref = _pure_ref(pw_raw)
        if ref is None and "$" in pw_raw.replace("$$", ""):
            raise EditRefused(f"the password in {var.key} at {var.where.file}:{var.where.line} is built from variables; set it by hand")
        if ref is not None:
            p.set_env_var(inst, ref, new, f"set by dester-harden ({check})")
            return
        new_raw = raw[:span[0]] + quote(new, safe="") + raw[span[1]:]
    else:
        ref = _pure_ref(raw)
        if ref is not None:
            p.set_env_var(inst, ref, new, f"set by dester-harden ({check})")
            return
        if "$" in raw.replace("$$", ""):
            raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} is built from variables; set it by hand")
        new_raw = new
    _write_var(p, inst, var, new_raw)


def _write_var(p: Planner, inst: Installation, var: EnvVar, new_raw: str) -> None:
    """Replace the value of ``var`` where it is written (compose or env file) with ``new_raw``."""
    if var.origin == "env_file" and var.env_file is not None:
        entry = next((e for e in var.env_file.entries if e.line == var.where.line and e.key == var.key), None)
        if entry is None:
            raise EditRefused(f"{var.key} not found at {var.where.file}:{var.where.line}")
        p.edit_env_entry(var.env_file, entry, new_raw)
        return
    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} has no value to replace")
    text_value = str(node.value)
    if text_value.startswith(var.key + "=") and node.style in (None, '"', "'"):
        new_text = var.key + "=" + new_raw  # list form: "- KEY=value"
    else:
        new_text = new_raw
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new_text))


def fix_sec_001(p: Planner) -> None:
    inst = p.inst()
    weak_users = set()
    for svc, var, kind in _password_vars(inst, lambda u, pw: True):
        pw = unquote(parse_db_url(var.value)[1]) if kind == "url" else var.value
        user = parse_db_url(var.value)[0] if kind == "url" else None
        if weakness(pw, user, None):
            weak_users.add(user or "*")
    if not weak_users:
        return
    new = p.new_secret(PASSWORD_BYTES)
    _rotate(p, "SEC-001", new, lambda user, pw: True)
    users = sorted(u for u in weak_users if u != "*") or ["<user>"]
    p.notes.append(
        "SEC-001: PostgreSQL keeps the old password inside its data volume. Before `docker compose up -d`, run "
        f"`docker compose exec postgres psql -U {users[0]} -c '\\password {users[0]}'` and type the new password "
        "(POSTGRES_PASSWORD in .env, or the new value in the preview with --reveal), or the API cannot log in.")


def _rotate(p: Planner, check: str, new: str, user_filter) -> None:
    def targets(inst):
        project = p.project_env(inst)
        for svc, var, kind in _password_vars(inst, user_filter):
            current = unquote(parse_db_url(var.value)[1]) if kind == "url" else var.value
            if current == new:
                continue
            ref = _pure_ref(var.raw)
            if ref is not None and project is not None and project.get(ref) is not None:
                continue  # the .env entry it names is a target of its own
            yield ((check, var.where.file, var.where.line, var.key), lambda i, svc=svc, var=var, kind=kind: _set_password(p, i, svc, var, kind, new, check))
    p.each(check, targets)


def fix_sec_002(p: Planner) -> None:
    inst = p.inst()
    canonical = None
    for svc in inst.services:
        if is_postgres(svc):
            var = svc.environment.get("POSTGRES_PASSWORD")
            if var is not None and var.value:
                canonical = var.value
                break
    if canonical is None:
        p.refuse("SEC-002", "no POSTGRES_PASSWORD in the database service to take as the one that counts")
        return
    _rotate(p, "SEC-002", canonical, lambda user, pw: True)


def fix_sec_003(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for var in svc.compose_env_written:
                if _literal_secret_note(var, inst.project_env) is None:
                    continue
                yield (("SEC-003", var.where.file, var.where.line, var.key), lambda i, var=var: _move_to_env(p, i, var))
            for arg, node in requirepass_args(svc):
                if arg.strip("\"'") and (not interpolate(arg, {}).refs or _ships_default(arg, inst)):
                    yield (("SEC-003", node.file, node.line, "requirepass"), lambda i, arg=arg, node=node: _move_requirepass(p, i, arg, node))
    p.each("SEC-003", targets)


def _ships_default(raw: str, inst: Installation) -> bool:
    from .rules.sec import ships_default

    return ships_default(interpolate(raw, inst.project_env).defaults)


def _move_to_env(p: Planner, inst: Installation, var: EnvVar) -> None:
    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} has no value to move")
    edit.ensure_editable(node, var.key)
    raw = var.raw or ""
    ef = p.project_env(inst)
    refs = [m for m in _REF.finditer(raw)]
    if refs:
        # ${NAME:-literal}: define NAME in .env and drop the written default.
        new_raw = raw
        for m in refs:
            name = m.group(1) or m.group(3)
            default = m.group(2)
            if default is None:
                continue
            entry = ef.get(name) if ef is not None else None
            if entry is None:
                p.set_env_var(inst, name, interpolate(default, inst.project_env).value, "moved out of the compose file by dester-harden (SEC-003)")
                inst = p.inst()
                ef = p.project_env(inst)
            new_raw = new_raw.replace(m.group(0), "${" + name + "}")
    else:
        name = var.key
        value = var.value or ""
        entry = ef.get(name) if ef is not None else None
        if entry is not None and entry.value != value:
            raise EditRefused(f"{name} in {ef.display} holds a different value than {var.where.file}:{var.where.line}; make them agree first (SEC-002)")
        if entry is None:
            p.set_env_var(inst, name, value, "moved out of the compose file by dester-harden (SEC-003)")
        new_raw = "${" + name + "}"
    inst = p.inst()
    # Find the same entry in the re-discovered model (positions may have moved).
    node = _same_node(inst, var)
    text_value = str(node.value)
    new_text = var.key + "=" + new_raw if text_value.startswith(var.key + "=") else new_raw
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new_text))


def _same_node(inst: Installation, var: EnvVar) -> Node:
    for svc in inst.services:
        for v in svc.compose_env_written:
            if v.where.file == var.where.file and v.where.line == var.where.line and v.key == var.key and v.setting is not None:
                return v.setting.node
    raise EditRefused(f"{var.key} moved while planning; run the fix again")


def _move_requirepass(p: Planner, inst: Installation, arg: str, node: Node) -> None:
    edit.ensure_editable(node, "the command")
    value = interpolate(arg, inst.project_env).value
    name = "REDIS_PASSWORD"
    ef = p.project_env(inst)
    entry = ef.get(name) if ef is not None else None
    if entry is not None and entry.value != value:
        raise EditRefused(f"{name} in .env differs from the password in the command; make them agree by hand")
    if entry is None:
        p.set_env_var(inst, name, value, "moved out of the compose file by dester-harden (SEC-003)")
    inst = p.inst()
    for svc in inst.services:
        for a, n in requirepass_args(svc):
            if n.file == node.file and n.line == node.line and a == arg:
                raw = str(n.value)
                new = raw.replace(arg, "${REDIS_PASSWORD}", 1)
                p.edit_node(inst, n, lambda t: edit.replace_scalar(t, n, new))
                return
    raise EditRefused("the Redis command moved while planning; run the fix again")


def fix_sec_004(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for var in svc.compose_env_written + svc.env_file_vars:
                yield from _encode_target(p, var)
        for ef in inst.env_files:
            for entry in ef.entries:
                from .model import Where

                yield from _encode_target(p, EnvVar(entry.key, entry.value, entry.raw, "env_file", Where(ef.display, entry.line, entry.text), env_file=ef))
    p.each("SEC-004", targets)


def _encode_target(p: Planner, var: EnvVar):
    if not var.value or not var.key.upper().endswith("URL"):
        return
    parts = url_parts(var.value)
    if parts is None or not parts[1] or not _needs_encoding(parts[1]):
        return

    def apply(inst, var=var):
        raw = var.raw or ""
        span = url_password_span(raw)
        if span is None or "$" in raw[span[0]:span[1]].replace("$$", ""):
            raise EditRefused(f"the password in {var.key} at {var.where.file}:{var.where.line} comes from a variable; percent-encode it there")
        pw = raw[span[0]:span[1]].replace("$$", "$") if var.origin == "compose" else raw[span[0]:span[1]]
        encoded = quote(unquote(pw), safe="")
        _write_var(p, inst, var, raw[:span[0]] + encoded + raw[span[1]:])
    yield (("SEC-004", var.where.file, var.where.line, var.key), apply)


def fix_sec_005(p: Planner) -> None:
    inst = p.inst()
    redis = [s for s in inst.services if is_redis(s) and s.ports and not _redis_protected(s)]
    if not redis:
        return
    ef = p.project_env(inst)
    entry = ef.get("REDIS_PASSWORD") if ef is not None else None
    password = entry.value if entry is not None and entry.value else None
    if password is None:
        password = p.new_secret(PASSWORD_BYTES)
        p.set_env_var(inst, "REDIS_PASSWORD", password, "generated by dester-harden (SEC-005)")
    names = {s.name for s in redis}

    def targets(inst):
        for svc in inst.services:
            if svc.name not in names:
                continue
            if not requirepass_args(svc):
                yield (("SEC-005", svc.name, "command"), lambda i, svc=svc: _add_requirepass(p, i, svc))
            if svc.environment.get("REDISCLI_AUTH") is None:
                yield (("SEC-005", svc.name, "cli"), lambda i, svc=svc: _add_env(p, i, svc, "REDISCLI_AUTH", "${REDIS_PASSWORD}"))
        hosts = set()
        for svc in inst.services:
            if svc.name in names:
                hosts.add(svc.name)
                cn = svc.opt("container_name")
                if cn is not None and cn.value:
                    hosts.add(str(cn.value))
        for svc in inst.services:
            for var in svc.compose_env_written + svc.env_file_vars:
                yield from _redis_url_target(p, var, hosts, password)
    p.each("SEC-005", targets)
    p.notes.append("SEC-005: Redis now requires REDIS_PASSWORD (in .env); recreate it and the API with `docker compose up -d`.")


def _redis_protected(svc: Service) -> bool:
    from .rules.sec import _redis_password

    return _redis_password(svc)


def _add_requirepass(p: Planner, inst: Installation, svc: Service) -> None:
    cmd = svc.opt("command")
    if cmd is None:
        p.edit_node(inst, svc.node, lambda t: edit.insert_lines(t, svc.node, ["command: redis-server --requirepass ${REDIS_PASSWORD}"]))
    elif cmd.is_seq():
        p.edit_node(inst, cmd, lambda t: edit.append_item(t, cmd, '"--requirepass"'))
        inst2 = p.inst()  # fresh positions for the second item
        cmd2 = inst2.service(svc.name).opt("command")
        p.edit_node(inst2, cmd2, lambda t: edit.append_item(t, cmd2, '"${REDIS_PASSWORD}"'))
    else:
        p.edit_node(inst, cmd, lambda t: edit.replace_scalar(t, cmd, str(cmd.value) + " --requirepass ${REDIS_PASSWORD}"))


def _add_env(p: Planner, inst: Installation, svc: Service, key: str, value: str) -> None:
    env = svc.opt("environment")
    if env is None or env.value is None:
        text = p.read_text(p.path_of(inst, svc.node.file))
        ci = edit.child_indent(text, svc.node)
        p.edit_node(inst, svc.node, lambda t: edit.insert_lines(t, svc.node, ["environment:", f"{ci}{key}: {value}"]))
    elif env.is_map():
        p.edit_node(inst, env, lambda t: edit.insert_lines(t, env, [f"{key}: {value}"]))
    elif env.is_seq():
        p.edit_node(inst, env, lambda t: edit.append_item(t, env, edit.render_scalar(f"{key}={value}", '"')))
    else:
        raise EditRefused(f"the environment of {svc.name} is neither a mapping nor a list")


def _redis_url_target(p: Planner, var: EnvVar, hosts: set[str], password: str):
    value = var.value or ""
    m = re.match(r"^(rediss?://)([^@/]*@)?([^:/?#]+)", value)
    if not m or m.group(2) or m.group(3) not in hosts:
        return

    def apply(inst, var=var):
        raw = var.raw or ""
        mm = re.match(r"^(rediss?://)", raw)
        if not mm:
            raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} is built from variables; add the password by hand")
        auth = ":${REDIS_PASSWORD}@" if var.origin == "compose" else f":{quote(password, safe='')}@"
        _write_var(p, inst, var, mm.group(1) + auth + raw[mm.end():])
    yield (("SEC-005", var.where.file, var.where.line, var.key), apply)


def fix_sec_006(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for var in svc.compose_env_written:
                if var.key == "POSTGRES_HOST_AUTH_METHOD" and (var.value or "").strip().lower() == "trust":
                    yield (("SEC-006", var.where.file, var.where.line), lambda i, svc=svc, var=var: _delete_env(p, i, svc, var))
        for ef in inst.env_files:
            for entry in ef.entries:
                if entry.key == "POSTGRES_HOST_AUTH_METHOD" and (entry.value or "").strip().lower() == "trust":
                    yield (("SEC-006", ef.display, entry.line), lambda i, ef=ef, entry=entry: p.write_text(ef.path, envedit.delete_entry(p.read_text(ef.path), entry)))
    p.each("SEC-006", targets)


def _delete_env(p: Planner, inst: Installation, svc: Service, var: EnvVar) -> None:
    for s in inst.services:
        env = s.opt("environment")
        if env is None:
            continue
        if env.is_map() and var.key in env.value and env.value[var.key].line == var.where.line:
            p.edit_node(inst, env, lambda t: edit.delete_key(t, env, var.key))
            return
        if env.is_seq():
            for item in env.value:
                if item.line == var.where.line and str(item.value).startswith(var.key):
                    p.edit_node(inst, env, lambda t: edit.delete_item(t, env, item))
                    return
    raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} could not be found to remove")


def fix_sec_007(p: Planner) -> None:
    def targets(inst):
        seen = set()
        vars_: list[EnvVar] = []
        for svc in inst.services:
            vars_ += svc.compose_env_written + svc.env_file_vars
        for ef in inst.env_files:
            from .model import Where

            vars_ += [EnvVar(e.key, e.value, e.raw, "env_file", Where(ef.display, e.line, e.text), env_file=ef) for e in ef.entries]
        for var in vars_:
            k = (var.where.file, var.where.line)
            if k in seen or not var.value or not is_secret_key(var.key) or var.key.upper().endswith("URL"):
                continue
            seen.add(k)
            if "PASSWORD" in var.key.upper() or var.key.upper().endswith(("_PASS", "_PWD")):
                continue
            if not _DEFAULT_SECRET.match(var.value.strip()):
                continue

            def apply(i, var=var):
                ref = _pure_ref(var.raw)
                new = p.new_secret(APP_SECRET_BYTES)
                if ref is not None:
                    p.set_env_var(i, ref, new, "generated by dester-harden (SEC-007)")
                else:
                    _write_var(p, i, var, new)
            yield (("SEC-007", var.where.file, var.where.line), apply)
    p.each("SEC-007", targets)


# -- FS ---------------------------------------------------------------------------------


def fix_fs_001(p: Planner) -> None:
    inst = p.inst()
    for ef in inst.env_files:
        if ef.source is None or ef.path not in {e.path for e in inst.env_files}:
            continue
        if os.path.lexists(ef.path) and p.mode(ef.path) & 0o077:
            p.chmod(ef.path, p.mode(ef.path) & 0o700)


def fix_fs_002(p: Planner) -> None:
    from .rules.sec import literal_secrets

    inst = p.inst()
    holding = {where.file for _, where, _ in literal_secrets(inst)}
    for src in inst.compose_files:
        mode = p.mode(src.path)
        new = mode & ~0o022
        if src.display in holding:
            new &= 0o700
        if new != mode:
            p.chmod(src.path, new)


def fix_fs_003(p: Planner) -> None:
    inst = p.inst()
    for d in sorted({inst.root} | {os.path.dirname(s.path) for s in inst.compose_files}):
        mode = p.mode(d)
        if mode & 0o022:
            p.chmod(d, mode & ~0o022)


def fix_fs_004(p: Planner) -> None:
    def targets(inst):
        for svc, m in _media_mounts(inst):
            if m.read_only:
                continue
            yield (("FS-004", svc.name, m.where.line), lambda i, m=m: _make_ro(p, i, m))
    p.each("FS-004", targets)


def _make_ro(p: Planner, inst: Installation, m) -> None:
    node = m.node
    edit.ensure_editable(node, "the media mount")
    if m.long:
        ro = node.get("read_only")
        if ro is not None:
            p.edit_node(inst, ro, lambda t: edit.replace_scalar(t, ro, "true"))
        else:
            p.edit_node(inst, node, lambda t: edit.insert_lines(t, node, ["read_only: true"]))
        return
    raw = str(node.value)
    if "${" in raw:
        raise EditRefused(f"the media mount at {m.where.file}:{m.where.line} uses ${{...}}; add :ro by hand")
    parts = raw.split(":")
    if len(parts) == 2:
        new = raw + ":ro"
    elif len(parts) == 3:
        opts = [o for o in parts[2].split(",") if o and o != "rw"]
        new = ":".join(parts[:2]) + ":" + ",".join(["ro"] + [o for o in opts if o != "ro"])
    else:
        raise EditRefused(f"cannot read the media mount at {m.where.file}:{m.where.line}")
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new))


def fix_fs_005(p: Planner) -> None:
    from . import walk

    roots = sorted({m.host_path for _, m in _media_mounts(p.inst()) if m.host_path})
    for root in roots:
        if not os.path.isdir(root) or os.path.islink(root):
            continue
        transitions: dict[tuple[str, int, int], int] = {}
        entries = 0
        try:
            for e in walk.walk(root):
                entries += 1
                new = walk.target_mode(e.st.st_mode)
                if new is None:
                    continue
                kind = "dir" if stat.S_ISDIR(e.st.st_mode) else "file"
                key = (kind, stat.S_IMODE(e.st.st_mode), new)
                transitions[key] = transitions.get(key, 0) + 1
        except walk.TreeError as exc:
            p.refuse("FS-005", str(exc))
            continue
        if transitions:
            p.trees.append(TreeChmod(root, entries, transitions))


def fix_fs_006(p: Planner) -> None:
    for path in stray_copies(p.inst()):
        mode = p.mode(path)
        if mode & 0o077:
            p.chmod(path, mode & 0o700)


# -- DKR ------------------------------------------------------------------------------


def fix_dkr_001(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for m in svc.mounts:
                if m.host_path and is_docker_socket(m.host_path):
                    seq = svc.opt("volumes")
                    yield (("DKR-001", svc.name, m.where.line), lambda i, svc=svc, m=m, seq=seq: p.edit_node(i, seq, lambda t: edit.delete_item(t, seq, m.node)))
    p.each("DKR-001", targets)


def fix_dkr_002(p: Planner) -> None:
    from .rules.dkr import _truthy

    def targets(inst):
        for svc in inst.services:
            if _truthy(svc.opt("privileged")):
                yield (("DKR-002", svc.name), lambda i, svc=svc: p.edit_node(i, svc.node, lambda t: edit.delete_key(t, svc.node, "privileged")))
    p.each("DKR-002", targets)


def fix_dkr_003(p: Planner) -> None:
    from .rules.dkr import _NNP, _TRUE

    def targets(inst):
        for svc in inst.services:
            node = svc.opt("security_opt")
            ok = False
            bad_item = None
            if node is not None and node.is_seq():
                for item in node.value:
                    m = _NNP.match(str(item.value)) if item.value is not None else None
                    if m and (m.group("v") is None or m.group("v").lower() in _TRUE):
                        ok = True
                    elif m:
                        bad_item = item
            if ok:
                continue

            def apply(i, svc=svc, node=node, bad_item=bad_item):
                if bad_item is not None:
                    p.edit_node(i, bad_item, lambda t: edit.replace_scalar(t, bad_item, "no-new-privileges:true"))
                elif node is not None and node.is_seq() and node.value:
                    p.edit_node(i, node, lambda t: edit.append_item(t, node, '"no-new-privileges:true"'))
                elif node is None:
                    text = p.read_text(p.path_of(i, svc.node.file))
                    ci = edit.child_indent(text, svc.node)
                    p.edit_node(i, svc.node, lambda t: edit.insert_lines(t, svc.node, ["security_opt:", f'{ci}- "no-new-privileges:true"']))
                else:
                    raise EditRefused(f"security_opt of {svc.name} is not a list")
            yield (("DKR-003", svc.name), apply)
    p.each("DKR-003", targets)


def fix_dkr_006(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            node = svc.opt("cap_add")
            if node is None or not node.is_seq():
                continue
            for item in node.value:
                cap = normalize_cap(str(item.value)) if item.value is not None else None
                if cap in DANGEROUS_CAPS:
                    def apply(i, svc=svc, node=node, item=item):
                        if len(node.value) == 1:
                            p.edit_node(i, svc.node, lambda t: edit.delete_key(t, svc.node, "cap_add"))
                        else:
                            p.edit_node(i, node, lambda t: edit.delete_item(t, node, item))
                    yield (("DKR-006", svc.name, str(item.value)), apply)
    p.each("DKR-006", targets)


def fix_dkr_008(p: Planner) -> None:
    failing = p.failing("DKR-008")
    if failing is None:
        return
    names = {e.service for e in failing.evidence}

    def targets(inst):
        f = p.failing("DKR-008", inst)
        still = {e.service for e in f.evidence} if f is not None else set()
        for svc in inst.services:
            if svc.name not in names or svc.name not in still:
                continue

            def apply(i, svc=svc):
                text = p.read_text(p.path_of(i, svc.node.file))
                ci = edit.child_indent(text, svc.node)
                log = svc.opt("logging")
                if log is None:
                    p.edit_node(i, svc.node, lambda t: edit.insert_lines(t, svc.node, [
                        "logging:", f"{ci}driver: json-file", f"{ci}options:", f'{ci}{ci}max-size: "10m"', f'{ci}{ci}max-file: "3"']))
                    return
                if not log.is_map():
                    raise EditRefused(f"logging of {svc.name} is not a mapping")
                opts = log.get("options")
                if opts is None:
                    p.edit_node(i, log, lambda t: edit.insert_lines(t, log, ["options:", f'{ci}max-size: "10m"', f'{ci}max-file: "3"']))
                elif opts.is_map() and opts.keys:
                    lines = ['max-size: "10m"'] + ([] if opts.get("max-file") is not None else ['max-file: "3"'])
                    p.edit_node(i, opts, lambda t: edit.insert_lines(t, opts, lines))
                else:
                    raise EditRefused(f"logging options of {svc.name} are not a block mapping")
            yield (("DKR-008", svc.name), apply)
    p.each("DKR-008", targets)


#: In the order they run: secrets move before they are rotated; modes come last,
#: when it is known which files still hold secrets.
FIXERS: tuple[Fixer, ...] = (
    Fixer("SEC-003", True, fix_sec_003),
    Fixer("SEC-001", True, fix_sec_001),
    Fixer("SEC-002", True, fix_sec_002),
    Fixer("SEC-004", True, fix_sec_004),
    Fixer("SEC-005", True, fix_sec_005),
    Fixer("SEC-006", True, fix_sec_006),
    Fixer("SEC-007", True, fix_sec_007),
    Fixer("NET-002", False, fix_net_002),
    Fixer("NET-001", True, fix_net_001),
    Fixer("NET-003", True, fix_net_003),
    Fixer("NET-004", True, fix_net_004),
    Fixer("NET-005", True, fix_net_005),
    Fixer("FS-004", True, fix_fs_004),
    Fixer("DKR-001", False, fix_dkr_001),
    Fixer("DKR-002", True, fix_dkr_002),
    Fixer("DKR-003", True, fix_dkr_003),
    Fixer("DKR-006", True, fix_dkr_006),
    Fixer("DKR-008", True, fix_dkr_008),
    Fixer("FS-001", True, fix_fs_001),
    Fixer("FS-002", True, fix_fs_002),
    Fixer("FS-003", True, fix_fs_003),
    Fixer("FS-006", True, fix_fs_006),
    Fixer("FS-005", True, fix_fs_005),
)


def plan_fixes(root: str, profile: str = "local", only: set[str] | None = None, files: list[str] | None = None,
               host_root: str = "/", now: float | None = None, new_secret=None) -> tuple[Plan, Planner]:
    planner = Planner(root, profile, files, host_root, now, new_secret)
    return planner.build(only), planner
