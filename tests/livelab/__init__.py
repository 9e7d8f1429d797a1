"""The live lab: a real Docker Engine in its own network and mount namespace, for real-component tests.

:class:`LiveLab` starts, under one per-session directory ``/tmp/dhl-<token>`` (short: unix socket
paths are limited to 107 bytes):

* a namespace holder (``unshare --net --mount --fork --propagation private``, then ``sleep
  infinity``) with a private ``/run`` and ``/etc/docker`` bound from the session directory; it is
  "the server": its addresses are 10.77.0.1 and fd77::1 on one end of a veth pair;
* a second network namespace, "the LAN", on the other end (10.77.0.2, fd77::2);
* Debian's dockerd joined to the holder's namespaces (``nsenter``), its socket, data root, exec
  root and pid file in the session directory and its cgroups under ``/dhl-<token>``, so the host's
  docker CLI and SDK reach it through ``DOCKER_HOST`` while its iptables rules, bridges and
  listeners exist only in the lab's namespace;
* the images (:mod:`tests.livelab.images`): loaded from the cache, or built once.

:meth:`LiveLab.stop` takes all of it down again: the deployed projects (``compose down -v``),
dockerd, what is left in the lab's namespaces (by namespace inode), the holders (by the pid files
they wrote themselves), the cgroup directories and the session directory. A session killed
before it could do so is reaped by the next one (:func:`reap_stale`).

Nothing here touches the host's network namespace, firewall, routes or /etc.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path, PosixPath
from typing import Any

import yaml

from . import images, procs

BASE = Path("/tmp")
PREFIX = "dhl-"
SERVER_IF, LAN_IF = "dhl-srv", "dhl-lan"

_TCP_PROBE = """\
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("unreachable" if exc.errno in (101, 113, 99) else "error:%s" % exc.errno)
"""

_HTTP_PROBE = """\
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=float(sys.argv[3])) as resp:
        print(resp.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print("none")
"""


class LabUnavailable(RuntimeError):
    """The lab cannot start here; the message is one line saying why."""


class LiveInstall(PosixPath):
    """An installation deployed in the lab: its directory, with the compose ``project`` it runs as."""

    project: str
    compose: Path
    """The compose file (``docker-compose.yml`` of the CLI layout)."""


def cache_dir(environ: dict[str, str] | os._Environ[str]) -> Path:
    """Where the images and the rootfs are cached: ``$DH_LIVE_CACHE``, else the XDG cache directory."""
    if environ.get("DH_LIVE_CACHE"):
        return Path(environ["DH_LIVE_CACHE"])
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(xdg) / "dester-harden" / "live"


def find_compose_plugin(environ: dict[str, str] | os._Environ[str]) -> Path | None:
    """The Compose v2 CLI plugin, where the docker CLI would find it."""
    dirs = []
    if environ.get("DOCKER_CONFIG"):
        dirs.append(Path(environ["DOCKER_CONFIG"]) / "cli-plugins")
    dirs.append(Path(environ.get("HOME") or os.path.expanduser("~")) / ".docker" / "cli-plugins")
    dirs += [Path(d) / "docker" / "cli-plugins" for d in
             ("/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec")]
    for d in dirs:
        plugin = d / "docker-compose"
        if plugin.is_file() and os.access(plugin, os.X_OK):
            return plugin
    return None


class LiveLab:
    """A running lab (see the module docstring). Built by :meth:`start`; :meth:`stop` is idempotent."""

    server_ip = "10.77.0.1"
    server_ip6 = "fd77::1"
    lan_ip = "10.77.0.2"
    lan_ip6 = "fd77::2"

    def __init__(self, root: Path, cache: Path | None = None, plugin: Path | None = None) -> None:
        self.root = root
        self.token = root.name[len(PREFIX):]
        self.cache = cache or cache_dir(os.environ)
        self.plugin = plugin
        self.socket = root / "d.sock"
        self.env: dict[str, str] = {"DOCKER_HOST": f"unix://{self.socket}",
                                    "DOCKER_CONFIG": str(root / "docker-config"), "DOCKER_BUILDKIT": "0"}
        self.timings: list[tuple[str, float]] = []
        self.images_how = ""
        self._children: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, str] = {}
        self._deployed: dict[str, Path] = {}
        self._installs = 0

    # -- start and stop ---------------------------------------------------------------

    @classmethod
    def start(cls, cache: Path, plugin: Path | None) -> LiveLab:
        """Start a lab, or raise :class:`LabUnavailable` with the reason (after cleaning up what started)."""
        why = _preflight(plugin)
        if why:
            raise LabUnavailable(why)
        reap_stale()
        lab = cls(_make_root(), cache, plugin)
        try:
            lab._start()
        except BaseException:
            lab.stop()
            raise
        return lab

    def _start(self) -> None:
        (self.root / "owner").write_text(f"{os.getpid()}\n{procs.cmdline(os.getpid())}\n")
        for sub in ("run", "etc-docker", "docker-config/cli-plugins", "logs", "work"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if self.plugin:
            (self.root / "docker-config/cli-plugins/docker-compose").symlink_to(self.plugin)
        (self.root / "daemon.json").write_text("{}\n")
        t0 = time.monotonic()
        self._namespaces()
        self._time("namespaces + veth", t0)
        t0 = time.monotonic()
        self._dockerd()
        self._time("dockerd start", t0)
        t0 = time.monotonic()
        try:
            self.images_how = images.ensure_images(self.docker, {**os.environ, **self.env}, self.cache,
                                                   self.root / "work", self._timer)
        except images.BuildError as exc:
            raise LabUnavailable(str(exc)) from None
        self._time(f"images ({self.images_how})", t0)

    def _spawn(self, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.root / "logs" / log, "ab") as out:
            child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._children.append(child)
        self._logs[child.pid] = log
        return child

    def _wait_pidfile(self, pidfile: Path, child: subprocess.Popen[bytes], what: str, seconds: float = 10) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid = procs.read_pid(pidfile)
            if pid:
                return pid
            if child.poll() is not None:
                break
            time.sleep(0.02)
        raise LabUnavailable(f"{what} did not start: {self._last_log(child)}")

    def _last_log(self, child: subprocess.Popen[bytes]) -> str:
        """The last line the child logged, to say in one line why it did not start."""
        try:
            text = (self.root / "logs" / self._logs[child.pid]).read_text(errors="replace")
        except (OSError, KeyError):
            text = ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1][:300] if lines else f"exit status {child.poll()}"

    def _namespaces(self) -> None:
        holder = self._spawn(
            ["unshare", "--net", "--mount", "--fork", "--propagation", "private", "--", "sh", "-c",
             'mount --bind "$1/run" /run && { [ ! -d /etc/docker ] || mount --bind "$1/etc-docker" /etc/docker; } '
             '&& ip link set lo up && echo $$ > "$1/holder.pid" && exec sleep infinity', "sh", str(self.root)],
            "holder.log")
        self.server_pid = self._wait_pidfile(self.root / "holder.pid", holder, "the namespace holder")
        if procs.netns(self.server_pid) == procs.netns(os.getpid()):
            raise LabUnavailable("the namespace holder is in the host's network namespace")
        lan = self._spawn(["unshare", "--net", "--fork", "--", "sh", "-c",
                           'ip link set lo up && echo $$ > "$1" && exec sleep infinity', "sh",
                           str(self.root / "lan.pid")], "lan.log")
        self.lan_pid = self._wait_pidfile(self.root / "lan.pid", lan, "the LAN namespace holder")
        srv = ["nsenter", "-t", str(self.server_pid), "-n", "--"]
        lan_ns = ["nsenter", "-t", str(self.lan_pid), "-n", "--"]
        for argv in (
            [*srv, "ip", "link", "add", SERVER_IF, "type", "veth", "peer", "name", LAN_IF, "netns", str(self.lan_pid)],
            [*srv, "ip", "addr", "add", f"{self.server_ip}/24", "dev", SERVER_IF],
            [*srv, "ip", "-6", "addr", "add", f"{self.server_ip6}/64", "dev", SERVER_IF, "nodad"],
            [*srv, "ip", "link", "set", SERVER_IF, "up"],
            [*lan_ns, "ip", "addr", "add", f"{self.lan_ip}/24", "dev", LAN_IF],
            [*lan_ns, "ip", "-6", "addr", "add", f"{self.lan_ip6}/64", "dev", LAN_IF, "nodad"],
            [*lan_ns, "ip", "link", "set", LAN_IF, "up"],
        ):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if proc.returncode:
                raise LabUnavailable(f"{' '.join(argv[5:8])} failed: {proc.stderr.strip()[:200]}")

    def _dockerd(self) -> None:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        child = self._spawn(
            ["nsenter", "-t", str(self.server_pid), "-n", "-m", "--", dockerd,
             "--config-file", str(self.root / "daemon.json"), "--host", self.env["DOCKER_HOST"],
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "--cgroup-parent", f"/{PREFIX}{self.token}"],
            "dockerd.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise LabUnavailable(f"dockerd exited ({child.returncode}): {self._last_log(child)}")
            if self.socket.exists() and self.docker("version", "-f", "{{.Server.Version}}", timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise LabUnavailable(f"dockerd did not answer within 60 s: {self._last_log(child)}")

    def stop(self) -> None:
        """Take everything down (see the module docstring); safe to call twice, and on a half-started lab."""
        t0 = time.monotonic()
        if procs.alive(self.root / "dockerd.pid", "dockerd"):
            for project in list(self._deployed):
                # Teardown goes on whatever happens: stopping dockerd stops the containers anyway.
                with contextlib.suppress(Exception):
                    self.down(project)
        procs.stop_pidfile(self.root / "dockerd.pid", "dockerd", 30)
        for pidfile in ("holder.pid", "lan.pid"):
            pid = procs.alive(self.root / pidfile, "sleep")
            inode = procs.netns(pid) if pid else None
            if pid and inode:
                # What is left in OUR namespace was started in it: containerd, shims, a probe that hung.
                keep = {pid, procs.parent(pid) or 0, os.getpid()}
                procs.stop(procs.in_netns(inode, exclude=keep), 5)
            procs.stop_pidfile(self.root / pidfile, "sleep", 5)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
        self._children.clear()
        procs.remove_cgroups(f"{PREFIX}{self.token}")
        if self.root.is_dir() and not procs.mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)
        self._time("teardown", t0)

    # -- timings ------------------------------------------------------------------------

    def _timer(self, name: str, seconds: float) -> None:
        self.timings.append((name, seconds))

    def _time(self, name: str, since: float) -> None:
        self.timings.append((name, time.monotonic() - since))

    # -- running things -----------------------------------------------------------------

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.env, **(extra or {})}

    def docker(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """The docker CLI against the lab's dockerd (``docker compose ...`` too); output captured as text."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        kw["env"] = self._env(kw.get("env"))
        return subprocess.run(["docker", *args], **kw)

    def in_server(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in the server's network namespace with the host's filesystem and the lab's env.

        ``env`` entries are added to (and win over) ``os.environ`` plus :attr:`env`. Output is captured
        as text unless the caller says otherwise.
        """
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        kw["env"] = self._env(kw.get("env"))
        return subprocess.run(["nsenter", "-t", str(self.server_pid), "-n", "--", *argv], **kw)

    def _in_lan(self, argv: Sequence[str], timeout: float) -> str:
        proc = subprocess.run(["nsenter", "-t", str(self.lan_pid), "-n", "--", *argv], capture_output=True,
                              text=True, timeout=timeout + 10, env=self._env())
        return proc.stdout.strip()

    def lan_tcp(self, host: str, port: int, timeout: float = 2.0) -> str:
        """A TCP connect from the LAN namespace: ``open``, ``refused``, ``timeout`` or ``unreachable``."""
        return self._in_lan([sys.executable, "-c", _TCP_PROBE, host.strip("[]"), str(port), str(timeout)], timeout)

    def lan_http(self, url: str, method: str = "GET", timeout: float = 3.0) -> int | None:
        """The HTTP status a LAN client gets for ``url``, None when nothing answers HTTP."""
        out = self._in_lan([sys.executable, "-c", _HTTP_PROBE, url, method, str(timeout)], timeout)
        return int(out) if out.isdigit() else None

    # -- installs -------------------------------------------------------------------------

    def new_project(self) -> str:
        self._installs += 1
        return f"desterlib-{self.token}-{self._installs}"

    def project(self, target: str | os.PathLike[str]) -> str:
        """The compose project of an install directory (its top-level ``name:``), or ``target`` itself."""
        if isinstance(target, LiveInstall):
            return target.project
        if isinstance(target, os.PathLike) or "/" in str(target):
            data = yaml.safe_load(compose_file(Path(target)).read_text()) or {}
            name = data.get("name")
            if not name:
                raise LookupError(f"{target}: its compose file has no top-level name:")
            return str(name)
        return str(target)

    def deploy(self, install_dir: str | os.PathLike[str], wait: bool = True, timeout: int = 120) -> None:
        """``docker compose up -d [--wait]`` in the install; raises RuntimeError with compose's own last line."""
        compose = compose_file(Path(install_dir))
        project = self.project(install_dir)
        self._deployed[project] = compose.parent
        t0 = time.monotonic()
        args = ["compose", "up", "-d", "--quiet-pull"] + (["--wait", "--wait-timeout", str(timeout)] if wait else [])
        proc = self.docker(*args, cwd=str(compose.parent), timeout=timeout + 60)
        self._time("deploy to healthy" if wait else "deploy (no wait)", t0)
        if proc.returncode:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            last = lines[-1] if lines else proc.returncode
            raise RuntimeError(f"docker compose up in {compose.parent} failed: {last}")

    def down(self, target: str | os.PathLike[str]) -> None:
        """Remove a project's containers, networks and volumes (by project name: the files may be broken)."""
        project = self.project(target)
        proc = self.docker("compose", "-p", project, "down", "-v", "--remove-orphans", "-t", "5",
                           cwd=str(self.root), timeout=120)
        if proc.returncode:
            label = f"label=com.docker.compose.project={project}"
            ids = self.docker("ps", "-aq", "--filter", label).stdout.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids)
            for kind in ("network", "volume"):
                names = self.docker(kind, "ls", "-q", "--filter", label).stdout.split()
                if names:
                    self.docker(kind, "rm", *names)
        self._deployed.pop(project, None)

    def container(self, target: str | os.PathLike[str], service: str) -> str:
        """The name of the container that runs ``service`` of a project (or of an install directory)."""
        project = self.project(target)
        proc = self.docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--filter",
                           f"label=com.docker.compose.service={service}", "--format", "{{.Names}}")
        names = proc.stdout.split()
        if not names:
            raise LookupError(f"no container for service {service!r} of project {project!r}")
        return names[0]

    def _peer(self, target: str | os.PathLike[str], service: str) -> tuple[str, str]:
        """(network, address) of a service's container: where another container reaches it."""
        name = self.container(target, service)
        proc = self.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name)
        networks = json.loads(proc.stdout or "{}") or {}
        for net, info in sorted(networks.items()):
            if info.get("IPAddress"):
                return net, info["IPAddress"]
        raise LookupError(f"{name} has no address on any network (is it running?)")

    def pg_login(self, target: str | os.PathLike[str], user: str, db: str, password: str,
                 service: str = "postgres") -> bool:
        """Whether ``password`` logs ``user`` in to ``db`` over TCP, from another container (never the socket).

        The password reaches the client container through the docker CLI's environment (``-e PGPASSWORD``
        names the variable only), never an argument.
        """
        net, addr = self._peer(target, service)
        proc = self.docker("run", "--rm", "--network", net, "-e", "PGPASSWORD", "-e", "PGCONNECT_TIMEOUT=5",
                           f"postgres:{images.PG_MAJOR}-alpine", "psql", "-w", "-h", addr, "-U", user, "-d", db,
                           "-tAc", "SELECT 1", env={"PGPASSWORD": password}, timeout=60)
        return proc.returncode == 0 and proc.stdout.strip() == "1"

    def redis_auth(self, target: str | os.PathLike[str], password: str | None, service: str = "redis") -> bool:
        """Whether a client on the project's network can run a command on Redis (with ``password``, if any)."""
        net, addr = self._peer(target, service)
        extra = {"REDISCLI_AUTH": password} if password else {}
        proc = self.docker("run", "--rm", "--network", net, *(["-e", "REDISCLI_AUTH"] if password else []),
                           "redis:7-alpine", "redis-cli", "-h", addr, "--no-auth-warning", "DBSIZE",
                           env=extra, timeout=60)
        return proc.returncode == 0 and proc.stdout.strip().isdigit()


