"""pytest plugin: the firewall lab, real ufw, firewalld, nft and dockerd with the host's firewall left alone.

:class:`FwSandbox` (milestone 1) is a network + mount namespace of our own, held by one ``sleep
infinity`` (``unshare --net --mount --fork --propagation private``), under one short session
directory ``/tmp/dhf-<token>`` (dockerd's unix socket lives there: 107 bytes at most). Inside the
namespace only, private copies made from the host's files are bind-mounted over

* ``/etc/ufw`` and ``/etc/default`` (the whole directory, not just the ``/etc/default/ufw`` file: a
  file bind cannot be replaced by rename, EBUSY, and the change engine writes atomically by rename),
* ``/etc/firewalld`` (when firewalld is installed), ``/etc/docker`` (when present),
* ``/etc/ssh``, read-only inside and without the host keys (configuration and ``*.pub`` only: a
  private key never lands in a test directory),
* ``/run``: the dbus system bus socket, ``firewalld.pid``, ``ufw.lock``, ``xtables.lock`` and
  containerd's shims land in the session directory.

Loopback is up; there is no other interface and no route out. Every firewall command runs there
through :meth:`FwSandbox.run` (``nsenter -t HOLDER -n -m``) and the code under test through
:meth:`FwSandbox.tool`. **Never run ufw, firewall-cmd, firewalld, nft or iptables outside it**:
``ufw --rootdir`` is not a sandbox (it still writes the host's /etc/ufw/user.rules and
/etc/default/ufw).

:class:`tests.fwdocker.FirewallLab` is the sandbox plus a LAN namespace on a veth pair (``dhf-srv``
10.78.0.1/fd78::1 in the sandbox, ``dhf-lan`` 10.78.0.2/fd78::2 in the LAN; the live lab uses
dhl-*/10.77.0.0/24) and Debian's dockerd joined to the sandbox's namespaces, as tests/livelab does.

The host guard (tests/fwguard.py): the first sandbox of a session snapshots the host's /etc/ufw, /etc/default/ufw and
/etc/firewalld checksums, ``iptables-save``, ``ip6tables-save`` and ``nft list ruleset`` (read-only,
in the host's namespace); the session-scoped ``_fw_host_guard`` fixture compares at the end and fails
loudly with the difference (:func:`host_snapshot`, :func:`snapshot_diff`).

Fixtures: ``fw_sandbox`` (module), ``fw`` (function: the module's sandbox, :meth:`~FwSandbox.reset`
before the test); the Docker lab's are in tests/fwdocker.py. Marker: ``firewall``. Without
root, unshare, nsenter, ufw (or firewalld where needed) they skip with the reason; under ``CI=true``
they fail, since .ci/run installs them (:func:`require`). Start-up timings are printed at the end
of the session, like the live lab's.

Registered from tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fwguard import host_snapshot, snapshot_diff
from tests.livelab import procs

__all__ = ["FwLabUnavailable", "FwSandbox", "host_snapshot", "preflight", "reap_stale", "require", "snapshot_diff",
           "unavailable"]

REPO = Path(__file__).resolve().parent.parent
BASE = Path("/tmp")
PREFIX = "dhf-"

#: Bound over the real path inside the namespace: (path, read-only inside).
PRIVATE_DIRS: tuple[tuple[str, bool], ...] = (
    ("/etc/ufw", False), ("/etc/default", False), ("/etc/firewalld", False), ("/etc/docker", False),
    ("/etc/ssh", True))

#: Left out of the /etc/ssh copy: host private keys.
_SSH_SECRET = re.compile(r"ssh_host_.*_key$")



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "firewall: a real ufw/firewalld/nft test in the firewall lab's namespaces")


class FwLabUnavailable(RuntimeError):
    """The firewall lab cannot run here; the message is one line saying why."""


def require(*tools: str, firewalld: bool = False) -> None:
    """Skip the test with the reason when the sandbox cannot run here (fail under ``CI=true``).

    Always needs Linux, root, unshare, nsenter, ip and ufw; ``firewalld=True`` adds firewalld,
    firewall-cmd and dbus-daemon; ``tools`` are further executables (``"dockerd"``, ``"nft"``).
    """
    why = preflight(*tools, firewalld=firewalld)
    if why:
        unavailable(why)


def preflight(*tools: str, firewalld: bool = False) -> str:
    """Why the sandbox cannot run here ("" when it can)."""
    if sys.platform != "linux":
        return "the firewall lab needs Linux namespaces"
    if os.geteuid() != 0:
        return "the firewall lab needs root (network and mount namespaces)"
    need = ["unshare", "nsenter", "ip", "ufw", "iptables", *tools]
    if firewalld:
        need += ["firewalld", "firewall-cmd", "dbus-daemon"]
    for tool in need:
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            return f"{tool} is not installed (.ci/run installs ufw, firewalld, dbus, nftables)"
    if not Path("/etc/ufw").is_dir():
        return "/etc/ufw is missing (is ufw installed?)"
    if firewalld and not Path("/etc/firewalld").is_dir():
        return "/etc/firewalld is missing (is firewalld installed?)"
    return ""


def unavailable(why: str) -> None:
    """Skip with ``why``; under ``CI=true`` fail instead (CI installs everything the lab needs)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the firewall lab cannot run: {why} (.ci/run installs what it needs)")
    pytest.skip(f"the firewall lab cannot run: {why}")


