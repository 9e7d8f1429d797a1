"""A real-terminal harness for end-to-end tests: tmux panes and a real sshd.

Nothing here is simulated. :class:`Tmux` runs a program in a pane of a private
tmux server (its own socket, no user configuration) of an exact size, so the
program sees a real pty, real ``TIOCGWINSZ``, real terminfo and real signals.
:class:`SSHServer` runs Debian's OpenSSH server on 127.0.0.1 with throwaway
keys, so a program can be reached the way a user on a VPS reaches it:
``ssh -tt`` from a terminal, through a pty that sshd allocates.

Usage::

    from tests.termharness import SSHServer, Tmux, term_env

    def test_audit_in_a_terminal(tmp_path):
        env = term_env(tmp_path)            # hermetic: HOME, TERM, LANG, PATH...
        with Tmux([DESTER, "audit", "--dir", d], env=env) as t:   # 80x24
            t.wait_for("NET-001")
            assert t.wait_exit() == 1
            t.size()                        # -> (80, 24), read from tmux

    def test_over_ssh(tmp_path):
        with SSHServer() as sshd:
            remote = shlex.join(["env", "-i", *env_pairs, DESTER, "audit", ...])
            with Tmux(sshd.ssh_argv(remote), env=term_env(tmp_path)) as t:
                t.wait_for("NET-001")

Interacting: ``t.send("Enter")``, ``t.send("Escape", "F1", "n")`` (tmux key
names), ``t.type("literal text")`` (``send-keys -l``), ``t.capture()`` (the
visible screen; ``history=True`` adds the scrollback), ``t.wait_for(text or
re.compile(...))``, ``t.wait_gone(text)``, ``t.resize(w, h)``.

Ending: the pane stays after its program exits (``remain-on-exit on``), so a
crashed program's last screen and its exit status stay readable:
``t.wait_exit()`` returns the exit status (or ``-signal``), ``t.pane_dead()``
and ``t.exit_status()`` poll. ``t.kill_session()`` drops the terminal: the
program gets SIGHUP, as when an ssh connection dies. ``t.close()`` kills the
server; both classes are context managers.

Both classes call ``pytest.skip`` (with the reason) when the tools they need
are not installed; ``.ci/run`` installs them in CI.

Waiting is by polling the real screen until a deadline; no test should assert
anything about timing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

import pytest

__all__ = ["SSHServer", "Tmux", "pick_term", "term_env"]

_TERMINFO_DIRS = ("/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo", "/usr/lib/terminfo")


def _has_terminfo(name: str) -> bool:
    dirs = [d for d in os.environ.get("TERMINFO_DIRS", "").split(":") if d]
    if os.environ.get("TERMINFO"):
        dirs.insert(0, os.environ["TERMINFO"])
    for base in (*dirs, *_TERMINFO_DIRS):
        # Linux ncurses uses the first letter, macOS its hex code.
        for sub in (name[0], f"{ord(name[0]):x}"):
            if os.path.isfile(os.path.join(base, sub, name)):
                return True
    return False


def pick_term() -> str:
    """The TERM a tmux pane should advertise: the best one with terminfo here."""
    for name in ("tmux-256color", "screen-256color"):
        if _has_terminfo(name):
            return name
    return "screen"


def term_env(home: str | os.PathLike[str], **extra: str) -> dict[str, str]:
    """A hermetic environment for a program under test, rooted at ``home``.

    HOME and XDG_DATA_HOME are ``home``; the keyring is a plaintext file under
    it; TERM is :func:`pick_term`; LANG is C.UTF-8; PATH is inherited (the test
    machine's tools); the host firewall is not read. ``extra`` adds or overrides variables.
    """
    home = os.fspath(home)
    env = {
        "HOME": home,
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        # Root's own journal and secrets file (checks/change/statedir.py): never /var/lib in a test.
        "DESTER_HARDEN_STATE_DIR": os.path.join(home, ".local", "state", "dester-harden"),
        "LANG": "C.UTF-8",
        "TERM": pick_term(),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        # This machine's firewall is never a test's input (and a root CI machine's would make FW-001 fail).
        "DESTER_HARDEN_NO_FIREWALL": "1",
    }
    env.update(extra)
    return env


def env_command(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``env -i K=V ... argv``: run ``argv`` with exactly ``env`` and nothing else."""
    for key in env:
        if not key or "=" in key:
            raise ValueError(f"bad environment variable name {key!r}")
    return [shutil.which("env") or "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]


class Tmux:
    """One program in a pane of a private, detached tmux server.

    ``argv`` is run with exactly ``env`` (default: :func:`term_env` of a fresh
    temporary HOME), in ``cwd``, in a window of ``width`` x ``height`` cells.
    The status line is off, so the pane is the whole window.
    """

    SESSION = "harness"

    def __init__(
        self,
        argv: Sequence[str],
        *,
        width: int = 80,
        height: int = 24,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        history: int = 5000,
    ) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.skip("tmux is not installed (apt-get install tmux): the real-terminal tests need it")
        self._tmux: str = tmux
        self._dir = tempfile.mkdtemp(prefix="termharness-")  # short: sockets have a ~100-byte path limit
        self.socket = os.path.join(self._dir, "tmux.sock")
        self._closed = False
        self.server_pid: int | None = None
        if env is None:
            home = os.path.join(self._dir, "home")
            os.mkdir(home)
            env = term_env(home)
        env = dict(env)
        env.setdefault("TERM", pick_term())
        env.setdefault("LANG", "C.UTF-8")
        self.env = env
        self.argv = list(argv)
        self.width, self.height = width, height
        self._history = history
        command = "exec " + shlex.join(env_command(self.argv, env))
        if cwd is not None:
            command = f"cd {shlex.quote(os.fspath(cwd))} && {command}"
        try:
            self._start(command)
        except BaseException:
            self.close()
            raise

    def _start(self, command: str) -> None:
        width, height, history = self.width, self.height, self._history
        # Two steps. First the server, its options and a placeholder pane:
        # tmux 3.3a's server segfaults when window-size (sometimes
        # default-size) is set before a session exists, even from a config
        # file. remain-on-exit is on before any program could exit.
        self._tmux_cmd(
            "start-server", ";",
            "set-option", "-s", "exit-empty", "off", ";",
            "set-option", "-g", "default-shell", "/bin/sh", ";",
            "set-option", "-g", "default-terminal", self.env["TERM"], ";",
            "set-option", "-g", "status", "off", ";",
            "set-option", "-g", "history-limit", str(history), ";",
            "set-option", "-g", "remain-on-exit", "on", ";",
            # No "Pane is dead" line: it scrolls the program's last screen up one row.
            "set-option", "-g", "remain-on-exit-format", "", ";",
            "new-session", "-d", "-s", self.SESSION, "-x", str(width), "-y", str(height),
            "exec sleep 2147483647",
        )  # fmt: skip
        # Then, with the server running, the size options and the real program
        # (respawn-pane -k replaces the placeholder in the same pane).
        self._tmux_cmd(
            "set-option", "-g", "default-size", f"{width}x{height}", ";",
            "set-option", "-g", "window-size", "manual", ";",
            "set-option", "-s", "escape-time", "0", ";",
            "respawn-pane", "-k", "-t", self.SESSION, command,
        )  # fmt: skip
        self.server_pid = int(self.display("#{pid}"))

    # -- plumbing ---------------------------------------------------------

    def _client_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        env["LANG"] = "C.UTF-8"
        env.pop("LC_ALL", None)
        env.pop("LC_CTYPE", None)
        return env

    def _tmux_cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self._tmux, "-u", "-S", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self._client_env(),
            timeout=30,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def display(self, fmt: str) -> str:
        """Expand a tmux format (``#{...}``) for the pane."""
        return self._tmux_cmd("display-message", "-p", "-t", self.SESSION, fmt).stdout.rstrip("\n")

    # -- the screen ---------------------------------------------------------

    def send(self, *keys: str, literal: bool = False) -> None:
        """Send keys: tmux key names ("Enter", "Escape", "F1", "C-c", "n"), or text with ``literal``."""
        self._tmux_cmd("send-keys", "-t", self.SESSION, *(["-l"] if literal else []), *keys)

    def type(self, text: str) -> None:
        """Type ``text`` literally (no key-name lookup)."""
        self.send(text, literal=True)

    def capture(self, *, history: bool = False, escapes: bool = False) -> str:
        """The pane's screen as text (with the scrollback above it when ``history``)."""
        args = ["capture-pane", "-p", "-t", self.SESSION]
        if history:
            args += ["-S", "-"]
        if escapes:
            args.append("-e")
        return self._tmux_cmd(*args).stdout

    def _matches(self, screen: str, what: str | re.Pattern[str]) -> bool:
        if isinstance(what, re.Pattern):
            return what.search(screen) is not None
        return what in screen

    def wait_for(self, what: str | re.Pattern[str], timeout: float = 20, *, history: bool = False) -> str:
        """Poll until the screen shows ``what`` (text, or a compiled regex); return that screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture(history=history)
            if self._matches(screen, what):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what!r} did not appear within {timeout}s; last screen:\n{self._framed(screen)}")
            time.sleep(0.05)

    def wait_gone(self, what: str | re.Pattern[str], timeout: float = 20) -> str:
        """Poll until the screen no longer shows ``what``; return that screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if not self._matches(screen, what):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what!r} still shown after {timeout}s; last screen:\n{self._framed(screen)}")
            time.sleep(0.05)

    def _framed(self, screen: str) -> str:
        lines = screen.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        bar = "+" + "-" * self.width + "+"
        return "\n".join([bar, *(f"|{line.ljust(self.width)}|" for line in lines), bar])

    def size(self) -> tuple[int, int]:
        """The window's (width, height) as tmux has it."""
        w, h = self.display("#{window_width} #{window_height}").split()
        return int(w), int(h)

    def resize(self, width: int, height: int) -> None:
        """Resize the window (the program gets SIGWINCH)."""
        self._tmux_cmd("resize-window", "-t", self.SESSION, "-x", str(width), "-y", str(height))
        self.width, self.height = width, height

    # -- the program's end --------------------------------------------------

    def pane_dead(self) -> bool:
        """Whether the program in the pane has exited (the pane stays: remain-on-exit)."""
        return self.display("#{pane_dead}") == "1"

    def exit_status(self) -> int | None:
        """The exit status, ``-N`` when killed by signal N, None while running."""
        fields = self.display("#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}").split("|")
        dead, status, sig = (fields + ["", ""])[:3]
        if dead != "1":
            return None
        if status:
            return int(status)
        if sig:
            return -int(sig)
        # The pty is closed but tmux has not reaped the program. Debian's tmux
        # links libutempter, which swaps in its own SIGCHLD handler while it
        # writes the utmp record; a child that exits then leaves a zombie that
        # tmux never hears about (tmux/tmux#311). Nudge our own server: its
        # handler reaps every exited child.
        self._poke_server()
        return None

    def _poke_server(self) -> None:
        if not self.server_pid or self.server_pid <= 1:  # never kill(-1) or kill(0)
            return
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.server_pid, signal.SIGCHLD)

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the program to exit; return its status (``-N`` for signal N)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.exit_status()
            if status is not None:
                return status
            if time.monotonic() > deadline:
                screen = self._framed(self.capture())
                raise AssertionError(f"the program did not exit within {timeout}s; last screen:\n{screen}")
            time.sleep(0.05)

    def pid(self) -> int:
        """The pid of the program in the pane."""
        return int(self.display("#{pane_pid}"))

    def kill_session(self) -> None:
        """Drop the terminal: tmux closes the pty and the program gets SIGHUP."""
        self._tmux_cmd("kill-session", "-t", self.SESSION, check=False)

    def close(self) -> None:
        """Kill the tmux server (and with it the program) and remove the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            self._tmux_cmd("kill-server", check=False)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not leak a server
        with contextlib.suppress(Exception):
            self.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SSHServer:
    """Debian's OpenSSH server on 127.0.0.1:``port``, with throwaway keys.

    Only the current user may log in, only with the generated client key.
    Nothing of the system's /etc/ssh is read. ``ssh_argv`` gives the client
    command line for a remote command.
    """

    SSHD = "/usr/sbin/sshd"

    def __init__(self, *, user: str | None = None, timeout: float = 20) -> None:
        missing = [t for t in (self.SSHD, "ssh", "ssh-keygen") if shutil.which(t) is None]
        if missing:
            pytest.skip(
                f"{', '.join(missing)} not installed (apt-get install openssh-server openssh-client): "
                "the ssh tests need a real sshd"
            )
        if os.geteuid() == 0:
            # Privilege separation directory; the systemd unit normally makes it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        elif not os.path.isdir("/run/sshd"):
            pytest.skip("/run/sshd (sshd's privilege separation directory) is missing and we are not root")
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        self.host = "127.0.0.1"
        self.dir = tempfile.mkdtemp(prefix="termharness-sshd-")
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.client_key = os.path.join(self.dir, "id_ed25519")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        self.log = os.path.join(self.dir, "sshd.log")
        self.config = os.path.join(self.dir, "sshd_config")
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            for key, comment in ((self.host_key, "termharness-host"), (self.client_key, "termharness-client")):
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            shutil.copyfile(self.client_key + ".pub", self.authorized_keys)
            os.chmod(self.authorized_keys, 0o600)
            self._start(timeout)
        except BaseException:
            self.close()
            raise

    def _write_config(self, port: int) -> None:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {os.path.join(self.dir, 'sshd.pid')}",
            f"AllowUsers {self.user}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "PermitTTY yes",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PermitUserEnvironment no",
            # AcceptEnv: none; the remote command sets its own environment.
            "LogLevel VERBOSE",
        ]
        with open(self.config, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def _start(self, timeout: float) -> None:
        for _attempt in range(5):  # another process may take the free port first
            self.port = _free_port()
            self._write_config(self.port)
            with open(self.log, "ab") as log:
                self._proc = subprocess.Popen(
                    [self.SSHD, "-D", "-e", "-f", self.config],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                try:
                    with socket.create_connection((self.host, self.port), timeout=1) as s:
                        s.settimeout(2)
                        if s.recv(4).startswith(b"SSH-"):
                            return
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError(f"sshd did not accept connections within {timeout}s:\n{self.log_text()}")
            if "Address already in use" not in self.log_text():
                raise RuntimeError(f"sshd exited with {self._proc.returncode}:\n{self.log_text()}")
        raise RuntimeError(f"sshd could not find a free port:\n{self.log_text()}")

    def log_text(self) -> str:
        """What sshd wrote to stderr (``-e``), for failure messages."""
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def ssh_argv(self, remote_command: str) -> list[str]:
        """The ssh client command line (with a forced tty) running ``remote_command``.

        ``remote_command`` is one shell string, run by the user's login shell
        on the server; build it with ``shlex.join``.
        """
        return [
            shutil.which("ssh") or "ssh",
            "-F", "/dev/null",
            "-tt",
            "-i", self.client_key,
            "-p", str(self.port),
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes",
            f"{self.user}@{self.host}",
            remote_command,
        ]  # fmt: skip

    def close(self) -> None:
        """Stop sshd and remove its keys and configuration."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SSHServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
