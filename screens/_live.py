"""The live system as the screens say it: the Engine, what listens now, drift, the running password.

Pure functions over :class:`checks.live.model.LiveState` (gathered once by the
app, in a worker), the installation model and the audit report: no Docker, no
disk, no clock, so the screens and their snapshots show exactly what the state
holds. Nothing here can show a secret: the live state holds none (environment
values are keyed digests), and log lines of a failed health gate are masked
before they are shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.core.textio import shown

if TYPE_CHECKING:
    from checks.audit.run import Report
    from checks.install.model import Installation, Service
    from checks.live.model import LiveState

CHECKING = "checking Docker…"
"""Shown until the live state arrives (it never holds up the first frame)."""

#: Images and default ports of the services whose port must never face the network.
DATA_IMAGES = frozenset({"postgres", "redis", "mysql", "mariadb", "mongo", "valkey"})
DATA_PORTS = frozenset({5432, 3306, 6379, 27017})


def engine_line(live: LiveState, euid: int | None = None) -> str:
    """``Docker Engine 20.10.24: 3 containers running`` or ``Docker not reachable: REASON``.

    ``euid``: who runs dester-harden; a permission denied to anyone but root
    adds "(run with sudo)", the one step that helps.
    """
    if live.engine is None:
        reason = " ".join((live.engine_error or "no answer").split())
        lowered = reason.lower()
        hint = (" (run with sudo)" if "permission denied" in lowered and "sudo" not in lowered
                and euid not in (None, 0) else "")
        # The live layer's own words start "the Docker Engine is not reachable at ...": said once.
        rest = reason.removeprefix("the Docker Engine is not reachable")
        if rest != reason and rest.startswith(" at "):
            return shown(f"Docker not reachable{rest}{hint}")
        return shown(f"Docker not reachable: {reason}{hint}")
    running = sum(1 for c in live.containers if c.status == "running")
    others = len(live.containers) - running
    head = f"Docker Engine {live.engine.version}: "
    if not live.containers:
        return shown(head + f"no container of the compose project {live.project} is running")
    text = head + f"{running} container{'' if running == 1 else 's'} running"
    if others:
        text += f", {others} not running"
    return shown(text)


def _address(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _binding_addresses(host_ip: str, port: int) -> list[str]:
    """What a publish listens on: ``HostIp ""`` is every interface, IPv4 and IPv6."""
    if host_ip.strip("[]") == "":
        return [_address("0.0.0.0", port), _address("::", port)]
    return [_address(host_ip, port)]


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def data_services(inst: Installation) -> list[Service]:
    """The database, cache and scanner services: their ports belong on loopback or nowhere."""
    out = []
    for svc in inst.services:
        ports = {p for port in svc.ports for p in port.target_ports}
        if svc.image_repo in DATA_IMAGES or ports & DATA_PORTS or "scanner" in svc.name.lower():
            out.append(svc)
    return out


def listening_lines(inst: Installation | None, live: LiveState) -> list[str]:
    """Per database/cache service: ``postgres: listening now on 0.0.0.0:5432 and [::]:5432``.

    From the sockets this host listens on (/proc/net, readable without Docker)
    where they were read, else from the running container's port bindings.
    """
    if inst is None:
        return []
    out = []
    for svc in data_services(inst):
        container = live.container(svc.name)
        if container is not None:
            ports = sorted({b.host_port for b in container.bindings})
        else:
            ports = sorted({p for port in svc.ports for p in port.published_ports})
        addresses: list[str] = []
        if live.listeners is not None:
            addresses = [_address(x.address, x.port) for x in sorted(live.listeners, key=lambda x: (x.port, x.family))
                         if x.port in ports]
        elif container is not None:
            addresses = [a for b in sorted(container.bindings, key=lambda b: (b.host_port, b.host_ip))
                         for a in _binding_addresses(b.host_ip, b.host_port)]
        addresses = list(dict.fromkeys(addresses))
        if addresses:
            out.append(shown(f"{svc.name}: listening now on {_and(addresses)}"))
        elif live.listeners is not None and ports:
            out.append(shown(f"{svc.name}: nothing listens on {_and([str(p) for p in ports])} now"))
        elif container is None and live.engine is not None:
            out.append(shown(f"{svc.name}: not running"))
        elif container is not None:
            out.append(shown(f"{svc.name}: publishes no port (reachable only from its compose network)"))
        elif ports:
            why = live.listeners_error or "the listening sockets were not read"
            out.append(shown(f"{svc.name}: not known what listens ({' '.join(why.split())})"))
    return out


def drift_lines(report: Report | None) -> list[str]:
    """The DKR-009 findings: "fixed on disk, not applied: postgres must be recreated"."""
    from checks.audit.findings import FAIL

    out: list[str] = []
    for f in report.findings if report else []:
        if f.id != "DKR-009" or f.status != FAIL:
            continue
        for e in f.evidence:
            text = e.text or e.note  # the text is the headline; the note lists each difference
            if text:
                out.append(shown(" ".join(text.split())))
    return list(dict.fromkeys(out))


#: Variables whose value is (or carries) a password, compared file against container.
def _is_password_var(name: str) -> bool:
    upper = name.upper()
    return "PASSWORD" in upper or upper in ("DATABASE_URL", "REDIS_URL", "POSTGRES_URL")


def stale_password_services(inst: Installation | None, live: LiveState) -> list[str]:
    """Services whose running container has another password than the files give it.

    The container's environment is compared by keyed digest
    (:func:`checks.live.model.value_digest`), never by value.
    """
    from checks.live.model import value_digest

    if inst is None or live.engine is None:
        return []
    out = []
    for svc in inst.services:
        container = live.container(svc.name)
        if container is None:
            continue
        for name, var in svc.environment.items():
            if var.value is None or not _is_password_var(name):
                continue
            if container.env.get(name) != value_digest(var.value):
                out.append(svc.name)
                break
    return out


def stale_password_line(inst: Installation | None, live: LiveState) -> str | None:
    """``running with the old password: postgres, api (...)``; None when files and containers agree."""
    stale = stale_password_services(inst, live)
    if not stale:
        return None
    return shown(f"running with the old password: {', '.join(stale)} (the files changed since "
                 f"{'it was' if len(stale) == 1 else 'they were'} created; applying recreates "
                 f"{'it' if len(stale) == 1 else 'them'})")


# -- applying ------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What applying to the running stack did, as the review screen tells it."""

    ok: bool
    headline: str
    lines: list[str] = field(default_factory=list)
    """The failing container's last log lines, masked and escaped."""


