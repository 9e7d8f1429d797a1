"""DKR-*: fixes of container privileges, sockets, capabilities and logging."""

from __future__ import annotations

from typing import TYPE_CHECKING

from checks.audit.rules.dkr import DANGEROUS_CAPS, no_new_privileges, normalize_cap
from checks.core.yamlpos import Node
from checks.fix import edit
from checks.fix.edit import EditRefused
from checks.fix.svcedit import bound, delete_service_key, insert_service, remove_entry
from checks.install.model import Installation, Mount, Service

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner, Targets


def fix_dkr_001(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc, m in p.targets("DKR-001", inst, Mount):
            yield (("DKR-001", svc, m.where.file, m.where.line),
                   bound(remove_entry, p, m.node, "the Docker socket mount"))
    p.each("DKR-001", targets, batch=True)


def fix_dkr_002(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for name, _node in p.targets("DKR-002", inst, Node):
            if name is not None:
                yield (("DKR-002", name), bound(delete_service_key, p, name, "privileged"))
    p.each("DKR-002", targets, batch=True)


def fix_dkr_003(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            node = svc.opt("security_opt")
            ok, bad_item = no_new_privileges(svc)
            if ok:
                continue

            def apply(i: Installation, svc: Service = svc, node: Node | None = node,
                      bad_item: Node | None = bad_item) -> None:
                if bad_item is not None:
                    bad = p.own(i, bad_item)
                    p.edit_node(i, bad, lambda t: edit.replace_scalar(t, bad, "no-new-privileges:true"))
                elif node is not None and node.is_seq() and node.value:
                    # Items of several files are concatenated: append in the last file's list.
                    own = p.own_chain(i, node.value[-1])[-2]
                    p.edit_node(i, own, lambda t: edit.append_item(t, own, '"no-new-privileges:true"'))
                elif node is None:
                    insert_service(p, i, svc,
                                   lambda t, n: ["security_opt:", f'{edit.seq_indent(t, n)}- "no-new-privileges:true"'])
                else:
                    raise EditRefused(f"security_opt of {svc.name} is not a list; add no-new-privileges:true by hand")
            yield (("DKR-003", svc.name), apply)
    p.each("DKR-003", targets, batch=True)


def fix_dkr_006(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            node = svc.opt("cap_add")
            if node is None or not node.is_seq():
                continue
            for item in node.value:
                cap = normalize_cap(str(item.value)) if item.value is not None else None
                if cap in DANGEROUS_CAPS:
                    def apply(i: Installation, svc: Service = svc, node: Node = node, item: Node = item) -> None:
                        remove_entry(p, i, item, "the capability")
                    yield (("DKR-006", svc.name, str(item.value)), apply)
    p.each("DKR-006", targets, batch=True)


def fix_dkr_008(p: Planner) -> None:
    failing = p.failing("DKR-008")
    if failing is None:
        return
    names = {e.service for e in failing.evidence}

    def targets(inst: Installation) -> Targets:
        f = p.failing("DKR-008", inst)
        still = {e.service for e in f.evidence} if f is not None else set()
        for svc in inst.services:
            if svc.name not in names or svc.name not in still:
                continue

            def apply(i: Installation, svc: Service = svc) -> None:
                log = svc.opt("logging")
                if log is None:
                    def lines(t: str, n: Node) -> list[str]:
                        ci = edit.child_indent(t, n)
                        return ["logging:", f"{ci}driver: json-file", f"{ci}options:", f'{ci}{ci}max-size: "10m"',
                                f'{ci}{ci}max-file: "3"']
                    insert_service(p, i, svc, lines)
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
                    options = ["options:", f'{ci}max-size: "10m"', f'{ci}max-file: "3"']
                    p.edit_node(i, target, lambda t: edit.insert_lines(t, target, options))
                elif target.keys:
                    extra = ['max-size: "10m"'] + ([] if opts.get("max-file") is not None else ['max-file: "3"'])
                    p.edit_node(i, target, lambda t: edit.insert_lines(t, target, extra))
                else:
                    raise EditRefused(f"logging options of {svc.name} are empty or not a block mapping; "
                                      "add max-size by hand")
            yield (("DKR-008", svc.name), apply)
    p.each("DKR-008", targets, batch=True)


def fix_dkr_009(p: Planner) -> None:
    """Recreate what runs with old ports, environment, mounts or image: the files are right already."""
    from checks.fix.live import drifted

    services = [s for s in drifted(p.base, p.live) if s not in p.recreate_also]
    if services:
        p.recreate_also += services
        p.notes.append(f"Recreated to run with the files as they are: {', '.join(services)} (DKR-009).")