def compose_file(install_dir: Path) -> Path:
    """The compose file of an install: the CLI layout's, or the newer layout's ``docker/`` one."""
    for rel in ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml",
                "docker/docker-compose.yml"):
        if (install_dir / rel).is_file():
            return install_dir / rel
    raise FileNotFoundError(f"no compose file in {install_dir}")


def prepare_compose(text: str, project: str, interval: str = "1s", api_healthcheck: bool = True,
                    start_period: str = "20s") -> str:
    """The test copy of a compose file: a unique project name, fast healthchecks, an API healthcheck.

    Text edits, not a YAML round trip, so the copy keeps the original's comments and layout (the
    fixers under test edit that text). Docker 20.10 has no ``start_interval``: the intervals are
    shortened instead (DesterLib's 30 s would make every deploy take half a minute), and a
    ``start_period`` where a healthcheck has none keeps a slow first start on a loaded machine from
    counting as unhealthy (a success inside it counts at once).
    """
    out = [re.sub(r"^(\s+interval:\s*)\S+", rf"\g<1>{interval}", ln) for ln in text.splitlines(keepends=True)]
    names = [i for i, ln in enumerate(out) if re.match(r"name\s*:", ln)]
    if names:
        out[names[0]] = f"name: {project}\n"
    else:
        top = next((i for i, ln in enumerate(out) if re.match(r"[A-Za-z]", ln)), 0)
        out.insert(top, f"name: {project}\n")
    data = yaml.safe_load("".join(out)) or {}
    api = (data.get("services") or {}).get("api")
    if api_healthcheck and isinstance(api, dict) and "healthcheck" not in api:
        at = next(i for i, ln in enumerate(out) if re.match(r"^(\s+)api:\s*(#.*)?$", ln))
        nxt = next(ln for ln in out[at + 1:] if ln.strip() and not ln.lstrip().startswith("#"))
        ind = nxt[: len(nxt) - len(nxt.lstrip())]
        out[at + 1:at + 1] = [
            f"{ind}healthcheck:\n",
            f'{ind}  test: ["CMD-SHELL", "wget -q --spider http://localhost:3001/health || exit 1"]\n',
            f"{ind}  interval: {interval}\n", f"{ind}  timeout: 5s\n", f"{ind}  retries: 3\n"]
    i = 0
    while i < len(out):
        head = re.match(r"^(\s+)healthcheck:\s*(#.*)?$", out[i])
        i += 1
        if not head:
            continue
        depth = len(head.group(1))
        children = []
        while i < len(out) and (not out[i].strip() or len(out[i]) - len(out[i].lstrip()) > depth):
            if out[i].strip():
                children.append(i)
            i += 1
        if children and not any(re.match(r"\s+start_period\s*:", out[c]) for c in children):
            last = children[-1]
            ind = out[children[0]][: len(out[children[0]]) - len(out[children[0]].lstrip())]
            out.insert(last + 1, f"{ind}start_period: {start_period}\n")
            i += 1
    result = "".join(out)
    yaml.safe_load(result)  # still YAML
    return result


