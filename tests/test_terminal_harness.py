"""The real-terminal harness is real: a tmux pty of an exact size, a real sshd, real SIGHUP.

These tests run the installed console script, not the source tree, in the
terminals a user has: a local terminal (tmux) and an ssh session into a
server (Debian's own sshd, through the pty it allocates).
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from checks.demo import materialize
from tests.termharness import SSHServer, Tmux, term_env

DESTER = os.path.join(sys.prefix, "bin", "dester-harden")


def _install(tmp_path) -> str:
    return materialize(str(tmp_path))


def _home(tmp_path) -> str:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return str(home)


def _audit_argv(install: str) -> list[str]:
    # One check keeps the report on one 24-line screen.
    return [DESTER, "audit", "--dir", install, "--only", "NET-001"]


def test_audit_in_an_80x24_tmux_pane(tmp_path):
    install = _install(tmp_path)
    env = term_env(_home(tmp_path))
    with Tmux(_audit_argv(install), env=env) as t:
        screen = t.wait_for("NET-001")
        assert "CRITICAL" in screen
        assert "5432" in screen
        # NET-001 fails at the default --fail-on high: exit 1, read from the dead pane.
        assert t.wait_exit() == 1
        assert t.pane_dead()
        assert t.size() == (80, 24)
        assert t.display("#{window_width}x#{window_height}") == "80x24"
        assert t.display("#{pane_width}x#{pane_height}") == "80x24"


def test_the_pane_is_a_real_terminal_of_that_size(tmp_path):
    env = term_env(_home(tmp_path))
    script = 'printf "size=%sx%s term=%s\\n" "$(tput cols)" "$(tput lines)" "$TERM"; tty; stty size'
    with Tmux(["sh", "-c", script], env=env) as t:
        assert t.wait_exit() == 0
        screen = t.capture()
    assert f"size=80x24 term={env['TERM']}" in screen
    assert re.search(r"^/dev/pts/\d+$", screen, re.M), screen
    assert re.search(r"^24 80$", screen, re.M), screen


def test_a_nonstandard_size_sticks(tmp_path):
    env = term_env(_home(tmp_path))
    with Tmux(["sh", "-c", 'echo "cols=$(tput cols) lines=$(tput lines)"'], width=100, height=30, env=env) as t:
        assert t.wait_exit() == 0
        assert "cols=100 lines=30" in t.capture()
        assert t.size() == (100, 30)


def test_keys_reach_the_program(tmp_path):
    env = term_env(_home(tmp_path))
    script = 'printf "ready\\n"; read line; printf "got <%s>\\n" "$line"'
    with Tmux(["sh", "-c", script], env=env) as t:
        t.wait_for("ready")
        t.type("hello 'world' $HOME")
        t.send("Enter")
        t.wait_for("got <hello 'world' $HOME>")
        assert t.wait_exit() == 0


def test_a_crash_leaves_its_screen_and_status(tmp_path):
    env = term_env(_home(tmp_path))
    with Tmux([sys.executable, "-c", "print('last words'); raise SystemExit(3)"], env=env) as t:
        assert t.wait_exit() == 3
        assert "last words" in t.capture()


def test_audit_over_a_real_ssh_session(tmp_path):
    install = _install(tmp_path)
    home = _home(tmp_path)
    local_env = term_env(home)
    remote_env = term_env(home, TERM=local_env["TERM"])
    marker = tmp_path / "remote-tty"
    remote = (
        "tty > " + shlex.quote(str(marker)) + "; "
        + shlex.join(["env", "-i", *(f"{k}={v}" for k, v in remote_env.items()), *_audit_argv(install)])
    )  # fmt: skip
    with SSHServer() as sshd, Tmux(sshd.ssh_argv(remote), env=local_env) as t:
        screen = t.wait_for("NET-001", timeout=30)
        assert "CRITICAL" in screen
        # ssh passes the remote command's exit status on.
        assert t.wait_exit(timeout=30) == 1, sshd.log_text()
    # sshd gave the session its own pty (not the tmux pane's).
    assert re.fullmatch(r"/dev/pts/\d+\n", marker.read_text()), marker.read_text()


def test_the_ssh_session_has_a_pty_and_the_terminal_size(tmp_path):
    env = term_env(_home(tmp_path))
    remote = 'tty; echo "size=$(tput cols)x$(tput lines) term=$TERM"'
    with SSHServer() as sshd, Tmux(sshd.ssh_argv(remote), env=env) as t:
        assert t.wait_exit(timeout=30) == 0, sshd.log_text()
        screen = t.capture()
    assert re.search(r"^/dev/pts/\d+\r?$", screen, re.M), screen
    # ssh forwards the client terminal's size and TERM into the remote pty.
    assert f"size=80x24 term={env['TERM']}" in screen


def test_kill_session_delivers_sighup(tmp_path):
    marker = tmp_path / "hup"
    script = (
        "import pathlib, signal, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "def hup(signum, frame):\n"
        "    marker.write_text('SIGHUP')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGHUP, hup)\n"
        "print('waiting', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    env = term_env(_home(tmp_path))
    with Tmux([sys.executable, "-c", script], env=env) as t:
        t.wait_for("waiting")
        t.kill_session()
        _wait_for_file(marker)
    assert marker.read_text() == "SIGHUP"


def _wait_for_file(path, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written within {timeout}s")
        time.sleep(0.05)
