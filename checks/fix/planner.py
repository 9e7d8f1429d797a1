"""Fixes: how each fixable check turns into a plan.

The planner never writes to disk. It edits an in-memory :class:`Overlay` of
planned contents and modes, re-discovering the installation through it after
every edit (so each edit is placed by fresh node positions), and at the end
re-audits the result: a fix that would not fix its check, or that would make
another check fail, is an error, not a plan.

Re-discovering after every edit makes planning quadratic in the number of
services, so fixers whose edits are local to one service's nodes run their
targets in batches (:meth:`Planner.each` with ``batch=True``): one discovery,
then the targets applied from the last one in the file to the first, so that
every edit leaves the text before it, and with it the positions of the targets
still to come, exactly as they were. A target whose nodes lie after text
already changed in the batch ends the batch (checks/fix/batch.py); the next round
re-discovers. The result is the plan the one-at-a-time loop builds.

Over 600 lines: the planner and every fixer are still one module; they split
into a ``checks/fix/planner/`` package, the planner apart from one module per check
family (NET, SEC, FS, DKR), with the change-engine rework (issue 9), which
also makes each fix work on its own finding instead of re-deriving it here.
"""

from __future__ import annotations

import functools
import os
import re
import secrets as _secrets
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from checks.audit.catalog import BY_ID
from checks.audit.findings import FAIL
from checks.audit.rules.common import (
    api_port,
    api_service,
    db_ports,
    is_postgres,
    is_redis,
    parse_db_url,
    service_hosts,
)
from checks.audit.rules.dkr import DANGEROUS_CAPS, is_docker_socket, normalize_cap
from checks.audit.rules.fs import media_mounts as _media_mounts
from checks.audit.rules.fs import stray_copies
from checks.audit.rules.net import _allowed
from checks.audit.rules.sec import _DEFAULT_SECRET, _literal_secret_note, _needs_encoding, requirepass_args, weakness
from checks.audit.run import run_audit
from checks.change import confined
from checks.change.plan import FileEdit, ModeChange, Plan, Refusal, TreeChmod
from checks.core.errors import InputError
from checks.core.interpolate import interpolate
from checks.core.secrets import is_secret_key, url_parts, url_password_span
from checks.core.yamlpos import Node, parse_yaml
from checks.fix import edit, envedit, scratch
from checks.fix.batch import Batch as _Batch
from checks.fix.batch import Stale as _Stale
from checks.fix.edit import EditRefused
from checks.install.discovery import Overlay, discover
from checks.install.model import EnvEntry, EnvFile, EnvVar, Installation, Service

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
    run: Callable[[Planner], None]


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
                 now: float | None = None, new_secret: Callable[[int], str] | None = None,
                 db_password: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.db_password = db_password
        """The new database password chosen in the assistant (else SEC-001 generates one)."""
        self.validate_with_compose = True
        """Run `docker compose config` on the result (off only for the assistant's live previews: the
        plan it applies is built again with it on)."""
        self.profile = profile
        self.files = files
        self.named = frozenset(os.path.abspath(f) for f in files or ())
        """The files the user named (``--file``): the only ones outside the installation a fix may change."""
        self._fixing: str | None = None
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
        self.batching = True
        """Run batchable fixers' targets in batches (off: one at a time, the reference behaviour)."""
        self._batch: _Batch | None = None
        self.base = self.inst()
        if self.base.unfollowed:
            # Fixing what is seen while part of the model is not would be a guess.
            from checks.core.secrets import Masker

            raise InputError(Masker(self.base.secrets).text(self.base.unfollowed[0]) +
                             "; nothing is fixed until every file can be followed")
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
        if path not in self.overlay.contents:
            why = confined.problem(self.root, path, self.named, write=True)
            if why is not None:
                raise confined.NotConfined(why)
        if path not in self._disk:
            try:
                with open(path, "rb") as fh:
                    self._disk[path] = fh.read()
            except FileNotFoundError:
                self._disk[path] = None
        if self._batch is not None:
            self._batch.wrote(path, self.read_text(path), text)
        prefix = b"\xef\xbb\xbf" if self._bom.get(path) else b""
        self.overlay.contents[path] = prefix + text.encode("utf-8")

    def chmod(self, path: str, mode: int) -> None:
        """Plan ``path``'s new mode; one the engine would refuse to change is a refusal instead."""
        path = os.path.abspath(path)
        if path not in self.overlay.modes:
            why = confined.problem(self.root, path, self.named)
            if why is not None:
                self.refuse(self._fixing or "FS-001", f"{why}; its mode is left as it is", key=("confined", path))
                return
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

    def own_chain(self, inst: Installation, node: Node) -> list[Node]:
        """``node`` as its own file writes it, with its ancestors (root first).

        The merged model of several compose files mixes nodes of every file in
        one collection (keeping the first file's positions): an edit is always
        placed by a fresh parse of the one file it changes.
        """
        path = self.path_of(inst, node.file)
        if self._batch is not None:
            chain = self._batch.chain(self, path, node)
        else:
            root = parse_yaml(self.read_text(path), node.file)
            chain = edit.find_chain(root, node) if root is not None else None
        if chain is None:
            raise EditRefused(f"cannot find line {node.line} of {node.file} again; run the fix again")
        return chain

    def own(self, inst: Installation, node: Node) -> Node:
        return self.own_chain(inst, node)[-1]

    def own_service(self, inst: Installation, svc: Service) -> Node:
        """The service's mapping in the first compose file that defines it."""
        return self.own(inst, svc.node)

    def own_services(self, inst: Installation, name: str) -> list[Node]:
        """The service's mapping in every compose file that defines it, in order.

        A file reached only through ``extends: {file: ...}`` is not: its services are
        not part of the model (only the one extended, found through its node).
        """
        out = []
        for src in inst.compose_files:
            if inst.reached.get(src.path) == "extends":
                continue
            found = self._batch.service(self, src.path, src.display, name) if self._batch is not None else None
            if found is not None:
                node = found[0]
            else:
                root = parse_yaml(self.read_text(src.path), src.display)
                services = root.get("services") if root is not None and root.is_map() else None
                node = services.get(name) if services is not None and services.is_map() else None
            if node is not None and node.is_map():
                out.append(node)
        return out

    def project_env_path(self, inst: Installation) -> str:
        ef = self.project_env(inst)
        return ef.path if ef is not None else os.path.join(inst.project_dir, ".env")

    def project_env(self, inst: Installation) -> EnvFile | None:
        """The env file Compose reads for ``${VAR}`` (as discovery found it: the
        project directory's .env, else the install root's)."""
        for ef in inst.env_files:
            if "project" in ef.roles and ef.exists:
                return ef
        path = os.path.join(inst.project_dir, ".env")
        for ef in inst.env_files:
            if ef.path == path:
                return ef
        return None

    def set_env_var(self, inst: Installation, name: str, value: str, comment: str, file: str | None = None) -> None:
        """Define ``name`` in the project's .env (created 0600), or change its value.

        With ``file`` (the compose file whose ``${name}`` it is): an included file
        reads its own env files too; the one that defines ``name`` and wins is changed.
        """
        for ef in inst.interp_env_files.get(file, []) if file else []:
            entry = ef.get(name)
            if entry is not None and ef.exists:
                self.edit_env_entry(ef, entry, value)
                return
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
    def each(self, check: str, targets: Callable[[Installation], Iterable[tuple[tuple, Callable[[Installation], None]]]],
             batch: bool = False) -> None:
        """Fix targets one at a time, re-discovering after each edit; refused ones are skipped.

        ``batch``: the fixer's edits go through :meth:`own_chain` and stay inside
        their service's nodes, so a round may apply many targets (see the module docstring).
        """
        for _ in range(1000):
            inst = self.inst()
            if batch and self.batching:
                progress = self._each_batch(check, inst, targets)
                if progress is None:
                    return
                if progress:
                    continue
            for key, apply in targets(inst):
                if key in self._refused:
                    continue
                before = dict(self.overlay.contents), dict(self.overlay.modes)
                try:
                    apply(inst)
                    self.inst()  # every planned file must still parse
                except (EditRefused, InputError) as exc:
                    # Take back whatever this target had planned: all of it or nothing.
                    self.overlay.contents.clear()
                    self.overlay.contents.update(before[0])
                    self.overlay.modes.clear()
                    self.overlay.modes.update(before[1])
                    reason = str(exc) if isinstance(exc, EditRefused) else (
                        f"the edit would leave a file unreadable ({exc}); this is a dester-harden bug, please report it")
                    self.refuse(check, reason, key)
                    continue
                if (dict(self.overlay.contents), dict(self.overlay.modes)) == before:
                    self.refuse(check, f"{_key_text(key)}: the planned edit would change nothing; fix it by hand", key)
                    continue
                break
            else:
                return
        raise PlanError(f"{check}: the fix did not converge")

    def _restore(self, state: tuple[dict, dict]) -> None:
        self.overlay.contents.clear()
        self.overlay.contents.update(state[0])
        self.overlay.modes.clear()
        self.overlay.modes.update(state[1])

    def _each_batch(self, check: str, inst: Installation, targets) -> bool | None:
        """One batched round: None when nothing is left to do, else whether it got anywhere
        (False: let the one-at-a-time loop take this round)."""
        todo = [(key, apply) for key, apply in targets(inst) if key not in self._refused]
        if not todo:
            return None
        if len(todo) == 1 or len({key for key, _ in todo}) < len(todo):
            # Two targets of one key (two ports on one line): the loop fixes the first
            # and skips the second once one is refused; only it says which.
            return False
        start = dict(self.overlay.contents), dict(self.overlay.modes)
        refused: list[tuple[int, tuple, str]] = []
        applied = 0
        cut = False
        self._batch = _Batch()
        try:
            for idx in range(len(todo) - 1, -1, -1):  # last in the file first: earlier positions stay put
                key, apply = todo[idx]
                before = dict(self.overlay.contents), dict(self.overlay.modes)
                try:
                    apply(inst)
                except _Stale:
                    self._restore(before)
                    cut = True
                    break
                except EditRefused as exc:
                    self._restore(before)
                    refused.append((idx, key, str(exc)))
                    continue
                except InputError:
                    self._restore(start)  # the loop words this refusal
                    return False
                if (dict(self.overlay.contents), dict(self.overlay.modes)) == before:
                    refused.append((idx, key, f"{_key_text(key)}: the planned edit would change nothing; fix it by hand"))
                    continue
                applied += 1
        finally:
            self._batch = None
        try:
            self.inst()  # every planned file must still parse
        except InputError:
            self._restore(start)  # which target broke it is the one-at-a-time loop's to say
            return False
        if cut:
            # Refusals are recorded in the order of the targets: those of a cut batch
            # come back in the next round's listing, with the ones before them.
            return applied > 0
        for _, key, reason in sorted(refused, key=lambda r: r[0]):
            self.refuse(check, reason, key)
        return True

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
            self._run(fixer)
        if selected:
            self._follow_up(selected, failing)
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

    def _follow_up(self, selected: list[str], failing: set[str]) -> None:
        """Fix what the planned fixes themselves make fail, with its own default fix.

        Taking a service off ``network_mode: host`` (NET-004) puts it on the
        default network (NET-005): the plan includes that fix too, and says so,
        rather than leaving the installation worse in another check.
        """
        for _ in range(len(FIXERS)):
            report = run_audit(self.inst(), self.profile)
            newly = {f.id for f in report.findings if f.status == FAIL and f.id not in failing}
            extra = [fx for fx in FIXERS if fx.id in newly and fx.id not in selected and fx.default]
            if not extra:
                return
            for fx in extra:
                selected.append(fx.id)
                self.notes.append(f"{fx.id}: fixed too, because the other changes in this plan would make it fail.")
                self._run(fx)

    def _run(self, fixer: Fixer) -> None:
        """Run one fixer; one that must write a file it may not change is refused whole.

        A fix's edits belong together (a password changes in the compose file
        and in .env at once): refusing only the file that is outside the
        installation would leave the others disagreeing with it.
        """
        saved = dict(self.overlay.contents), dict(self.overlay.modes), len(self.refusals), len(self.notes), set(self._refused)
        self._fixing = fixer.id
        try:
            fixer.run(self)
        except confined.NotConfined as exc:
            self.overlay.contents.clear()
            self.overlay.contents.update(saved[0])
            self.overlay.modes.clear()
            self.overlay.modes.update(saved[1])
            del self.refusals[saved[2]:]
            del self.notes[saved[3]:]
            self._refused = saved[4]
            self.refusals.append(Refusal(fixer.id, f"{exc}; dester-harden changes nothing outside the installation "
                                         f"directory, so no part of {fixer.id} is planned", BY_ID[fixer.id].fix))
        finally:
            self._fixing = None

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
        plan.named = sorted(self.named)
        outside = {c.path for c in plan.changes if isinstance(c, (FileEdit, ModeChange))
                   and os.path.relpath(c.path, self.root).startswith("..")}
        for path in sorted(outside):  # only files the user named get this far (checks.change.confined)
            plan.notes.append(f"{path} is OUTSIDE the installation directory {self.root}: it is changed only "
                              "because you named it on the command line (--file).")
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
        if self.validate_with_compose:
            compose_check(self, final)
        self.final_report = report


