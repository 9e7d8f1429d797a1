"""pytest plugin: the firewall lab with Docker, a :class:`~tests.fwlab.FwSandbox` plus a LAN and a real dockerd.

:class:`FirewallLab` is the sandbox (its private /etc copies and /run) plus

* a LAN namespace (``unshare --net``, a ``sleep infinity`` that writes its own pid file) on a veth
  pair: ``dhf-srv`` 10.78.0.1/24, fd78::1/64 in the sandbox, ``dhf-lan`` 10.78.0.2, fd78::2 in the
  LAN (names and addresses apart from the live lab's dhl-*/10.77.0.0/24);
* Debian's dockerd joined to the sandbox's namespaces with its own config file, data root (a tmpfs
  inside the namespace: freed with it, where removing the image layers file by file took 15 s),
  exec root, pid file and socket in the session directory and its cgroups under ``/dhf-<token>``,
  ``live-restore`` on (a restart keeps the containers), so the
  host's docker CLI and Compose reach it through ``DOCKER_HOST`` while its rules exist only in the
  sandbox;
* the live lab's images, loaded from its cache (:mod:`tests.livelab.images`, about 3.5 s).

With ``firewalld=True`` firewalld starts BEFORE dockerd: started after, it flushes Docker's rules
and rejects bridged traffic; started before, dockerd puts its bridges in the ``docker`` zone.

:meth:`FirewallLab.deploy` brings a compose project up and takes a *baseline* of the live rules
(``iptables-save``, ``ip6tables-save``, the nft table list) with the host firewall still off (ufw)
or freshly started (firewalld); :meth:`FirewallLab.reset` returns to it between tests without a
redeploy: private /etc copies restored, ``firewall-cmd --reload`` (firewalld), nft tables that the
baseline does not have deleted, then the baseline restored with ``iptables-restore``.

Fixtures: one lab and one deploy of the demo install per session, shared by both variants
(:meth:`FirewallLab.use_firewalld` switches in a firewalld start plus a dockerd restart, where a
second lab would cost an image load and a deploy): ``fw_docker_lab`` (ufw) and
``fw_docker_lab_firewalld`` (session scope); tests take ``fw_lab`` or ``fw_lab_firewalld``, which
put the lab in their variant and :meth:`~FirewallLab.reset` it before the test. The deployed
install is ``lab.install`` (a :class:`tests.livelab.LiveInstall`: 5432, 6379 and 0.0.0.0:3001
published). Without dockerd, the compose plugin or the image cache's ingredients they skip with the
reason (fail under ``CI=true``).

Registered from tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import livefixtures
from tests.fwlab import FwLabUnavailable, FwSandbox, _copy_tree, _restore_tree, _sandboxes, preflight, unavailable
from tests.livelab import (
    _HTTP_PROBE,
    _TCP_PROBE,
    LiveInstall,
    _http_result,
    compose_file,
    images,
    prepare_compose,
    procs,
)

__all__ = ["FirewallLab", "fw_docker_lab", "fw_docker_lab_firewalld", "fw_lab", "fw_lab_firewalld"]

SERVER_IF, LAN_IF = "dhf-srv", "dhf-lan"

#: A plain dual-stack TCP listener that accepts and closes: ``listener.py PORT READYFILE``.
_LISTENER = """\
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
open(sys.argv[2], "w").close()
while True:
    s.accept()[0].close()
