"""firewalld as data: its state and default zone, runtime (D-Bus) against permanent (the zone XML).

``firewall-cmd`` is a Python program that needs about 2 s to start on a small VM, more than the
whole firewall read may take: the runtime is asked on firewalld's own D-Bus API with ``busctl
-j`` (tens of milliseconds, JSON out), the permanent configuration is read from the zone files
(``/etc/firewalld/zones/Z.xml``, else ``/usr/lib/firewalld/zones/Z.xml``) and firewalld.conf.
``firewall-cmd`` is the fallback only when busctl is missing.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from checks.core.sysroot import SystemRoot
from checks.live.fwmodel import FwRule, RunResult

BUS = ("org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1")
STRICT_FROM = (2, 3, 0)
"""firewalld's StrictForwardPorts exists from 2.3.0 on."""
_MAX_XML = 1024 * 1024

Ask = Callable[[list[str]], RunResult]


@dataclass(slots=True)
class Zone:
    """One zone's settings, the part the firewall checks read."""

    target: str = "default"
    services: list[str] = field(default_factory=list)
    ports: list[tuple[str, str]] = field(default_factory=list)
    """``(port or range, protocol)``."""
    rich: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def _unwrap(value: Any) -> Any:
    """busctl -j's ``{"type": ..., "data": ...}`` down to plain data."""
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        return _unwrap(value["data"])
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def busctl(*args: str) -> list[str]:
    return ["busctl", "--system", "-j", *args]


def parse_busctl(stdout: str) -> Any:
    """The data of one busctl -j answer (a single value, or the list of a multi-value answer)."""
    data = _unwrap(json.loads(stdout))
    return data[0] if isinstance(data, list) and len(data) == 1 else data


def zone_from_settings(settings: dict[str, Any]) -> Zone:
    """getZoneSettings2's dictionary -> :class:`Zone`."""
    def strings(key: str) -> list[str]:
        return [str(v) for v in settings.get(key, []) or []]

    return Zone(target=str(settings.get("target", "default") or "default"), services=strings("services"),
                ports=[(str(p), str(proto)) for p, proto in settings.get("ports", []) or []],
                rich=strings("rules_str"), sources=strings("sources"), interfaces=strings("interfaces"))


def _xml(root: SystemRoot, kind: str, name: str) -> ET.Element | None:
    if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", name):
        return None
    for base in (f"/etc/firewalld/{kind}", f"/usr/lib/firewalld/{kind}"):
        try:
            with open(root.path(f"{base}/{name}.xml"), "rb") as fh:
                return ET.fromstring(fh.read(_MAX_XML))
        except (OSError, ET.ParseError):
            continue
    return None


def _rich_from_xml(rule: ET.Element) -> str:
    """A ``<rule>`` element in the rich-rule language firewall-cmd shows, for comparison and evidence."""
    parts = ["rule"]
    if rule.get("family"):
        parts.append(f'family="{rule.get("family")}"')
    src = rule.find("source")
    if src is not None and src.get("address"):
        parts.append(f'source address="{src.get("address")}"')
    for tag in ("service", "port"):
        el = rule.find(tag)
        if el is not None and tag == "service":
            parts.append(f'service name="{el.get("name")}"')
        elif el is not None:
            parts.append(f'port port="{el.get("port")}" protocol="{el.get("protocol")}"')
    for action in ("accept", "reject", "drop"):
        if rule.find(action) is not None:
            parts.append(action)
    return " ".join(parts)


def zone_from_xml(root: SystemRoot, name: str) -> Zone | None:
    """The permanent configuration of zone ``name``; None when no zone file has it."""
    el = _xml(root, "zones", name)
    if el is None:
        return None
    return Zone(target=el.get("target", "default"),
                services=[s.get("name", "") for s in el.findall("service")],
                ports=[(p.get("port", ""), p.get("protocol", "tcp")) for p in el.findall("port")],
                rich=[_rich_from_xml(r) for r in el.findall("rule")],
                sources=[s.get("address", "") for s in el.findall("source") if s.get("address")],
                interfaces=[i.get("name", "") for i in el.findall("interface")])


