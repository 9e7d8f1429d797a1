"""firewalld's zone files as data: read with comments kept, written in firewalld's own layout, compared with
what ``firewall-cmd --list-all`` shows, and checked by firewalld's own parser.

The part of the firewalld backend (:mod:`checks.firewall.firewalld`) that knows the XML; the
planning and the sync are there.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from checks.core.sysroot import SystemRoot
from checks.firewall.sysfiles import first_line, read_system, run
from checks.firewall.wants import Want
from checks.live.fwmodel import FirewallState, Runner

CONF = "/etc/firewalld/firewalld.conf"
ZONES = "/etc/firewalld/zones"
PACKAGED_ZONES = "/usr/lib/firewalld/zones"
SERVICES = ("/etc/firewalld/services", "/usr/lib/firewalld/services")
MARK = "dester-harden"


@dataclass(slots=True)
class ZoneView:
    """What a zone allows, as ``firewall-cmd --list-all`` shows it (and as the file says it)."""

    target: str = "default"
    services: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    forward_ports: set[str] = field(default_factory=set)
    rich: list[str] = field(default_factory=list)


# --- the zone file -------------------------------------------------------------------------------

def parse_zone(data: bytes, where: str) -> ET.Element:
    """The zone's root element, comments kept (ValueError, one line, for anything firewalld would not read)."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError(f"{where} declares a DTD or entities; not reading it")
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise ValueError(f"{where} is not well-formed XML ({exc})") from None
    if root.tag != "zone":
        raise ValueError(f"{where} is not a firewalld zone (its root element is <{root.tag}>)")
    return root


def is_comment(el: ET.Element) -> bool:
    """``el`` is an XML comment (kept by the parser, so a marker survives a re-plan)."""
    return el.tag is ET.Comment  # type: ignore[comparison-overlap]


def comment(text: str) -> ET.Element:
    """An XML comment node."""
    return ET.Comment(text)  # type: ignore[return-value]  # a comment is an Element whose tag is ET.Comment


def is_marker(el: ET.Element) -> bool:
    """``el`` is dester-harden's marker comment: the element after it is ours."""
    return is_comment(el) and (el.text or "").strip().startswith(MARK)


def _render_el(el: ET.Element, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    if is_comment(el):
        out.append(f"{pad}<!--{el.text or ''}-->")
        return
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in el.attrib.items())
    kids = list(el)
    text = (el.text or "").strip()
    if not kids and not text:
        out.append(f"{pad}<{el.tag}{attrs}/>")
    elif not kids:
        out.append(f"{pad}<{el.tag}{attrs}>{escape(text)}</{el.tag}>")
    else:
        out.append(f"{pad}<{el.tag}{attrs}>")
        for k in kids:
            _render_el(k, depth + 1, out)
        out.append(f"{pad}</{el.tag}>")


def render_zone(root: ET.Element) -> bytes:
    """The zone in firewalld's own layout (two-space indent, ``<x/>``): a file firewalld wrote diffs only
    where something changed."""
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    _render_el(root, 0, out)
    return ("\n".join(out) + "\n").encode()


def element(tag: str, children: Iterable[ET.Element] = (), **attrs: str) -> ET.Element:
    """``<tag a="v">children</tag>``; ``to_port`` is written ``to-port``."""
    e = ET.Element(tag, {k.replace("_", "-"): v for k, v in attrs.items()})
    e.extend(children)
    return e


def _family(source: str) -> str:
    return "ipv6" if ipaddress.ip_network(source, strict=False).version == 6 else "ipv4"


