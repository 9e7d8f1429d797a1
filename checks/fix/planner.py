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

The fixers live in one module per area (checks/fix/net.py, sec.py, secmove.py,
securl.py, fs.py, dkr.py, ops.py; rotate.py is the live password rotation they share)
and plan from the targets their rules hand them (the rule modules' public target
functions, or the ``target`` of a finding's evidence); checks/fix/registry.py says which
fixer serves which check and in what order. This module is the :class:`Planner` they
drive and the validation of the result. Some 600 lines: the Planner is one state
machine (the overlay, the batch rounds, the refusals, the final re-audit), which
split across modules would be harder to follow, not easier.
"""

from __future__ import annotations

import os
import secrets as _secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

from checks.audit.catalog import BY_ID
from checks.audit.findings import FAIL, Finding
from checks.audit.run import run_audit
from checks.change import confined
from checks.change.plan import Command, FileEdit, Login, ModeChange, Plan, Refusal, TreeChmod
from checks.core.errors import InputError
from checks.core.yamlpos import Node, parse_yaml
from checks.fix import edit, envedit, firewall, rotate, tls
from checks.fix.batch import Batch as _Batch
from checks.fix.batch import Stale as _Stale
from checks.fix.composecheck import ComposeRejected, compose_available, compose_check
from checks.fix.edit import EditRefused
from checks.fix.registry import FIXERS, Fixer
from checks.fix.sec import APP_SECRET_BYTES, PASSWORD_BYTES
from checks.install.discovery import Overlay, discover
from checks.install.model import EnvEntry, EnvFile, Installation, Service
from checks.live.model import LiveState
from checks.proxy.model import Choice

__all__ = ["APP_SECRET_BYTES", "PASSWORD_BYTES", "PlanError", "Planner", "compose_available", "compose_check",
           "plan_fixes"]

T = TypeVar("T")
#: Where a fixer's target is (check, service or file, ...): what a refusal is remembered by.
Key = tuple[object, ...]
#: One target's edit, on a freshly discovered installation.
Apply = Callable[[Installation], None]
#: A fixer's targets on an installation: (key, edit) pairs.
Targets = Iterable[tuple[Key, Apply]]
State = tuple[dict[str, bytes], dict[str, int]]


class PlanError(Exception):
    """The planned changes failed their own validation; nothing will be written."""


class Planner:
    """Builds the plan for an installation, one fixer at a time."""

    def __init__(self, root: str, profile: str = "local", files: list[str] | None = None, host_root: str = "/",
                 now: float | None = None, new_secret: Callable[[int], str] | None = None,
                 db_password: str | None = None, live: LiveState | None = None,
                 health_timeout: float = 120.0, front_door: Choice | None = None,
                 hasher: tls.Hasher | None = None, certifier: tls.Certifier | None = None) -> None:
        self.root = os.path.abspath(root)
        self.front_door = front_door
        """The front door the user chose (TLS-001/002/003 are fixed by setting it up; checks/fix/tls.py)."""
        self.hasher = hasher
        """bcrypt for the proxy login (None: checks.proxy.generate.hash_password; tests fix the salt)."""
        self.certifier = certifier
        """The placeholder certificate's maker (None: checks.fix.tls.placeholder_cert)."""
        self.system = tls.SystemChanges()
        """The front door's system files, links and commands (outside the overlay's compose edits)."""
        self.firewall = firewall.FirewallChanges()  # the host firewall's files and sync (checks/fix/firewall.py)
        self.live = live
        """What runs now (None: files only): a plan that changes a running service recreates it (checks/fix/live.py)."""
        self.health_timeout = health_timeout
        self.commands: list[Command] = []
        """Commands fixers plan on the running stack (ALTER ROLE...): after the first Recreate, before the files."""
        self.named_secrets: dict[str, str] = {}
        self.logins: list[Login] = []
        """Logins the health gate tries after the recreate (the new password accepted, the old one refused)."""
        self.recreate_also: list[str] = []
        """Services to recreate even when their files say nothing new (a password rotated in the database)."""
        self.rotations: dict[str, rotate.Rotation] = {}
        """Database roles whose password changes in the running database (checks/fix/rotate.py)."""
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
        self._refused: set[Key] = set()
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
        self.base_report = run_audit(self.base, profile, live=self.live)

    # -- the planned state ------------------------------------------------------
    def inst(self) -> Installation:
        return discover(self.root, self.files, self.host_root, self.now, overlay=self.overlay)

    @property
    def current_fixer(self) -> str | None:
        """The check whose fixer runs now."""
        return self._fixing

    @property
    def overlay_links(self) -> dict[str, str]:
        return self.overlay.links

    def failing(self, check_id: str, inst: Installation | None = None) -> Finding | None:
        rep = run_audit(inst or self.inst(), self.profile, only={check_id}, live=self.live)
        f = rep.findings[0] if rep.findings else None
        return f if f is not None and f.status == FAIL else None

    def targets(self, check_id: str, inst: Installation, kind: type[T]) -> list[tuple[str | None, T]]:
        """(service, target) of each piece of evidence the rule of ``check_id`` hands its fix, on ``inst``.

        The fix works on what its rule found (the port binding, the mount) instead of finding it again.
        """
        f = self.failing(check_id, inst)
        if f is None:
            return []
        return [(e.service, e.target) for e in f.evidence if isinstance(e.target, kind)]

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

    def refuse(self, check: str, reason: str, key: Key | None = None) -> None:
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
        for own_ef in inst.interp_env_files.get(file, []) if file else []:
            own_entry = own_ef.get(name)
            if own_entry is not None and own_ef.exists:
                self.edit_env_entry(own_ef, own_entry, value)
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
    def each(self, check: str, targets: Callable[[Installation], Targets],
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
                        f"the edit would leave a file unreadable ({exc}); "
                        "this is a dester-harden bug, please report it")
                    self.refuse(check, reason, key)
                    continue
                if (dict(self.overlay.contents), dict(self.overlay.modes)) == before:
                    self.refuse(check, f"{_key_text(key)}: the planned edit would change nothing; fix it by hand", key)
                    continue
                break
            else:
                return
        raise PlanError(f"{check}: the fix did not converge")

    def restore(self, state: State) -> None:
        self.overlay.contents.clear()
        self.overlay.contents.update(state[0])
        self.overlay.modes.clear()
        self.overlay.modes.update(state[1])

    def _each_batch(self, check: str, inst: Installation, targets: Callable[[Installation], Targets]) -> bool | None:
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
        refused: list[tuple[int, Key, str]] = []
        applied = 0
        first_shift = len(todo)  # the first applied target that moved the lines after it
        cut = False
        self._batch = _Batch()
        try:
            for idx in range(len(todo) - 1, -1, -1):  # last in the file first: earlier positions stay put
                key, apply = todo[idx]
                before = dict(self.overlay.contents), dict(self.overlay.modes)
                try:
                    apply(inst)
                except _Stale:
                    self.restore(before)
                    cut = True
                    break
                except EditRefused as exc:
                    self.restore(before)
                    refused.append((idx, key, str(exc)))
                    continue
                except InputError:
                    self.restore(start)  # the loop words this refusal
                    return False
                if (dict(self.overlay.contents), dict(self.overlay.modes)) == before:
                    nothing = f"{_key_text(key)}: the planned edit would change nothing; fix it by hand"
                    refused.append((idx, key, nothing))
                    continue
                applied += 1
                if self._moved_lines(before[0]):
                    first_shift = idx
        finally:
            self._batch = None
        try:
            if applied:  # else the overlay is the round's, which parsed
                self.inst()  # every planned file must still parse
        except InputError:
            self.restore(start)  # which target broke it is the one-at-a-time loop's to say
            return False
        if cut:
            # Refusals are recorded in the order of the targets: those of a cut batch
            # come back in the next round's listing, with the ones before them.
            return applied > 0
        for idx, key, reason in sorted(refused, key=lambda r: r[0]):
            if idx > first_shift:
                # Worded from the round's positions, before an earlier target's edit moved
                # this one's line: the one-at-a-time loop would name the line as that edit
                # leaves it. Left to the next round (after the edit), which names it so;
                # the ones after it too, so refusals stay in the order of the targets.
                break
            self.refuse(check, reason, key)
        # Every target refused: the overlay is as the round found it, so another round
        # would list the same targets, all refused now (and cost a discovery).
        return None if applied == 0 else True

    def _moved_lines(self, before: dict[str, bytes]) -> bool:
        """Whether the overlay's files have other numbers of lines than in ``before``."""
        for path, data in self.overlay.contents.items():
            old = before[path] if path in before else self._disk.get(path) or b""
            if old is not data and old.count(b"\n") != data.count(b"\n"):
                return True
        return False

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
        if self.front_door is not None and tls.named_again(self, selected, only):
            selected.append("TLS-001")
            self._run(Fixer("TLS-001", True, tls.fix_tls))
        if selected:
            self._follow_up(selected, failing)
        if only:
            for cid in sorted(only & failing):
                if cid not in {f.id for f in FIXERS}:
                    chk = BY_ID[cid]
                    why = "a live check with nothing dester-harden can change for it" if chk.live else (
                        "explained only: no change dester-harden can make safely" if not chk.fixable else
                        "not automated yet")
                    self.refusals.append(Refusal(cid, why, chk.fix))
        plan = self._assemble(selected)
        self._validate(plan, selected)
        if self.live is not None and (not plan.empty or self.recreate_also):
            from checks.audit.rules.ops import newest_backup_age
            from checks.fix.live import add_recreates

            add_recreates(plan, self.base, self.inst(), self.live, timeout=self.health_timeout, logins=self.logins,
                          backup_age=newest_backup_age(self.base), extra=self.recreate_also)
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
        saved = (dict(self.overlay.contents), dict(self.overlay.modes), len(self.refusals), len(self.notes),
                 set(self._refused), {k: replace(r) for k, r in self.rotations.items()}, len(self.logins),
                 dict(self.named_secrets), len(self.commands), len(self.recreate_also))
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
            self.rotations = saved[5]
            del self.logins[saved[6]:]
            self.named_secrets = saved[7]
            del self.commands[saved[8]:]
            del self.recreate_also[saved[9]:]
            self.refusals.append(Refusal(fixer.id, f"{exc}; dester-harden changes nothing outside the installation "
                                         f"directory, so no part of {fixer.id} is planned", BY_ID[fixer.id].fix))
        finally:
            self._fixing = None

    def _assemble(self, selected: list[str]) -> Plan:
        plan = Plan(checks=selected, refusals=self.refusals, notes=self.notes)
        plan.changes.extend(self.commands)
        plan.named_secrets.update(self.named_secrets)
        system = self.system.paths() | self.firewall.paths()
        for path, after in self.overlay.contents.items():
            if path in system:
                continue  # the front door's files keep their own modes and owners (tls.assemble)
            before = self._disk.get(path)
            if before == after:
                continue
            mode = 0o600 if before is None else None
            plan.changes.append(FileEdit(path, before, after, mode))
        for path, mode in self.overlay.modes.items():
            mode_before = self._disk_modes.get(path)
            if mode_before is not None and mode_before != mode and self._disk.get(path, b"") is not None:
                plan.changes.append(ModeChange(path, mode_before, mode))
        plan.changes.extend(self.trees)
        plan.secrets = set(self.base.secrets) | set(self.generated) | set(self.inst().secrets)
        rotate.finish(self, plan)  # the ALTER ROLE commands go before the file edits
        tls.assemble(plan, self.system)
        firewall.assemble(plan, self.firewall)
        plan.named = sorted(self.named)
        outside = {c.path for c in plan.changes if isinstance(c, (FileEdit, ModeChange))
                   and os.path.relpath(c.path, self.root).startswith("..") and c.path not in system}
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
            if f.check.live:
                continue  # judged on what runs now: the planned files cannot show it fixed (the re-audit can)
            if f.status == FAIL and before.get(f.id) != FAIL:
                raise PlanError(f"internal error: the planned fixes would make {f.id} fail; nothing was changed")
            if f.status == FAIL and f.id in selected and f.id not in refused:
                raise PlanError(f"internal error: the planned fix for {f.id} does not fix it; nothing was changed")
        if self.validate_with_compose:
            try:
                compose_check(self, final)
            except ComposeRejected as exc:
                raise PlanError(str(exc)) from None
        self.final_report = report


def _key_text(key: Key) -> str:
    """Where a target is, for messages: its service or file (never a value)."""
    return str(key[1]) if len(key) > 1 else str(key[0])


def plan_fixes(root: str, profile: str = "local", only: set[str] | None = None, files: list[str] | None = None,
               host_root: str = "/", now: float | None = None, new_secret: Callable[[int], str] | None = None,
               db_password: str | None = None, validate_with_compose: bool = True, live: LiveState | None = None,
               health_timeout: float = 120.0, front_door: Choice | None = None,
               hasher: tls.Hasher | None = None, certifier: tls.Certifier | None = None) -> tuple[Plan, Planner]:
    """Plan the fixes; ``db_password`` is the new database password when one was chosen (the assistant).

    ``live``: what runs now; a plan that changes a running service then recreates it behind the health
    gate (``health_timeout`` seconds). None: the files only.

    ``validate_with_compose=False`` skips the ``docker compose config`` run (about 100 ms): for
    previews that are shown but never applied. A password fix with the database running changes
    it inside the database too (checks/fix/rotate.py)."""
    planner = Planner(root, profile, files, host_root, now, new_secret, db_password, live, health_timeout,
                      front_door, hasher, certifier)
    planner.validate_with_compose = validate_with_compose
    return planner.build(only), planner