def _key_text(key: tuple) -> str:
    """Where a target is, for messages: its service or file (never a value)."""
    return str(key[1]) if len(key) > 1 else str(key[0])


# -- edits placed in one file's own parse ---------------------------------------------


def _key_of(mapping: Node, value: Node) -> str:
    for k, v in mapping.value.items():
        if v is value:
            return k
    raise EditRefused(f"cannot find the key of line {value.line}")


def _remove_entry(p: Planner, inst: Installation, node: Node, what: str) -> None:
    """Remove a list item or a mapping entry (given its value) from the file that writes it.

    The last entry takes its key along (``ports:`` with nothing under it would be null).
    """
    chain = p.own_chain(inst, node)
    if len(chain) < 3:
        raise EditRefused(f"{what} at {node.file}:{node.line} is not inside a service")
    item, parent, grand = chain[-1], chain[-2], chain[-3]
    edit.ensure_editable(item, what)
    path = p.path_of(inst, node.file)
    text = p.read_text(path)
    if parent.is_seq() or parent.is_map():
        if len(parent.value) == 1 and grand.is_map():
            # The last entry takes its key along; a mapping left with nothing becomes {}, not null.
            new = _delete_key(text, chain[:-1], _key_of(grand, parent))
        elif parent.is_seq():
            new = edit.delete_item(text, parent, item)
        else:
            new = _delete_key(text, chain, _key_of(parent, item))
    else:  # pragma: no cover - a scalar has no entries
        raise EditRefused(f"{what} at {node.file}:{node.line} is not in a list or mapping")
    p.write_text(path, new)