def service_ports(root: SystemRoot, name: str) -> list[tuple[str, str]]:
    """The ``(port, protocol)`` pairs of service ``name`` (its XML in /etc/firewalld, else /usr/lib)."""
    el = _xml(root, "services", name)
    return [] if el is None else [(p.get("port", ""), p.get("protocol", "tcp")) for p in el.findall("port")]


def _ports(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        return []
    first, last = int(lo), int(hi or lo)
    return list(range(first, min(last, first + 4096) + 1))


def _rich_rules(text: str) -> list[FwRule]:
    try:
        words = shlex.split(text)
    except ValueError:
        return []
    opts = dict(w.split("=", 1) for w in words if "=" in w)
    action = next((a for a in ("accept", "reject", "drop") if a in words), None)
    if action is None:
        return []
    act = {"accept": "allow", "reject": "reject", "drop": "deny"}[action]
    v6 = opts.get("family") == "ipv6"
    src = opts.get("address", "any") if "source" in words else "any"
    proto = opts.get("protocol", "any")
    ports = _ports(opts["port"]) if "port" in opts else []
    if "port" in words and not ports:
        return []
    if not ports:
        return [FwRule(act, None, proto, src, None, v6, text)]
    return [FwRule(act, p, proto, src, None, v6, text) for p in ports]


def zone_rules(root: SystemRoot, zone_name: str, zone: Zone) -> list[FwRule]:
    """Every allow (and rich deny) of a zone as :class:`FwRule` (services with the ports of their XML)."""
    out: list[FwRule] = []
    for port, proto in zone.ports:
        out += [FwRule("allow", p, proto, text=f"{zone_name}: port {port}/{proto}") for p in _ports(port)]
    for name in zone.services:
        for port, proto in service_ports(root, name):
            out += [FwRule("allow", p, proto or "any", text=f"{zone_name}: service {name} ({port}/{proto})")
                    for p in _ports(port)]
    for text in zone.rich:
        out += [replace(r, text=f"{zone_name}: {r.text}") for r in _rich_rules(text)]
    if zone.target.upper() == "ACCEPT":
        out += [FwRule("allow", None, "any", src, text=f"{zone_name}: source {src} (target ACCEPT)")
                for src in zone.sources]
        out += [FwRule("allow", None, "any", interface=i, text=f"{zone_name}: interface {i} (target ACCEPT)")
                for i in zone.interfaces]
    return out


def default_incoming(target: str) -> str:
    """A zone target as ufw's words: ``default``/``%%REJECT%%`` reject, ``DROP`` deny, ``ACCEPT`` allow."""
    return {"DROP": "deny", "ACCEPT": "allow"}.get(target.upper(), "reject")


def conf_value(root: SystemRoot, key: str) -> str | None:
    """A ``KEY=value`` of /etc/firewalld/firewalld.conf; None when absent."""
    try:
        with open(root.path("/etc/firewalld/firewalld.conf"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                k, sep, v = line.strip().partition("=")
                if sep and k.strip() == key:
                    return v.strip().strip("\"'")
    except OSError:
        return None
    return None


def strict_forward_ports(root: SystemRoot, version: str | None) -> bool | None:
    """StrictForwardPorts from firewalld.conf (default no); None on a firewalld before 2.3.0 or of no version."""
    if not version or version_tuple(version) < STRICT_FROM:
        return None
    return (conf_value(root, "StrictForwardPorts") or "no").lower() in ("yes", "true")


def merge(runtime: list[FwRule], permanent: list[FwRule]) -> tuple[list[FwRule], list[str]]:
    """Runtime and permanent rules as one list with ``live``/``persistent`` set, and the runtime-only texts."""
    def key(r: FwRule) -> tuple[object, ...]:
        return (r.action, r.port, r.proto, r.source, r.interface, r.v6)

    perm_keys = {key(r) for r in permanent}
    live_keys = {key(r) for r in runtime}
    out = [replace(r, persistent=key(r) in perm_keys, live=True) for r in runtime]
    out += [replace(r, persistent=True, live=False) for r in permanent if key(r) not in live_keys]
    unpersisted = sorted({f"{r.text} (runtime only)" for r in runtime if key(r) not in perm_keys})
    return out, unpersisted