def rich_text(el: ET.Element) -> str:
    """A ``<rule>`` element as firewalld prints it (``rule family="ipv4" source address=... accept``), for
    the elements dester-harden writes and the common ones; anything else in the rule's own order."""
    parts = ["rule"]
    if "family" in el.attrib:
        parts.append(f'family="{el.attrib["family"]}"')
    if "priority" in el.attrib and el.attrib["priority"] != "0":
        parts.append(f'priority="{el.attrib["priority"]}"')
    for k in el:
        if is_comment(k):
            continue
        attrs = " ".join(f'{a}="{v}"' for a, v in k.attrib.items() if a != "invert")
        if k.tag in ("source", "destination") and k.attrib.get("invert") in ("true", "yes"):
            attrs += ' invert="True"'
        if k.tag in ("accept", "reject", "drop", "mark"):
            parts.append(k.tag + (f" {attrs}" if attrs else ""))
        elif k.tag == "forward-port":
            parts.append("forward-port " + attrs)
        else:
            parts.append(f"{k.tag} {attrs}".strip())
    return " ".join(parts)


def rich_port_rule(w: Want, action: str) -> ET.Element:
    """``rule family=F source address=NET [port port=P protocol=T] ACTION`` for the want ``w``."""
    kids = [element("source", address=str(ipaddress.ip_network(w.source, strict=False)))]
    if w.port is not None:
        kids.append(element("port", port=str(w.port), protocol=w.proto))
    kids.append(element(action))
    return element("rule", kids, family=_family(w.source))


def forward_rule(w: Want) -> ET.Element:
    """A forward port of ``w.port`` to itself on this host (from ``w.source`` when it is a network)."""
    assert w.port is not None
    fp = element("forward-port", port=str(w.port), protocol=w.proto, to_port=str(w.port))
    if w.source == "any":
        return fp
    src = element("source", address=str(ipaddress.ip_network(w.source, strict=False)))
    return element("rule", [src, fp], family=_family(w.source))


def element_key(el: ET.Element) -> str:
    """What makes two zone elements the same rule (an element planned twice is written once)."""
    return rich_text(el) if el.tag == "rule" else f"{el.tag} {sorted(el.attrib.items())}"


def service_ports(sysroot: SystemRoot, name: str) -> set[tuple[int, str]]:
    """The ports (``(5432, "tcp")``) a firewalld service opens, from its XML (/etc first, then the packaged one)."""
    if not re.fullmatch(r"[\w.+-]+", name):
        return set()
    for d in SERVICES:
        for base in (sysroot.path(d), d) if not sysroot.real else (d,):
            try:
                data = read_system(os.path.join(base, name + ".xml"))
            except ValueError:
                data = None
            if data is None:
                continue
            try:
                root = ET.fromstring(data)
            except ET.ParseError:
                return set()
            out: set[tuple[int, str]] = set()
            for p in root.iter("port"):
                out |= _port_range(p.attrib.get("port", ""), p.attrib.get("protocol", "tcp"))
            return out
    return set()


def _port_range(spec: str, proto: str) -> set[tuple[int, str]]:
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", spec.strip())
    if not m:
        return set()
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if hi - lo > 65535:
        return set()
    return {(p, proto) for p in range(lo, hi + 1)}


def opens(el: ET.Element, sysroot: SystemRoot, ports: set[int]) -> bool:
    """The zone element opens one of ``ports`` (a port, a service, an accepting rich rule)."""
    if el.tag == "port":
        return any(p in ports for p, _ in _port_range(el.attrib.get("port", ""), "tcp"))
    if el.tag == "service":
        return any(p in ports for p, _ in service_ports(sysroot, el.attrib.get("name", "")))
    if el.tag == "rule" and el.find("accept") is not None:
        for k in el:
            if k.tag == "port" and any(p in ports for p, _ in _port_range(k.attrib.get("port", ""), "tcp")):
                return True
            if k.tag == "service" and any(p in ports for p, _ in service_ports(sysroot, k.attrib.get("name", ""))):
                return True
    return False