def _delete_key(text: str, chain: list[Node], key: str) -> str:
    """Delete ``key`` from the mapping ``chain[-2]`` (``chain`` ends with the key's value).

    When that is the mapping's only entry (and no ``<<`` merges into it), the
    mapping becomes ``{}`` in its own parent instead of an empty (null) value,
    which Compose refuses for a service.
    """
    mapping = chain[-2]
    if len(mapping.value) == 1 and len(chain) >= 3 and chain[-3].is_map() and not edit.has_merge_key(text, mapping):
        outer = chain[-3]
        return edit.empty_value(text, outer, _key_of(outer, mapping))
    return edit.delete_key(text, mapping, key)


def _delete_service_key(p: Planner, inst: Installation, name: str, key: str) -> None:
    """Remove ``key`` from the service in the first compose file that sets it."""
    for own in p.own_services(inst, name):
        if key in own.value:
            path = p.path_of(inst, own.file)
            p.write_text(path, _delete_key(p.read_text(path), p.own_chain(inst, own.value[key]), key))
            return
    svc = inst.service(name)
    node = svc.opt(key) if svc is not None else None
    if node is not None:
        # Set by the service it extends (another name, maybe another file): removed where written.
        chain = p.own_chain(inst, node)
        if len(chain) >= 2 and chain[-2].is_map() and chain[-2].value.get(key) is chain[-1]:
            path = p.path_of(inst, node.file)
            p.write_text(path, _delete_key(p.read_text(path), chain, key))
            return
    raise EditRefused(f"'{key}' of service {name} could not be found to remove")


def _insert_service(p: Planner, inst: Installation, svc: Service, lines: Callable[[str, Node], list[str]]) -> None:
    """Add keys at the end of the service, in the first compose file that defines it.

    ``lines(text, node)`` builds them with the file's own indentation.
    """
    own = p.own_service(inst, svc)
    path = p.path_of(inst, own.file)
    text = p.read_text(path)
    p.write_text(path, edit.insert_lines(text, own, lines(text, own)))


# -- compose validation by Docker Compose itself -------------------------------------