"""


class FirewallLab(FwSandbox):
    """A running firewall lab with Docker (see the module docstring); :meth:`close` is idempotent."""

    server_ip = "10.78.0.1"
    server_ip6 = "fd78::1"
    lan_ip = "10.78.0.2"
    lan_ip6 = "fd78::2"
    lan_net = "10.78.0.0/24"
    lan_net6 = "fd78::/64"
    server_if = SERVER_IF
    tmpfs = ("data",)

    def __init__(self, root: Path, firewalld: bool = False, cache: Path | None = None,
                 plugin: Path | None = None) -> None:
        super().__init__(root)
        self.firewalld = firewalld
        self.cache = cache or livefixtures.CACHE
        self.plugin = plugin if plugin is not None else livefixtures.PLUGIN
        self.socket = root / "d.sock"
        self.env: dict[str, str] = {"DOCKER_HOST": f"unix://{self.socket}",
                                    "DOCKER_CONFIG": str(root / "docker-config"), "DOCKER_BUILDKIT": "0"}
        self.lan_pid = 0
        self.images_how = ""
        self.install: LiveInstall | None = None
        """The install :meth:`deploy_demo` deployed (None before)."""
        self._deployed: dict[str, Path] = {}
        self._baseline: dict[str, str] = {}
        self._dockerd: subprocess.Popen[bytes] | None = None

    @classmethod
    def start_lab(cls, firewalld: bool = False, cache: Path | None = None, plugin: Path | None = None) -> FirewallLab:
        """Start a lab (``firewalld=True``: firewalld before dockerd), or raise FwLabUnavailable with the reason."""
        why = preflight("dockerd", "docker", firewalld=firewalld)
        plugin = plugin if plugin is not None else livefixtures.PLUGIN
        if not why and plugin is None:
            why = "the docker compose v2 plugin is not installed"
        if why:
            raise FwLabUnavailable(why)
        lab = cls.start()
        assert isinstance(lab, FirewallLab)
        lab.firewalld = firewalld
        lab.cache = cache or lab.cache
        lab.plugin = plugin
        try:
            lab._start_docker()
        except BaseException:
            lab.close()
            raise
        return lab

    def _start_docker(self) -> None:
        (self.root / "docker-config/cli-plugins").mkdir(parents=True, exist_ok=True)
        (self.root / "work").mkdir(exist_ok=True)
        if self.plugin:
            (self.root / "docker-config/cli-plugins/docker-compose").symlink_to(self.plugin)
        # live-restore: a dockerd restart (to switch firewalld on or off) keeps the containers running.
        (self.root / "daemon.json").write_text('{"live-restore": true}\n')
        t0 = time.monotonic()
        self._lan()
        self._time("LAN namespace + veth", t0)
        if self.firewalld:
            self.start_firewalld()
        self.start_dockerd()
        t0 = time.monotonic()
        try:
            self.images_how = images.ensure_images(self.docker, {**os.environ, **self.env}, self.cache,
                                                   self.root / "work", self._timer)
        except images.BuildError as exc:
            raise FwLabUnavailable(str(exc)) from None
        self._time(f"images ({self.images_how})", t0)
        self.baseline()

    def _timer(self, name: str, seconds: float) -> None:
        self.timings.append((name, seconds))

    def _lan(self) -> None:
        lan = self._spawn(["unshare", "--net", "--fork", "--", "sh", "-c",
                           'ip link set lo up && echo $$ > "$1" && exec sleep infinity', "sh",
                           str(self.root / "lan.pid")], "lan.log")
        self.lan_pid = self._wait_pidfile(self.root / "lan.pid", lan, "the LAN namespace holder")
        lan_ns = ["nsenter", "-t", str(self.lan_pid), "-n", "--"]
        for argv in (
            self.argv(["ip", "link", "add", SERVER_IF, "type", "veth", "peer", "name", LAN_IF, "netns",
                       str(self.lan_pid)]),
            self.argv(["ip", "addr", "add", f"{self.server_ip}/24", "dev", SERVER_IF]),
            self.argv(["ip", "-6", "addr", "add", f"{self.server_ip6}/64", "dev", SERVER_IF, "nodad"]),
            self.argv(["ip", "link", "set", SERVER_IF, "up"]),
            [*lan_ns, "ip", "addr", "add", f"{self.lan_ip}/24", "dev", LAN_IF],
            [*lan_ns, "ip", "-6", "addr", "add", f"{self.lan_ip6}/64", "dev", LAN_IF, "nodad"],
            [*lan_ns, "ip", "link", "set", LAN_IF, "up"],
        ):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if proc.returncode:
                raise FwLabUnavailable(f"{' '.join(argv[-6:])} failed: {proc.stderr.strip()[:200]}")

    def start_dockerd(self) -> None:
        """Start dockerd in the sandbox (after firewalld, when there is one) and wait until it answers."""
        t0 = time.monotonic()
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        self._dockerd = self._spawn(self.argv(
            [dockerd, "--config-file", str(self.root / "daemon.json"), "--host", self.env["DOCKER_HOST"],
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "--cgroup-parent", f"/{self.root.name}"]), "dockerd.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._dockerd.poll() is not None:
                raise FwLabUnavailable(f"dockerd exited ({self._dockerd.returncode}): {self.last_log('dockerd.log')}")
            if self.socket.exists() and self.docker("version", "-f", "{{.Server.Version}}", timeout=10).returncode == 0:
                self._time("dockerd start", t0)
                return
            time.sleep(0.05)
        raise FwLabUnavailable(f"dockerd did not answer within 60 s: {self.last_log('dockerd.log')}")

    def stop_dockerd(self) -> None:
        """Stop dockerd (its containers stop with it)."""
        procs.stop_pidfile(self.root / "dockerd.pid", "dockerd", 30)
        if self._dockerd is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._dockerd.wait(10)
            self._dockerd = None

    def close(self) -> None:
        """Containers killed, dockerd, firewalld and its bus, the namespaces, the cgroups, the directory."""
        t0 = time.monotonic()
        if procs.alive(self.root / "dockerd.pid", "dockerd"):
            # No compose down: the data root goes with the session directory. Killed containers let
            # dockerd stop at once instead of waiting out each stop timeout.
            with contextlib.suppress(Exception):
                ids = self.docker("ps", "-q", timeout=30).stdout.split()
                if ids:
                    self.docker("kill", *ids, timeout=60)
        self._deployed.clear()
        self.stop_dockerd()
        self.stop_firewalld()
        pid = procs.alive(self.root / "lan.pid", "sleep")
        inode = procs.netns(pid) if pid else None
        if pid and inode:
            procs.stop(procs.in_netns(inode, exclude={pid, procs.parent(pid) or 0, os.getpid()}), 5)
        procs.stop_pidfile(self.root / "lan.pid", "sleep", 5)
        super().close()
        procs.remove_cgroups(self.root.name)
        self._time("teardown", t0)

    # -- docker ---------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, input: str | None = None,
            timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess[str]:
        """:meth:`FwSandbox.run` with the lab's ``DOCKER_HOST``/``DOCKER_CONFIG`` (``env`` still wins)."""
        return super().run(argv, env={**self.env, **(env or {})}, input=input, timeout=timeout, check=check)

    def tool(self, args: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """:meth:`FwSandbox.tool` with the lab's ``DOCKER_HOST``/``DOCKER_CONFIG``: the tool sees this dockerd."""
        return super().tool(args, env={**self.env, **(env or {})}, input=input, timeout=timeout)

    def docker(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """The docker CLI (from the host, through ``DOCKER_HOST``) against the lab's dockerd; text output."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        kw["env"] = {**os.environ, **self.env, **(kw.get("env") or {})}
        return subprocess.run(["docker", *args], **kw)

    def deploy_demo(self, parent: Path) -> LiveInstall:
        """The bundled demo install (5432, 6379, 0.0.0.0:3001 published) under ``parent``, deployed.

        It becomes :attr:`install`.
        """
        install = LiveInstall(livefixtures.LAYOUTS["cli"](parent, False))
        install.project = f"desterlib-{self.root.name[len('dhf-'):]}-{len(self._deployed) + 1}"
        install.compose = compose_file(install)
        install.compose.write_text(prepare_compose(install.compose.read_text(), install.project))
        self.deploy(install)
        self.install = install
        return install

    def deploy(self, install_dir: str | os.PathLike[str], wait: bool = True, timeout: int = 120) -> None:
        """``docker compose up -d [--wait]`` in an install, then a new :meth:`baseline`; RuntimeError on failure."""
        compose = compose_file(Path(install_dir))
        project = install_dir.project if isinstance(install_dir, LiveInstall) else compose.parent.name
        self._deployed[project] = compose.parent
        t0 = time.monotonic()
        args = ["compose", "-p", project, "up", "-d", "--quiet-pull"]
        args += ["--wait", "--wait-timeout", str(timeout)] if wait else []
        proc = self.docker(*args, cwd=str(compose.parent), timeout=timeout + 60)
        self._time("deploy to healthy" if wait else "deploy (no wait)", t0)
        if proc.returncode:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            last = lines[-1] if lines else proc.returncode
            raise RuntimeError(f"docker compose up in {compose.parent} failed: {last}")
        self.baseline()

    def down(self, project: str) -> None:
        """Remove a project's containers, networks and volumes."""
        self.docker("compose", "-p", project, "down", "-v", "--remove-orphans", "-t", "5", cwd=str(self.root),
                    timeout=120)
        self._deployed.pop(project, None)

    # -- baseline and reset ---------------------------------------------------------------

    def baseline(self) -> None:
        """Remember the live rules and the private /etc copies as they are now (what :meth:`reset` returns to).

        The copies too: dockerd writes firewalld's permanent ``docker`` zone, which a reset must keep.
        """
        for real in self.bound:
            target = self.root / "baseline" / real.lstrip("/")
            if target.exists():
                shutil.rmtree(target)
            _copy_tree(self.path(real), target)
        self._baseline = {"iptables": self.run(["iptables-save"], check=True).stdout,
                          "ip6tables": self.run(["ip6tables-save"], check=True).stdout,
                          "tables": self.run(["nft", "list", "tables"], check=True).stdout,
                          "firewalld": self._firewalld_table()}

    def _firewalld_table(self) -> str:
        """firewalld's live nft table (its runtime state, as the kernel has it); "" without firewalld."""
        return self.run(["nft", "list", "table", "inet", "firewalld"]).stdout if self.firewalld else ""

    def reset(self) -> None:
        """Back to the baseline without a redeploy: files restored, extra nft tables gone, iptables restored."""
        t0 = time.monotonic()
        saved = self.root / ("baseline" if self._baseline else "pristine")
        files_changed = False
        for real in self.bound:
            if not _same_tree(saved / real.lstrip("/"), self.path(real)):
                files_changed = True
                _restore_tree(saved / real.lstrip("/"), self.path(real))
        if self.firewalld and not self.firewalld_running:
            raise AssertionError("firewalld is not running in the firewalld lab (a test stopped it?)")
        # A reload costs 2-3 s with Docker's re-apply: only when the files or firewalld's live table changed.
        if self.firewalld and (files_changed or self._firewalld_table() != self._baseline.get("firewalld")):
            self.run(["firewall-cmd", "--reload"], check=True)
            # Docker re-makes its rules on firewalld's Reloaded signal, in about a second, deleting and
            # re-inserting some: let it finish before the restore below, or the two interleave.
            self._settle(len(_docker_nat(self._baseline.get("iptables", ""))))
        keep = set(self._baseline.get("tables", "").splitlines())
        for line in self.run(["nft", "list", "tables"], check=True).stdout.splitlines():
            if line.strip() and line not in keep:
                self.run(["nft", "delete", *line.split()], check=True)
        for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
            wanted = self._baseline.get(save.split("-")[0], "")
            if wanted and _rules(self.run([save], check=True).stdout) != _rules(wanted):
                self.run([restore], input=wanted, check=True)
        self._time("reset", t0)

    def use_firewalld(self, on: bool) -> None:
        """Switch the lab between its ufw and firewalld variants, keeping the deployed containers.

        firewalld must come up before dockerd (started after, it flushes Docker's rules and rejects
        bridged traffic), and stopping it removes Docker's DNAT rules: either way dockerd is
        restarted (live-restore keeps the containers), then Docker's rules are waited for and a new
        :meth:`baseline` taken. Costs a firewalld start plus a dockerd restart, a few seconds,
        instead of a second lab. A no-op when the lab already is in that variant.
        """
        if on == self.firewalld and (self.firewalld_running or not on):
            return
        t0 = time.monotonic()
        want = len(_docker_nat(self._baseline.get("iptables", "")))
        if on:
            self.reset()
            self.start_firewalld()
        else:
            # Stopped BEFORE its bus (it cleans up its tables), then everything dockerd does not re-make.
            self.stop_firewalld()
            for real in self.bound:
                _restore_tree(self.root / "pristine" / real.lstrip("/"), self.path(real))
            self.run(["nft", "flush", "ruleset"], check=True)
        self.firewalld = on
        self.stop_dockerd()
        self.start_dockerd()
        self._settle(want)
        if not on:
            self._docker_user_jump()
        if on:
            # Docker 20.10's rules after a live-restore restart differ from those after a firewalld
            # reload (no DOCKER-USER before, no isolation rules after). A reset of this variant may
            # reload, so the baseline is the state after a reload: the one a reset can return to.
            self.run(["firewall-cmd", "--reload"], check=True)
            self._settle(want)
        self.baseline()
        self._time(f"switch to {'firewalld' if on else 'ufw'}", t0)

    def _docker_user_jump(self) -> None:
        """DOCKER-USER and FORWARD's jump to it, as a Docker that starts on a flushed table makes them.

        Docker 20.10 restarted with live-restore over a flushed ruleset (the switch back from
        firewalld) re-makes its DNAT and forward rules but not DOCKER-USER; a host that boots makes it.
        The ufw variant must look like that host, or the plans' DOCKER-USER rules are never reached
        (which the ufw sync's verification refuses, as it should).
        """
        forward = self.run(["iptables", "-w", "-S", "FORWARD"]).stdout.split("\n")
        if "-A FORWARD -j DOCKER-USER" in forward:
            return
        if self.run(["iptables", "-w", "-S", "DOCKER-USER"]).returncode != 0:
            self.run(["iptables", "-w", "-N", "DOCKER-USER"], check=True)
            self.run(["iptables", "-w", "-A", "DOCKER-USER", "-j", "RETURN"], check=True)
        self.run(["iptables", "-w", "-I", "FORWARD", "-j", "DOCKER-USER"], check=True)

    def _settle(self, nat_rules: int, seconds: float = 30) -> None:
        """Wait until Docker's ``nat_rules`` DNAT rules are back and the iptables rules stop changing."""
        deadline = time.monotonic() + seconds
        last, steady = None, 0
        while time.monotonic() < deadline and steady < 4:
            now = _rules(self.run(["iptables-save"]).stdout)
            steady = steady + 1 if now == last and len(_docker_nat("\n".join(now))) >= nat_rules else 0
            last = now
            time.sleep(0.1)

    # -- probes ---------------------------------------------------------------------------

    def lan_probe(self, addr: str, port: int, timeout: float = 1.0) -> str:
        """A TCP connect from the LAN namespace: ``open``, ``refused``, ``timeout`` or ``unreachable``."""
        return self._in_lan([sys.executable, "-c", _TCP_PROBE, addr.strip("[]"), str(port), str(timeout)],
                            timeout).strip()

    def server_probe(self, addr: str, port: int, timeout: float = 1.0) -> str:
        """The same probe from inside the sandbox (its loopback: ``127.0.0.1``)."""
        return self.run([sys.executable, "-c", _TCP_PROBE, addr.strip("[]"), str(port), str(timeout)],
                        timeout=timeout + 10).stdout.strip()

    def lan_http(self, url: str, method: str = "GET", timeout: float = 3.0) -> int | None:
        """The HTTP status a LAN client gets for ``url``; None when nothing answers HTTP."""
        return _http_result(self._in_lan([sys.executable, "-c", _HTTP_PROBE, url, method, str(timeout)],
                                         timeout))[0]

    @contextlib.contextmanager
    def listener(self, port: int) -> Iterator[None]:
        """A plain TCP listener (no Docker) on every address of the sandbox, port ``port``, for the block."""
        ready = self.root / "run" / f"listener-{port}.ready"
        ready.unlink(missing_ok=True)
        child = self._spawn(self.argv([sys.executable, "-c", _LISTENER, str(port), f"/run/{ready.name}"]),
                            f"listener-{port}.log")
        try:
            self._wait(ready.exists, child, f"listener-{port}.log", 10)
            yield
        finally:
            procs.stop([child.pid], 5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)

    def _in_lan(self, argv: Sequence[str], timeout: float) -> str:
        proc = subprocess.run(["nsenter", "-t", str(self.lan_pid), "-n", "--", *argv], capture_output=True,
                              text=True, timeout=timeout + 10)
        return proc.stdout


def _same_tree(a: Path, b: Path) -> bool:
    """Whether two directories hold the same names, link targets, modes and bytes."""
    def listing(top: Path) -> dict[str, tuple[int, bytes]]:
        out = {}
        for dirpath, dirs, files in os.walk(top):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
                p = Path(dirpath) / name
                st = p.lstat()
                data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
                out[str(p.relative_to(top))] = (st.st_mode, data)
        return out
    return listing(a) == listing(b)


def _rules(save: str) -> list[str]:
    """An ``iptables-save`` text without its comments and packet counters: what a comparison needs."""
    return [re.sub(r" \[\d+:\d+\]$", "", ln) for ln in save.splitlines() if ln and not ln.startswith("#")]


def _docker_nat(save: str) -> list[str]:
    """Docker's DNAT rules in an ``iptables-save`` text (sorted): whether its rules are all there."""
    return sorted(ln for ln in save.splitlines() if ln.startswith("-A DOCKER ") and "DNAT" in ln)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _fw_docker(_fw_host_guard: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirewallLab]:
    """The session's one Docker lab (both variants: :meth:`FirewallLab.use_firewalld` switches)."""
    try:
        lab = FirewallLab.start_lab()
    except FwLabUnavailable as exc:
        unavailable(str(exc))
    _sandboxes.append(lab)
    try:
        lab.deploy_demo(tmp_path_factory.mktemp("fwlab-demo"))
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def fw_docker_lab(_fw_docker: FirewallLab) -> FirewallLab:
    """The lab in its ufw variant (ufw installed, not enabled), the demo install deployed (``lab.install``).

    Session-scoped and shared with :func:`fw_docker_lab_firewalld`: a test takes ``fw_lab``, which
    also puts the lab back in this variant and resets it.
    """
    _fw_docker.use_firewalld(False)
    return _fw_docker


@pytest.fixture(scope="session")
def fw_docker_lab_firewalld(_fw_docker: FirewallLab) -> FirewallLab:
    """The lab in its firewalld variant (firewalld on its private bus, then dockerd restarted after it).

    A test takes ``fw_lab_firewalld``, which also ensures this variant and resets the lab.
    """
    _fw_docker.use_firewalld(True)
    return _fw_docker


@pytest.fixture
def fw_lab(fw_docker_lab: FirewallLab) -> FirewallLab:
    """The ufw lab, reset to its baseline before the test."""
    fw_docker_lab.use_firewalld(False)
    fw_docker_lab.reset()
    return fw_docker_lab


@pytest.fixture
def fw_lab_firewalld(fw_docker_lab_firewalld: FirewallLab) -> FirewallLab:
    """The firewalld lab, reset to its baseline before the test."""
    fw_docker_lab_firewalld.use_firewalld(True)
    fw_docker_lab_firewalld.reset()
    return fw_docker_lab_firewalld
