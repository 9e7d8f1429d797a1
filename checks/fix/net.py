"""NET-*: fixes of what the compose file publishes, and to whom."""

from __future__ import annotations

from typing import TYPE_CHECKING

from checks.audit.catalog import BY_ID
from checks.audit.rules.common import db_ports
from checks.change.plan import Refusal
from checks.core.interpolate import interpolate, leading_ref
from checks.core.yamlpos import parse_yaml
from checks.fix import edit
from checks.fix.edit import EditRefused
from checks.fix.svcedit import bound, delete_service_key, insert_service, remove_entry
from checks.install.model import Installation, Port, Service

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner, Targets


def _rebind(planner: Planner, inst: Installation, port: Port, ip: str) -> None:
    if port.interpolated:
        raw = str(port.node.value) if port.node.is_scalar() else ""
        names = sorted(set(interpolate(raw, {}).refs)) if raw else []
        lead = leading_ref(raw)
        how = (f"set {lead}={ip} in .env" if lead else
               f"set {', '.join(names)} in .env" if names else "set the variables in .env")
        how += f" so that it binds to {ip}"
        refs = ", ".join("$" + n for n in names) or "variables"
        raise EditRefused(f"the port at {port.where.file}:{port.where.line} comes from ${{...}} interpolation "
                          f"({refs}); dester-harden does not rewrite it: {how}")
    node = planner.own(inst, port.node)
    edit.ensure_editable(node, "the port")
    if port.long:
        host_ip = node.get("host_ip")
        if host_ip is not None:
            planner.edit_node(inst, node, lambda t: edit.replace_scalar(t, host_ip, ip))
        else:
            planner.edit_node(inst, node, lambda t: edit.insert_lines(t, node, [f"host_ip: {ip}"]))
        return
    raw = str(node.value)
    proto = "/" + raw.rsplit("/", 1)[1] if "/" in raw else ""
    spec = f"{ip}:{port.published or ''}:{port.target}{proto}"
    # The node's own quoting (render_scalar quotes a plain one only where it must).
    planner.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, spec))


def fix_net_001(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc, port in p.targets("NET-001", inst, Port):
            yield (("NET-001", svc, port.where.text.strip()), bound(_rebind, p, port, "127.0.0.1"))
    p.each("NET-001", targets, batch=True)


def fix_net_002(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            for port in db_ports(svc):
                yield (("NET-002", svc.name, port.where.text.strip()),
                       bound(remove_entry, p, port.node, "the published port"))
    p.each("NET-002", targets, batch=True)


def fix_net_003(p: Planner) -> None:
    if p.profile == "tailscale":
        p.notes.append("NET-003: the API is rebound to 127.0.0.1; reach it over the tailnet with "
                       "`tailscale serve --bg 3001`.")

    def targets(inst: Installation) -> Targets:
        for svc, port in p.targets("NET-003", inst, Port):
            yield (("NET-003", svc, port.where.text.strip()), bound(_rebind, p, port, "127.0.0.1"))
    p.each("NET-003", targets, batch=True)


def fix_net_004(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            for key in ("network_mode", "pid", "ipc", "userns_mode"):
                node = svc.opt(key)
                if node is not None and isinstance(node.value, str) and node.value.strip().lower() == "host":
                    yield (("NET-004", svc.name, key), bound(delete_service_key, p, svc.name, key))
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

    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            mode = svc.opt("network_mode")
            if mode is not None and mode.value not in (None, "bridge"):
                continue
            if svc.opt("networks") is None:
                def apply(i: Installation, svc: Service = svc) -> None:
                    if svc.opt("network_mode") is not None:
                        # network_mode: bridge is the default network; Compose forbids it beside networks:.
                        delete_service_key(p, i, svc.name, "network_mode")
                        return
                    insert_service(p, i, svc,
                                   lambda t, n: ["networks:"] + [f"{edit.seq_indent(t, n)}- {name}" for name in names])
                yield (("NET-005", svc.name), apply)
        top = inst.top
        nets = top.get("networks") if top is not None else None
        if nets is None or not nets.is_map() or "desterlib-net" not in nets.value:
            yield (("NET-005", "top"), lambda i: _add_top_network(p, i))

    before = dict(p.overlay.contents), dict(p.overlay.modes)
    refused = len(p.refusals)
    p.each("NET-005", targets, batch=True)
    if any(r.check == "NET-005" for r in p.refusals[refused:]):
        p.restore(before)
        p.refusals.append(Refusal("NET-005", "no service was moved to desterlib-net: the ones that cannot be would "
                                  "be cut off from the others; fix them by hand (above), or add desterlib-net to "
                                  "every service yourself", BY_ID["NET-005"].fix))
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
        raise EditRefused(f"the top-level networks: section of {root.file} is not a block mapping; "
                          "add desterlib-net by hand")
    path, root = roots[0]
    text = p.read_text(path)
    ci = edit.child_indent(text, root)
    p.write_text(path, edit.insert_lines(text, root, ["networks:", f"{ci}desterlib-net:", f"{ci}{ci}driver: bridge"]))


def fix_net_006(p: Planner) -> None:
    """A database port listening on all interfaces now: bind it in the files (NET-001) if they still publish it
    so, and recreate the service either way (the files may be fixed already and not applied)."""
    from checks.fix.dkr import fix_dkr_009

    if p.failing("NET-001") is not None:
        fix_net_001(p)
    fix_dkr_009(p)