_GUARD: dict[str, dict[str, str]] = {}

#: The console script's entry point, as ``dester-harden`` runs it.
_ENTRY = "import sys; from tui.cli import main; sys.argv[0] = 'dester-harden'; sys.exit(main(sys.argv[1:]))"


def _guard_before() -> None:
    """Take the host snapshot once, before the first sandbox of the session exists."""
    if "before" not in _GUARD:
        _GUARD["before"] = host_snapshot()


# -- the sandbox -------------------------------------------------------------------------


class FwSandbox:
    """A network + mount namespace with private /etc/ufw, /etc/default, /etc/firewalld, /etc/ssh and /run.

    Built by :meth:`start`; :meth:`close` is idempotent. ``root`` is the session directory,
    ``holder_pid`` the namespace's holder, ``timings`` ``(step, seconds)`` pairs.
    """

    #: Subdirectories of ``root`` that are a tmpfs inside the namespace: freed with it, never removed
    #: file by file (dockerd's data root: an rmtree of its image layers takes 15 s).
    tmpfs: tuple[str, ...] = ()

    def __init__(self, root: Path) -> None:
        self.root = root
        self.holder_pid = 0
        self.timings: list[tuple[str, float]] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._dbus: subprocess.Popen[bytes] | None = None
        self._firewalld: subprocess.Popen[bytes] | None = None
        self.bound: list[str] = []
        """The real paths that are private inside the namespace (those the host has)."""

    # -- start and stop -----------------------------------------------------------------

    @classmethod
    def start(cls) -> FwSandbox:
        """A new sandbox, or :class:`FwLabUnavailable` with the reason (after cleaning up what started)."""
        why = preflight()
        if why:
            raise FwLabUnavailable(why)
        _guard_before()
        reap_stale()
        sandbox = cls(_make_root())
        try:
            t0 = time.monotonic()
            sandbox._start()
            sandbox._time("sandbox start", t0)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _start(self) -> None:
        (self.root / "owner").write_text(f"{os.getpid()}\n{procs.cmdline(os.getpid())}\n")
        for sub in ("run", "logs", "pristine"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        binds = []
        for real, readonly in PRIVATE_DIRS:
            if not Path(real).is_dir() or Path(real).is_symlink():
                continue
            _copy_tree(Path(real), self.root / "pristine" / real.lstrip("/"))
            _copy_tree(Path(real), self.path(real))
            self.bound.append(real)
            # The real path is a positional argument of the script, never part of its text.
            binds.append((real, "ro" if readonly else "rw"))
        for sub in self.tmpfs:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        tmpfs = "".join(f'mount -t tmpfs -o mode=0711 tmpfs "$R/{sub}" || exit 1\n' for sub in self.tmpfs)
        script = 'R=$1; shift; mount --bind "$R/run" /run || exit 1\n' + tmpfs + \
                 'while [ $# -gt 0 ]; do mount --bind "$R/private$1" "$1" || exit 1\n' \
                 '  if [ "$2" = ro ]; then mount -o remount,bind,ro "$1" || exit 1; fi; shift 2; done\n' \
                 'ip link set lo up && echo $$ > "$R/holder.pid" && exec sleep infinity\n'
        argv = ["unshare", "--net", "--mount", "--fork", "--propagation", "private", "--", "sh", "-c", script,
                "sh", str(self.root)] + [x for pair in binds for x in pair]
        holder = self._spawn(argv, "holder.log")
        self.holder_pid = self._wait_pidfile(self.root / "holder.pid", holder, "the namespace holder")
        if procs.netns(self.holder_pid) == procs.netns(os.getpid()):
            raise FwLabUnavailable("the namespace holder is in the host's network namespace")
        if os.readlink(f"/proc/{self.holder_pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            raise FwLabUnavailable("the namespace holder is in the host's mount namespace")

    def close(self) -> None:
        """Stop firewalld, its dbus, whatever else runs in the namespace, the holder; remove the directory."""
        self.stop_firewalld()
        pid = procs.alive(self.root / "holder.pid", "sleep")
        inode = procs.netns(pid) if pid else None
        if pid and inode:
            # What is left in OUR namespace was started in it (by inode, never by name).
            procs.stop(procs.in_netns(inode, exclude={pid, procs.parent(pid) or 0, os.getpid()}), 5)
        procs.stop_pidfile(self.root / "holder.pid", "sleep", 5)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
        self._children.clear()
        if self.root.is_dir() and not procs.mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def _spawn(self, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.root / "logs" / log, "ab") as out:
            child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._children.append(child)
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
        raise FwLabUnavailable(f"{what} did not start: {self.last_log('holder.log', child)}")

    def last_log(self, name: str, child: subprocess.Popen[bytes] | None = None) -> str:
        """The last line of a log in ``logs/`` (``name`` or ``name.log``), to say in one line what went wrong."""
        for candidate in (name, f"{name}.log", "holder.log"):
            p = self.root / "logs" / candidate
            if p.is_file():
                lines = [ln.strip() for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
                if lines:
                    return lines[-1][:300]
        return f"exit status {child.poll()}" if child else "no log"

    def _time(self, name: str, since: float) -> None:
        self.timings.append((name, time.monotonic() - since))

    # -- running things -------------------------------------------------------------------

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run inside the namespace (network and mount)."""
        return ["nsenter", "-t", str(self.holder_pid), "-n", "-m", "--", *argv]

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, input: str | None = None,
            timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (a list, never a shell string) in the sandbox; output captured as text.

        ``env`` entries are added to (and win over) ``os.environ``. ``check=True`` raises
        AssertionError with the command's stderr when it fails.
        """
        done = subprocess.run(self.argv(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=None if input is not None else
                              subprocess.DEVNULL)
        if check and done.returncode:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}) in the sandbox: "
                                 f"{(done.stderr or done.stdout).strip()[-2000:]}")
        return done

    def tool(self, args: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``dester-harden ARGS`` (``tui.cli.main``) in the sandbox, cwd and PYTHONPATH this repository.

        The firewall code under test runs there, seeing the private /etc copies and /run. (tui/cli.py
        has no ``__main__`` block, so ``-m tui.cli`` would do nothing: the entry point is called.)
        """
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        done = subprocess.run(self.argv([sys.executable, "-c", _ENTRY, *args]), input=input,
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": path, **(env or {})},
                              stdin=None if input is not None else subprocess.DEVNULL)
        return done

    def path(self, real: str) -> Path:
        """The host-side path of the private copy of ``real`` (``/etc/ufw/user.rules`` -> ``ROOT/private/etc/ufw/...``).

        Writable from the host side even where the namespace sees it read-only (/etc/ssh). Only the
        private directories have a copy: another path is a ValueError (it would be the host's own).
        """
        if not real.startswith("/") or ".." in Path(real).parts:
            raise ValueError(f"{real!r}: an absolute path without '..'")
        if real == "/run" or real.startswith("/run/"):
            return self.root / real.lstrip("/")
        for top, _ro in PRIVATE_DIRS:
            if real == top or real.startswith(top + "/"):
                return self.root / "private" / real.lstrip("/")
        raise ValueError(f"{real} is not private in the sandbox (private: /run, "
                         f"{', '.join(t for t, _ in PRIVATE_DIRS)})")

    # -- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to pristine: firewalld stopped, the private /etc copies restored, every rule flushed.

        No ``ufw --force reset`` (it writes backups beside the rules and is slow): the copies are
        restored in place (the bind mounts keep their inodes), then nftables (which holds the
        iptables-nft tables too) and any iptables-legacy tables are flushed inside the namespace.
        """
        self.stop_firewalld()
        for real in self.bound:
            _restore_tree(self.root / "pristine" / real.lstrip("/"), self.path(real))
        self.flush()

    def flush(self) -> None:
        """Every nft table and iptables-legacy rule in the namespace gone, policies ACCEPT."""
        self.run(["nft", "flush", "ruleset"], check=True)
        for save, tool in (("iptables-legacy-save", "iptables-legacy"), ("ip6tables-legacy-save", "ip6tables-legacy")):
            if not shutil.which(save):
                continue
            tables = re.findall(r"^\*(\w+)$", self.run([save]).stdout, re.M)
            for table in tables:
                self.run([tool, "-t", table, "-F"], check=True)
                self.run([tool, "-t", table, "-X"], check=True)
                for chain in re.findall(r"^:(\S+) (?!-)", self.run([save, "-t", table]).stdout, re.M):
                    self.run([tool, "-t", table, "-P", chain, "ACCEPT"])

    # -- firewalld ------------------------------------------------------------------------

    @property
    def firewalld_running(self) -> bool:
        """Whether :meth:`start_firewalld` started a firewalld that still runs."""
        return self._firewalld is not None and self._firewalld.poll() is None

    def start_firewalld(self, timeout: float = 30) -> None:
        """A private ``dbus-daemon --system`` on the private /run, then ``firewalld --nofork``; waits for running.

        The wait polls ``firewall-cmd --state``. Logs: ``logs/dbus.log``, ``logs/firewalld.log``.
        """
        require(firewalld=True)
        if self.firewalld_running:
            return
        t0 = time.monotonic()
        if self._dbus is None or self._dbus.poll() is not None:
            (self.root / "run" / "dbus").mkdir(exist_ok=True)
            (self.root / "run" / "dbus" / "pid").unlink(missing_ok=True)
            (self.root / "run" / "dbus" / "system_bus_socket").unlink(missing_ok=True)
            # nsenter execs (no --fork): the Popen pid is dbus-daemon's own, stopped exactly by it.
            self._dbus = self._spawn(self.argv(["dbus-daemon", "--system", "--nofork", "--nopidfile"]), "dbus.log")
            self._wait(lambda: (self.root / "run/dbus/system_bus_socket").exists(), self._dbus, "dbus.log", 10)
        (self.root / "run" / "firewalld.pid").unlink(missing_ok=True)
        self._firewalld = self._spawn(self.argv(["firewalld", "--nofork", "--log-target", "file", "--log-file",
                                                 str(self.root / "logs" / "firewalld.log")]), "firewalld.out")
        self._wait(lambda: self.run(["firewall-cmd", "--state"], timeout=10).stdout.strip() == "running",
                   self._firewalld, "firewalld.log", timeout)
        self._time("firewalld start (dbus + running)", t0)

    def _wait(self, ready: Callable[[], bool], child: subprocess.Popen[bytes], log: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ready():
                return
            if child.poll() is not None:
                raise AssertionError(f"{log[:-4]} exited ({child.returncode}): {self.last_log(log)}")
            time.sleep(0.05)
        raise AssertionError(f"{log[:-4]} not ready after {seconds} s: {self.last_log(log)}")

    def stop_firewalld(self) -> None:
        """Stop firewalld (SIGTERM: it cleans up its rules), THEN its dbus (the other order leaves its tables)."""
        for attr in ("_firewalld", "_dbus"):
            child: subprocess.Popen[bytes] | None = getattr(self, attr)
            if child is not None and child.poll() is None:
                procs.stop([child.pid], 15)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(5)
            setattr(self, attr, None)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a host directory for the sandbox (symlinks as links, modes kept), without ssh host keys."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copystat(src, dst)
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if _SSH_SECRET.match(n)])


def _restore_tree(pristine: Path, target: Path) -> None:
    """Make ``target``'s contents equal ``pristine``'s, keeping ``target`` itself (a bind mount's source)."""
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    shutil.copytree(pristine, target, symlinks=True, dirs_exist_ok=True)
    shutil.copystat(pristine, target)


def _make_root() -> Path:
    for _ in range(20):
        root = BASE / f"{PREFIX}{secrets.token_hex(4)}"
        try:
            root.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return root
    raise FwLabUnavailable(f"cannot make a session directory under {BASE}")


def reap_stale(base: Path = BASE) -> list[Path]:
    """Stop the sandboxes of pytest sessions that died without closing theirs (their owner pid is gone)."""
    reaped = []
    for root in sorted(base.glob(f"{PREFIX}*")):
        if not re.fullmatch(PREFIX + r"[0-9a-f]{8}", root.name) or not root.is_dir():
            continue
        try:
            owner = (root / "owner").read_text().split("\n", 1)
        except OSError:
            if time.time() - root.stat().st_mtime < 600:
                continue
            owner = ["0", ""]
        pid = int(owner[0]) if owner[0].isdigit() else 0
        if pid and procs.cmdline(pid) and procs.cmdline(pid).strip() == owner[1].strip():
            continue
        procs.stop_pidfile(root / "dockerd.pid", "dockerd", 30)
        FwSandbox(root).close()
        procs.stop_pidfile(root / "lan.pid", "sleep", 5)
        procs.remove_cgroups(root.name)
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped


# -- fixtures ----------------------------------------------------------------------------

_sandboxes: list[FwSandbox] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for sb in _sandboxes:
        terminalreporter.write_sep("-", f"firewall lab {sb.root.name}")
        for name, seconds in sb.timings:
            terminalreporter.write_line(f"{name:>32}: {seconds:6.2f} s")


@pytest.fixture(scope="session")
def _fw_host_guard() -> Iterator[None]:
    """Fail loudly at the session's end when the host's firewall files or rules differ from before."""
    _guard_before()
    yield
    diff = snapshot_diff(_GUARD["before"], host_snapshot())
    if diff:
        pytest.fail("THE HOST'S FIREWALL CHANGED during the firewall lab tests:\n  " + "\n  ".join(diff[:40]))


@pytest.fixture(scope="module")
def fw_sandbox(_fw_host_guard: None) -> Iterator[FwSandbox]:
    """One sandbox per test module (ufw ready: private copies in place, nothing enabled)."""
    require()
    try:
        sb = FwSandbox.start()
    except FwLabUnavailable as exc:
        unavailable(str(exc))
    _sandboxes.append(sb)
    try:
        yield sb
    finally:
        sb.close()


@pytest.fixture
def fw(fw_sandbox: FwSandbox) -> FwSandbox:
    """The module's sandbox, reset to pristine before the test."""
    fw_sandbox.reset()
    return fw_sandbox
