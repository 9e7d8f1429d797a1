"""One call that reads the whole live system: :func:`gather` -> :class:`LiveState`.

Each part has its own timeout and its own failure: an Engine that does not answer leaves
``engine_error`` set and the listeners, addresses and probes still read, an unreadable
/proc leaves ``listeners_error``, and so on. Nothing raises: even an answer of a shape not
foreseen becomes the part's reason. The parts, in order: the
compose project name (from the files), listening sockets and this host's addresses (/proc),
the Engine (version, info, the project's containers, their images), the host firewall
(:mod:`checks.live.firewall`, in its own thread beside the Engine), the API's logs, and the
probes of the API's admin surface on this host's own addresses.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from checks.install.model import Installation
from checks.live import addresses as _addresses
from checks.live import procnet
from checks.live.errors import LiveError, one_line
from checks.live.fwmodel import FirewallState
from checks.live.model import Binding, Container, EngineInfo, LiveState

TIMEOUT = 2.0
"""Seconds any one question to the Engine may take."""
PROBE_TIMEOUT = 0.5
PROBE_BUDGET = 1.5


class EngineSource(Protocol):
    """What :func:`gather` asks of an Engine (:class:`checks.live.docker.EngineClient`, or a test's fake)."""

    def engine_info(self) -> EngineInfo: ...

    def containers(self, project: str) -> tuple[Container, ...]: ...

    def logs(self, container_id: str, tail: int = ...) -> list[str]: ...

    def close(self) -> None: ...


def built_services(inst: Installation) -> frozenset[str]:
    """Services the compose files build (``build:``) rather than pull."""
    return frozenset(svc.name for svc in inst.services if svc.opt("build") is not None)


def api_bindings(inst: Installation, state: LiveState, services: list[str]) -> list[Binding]:
    """The API's published TCP ports: what runs, when the Engine shows a running API; else what the files ask.

    Without a running API container (no Docker access, or an API run as a host process) the
    compose files' ports are the best guess of where it answers.
    """
    running = [c for c in state.containers if c.service in services and c.status == "running"]
    if running:
        return [b for c in running for b in c.bindings if b.protocol == "tcp" and b.host_port]
    out: list[Binding] = []
    for name in services:
        svc = inst.service(name)
        for port in svc.ports if svc is not None else ():
            if port.protocol != "tcp":
                continue
            for host, target in zip(port.published_ports, port.target_ports, strict=False):
                out.append(Binding(port.host_ip or "", host, target))
    return out


def probe_targets(bindings: list[Binding], own: tuple[str, ...]) -> list[tuple[str, int]]:
    """(address, port) pairs to probe: this host's own non-loopback addresses each binding covers."""
    out: list[tuple[str, int]] = []
    for b in bindings:
        ip = b.host_ip.strip("[]")
        if not b.host_port or b.loopback:
            continue
        if ip in ("", "::"):
            covered = list(own)
        elif ip == "0.0.0.0":
            covered = [a for a in own if ":" not in a]
        else:
            covered = [a for a in own if a == ip]
        for address in covered:
            if (address, b.host_port) not in out:
                out.append((address, b.host_port))
    return out


def _connect(environ: Mapping[str, str] | None, owner: int, timeout: float) -> EngineSource:
    from checks.live.docker import connect

    return connect(environ, owners=(owner,) if owner != os.getuid() else (), timeout=timeout)


NO_LIVE_ENV = "DESTER_HARDEN_NO_LIVE"
NO_FIREWALL_ENV = "DESTER_HARDEN_NO_FIREWALL"
"""Either set (not ``0``): this machine's firewall is no input (tests, which must never ask the host's
iptables or nft); it is then not read unless a ``firewall_reader`` is given."""


def _read_firewall(environ: Mapping[str, str] | None, host_root: str = "/") -> FirewallState:
    """The host firewall; its files (/etc/ufw, /etc/firewalld, sshd_config) under ``--root`` when given, so
    the plan and the audit read the same files the plan edits (the running rules are this host's)."""
    from checks.core.sysroot import SystemRoot
    from checks.live.firewall import firewall_state

    return firewall_state(environ=environ, root=SystemRoot(host_root or "/"))


def settle_backend(fw: FirewallState, engine: EngineInfo | None) -> None:
    """Docker's firewall backend from the Engine when it said; an Engine that says nothing runs iptables.

    Engines before 29 have no other backend and do not report it; the nftables one is always reported.
    """
    if engine is not None and engine.firewall_backend:
        fw.docker_backend = engine.firewall_backend
    elif engine is not None and fw.docker_backend is None:
        fw.docker_backend = "iptables"


def gather(install: Installation, *, proc_net: str = "/proc/net", probe: bool = True, logs: bool = True,
           timeout: float = TIMEOUT, environ: Mapping[str, str] | None = None,
           engine: Callable[[], EngineSource] | None = None, now: float | None = None,
           firewall: bool = True, firewall_reader: Callable[[], FirewallState] | None = None) -> LiveState:
    """Read the live system of ``install``; each part that fails leaves its reason in the state.

    ``environ`` is where ``DOCKER_HOST``, ``COMPOSE_PROJECT_NAME`` and ``SSH_CONNECTION`` are read
    (default ``os.environ``); ``engine`` replaces :func:`checks.live.docker.connect` and
    ``firewall_reader`` :func:`checks.live.firewall.firewall_state` (tests pass fakes).
    ``firewall=False``: the firewall is not read (``firewall_error`` says so).
    """
    from checks.live.project import project_name

    started = time.time()
    try:
        project = project_name(install, environ)
        project_error = None
    except LiveError as exc:
        project, project_error = "", str(exc)
    state = LiveState(project=project, built=built_services(install), gathered_at=started)
    # The kernel walks its whole socket table for /proc/net/tcp (10-30 ms even when nearly empty); the
    # read releases the GIL, so it runs while the Engine is asked.
    proc_pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="proc")
    listen_job = proc_pool.submit(procnet.listeners, proc_net)
    addr_job = proc_pool.submit(_addresses.own_addresses, proc_net)
    env = os.environ if environ is None else environ
    fw_job = None
    if not firewall:
        state.firewall_error = "the host firewall was not read"
    elif firewall_reader is None and (off := next((k for k in (NO_LIVE_ENV, NO_FIREWALL_ENV)
                                                    if env.get(k, "") not in ("", "0")), None)):
        state.firewall_error = f"the host firewall was not read ({off} is set)"
    else:
        # The firewall's programs answer in tens of milliseconds, each in its own thread: beside the Engine.
        fw_job = proc_pool.submit(firewall_reader or (lambda: _read_firewall(environ, install.host_root)))
    proc_pool.shutdown(wait=False)

    client: EngineSource | None = None
    if project_error is not None:
        state.engine_error = project_error
    else:
        try:
            client = engine() if engine is not None else _connect(environ, install.root_uid, timeout)
            # Two independent questions: the Engine answers both while Python waits once.
            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="engine-info") as pool:
                info = pool.submit(client.engine_info)
                state.containers = client.containers(project)
                state.engine = info.result()
        except LiveError as exc:
            state.engine, state.containers = None, ()
            state.engine_error = str(exc)
        except Exception as exc:  # an answer of a shape we did not expect: a reason, never a traceback
            state.engine, state.containers = None, ()
            state.engine_error = f"the Docker Engine's answer could not be read: {one_line(exc)}"
    try:
        state.listeners = listen_job.result()
    except (LiveError, ValueError) as exc:
        state.listeners_error = str(exc)
    if fw_job is not None:
        try:
            state.firewall = fw_job.result()
            settle_backend(state.firewall, state.engine)
        except Exception as exc:  # as for the Engine: a reason, never a traceback
            state.firewall_error = f"the host firewall could not be read: {one_line(exc)}"
    addresses_error = None
    try:
        state.addresses = addr_job.result()
    except (LiveError, ValueError) as exc:
        addresses_error = str(exc)
    try:
        from checks.live.logs import api_service_names

        services = api_service_names(install, state.containers)
        published = api_bindings(install, state, services)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="probes") as pool:
            probes = None
            if probe and addresses_error is not None:
                state.probes_error = addresses_error
            elif probe:
                from checks.live.probe import probe as run_probes

                # The probes wait on the network, the log reads on the Engine and the disk: side by side.
                probes = pool.submit(run_probes, probe_targets(published, state.addresses), timeout=PROBE_TIMEOUT,
                                     budget=PROBE_BUDGET)
            if logs:
                from checks.live.logs import findings

                try:
                    state.logs, state.logs_error = findings(install, state.containers,
                                                            client if state.engine else None, published,
                                                            timeout=PROBE_TIMEOUT, now=now)
                except Exception as exc:  # as above: the reason, not a traceback
                    state.logs_error = f"the API's logs could not be read: {one_line(exc)}"
            if probes is not None:
                try:
                    state.probes = probes.result()
                except Exception as exc:
                    state.probes_error = f"the API could not be probed: {one_line(exc)}"
    finally:
        if client is not None:
            client.close()
    return state