@functools.lru_cache(maxsize=1)
def compose_available() -> bool:
    """Whether ``docker compose`` runs here (asked once per process)."""
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
    scratch.remove_abandoned()  # copies a killed run left behind (they may hold secrets)
    # A private (0700) directory outside the install: planning, and so a dry
    # run, must leave the installation exactly as it was.
    with scratch.validation_dir() as tmp:
        args = ["docker", "compose"]
        # Each file at its absolute path under tmp: included and extended files (maybe
        # outside the install) keep where they are relative to each other.
        for src in inst.compose_files:
            dest = tmp + src.path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            data = planner.overlay.contents.get(src.path)
            if data is None:
                with open(src.path, "rb") as fh:
                    data = fh.read()
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            if src.path not in inst.reached:
                args += ["-f", dest]
        for ef in inst.env_files:
            # Compose stats an include's env_file even without interpolation: an empty
            # stand-in (the flags below never read it, and no secret is copied).
            dest = tmp + ef.path
            if ef.exists and not os.path.lexists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        project = tmp + inst.project_dir
        args += ["--project-directory", project, "config", "--no-interpolate", "--no-env-resolution", "-q"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp,
                              env={**os.environ, "COMPOSE_DISABLE_ENV_FILE": "1"})
        if proc.returncode != 0:
            from checks.core.secrets import Masker

            masker = Masker(set(inst.secrets) | planner.generated)
            msg = " ".join(masker.text(proc.stderr.replace(tmp, "")).split())[:300]
            raise PlanError(f"docker compose rejects the planned compose file: {msg}")


# -- NET ------------------------------------------------------------------------------


def _rebind(planner: Planner, inst: Installation, port, ip: str) -> None:
    if port.interpolated:
        raw = str(port.node.value) if port.node.is_scalar() else ""
        names = sorted(set(interpolate(raw, {}).refs)) if raw else []
        m = re.match(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}?:", raw)
        how = (f"set {m.group(1)}={ip} in .env" if m else
               f"set {', '.join(names)} in .env" if names else "set the variables in .env") + f" so that it binds to {ip}"
        raise EditRefused(f"the port at {port.where.file}:{port.where.line} comes from ${{...}} interpolation "
                          f"({', '.join('$' + n for n in names) or 'variables'}); dester-harden does not rewrite it: {how}")
    node = planner.own(inst, port.node)
    edit.ensure_editable(node, "the port")
    if port.long:
        if node.get("host_ip") is not None:
            planner.edit_node(inst, node, lambda t: edit.replace_scalar(t, node.get("host_ip"), ip))
        else:
            planner.edit_node(inst, node, lambda t: edit.insert_lines(t, node, [f"host_ip: {ip}"]))
        return
    raw = str(node.value)
    proto = "/" + raw.rsplit("/", 1)[1] if "/" in raw else ""
    spec = f"{ip}:{port.published or ''}:{port.target}{proto}"
    # The node's own quoting (render_scalar quotes a plain one only where it must).
    planner.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, spec))


