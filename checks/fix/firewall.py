"""FW-001, FW-002, NET-007, FW-004: the host firewall the profile asks for, in ufw, firewalld or nft.

One fixer serves the four checks (like the front door's for TLS): the rules come from one list
(:func:`checks.firewall.wants.wanted`, SSH first), the backend is chosen by what the host runs
(firewalld when it is the frontend; dester-harden's own nft table when Docker uses its nftables
backend, which has no DOCKER-USER chain; else ufw), and its :class:`BackendPlan` becomes the plan:

* the backend's files as :class:`FileEdit`\\ s of system files (their directories in ``Plan.system``);
* the reload pair of ADR 0008 around them: ``true`` (inverse: the sync) first, the sync (inverse:
  ``true``) last, so an apply loads and verifies the new rules, and a rollback or undo re-syncs the
  live firewall after the files are restored;
* ``Plan.revert_after`` (60 s): the change is undone by itself unless it is confirmed;
* the rules in plain words and the equivalent ``ufw ...`` commands as notes.

Refused, never guessed: the firewall state could not be read (or a part of it failed), rules in
both iptables-legacy and nf_tables (adding to either would not say what the host does), no firewall
is installed ("ufw is not installed: apt install ufw"), the profile cannot be expressed (local without
a LAN network), or the SSH lockout guard (FW-003) says the rules could cut this session.

Offered only (``default=False`` in the registry): it changes the host's firewall, which can cut
every remote access to the server; it runs when the user names it (``fix --only FW-001,NET-007``
or the assistant's firewall step), never as part of a plain ``dester-harden fix``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.audit.catalog import BY_ID
from checks.change.plan import Command, FileEdit, Link, Plan, Refusal
from checks.change.trust import closed_to_others
from checks.core.sysroot import SystemRoot
from checks.firewall.guard import guard
from checks.firewall.sync import backend_module
from checks.firewall.wants import BackendPlan, Want, WantError, wanted

if TYPE_CHECKING:
    from checks.fix.planner import Planner
    from checks.live.fwmodel import FirewallState, FwRule

FW_CHECKS = ("FW-001", "FW-002", "NET-007", "FW-004")
REVERT_AFTER = 60.0
"""Seconds before an unconfirmed firewall change is undone by itself (``--confirm-timeout``)."""
TRUE = ("true",)


@dataclass(slots=True)
class FirewallChanges:
    """What the firewall adds to a plan besides the compose edits (assembled by :func:`assemble`)."""

    files: list[FileEdit | Link] = field(default_factory=list)
    """The backend's file edits, then the boot hook (a unit and its link, or a cron line)."""
    first: list[Command] = field(default_factory=list)
    last: list[Command] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wants: list[Want] = field(default_factory=list)
    """The rules as planned (the faces show ``Want.text()``)."""
    backend: str | None = None
    revert_after: float | None = None
    done: bool = False

    def paths(self) -> set[str]:
        return {f.path for f in self.files}


IN_ORDER = ", in this order: "
RULE_SEP = "; "
BY_HAND = "The same by hand: "


def rules_note(notes: list[str]) -> tuple[str, list[str]] | None:
    """The plan's note of the firewall rules in words: (``Firewall (ufw, local profile)``, the rules in
    order), or None when the plan has none. The faces list them one per line."""
    for n in notes:
        if n.startswith("Firewall (") and IN_ORDER in n:
            head, rules = n.split(IN_ORDER, 1)
            return head, rules.split(RULE_SEP)
    return None


def backend_for(fw: FirewallState) -> str:
    """``nft`` when Docker's firewall backend is nftables, ``firewalld`` when that is the frontend, else ``ufw``."""
    if fw.docker_backend == "nftables":
        return "nft"
    if fw.frontend == "firewalld":
        return "firewalld"
    return "ufw"


def _refuse(p: Planner, why: str) -> None:
    failing = [c for c in FW_CHECKS if c in BY_ID and p.failing(c) is not None] or [p.current_fixer or "FW-001"]
    for cid in failing:
        chk = BY_ID.get(cid)
        p.refusals.append(Refusal(cid, why, chk.fix if chk is not None else ""))


def untrusted_program() -> str | None:
    """Why root must not journal a command that runs this dester-harden later, or None when it may.

    The sync (on undo and rollback), the detached revert and the boot hook run ``sys.executable -m ...``
    as root, later and unattended: an interpreter or a package another user can write (a virtualenv in
    someone's home) would make root run that user's code. The same rule as for the journal: every
    directory from / down, and the file, owned by root or this user and writable by nobody else.
    """
    import checks

    for what, path in (("the Python interpreter", os.path.realpath(sys.executable)),
                       ("dester-harden's code", os.path.realpath(os.path.dirname(checks.__file__)))):
        if not closed_to_others(path):
            return (f"{what} ({path}) can be written by another user, and root would run it unattended to "
                    "revert or undo the firewall: install dester-harden where only root can write (a root-owned "
                    "virtualenv or pipx as root)")
    return None


