"""Compose's short syntaxes, parsed as Docker parses them: ports, volumes, host paths.

Split out of :mod:`checks.install.discovery` (which re-exports these names):
pure functions of a string, used by discovery, the rules and the fixers.
"""

from __future__ import annotations

import posixpath
import re

from checks.core.yamlpos import Node
from checks.install.model import Mount, Where


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def normalize_host_path(path: str) -> str:
    """Normalise like Docker does: ``//``, ``/./`` and ``/..`` collapse."""
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def parse_port_spec(spec: str) -> tuple[str | None, str | None, str, str] | None:
    """Parse short port syntax like Docker's ``nat.ParsePortSpec``."""
    spec = spec.strip()
    if not spec:
        return None
    proto = "tcp"
    if "/" in spec:
        spec, proto = spec.rsplit("/", 1)
        proto = proto.lower() or "tcp"
    parts = spec.split(":")
    n = len(parts)
    target = parts[-1]
    if n == 1:
        ip, published = None, None
    elif n == 2:
        ip, published = None, parts[0]
    elif n == 3:
        ip, published = parts[0], parts[1]
    else:
        ip, published = ":".join(parts[:-2]), parts[-2]
    if ip is not None:
        ip = ip.strip()
        if ip.startswith("[") and ip.endswith("]"):
            ip = ip[1:-1]
        ip = ip or None
    if not re.fullmatch(r"\d+(-\d+)?", target) or (published and not re.fullmatch(r"\d+(-\d+)?", published)):
        return None
    return ip, published or None, target, proto


def parse_volume_spec(spec: str, where: Where, node: Node, interpolated: bool) -> Mount:
    """Parse short volume syntax ``[SOURCE:]TARGET[:MODE]``."""
    parts = spec.split(":")
    if len(parts) == 1:
        return Mount("volume", None, parts[0], False, where, node, False, interpolated)
    mode = ""
    if len(parts) >= 3:
        source, target, mode = parts[0], parts[1], ":".join(parts[2:])
    else:
        source, target = parts
    read_only = "ro" in {m.strip() for m in mode.split(",")}
    kind = "bind" if _is_path(source) else "volume"
    return Mount(kind, source, target, read_only, where, node, False, interpolated)