def fix_net_001(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for port in db_ports(svc):
                if port.all_interfaces:
                    yield (("NET-001", svc.name, port.where.text.strip()), lambda i, port=port: _rebind(p, i, port, "127.0.0.1"))
    p.each("NET-001", targets, batch=True)


def fix_net_002(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for port in db_ports(svc):
                yield (("NET-002", svc.name, port.where.text.strip()),
                       lambda i, port=port: _remove_entry(p, i, port.node, "the published port"))
    p.each("NET-002", targets, batch=True)


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
    p.each("NET-003", targets, batch=True)


def fix_net_004(p: Planner) -> None:
    def targets(inst):
        for svc in inst.services:
            for key in ("network_mode", "pid", "ipc", "userns_mode"):
                node = svc.opt(key)
                if node is not None and isinstance(node.value, str) and node.value.strip().lower() == "host":
                    yield (("NET-004", svc.name, key), lambda i, svc=svc, key=key: _delete_service_key(p, i, svc.name, key))
    p.each("NET-004", targets)
    p.notes.append("NET-004: a service taken off the host network must publish the ports it serves (ports:).")


def fix_net_005(p: Planner) -> None:
    """Every service onto ``desterlib-net``, or none: a service left behind on the default
    network could no longer reach the others (nor they it).

    A default network the files customise (``default: {external: true, name: proxy}``,
    the usual reverse-proxy layout, or ``default: {name: x}``) is how the services
    reach something outside the project: each keeps ``default`` beside ``desterlib-net``.
    """
    inst = p.inst()
    if any(svc.opt("networks") is not None for svc in inst.services):
        p.refuse("NET-005", "some services already name networks; moving the others could cut them off from each other")
        return
    keep_default = _custom_default_network(inst)
    names = ["default", "desterlib-net"] if keep_default else ["desterlib-net"]

    def targets(inst):
        for svc in inst.services:
            mode = svc.opt("network_mode")
            if mode is not None and mode.value not in (None, "bridge"):
                continue
            if svc.opt("networks") is None:
                def apply(i, svc=svc):
                    if svc.opt("network_mode") is not None:
                        # network_mode: bridge is the default network; Compose forbids it beside networks:.
                        _delete_service_key(p, i, svc.name, "network_mode")
                        return
                    _insert_service(p, i, svc, lambda t, n: ["networks:"] + [f"{edit.seq_indent(t, n)}- {name}" for name in names])
                yield (("NET-005", svc.name), apply)
        top = inst.top
        nets = top.get("networks") if top is not None else None
        if nets is None or not nets.is_map() or "desterlib-net" not in nets.value:
            yield (("NET-005", "top"), lambda i: _add_top_network(p, i))

    before = dict(p.overlay.contents), dict(p.overlay.modes)
    refused = len(p.refusals)
    p.each("NET-005", targets, batch=True)
    if any(r.check == "NET-005" for r in p.refusals[refused:]):
        p._restore(before)
        p.refusals.append(Refusal("NET-005", "no service was moved to desterlib-net: the ones that cannot be would be cut "
                                  "off from the others; fix them by hand (above), or add desterlib-net to every service "
                                  "yourself", BY_ID["NET-005"].fix))
    elif keep_default:
        p.notes.append("NET-005: the default network is customised (external or named) in the compose file: every "
                       "service stays on it, beside desterlib-net.")


def _custom_default_network(inst: Installation) -> bool:
    """Whether the top-level ``networks:`` configures ``default`` (external, a name, a driver...)."""
    top = inst.top
    nets = top.get("networks") if top is not None else None
    node = nets.get("default") if nets is not None and nets.is_map() else None
    return node is not None and node.is_map() and bool(node.value)  # "default:" alone changes nothing


def _add_top_network(p: Planner, inst: Installation) -> None:
    """``desterlib-net`` under the top-level ``networks:`` of the file that has one, else of the first file."""
    roots = []
    for src in inst.compose_files:
        root = parse_yaml(p.read_text(src.path), src.display)
        if root is not None and root.is_map():
            roots.append((src.path, root))
    if not roots:
        raise EditRefused("no compose file to add the network to")
    for path, root in roots:
        existing = root.get("networks")
        if existing is None or existing.start < root.start or existing.end > root.end:
            continue
        text = p.read_text(path)
        if existing.is_map() and existing.keys:
            ci = edit.child_indent(text, existing)
            p.write_text(path, edit.insert_lines(text, existing, ["desterlib-net:", f"{ci}driver: bridge"]))
            return
        raise EditRefused(f"the top-level networks: section of {root.file} is not a block mapping; add desterlib-net by hand")
    path, root = roots[0]
    text = p.read_text(path)
    ci = edit.child_indent(text, root)
    p.write_text(path, edit.insert_lines(text, root, ["networks:", f"{ci}desterlib-net:", f"{ci}{ci}driver: bridge"]))


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
            from checks.install.model import Where

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
        p.set_env_var(inst, whole, value[:parts[0]] + quote(new, safe="") + value[parts[1]:], f"set by dester-harden ({check})",
                      var.where.file)
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
            p.set_env_var(inst, ref, new, f"set by dester-harden ({check})", var.where.file)
            return
        new_raw = raw[:span[0]] + quote(new, safe="") + raw[span[1]:]
    else:
        ref = _pure_ref(raw)
        if ref is not None:
            p.set_env_var(inst, ref, new, f"set by dester-harden ({check})", var.where.file)
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
    if p.db_password is not None:
        new = p.db_password
        p.generated.add(new)
    else:
        new = p.new_secret(PASSWORD_BYTES)
    _rotate(p, "SEC-001", new, lambda user, pw: True)
    users = sorted(u for u in weak_users if u != "*") or ["<user>"]
    p.notes.append(
        "SEC-001: PostgreSQL keeps the old password inside its data volume. Before `docker compose up -d`, run "
        f"`docker compose exec postgres psql -U {users[0]} -c '\\password {users[0]}'` and type the new password "
        "(POSTGRES_PASSWORD in .env: `fix --reveal` shows it, the assistant reveals or copies it), or the API cannot log in.")


def _rotate(p: Planner, check: str, new: str, user_filter) -> None:
    def targets(inst):
        for svc, var, kind in _password_vars(inst, user_filter):
            current = unquote(parse_db_url(var.value)[1]) if kind == "url" else var.value
            if current == new:
                continue
            # ${NAME}: _set_password follows it to NAME in .env, whatever NAME is called
            # (an entry that is a password place of its own is then already done).
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
                if _literal_secret_note(var, inst.env_for(var.where.file)) is None:
                    continue
                yield (("SEC-003", var.where.file, var.where.line, var.key), lambda i, var=var: _move_to_env(p, i, var))
            for arg, node in requirepass_args(svc):
                if arg.strip("\"'") and (not interpolate(arg, {}).refs or _ships_default(arg, inst, node.file)):
                    yield (("SEC-003", node.file, node.line, "requirepass"), lambda i, arg=arg, node=node: _move_requirepass(p, i, arg, node))
    p.each("SEC-003", targets)


def _ships_default(raw: str, inst: Installation, file: str | None = None) -> bool:
    from checks.audit.rules.sec import ships_default

    return ships_default(interpolate(raw, inst.env_for(file)).defaults)


_MOVED = "moved out of the compose file by dester-harden (SEC-003)"


def _var_name(key: str) -> str:
    """``key`` as a name ``${...}`` can hold (Compose keys may have dots and dashes)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return "_" + name if name[:1].isdigit() else name


def _free_name(p: Planner, inst: Installation, base: str, value: str) -> str:
    """``base`` (or base_2, base_3, ...) that the project's .env does not hold with another
    value and no compose file refers to already: the name will mean ``value`` and nothing else."""
    ef = p.project_env(inst)
    texts = [p.read_text(src.path) for src in inst.compose_files]
    for n in range(1, 100):
        name = base if n == 1 else f"{base}_{n}"
        entry = ef.get(name) if ef is not None else None
        if entry is not None:
            if entry.value == value:
                return name
            continue
        if any(re.search(r"\$\{?" + re.escape(name) + r"(?![A-Za-z0-9_])", t) for t in texts):
            continue
        return name
    raise EditRefused(f"no free variable name for {base}; move the value by hand")


def _url_password_name(p: Planner, inst: Installation, var: EnvVar, password: str) -> str:
    """The variable to hold a connection URL's password: one that already holds exactly
    this password (POSTGRES_PASSWORD in .env or in the compose file), else <KEY>_PASSWORD."""
    from checks.core.secrets import is_credential_key

    ef = p.project_env(inst)
    for entry in (ef.entries if ef is not None else []):
        if entry.value == password and "PASS" in entry.key.upper() and is_credential_key(entry.key):
            return entry.key
    for svc in inst.services:
        for other in svc.compose_env_written:
            if other.value != password or "PASS" not in other.key.upper() or not is_credential_key(other.key):
                continue
            ref = _pure_ref(other.raw)
            if ref is not None:
                return ref
            name = _var_name(other.key)
            if _free_name(p, inst, name, password) == name:
                return name
    base = re.sub(r"_?URL$", "", _var_name(var.key), flags=re.I) or _var_name(var.key)
    return _free_name(p, inst, base.upper() + "_PASSWORD", password)


def _move_to_env(p: Planner, inst: Installation, var: EnvVar) -> None:
    """SEC-003: the secret goes to the project's .env; the compose file keeps ``${NAME}``.

    A connection URL keeps everything but its password in place; a
    ``${NAME:-secret}`` default becomes NAME in .env.
    """
    from checks.core.secrets import is_credential_key

    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} has no value to move")
    edit.ensure_editable(p.own(inst, node), var.key)
    raw = var.raw or ""
    ef = p.project_env(inst)
    refs = [m for m in _REF.finditer(raw)]
    span = url_password_span(raw)
    if not is_credential_key(var.key) and span is not None and not interpolate(raw[span[0]:span[1]], {}).refs:
        value = var.value or ""
        vspan = url_password_span(value)
        if vspan is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}; move it by hand")
        password = value[vspan[0]:vspan[1]]
        name = _url_password_name(p, inst, var, password)
        if ef is None or ef.get(name) is None:
            p.set_env_var(inst, name, password, _MOVED)
        new_raw = raw[:span[0]] + "${" + name + "}" + raw[span[1]:]
    elif refs:
        # ${NAME:-literal}: define NAME in .env and drop the written default.
        new_raw = raw
        for m in refs:
            name = m.group(1) or m.group(3)
            default = m.group(2)
            if default is None:
                continue
            entry = ef.get(name) if ef is not None else None
            if entry is None:
                p.set_env_var(inst, name, interpolate(default, inst.project_env).value, _MOVED)
                inst = p.inst()
                ef = p.project_env(inst)
            new_raw = new_raw.replace(m.group(0), "${" + name + "}")
    else:
        value = var.value or ""
        name = _free_name(p, inst, _var_name(var.key), value)
        if ef is None or ef.get(name) is None:
            p.set_env_var(inst, name, value, _MOVED)
        new_raw = "${" + name + "}"
    inst = p.inst()
    # Find the same entry in the re-discovered model (positions may have moved).
    node = p.own(inst, _same_node(inst, var))
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
                from checks.install.model import Where

                yield from _encode_target(p, EnvVar(entry.key, entry.value, entry.raw, "env_file", Where(ef.display, entry.line, entry.text), env_file=ef))
    p.each("SEC-004", targets)


def _encode_target(p: Planner, var: EnvVar):
    if not var.value or not var.key.upper().endswith("URL"):
        return
    parts = url_parts(var.value)
    if parts is None or not parts[1] or not _needs_encoding(parts[1]):
        return
    # What SEC-004 judged: the first URL with a password in the value. The edit is
    # placed in the raw text, whose first URL can be another one (${PRIMARY} url2):
    # the result must be the value with that one password encoded, nothing else.
    judged = url_password_span(var.value)
    expected = var.value[:judged[0]] + quote(unquote(parts[1]), safe="") + var.value[judged[1]:]

    def apply(inst, var=var):
        raw = var.raw or ""
        span = url_password_span(raw)
        if span is not None and "$" in raw[span[0]:span[1]].replace("$$", ""):
            _encode_referenced(p, inst, var, raw[span[0]:span[1]])
        elif span is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}; percent-encode it by hand")
        else:
            pw = raw[span[0]:span[1]].replace("$$", "$") if var.origin == "compose" else raw[span[0]:span[1]]
            encoded = quote(unquote(pw), safe="")
            _write_var(p, inst, var, raw[:span[0]] + encoded + raw[span[1]:])
        if _value_now(p.inst(), var) != expected:
            raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} is built from variables and the URL whose "
                              "password needs encoding is not the one written there; percent-encode it by hand")
    yield (("SEC-004", var.where.file, var.where.line, var.key), apply)


def _value_now(inst: Installation, var: EnvVar) -> str | None:
    """The value of the entry ``var`` was, in a re-discovered installation."""
    if var.origin == "env_file":
        for ef in inst.env_files:
            if ef.display == var.where.file:
                entry = next((e for e in ef.entries if e.line == var.where.line and e.key == var.key), None)
                return entry.value if entry is not None else None
        return None
    for svc in inst.services:
        for v in svc.compose_env_written:
            if v.where.file == var.where.file and v.where.line == var.where.line and v.key == var.key:
                return v.value
    return None


def _encode_referenced(p: Planner, inst: Installation, var: EnvVar, pw_raw: str) -> None:
    """The URL's password is ``${NAME}``: percent-encode NAME's value where it is defined,
    if NAME serves only as a URL password (anywhere else the encoding would change the password)."""
    name = _pure_ref(pw_raw)
    where = f"{var.key} at {var.where.file}:{var.where.line}"
    if name is None:
        raise EditRefused(f"the password in {where} is built from variables; percent-encode it by hand")
    entry, ef = None, None
    if var.origin == "env_file" and var.env_file is not None:
        entry, ef = var.env_file.get(name), var.env_file  # env files read their own earlier entries first
    if entry is None:
        ef = p.project_env(inst)
        entry = ef.get(name) if ef is not None else None
    if entry is None or entry.value is None:
        raise EditRefused(f"the password in {where} comes from ${{{name}}}, which is not set in an env file here; "
                          "percent-encode its value where it is set")
    other = _plain_use(p, inst, name)
    if other is not None:
        raise EditRefused(f"the password in {where} comes from ${{{name}}}, which {other} also uses outside a URL: "
                          f"encoding it would change that password too; give {name} a password without URL-reserved "
                          "characters (or use a separate, percent-encoded variable in the URL)")
    p.edit_env_entry(ef, entry, quote(unquote(entry.value), safe=""))


def _plain_use(p: Planner, inst: Installation, name: str) -> str | None:
    """Where ``${name}`` is used other than as a connection URL's password (None: nowhere)."""
    from checks.install.model import Where

    pat = re.compile(r"\$\{?" + re.escape(name) + r"(?![A-Za-z0-9_])")
    places: list[EnvVar] = []
    for svc in inst.services:
        places += svc.compose_env_written
    for ef in inst.env_files:
        places += [EnvVar(e.key, e.value, e.raw, "env_file", Where(ef.display, e.line, e.text), env_file=ef) for e in ef.entries]
    seen = set()
    in_compose_urls = 0
    for v in places:
        if (v.where.file, v.where.line) in seen:
            continue
        seen.add((v.where.file, v.where.line))
        raw = v.raw or ""
        refs = len(pat.findall(raw))
        if not refs:
            continue
        span = url_password_span(raw) if v.key.upper().endswith("URL") else None
        inside = len(pat.findall(raw[span[0]:span[1]])) if span is not None else 0
        if refs > inside:
            return f"{v.where.file}:{v.where.line}"
        if v.origin == "compose":
            in_compose_urls += inside
    # Anything else in the compose files (a command, a healthcheck, a label) is a use of its own.
    counts = [(src.display, len(pat.findall(p.read_text(src.path)))) for src in inst.compose_files]
    if sum(n for _, n in counts) > in_compose_urls:
        return next(d for d, n in counts if n)
    return None


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
    from checks.audit.rules.sec import _redis_password

    return _redis_password(svc)


def _add_requirepass(p: Planner, inst: Installation, svc: Service) -> None:
    cmd = svc.opt("command")
    if cmd is None:
        _insert_service(p, inst, svc, lambda t, n: ["command: redis-server --requirepass ${REDIS_PASSWORD}"])
        return
    cmd = p.own(inst, cmd)
    if cmd.is_seq():
        if not cmd.value:
            raise EditRefused(f"the command of {svc.name} is an empty list; add --requirepass by hand")
        p.edit_node(inst, cmd, lambda t: edit.append_item(t, cmd, '"--requirepass"'))
        inst2 = p.inst()  # fresh positions for the second item
        cmd2 = p.own(inst2, inst2.service(svc.name).opt("command"))
        p.edit_node(inst2, cmd2, lambda t: edit.append_item(t, cmd2, '"${REDIS_PASSWORD}"'))
    elif cmd.value is None or str(cmd.value).strip() == "":
        # ``command: null`` or an empty one: the image's default, redis-server.
        p.edit_node(inst, cmd, lambda t: edit.replace_scalar(t, cmd, "redis-server --requirepass ${REDIS_PASSWORD}"))
    elif cmd.is_scalar():
        p.edit_node(inst, cmd, lambda t: edit.replace_scalar(t, cmd, str(cmd.value) + " --requirepass ${REDIS_PASSWORD}"))
    else:
        raise EditRefused(f"the command of {svc.name} is neither a string nor a list")


def _add_env(p: Planner, inst: Installation, svc: Service, key: str, value: str) -> None:
    """Add ``key: value`` to the service's environment in the first file that defines the service."""
    own = p.own_service(inst, svc)
    env = own.get("environment")  # one merged in from an anchor is refused by the edit
    if env is None:
        _insert_service(p, inst, svc, lambda t, n: ["environment:", f"{edit.child_indent(t, n)}{key}: {value}"])
    elif env.value is None:
        raise EditRefused(f"the environment of {svc.name} is empty (null); add {key} by hand")
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
    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} could not be found to remove")
    _remove_entry(p, inst, node, var.key)


def fix_sec_007(p: Planner) -> None:
    def targets(inst):
        seen = set()
        vars_: list[EnvVar] = []
        for svc in inst.services:
            vars_ += svc.compose_env_written + svc.env_file_vars
        for ef in inst.env_files:
            from checks.install.model import Where

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
    from checks.audit.rules.sec import literal_secrets

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
    p.each("FS-004", targets, batch=True)


def _make_ro(p: Planner, inst: Installation, m) -> None:
    node = p.own(inst, m.node)
    edit.ensure_editable(node, "the media mount")
    if m.long:
        ro = node.get("read_only")
        if ro is not None:
            p.edit_node(inst, ro, lambda t: edit.replace_bool(t, ro, True))
        else:
            p.edit_node(inst, node, lambda t: edit.insert_lines(t, node, ["read_only: true"]))
        return
    raw = str(node.value)
    parts = _split_outside_refs(raw, ":")
    # ${HOST_MEDIA_PATH}:/media gets :ro like any other; a container side or
    # options that come from a variable are the variable's to change.
    if parts is None or any("$" in part.replace("$$", "") for part in parts[1:]):
        raise EditRefused(f"the media mount at {m.where.file}:{m.where.line} takes its container path or options from "
                          "${...} interpolation; add :ro to it by hand (or to the variable)")
    if len(parts) == 2:
        new = raw + ":ro"
    elif len(parts) == 3:
        opts = [o for o in parts[2].split(",") if o and o != "rw"]
        new = ":".join(parts[:2]) + ":" + ",".join(["ro"] + [o for o in opts if o != "ro"])
    else:
        raise EditRefused(f"cannot read the media mount at {m.where.file}:{m.where.line}; add :ro by hand")
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new))