def default_zone(sysroot: SystemRoot, fw: FirewallState | None = None) -> str:
    """firewalld's default zone: the live one when read, else firewalld.conf's DefaultZone, else ``public``."""
    if fw is not None and fw.zone:
        return fw.zone
    try:
        conf = (read_system(sysroot.path(CONF)) or b"").decode("utf-8", "replace")
    except ValueError:
        conf = ""
    m = re.search(r"^\s*DefaultZone\s*=\s*([\w.-]+)\s*$", conf, re.M)
    return m.group(1) if m else "public"


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``(1, 3, 3)`` from ``1.3.3``; None when it is not a version."""
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g or 0) for g in m.groups()) if m else None


def strict_conf(conf: bytes) -> bytes:
    """firewalld.conf with ``StrictForwardPorts=yes`` (the line replaced, or added at the end)."""
    text = conf.decode("utf-8", "replace")
    line = "StrictForwardPorts=yes"
    new, n = re.subn(r"^\s*StrictForwardPorts\s*=.*$", line, text, flags=re.M)
    if n == 0:
        new = text + ("" if text.endswith("\n") or not text else "\n") + (
            f"\n# {MARK}: Docker-published ports only where a forward port allows them (NET-007)\n{line}\n")
    return new.encode()


_VALIDATE_PY = r"""
import sys
try:
    from firewall.core.io.zone import zone_reader
except Exception as exc:
    print("firewalld's python module cannot be loaded (%s)" % exc); sys.exit(3)
try:
    zone_reader(sys.argv[2] + ".xml", sys.argv[1])
except Exception as exc:
    print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__); sys.exit(1)
"""


def interpreter() -> str | None:
    """firewalld's Python (from ``firewall-cmd``'s first line): its modules are not in ours."""
    cmd = shutil.which("firewall-cmd") or shutil.which("firewall-offline-cmd")
    if cmd is None:
        return None
    try:
        with open(cmd, "rb") as fh:
            line = fh.readline(200).decode("utf-8", "replace")
    except OSError:
        return None
    m = re.match(r"#!\s*(\S+)(?:\s+(\S+))?", line)
    if not m:
        return None
    if os.path.basename(m.group(1)) == "env" and m.group(2):
        return shutil.which(m.group(2))
    return m.group(1)


def validate_zone(data: bytes, zone: str, runner: Runner | None = None) -> str | None:
    """None when firewalld's own parser reads the zone ``data``; else its one-line complaint.

    The zone is written to a scratch directory (never /etc/firewalld) and read by
    ``zone_reader`` in firewalld's interpreter; about 1 s here, most of it firewalld's imports.
    """
    python = interpreter()
    if python is None:
        return "firewalld is not installed (no firewall-cmd): apt install firewalld"
    with tempfile.TemporaryDirectory(prefix="dh-firewalld-") as tmp:
        with open(os.path.join(tmp, zone + ".xml"), "wb") as fh:
            fh.write(data)
        res = (runner or run)([python, "-I", "-c", _VALIDATE_PY, tmp, zone], 20.0)
    if res.code == 0:
        return None
    return first_line(res.stdout + "\n" + res.stderr, f"the parser exited with {res.code}")


# --- what firewalld shows ----------------------------------------------------------------------

def parse_list_all(text: str) -> ZoneView:
    """``firewall-cmd --zone=Z --list-all`` as a :class:`ZoneView`."""
    view = ZoneView()
    rich = False
    for raw in text.splitlines():
        line = raw.strip()
        if rich and raw.startswith(("\t", "        ")) and line.startswith("rule"):
            view.rich.append(line)
            continue
        rich = False
        key, sep, value = line.partition(":")
        if not sep:
            continue
        items = value.split()
        if key == "target":
            view.target = value.strip()
        elif key == "services":
            view.services = set(items)
        elif key == "ports":
            view.ports = set(items)
        elif key == "sources":
            view.sources = set(items)
        elif key == "forward-ports":
            view.forward_ports = set(items)
        elif key == "rich rules":
            rich = True
    return view


def file_view(root: ET.Element) -> ZoneView:
    """What the zone file says, in :func:`parse_list_all`'s terms."""
    view = ZoneView(target=root.attrib.get("target", "default"))
    for el in root:
        a = el.attrib
        if el.tag == "service":
            view.services.add(a.get("name", ""))
        elif el.tag == "port":
            view.ports.add(f"{a.get('port')}/{a.get('protocol')}")
        elif el.tag == "source" and "address" in a:
            view.sources.add(a["address"])
        elif el.tag == "rule":
            view.rich.append(rich_text(el))
    return view