def _existing_after(fw: FirewallState, wants: list[Want]) -> list[FwRule]:
    """The rules the firewall keeps after ours (allows of denied ports are removed: FW-002)."""
    denied = {w.port for w in wants if w.action == "deny" and w.port is not None}
    return [r for r in fw.rules if not (r.action in ("allow", "limit") and r.port in denied) and r.persistent]


def fix_firewall(p: Planner) -> None:
    """The firewall for FW-001, FW-002, NET-007 and FW-004 (run once for the four)."""
    fc: FirewallChanges = p.firewall
    if fc.done:
        return
    fc.done = True
    live = p.live
    fw = live.firewall if live is not None else None
    if fw is None:
        why = (live.firewall_error if live is not None else None) or "the live state was not read"
        _refuse(p, f"the host firewall could not be read ({why}): no firewall change is planned")
        return
    if fw.errors:
        _refuse(p, f"part of the host firewall could not be read ({fw.errors[0]}): no firewall change is planned "
                "on a partial view")
        return
    if fw.mixed_backends:
        _refuse(p, "rules are loaded in both iptables-legacy and nf_tables (a mix that blocks every published "
                "port): make ufw and Docker use the same iptables (update-alternatives --config iptables), then "
                "run this again")
        return
    backend = backend_for(fw)
    if backend == "ufw" and not fw.ufw_installed and fw.frontend != "ufw":
        _refuse(p, "ufw is not installed: apt install ufw, then run this again")
        return
    inst = p.inst()
    try:
        wants = wanted(p.profile, fw, inst, live)
    except WantError as exc:
        _refuse(p, str(exc))
        return
    planned: list[Want | FwRule] = [w for w in wants if w.port is not None or w.source != "any" or w.interface]
    verdict = guard(fw, planned + list(_existing_after(fw, wants)))
    if not verdict.ok:
        p.refusals.append(Refusal("FW-003", f"the firewall plan would cut this SSH session: {verdict.reason}",
                                  BY_ID["FW-003"].fix))
        _refuse(p, "refused by the SSH lockout guard (FW-003): " + verdict.reason)
        return
    sysroot = SystemRoot(p.host_root)
    unsafe = untrusted_program()
    if unsafe is not None:
        _refuse(p, unsafe)
        return
    try:
        module = backend_module(backend)
        bp: BackendPlan = module.plan(wants, fw, sysroot, inst)
    except ImportError:
        _refuse(p, f"the {backend} backend is not available in this version of dester-harden")
        return
    except ValueError as exc:
        _refuse(p, f"cannot plan the {backend} rules: {exc}")
        return
    for check, reason, manual in bp.refusals:
        p.refusals.append(Refusal(check, reason, manual))
    fc.wants = wants
    fc.backend = backend
    fc.notes.append(f"Firewall ({backend}, {p.profile} profile){IN_ORDER}" + RULE_SEP.join(w.text() for w in wants))
    fc.notes.extend(bp.notes)
    if not bp.edits:
        fc.notes.append(f"The {backend} rules for the {p.profile} profile are already in place.")
        return
    if bp.commands:
        fc.notes.append(BY_HAND + " ; ".join(bp.commands))
    for path, before, after, mode, owner in bp.edits:
        fc.files.append(FileEdit(path, before, after, mode if before is None else None,
                                 owner if before is None else None))
    fc.dirs.extend(bp.system_dirs)
    # Armed with the change: after a reboot before confirmation, the hook reverts it (ADR 0010).
    from checks.firewall.confirm import boot_hook_changes, boot_hook_dirs

    hook = boot_hook_changes(sysroot, inst.root)
    fc.files.extend(hook)
    fc.dirs.extend(boot_hook_dirs(hook))
    fc.first.append(Command(TRUE, bp.sync, f"re-sync the live {backend} rules with the restored files (on "
                            "rollback and undo)", host=True))
    fc.last.append(Command(bp.sync, TRUE, f"load the {backend} rules and verify the live firewall equals them",
                           host=True))
    fc.revert_after = REVERT_AFTER


def assemble(plan: Plan, fc: FirewallChanges) -> None:
    """Put the firewall's changes into ``plan``: the rollback-side sync first, the files after the other
    edits, the sync last; the system directories and the confirm-or-revert timeout."""
    plan.notes.extend(fc.notes)
    if not fc.files:
        return
    plan.changes[:0] = fc.first
    plan.changes.extend(fc.files)
    plan.changes.extend(fc.last)
    plan.system = sorted(set(plan.system) | set(fc.dirs))
    plan.revert_after = fc.revert_after