def _split_outside_refs(text: str, sep: str) -> list[str] | None:
    """``text`` split at ``sep`` outside ``${...}`` (None when a ``${`` is not closed)."""
    parts, depth, cur, i = [], 0, "", 0
    while i < len(text):
        if text.startswith("$$", i):
            cur += "$$"
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            cur += "${"
            i += 2
            continue
        ch = text[i]
        if ch == "}" and depth:
            depth -= 1
        if ch == sep and not depth:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if depth:
        return None
    return parts + [cur]


def fix_fs_005(p: Planner) -> None:
    """The media rule on each media bind mount's tree, once its root is judged a library (checks.core.mediaroot).

    The tree is named by its resolved path, the one judged and walked.
    Mount points inside it are not entered (a note says how many).
    """
    from checks.change import walk
    from checks.core.mediaroot import manual_step, media_root_problem

    roots = sorted({m.host_path for _, m in _media_mounts(p.inst()) if m.host_path})
    for root in roots:
        if not os.path.lexists(root):
            continue  # FS-005 reports it not found
        problem = media_root_problem(root, p.root)
        if problem is not None:
            p.refusals.append(Refusal("FS-005", problem, manual_step(root)))
            continue
        real = os.path.realpath(root)
        mounts: list[str] = []
        try:
            entries, transitions = walk.preview(real, mounts)
        except walk.TreeError as exc:
            p.refuse("FS-005", str(exc))
            continue
        if transitions:
            p.trees.append(TreeChmod(real, entries, transitions))
        if mounts:
            shown = ", ".join(mounts[:3]) + (", ..." if len(mounts) > 3 else "")
            p.notes.append(f"FS-005: {len(mounts):,} mount point{'s' if len(mounts) != 1 else ''} inside {real} "
                           f"not entered ({shown}): another filesystem's modes are changed by hand, or by "
                           "mounting that library as its own media path")


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
                    yield (("DKR-001", svc.name, m.where.file, m.where.line), lambda i, m=m: _remove_entry(p, i, m.node, "the Docker socket mount"))
    p.each("DKR-001", targets, batch=True)