def recreated_outcome(services: Iterable[str], elapsed: float | None) -> Outcome:
    """``Recreated api, postgres (healthy in 5.4 s)``."""
    names = list(dict.fromkeys(services))
    took = f" (healthy in {elapsed:.1f} s)" if elapsed is not None else " (healthy)"
    return Outcome(True, shown(f"Recreated {', '.join(names) or 'the services'}{took}"))


def reverted_outcome(message: str, last_logs: Iterable[str], secrets: Iterable[str]) -> Outcome:
    """The auto-revert: why the gate failed, that the files are back, and the masked last log lines.

    The engine masks the lines already; they are masked again here with the
    plan's secrets (and every URL password), so no path shows one.
    """
    from checks.core.secrets import Masker

    masker = Masker(list(secrets))
    head = " ".join(masker.text(message).split()).removesuffix("; its last log lines:")
    lines = [shown(masker.text(line.rstrip("\n"))) for line in last_logs]
    return Outcome(False, shown(head), lines)


def hanging(label: str, text: str, width: int) -> str:
    """``text`` after ``label``, wrapped to ``width`` with its next lines under the first (not under the label)."""
    import textwrap

    room = max(20, width - len(label))
    lines = textwrap.wrap(text, room, break_on_hyphens=False, break_long_words=False) or [""]
    return label + ("\n" + " " * len(label)).join(lines)