def _preflight(plugin: Path | None) -> str:
    """Why the lab cannot start here ("" when it may)."""
    if sys.platform != "linux":
        return "the live lab needs Linux namespaces"
    if os.geteuid() != 0:
        return "the live lab needs root (network and mount namespaces, dockerd)"
    if not (shutil.which("dockerd") or os.path.exists("/usr/sbin/dockerd")):
        return "dockerd is not installed (apt-get install docker.io)"
    for tool in ("docker", "unshare", "nsenter", "ip"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if plugin is None:
        return "the docker compose v2 plugin is not installed"
    return ""


def _make_root() -> Path:
    for _ in range(20):
        root = BASE / f"{PREFIX}{secrets.token_hex(4)}"
        try:
            root.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return root
    raise LabUnavailable(f"cannot make a session directory under {BASE}")


def reap_stale(base: Path = BASE) -> list[Path]:
    """Stop the labs of pytest sessions that died without stopping theirs (their owner pid is gone)."""
    reaped = []
    for root in sorted(base.glob(f"{PREFIX}*")):
        if not re.fullmatch(PREFIX + r"[0-9a-f]{8}", root.name) or not root.is_dir():
            continue
        try:
            owner = (root / "owner").read_text().split("\n", 1)
        except OSError:
            # Being created right now, or never got as far as its owner file: leave it unless it is old.
            if time.time() - root.stat().st_mtime < 600:
                continue
            owner = ["0", ""]
        pid = int(owner[0]) if owner[0].isdigit() else 0
        if pid and procs.cmdline(pid).strip() == owner[1].strip() and procs.cmdline(pid):
            continue
        LiveLab(root).stop()
        reaped.append(root)
    return reaped