def fix_dkr_002(p: Planner) -> None:
    from checks.audit.rules.dkr import _truthy

    def targets(inst):
        for svc in inst.services:
            if _truthy(svc.opt("privileged")):
                yield (("DKR-002", svc.name), lambda i, svc=svc: _delete_service_key(p, i, svc.name, "privileged"))
    p.each("DKR-002", targets, batch=True)


def fix_dkr_003(p: Planner) -> None:
    from checks.audit.rules.dkr import no_new_privileges

    def targets(inst):
        for svc in inst.services:
            node = svc.opt("security_opt")
            ok, bad_item = no_new_privileges(svc)
            if ok:
                continue

            def apply(i, svc=svc, node=node, bad_item=bad_item):
                if bad_item is not None:
                    bad = p.own(i, bad_item)
                    p.edit_node(i, bad, lambda t: edit.replace_scalar(t, bad, "no-new-privileges:true"))
                elif node is not None and node.is_seq() and node.value:
                    # Items of several files are concatenated: append in the last file's list.
                    own = p.own_chain(i, node.value[-1])[-2]
                    p.edit_node(i, own, lambda t: edit.append_item(t, own, '"no-new-privileges:true"'))
                elif node is None:
                    _insert_service(p, i, svc, lambda t, n: ["security_opt:", f'{edit.seq_indent(t, n)}- "no-new-privileges:true"'])
                else:
                    raise EditRefused(f"security_opt of {svc.name} is not a list; add no-new-privileges:true by hand")
            yield (("DKR-003", svc.name), apply)
    p.each("DKR-003", targets, batch=True)


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
                        _remove_entry(p, i, item, "the capability")
                    yield (("DKR-006", svc.name, str(item.value)), apply)
    p.each("DKR-006", targets, batch=True)


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
                log = svc.opt("logging")
                if log is None:
                    def lines(t, n):
                        ci = edit.child_indent(t, n)
                        return ["logging:", f"{ci}driver: json-file", f"{ci}options:", f'{ci}{ci}max-size: "10m"', f'{ci}{ci}max-file: "3"']
                    _insert_service(p, i, svc, lines)
                    return
                if not log.is_map():
                    raise EditRefused(f"logging of {svc.name} is not a mapping")
                # Several files' logging sections merge: edit the one whose options win (the last file's).
                opts = log.get("options")
                target = p.own(i, opts) if opts is not None and opts.is_map() else p.own(i, log)
                text = p.read_text(p.path_of(i, target.file))
                if opts is None or not opts.is_map():
                    if opts is not None:
                        raise EditRefused(f"logging options of {svc.name} are not a mapping; add max-size by hand")
                    ci = edit.child_indent(text, target)
                    p.edit_node(i, target, lambda t: edit.insert_lines(t, target, ["options:", f'{ci}max-size: "10m"', f'{ci}max-file: "3"']))
                elif target.keys:
                    lines = ['max-size: "10m"'] + ([] if opts.get("max-file") is not None else ['max-file: "3"'])
                    p.edit_node(i, target, lambda t: edit.insert_lines(t, target, lines))
                else:
                    raise EditRefused(f"logging options of {svc.name} are empty or not a block mapping; add max-size by hand")
            yield (("DKR-008", svc.name), apply)
    p.each("DKR-008", targets, batch=True)


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
               host_root: str = "/", now: float | None = None, new_secret=None,
               db_password: str | None = None, validate_with_compose: bool = True) -> tuple[Plan, Planner]:
    """Plan the fixes; ``db_password`` is the new database password when one was chosen (the assistant).

    ``validate_with_compose=False`` skips the ``docker compose config`` run (about 100 ms): for
    previews that are shown but never applied."""
    planner = Planner(root, profile, files, host_root, now, new_secret, db_password)
    planner.validate_with_compose = validate_with_compose
    return planner.build(only), planner
