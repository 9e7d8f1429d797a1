"""The assistant end to end in real terminals: tmux at 80x24, and through a real OpenSSH server.

The installed ``dester-harden`` console script runs in a tmux pane; keys go in
with send-keys, the screen comes back with capture-pane, and the files on disk
are checked afterwards. No timing is asserted: every wait polls the screen.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from checks.change.journal import list_txns
from checks.demo import materialize
from tests.termharness import SSHServer, Tmux, term_env

DESTER = os.path.join(sys.prefix, "bin", "dester-harden")


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def install(tmp_path):
    return materialize(str(tmp_path / "srv"))


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return str(h)


def _walk_to_review(t: Tmux) -> list[str]:
    """Enter, then n through every step; returns the screens seen on the way."""
    seen = [t.wait_for("Press Enter to start the guided setup", timeout=30)]
    seen.append(t.wait_for(re.compile(r"Score \d+/100"), timeout=30))
    t.send("Enter")
    seen.append(t.wait_for("Who should reach DesterLib"))
    seen.append(t.wait_for("This step alone: score"))
    for title in ("Database password", "File permissions", "Container hardening", "Firewall", "Backups and monitoring"):
        t.send("n")
        seen.append(t.wait_for(title))
        if title == "Database password":
            seen.append(t.wait_for("random bits"))  # the masked new password and its strength
    t.send("n")
    return seen


def test_the_installed_assistant_in_tmux_applies_one_step_and_the_file_changes_on_disk(install, home):
    compose = os.path.join(install, "docker-compose.yml")
    env_file = os.path.join(install, ".env")
    with Tmux([DESTER, "--dir", install], env=term_env(home)) as t:
        assert t.size() == (80, 24)
        _walk_to_review(t)
        t.wait_for("Network exposure (1 of 4)")
        screen = t.wait_for('+      - "127.0.0.1:5432:5432"')
        assert "Apply (a)" in screen
        t.send("a")
        t.wait_for("(2 of 4)")
        for n in (3, 4):
            t.send("s")
            t.wait_for(f"({n} of 4)")
        t.send("s")
        screen = t.wait_for("Press n for the summary")
        assert re.search(r"applied +Network exposure", screen), screen
        # On disk, now: the port is bound to loopback; the skipped steps left .env alone.
        text = Path(compose).read_text(encoding="utf-8")
        assert '- "127.0.0.1:5432:5432"' in text and '- "5432:5432"' not in text
        assert _mode(env_file) == 0o644
        t.send("n")
        t.wait_for("Security checklist")
        t.send("Enter")
        t.wait_for("Last hardened")  # the re-audit, against the baseline just saved
        t.send("C-q")
        assert t.wait_exit() == 0
    txns = list_txns(install)
    assert [x.state for x in txns] == ["applied"]
    assert txns[0].intent["checks"] == ["NET-001", "NET-005"]


def test_through_a_real_ssh_session(install, home):
    term = term_env(home)
    pairs = [f"{k}={v}" for k, v in term.items() if k != "TERM"]
    # TERM comes from the ssh client's terminal (the tmux pane), as for a real user.
    remote = shlex.join(["env", *pairs, DESTER, "--dir", install])
    with SSHServer() as sshd, Tmux(sshd.ssh_argv(remote), env=term) as t:
        seen = _walk_to_review(t)
        seen.append(t.wait_for("Network exposure (1 of 4)"))
        t.send("s")
        seen.append(t.wait_for("(2 of 4)"))
        screen = t.wait_for("DATABASE_URL")
        assert "••••" in screen  # the preview masks the new password
        seen.append(screen)
        t.send("a")
        seen.append(t.wait_for("(3 of 4)"))
        t.send("s")
        seen.append(t.wait_for("(4 of 4)"))
        t.send("s")
        seen.append(t.wait_for("Press n for the summary"))
        t.send("n")
        seen.append(t.wait_for("Security checklist"))
        t.send("C-q")
        assert t.wait_exit(timeout=30) == 0, sshd.log_text()
    env_text = Path(os.path.join(install, ".env")).read_text(encoding="utf-8")
    m = re.search(r"^POSTGRES_PASSWORD=(.+)$", env_text, re.M)
    assert m, "POSTGRES_PASSWORD is in .env"
    password = m.group(1)
    assert len(password) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", password)
    assert f"desterlib:{password}@postgres" in env_text
    # The secret never reached the terminal: masked on every screen seen on the way.
    assert len(seen) >= 14 and any("•" * 43 in sc for sc in seen)
    assert not [sc for sc in seen if password in sc]
    assert [x.state for x in list_txns(install)] == ["applied"]


def _colour_kinds(screen: str) -> dict[str, list]:
    """Colours in the SGR sequences: basic (16), indexed (256) and rgb, parsed parameter by parameter."""
    kinds: dict[str, list] = {"basic": [], "indexed": [], "rgb": []}
    for m in re.finditer(r"\x1b\[([0-9;]*)m", screen):
        ps = [int(p) if p else 0 for p in m.group(1).split(";")]
        i = 0
        while i < len(ps):
            p = ps[i]
            if p in (38, 48) and i + 1 < len(ps) and ps[i + 1] == 5:
                kinds["indexed"].append(ps[i + 2])
                i += 3
            elif p in (38, 48) and i + 1 < len(ps) and ps[i + 1] == 2:
                kinds["rgb"].append(tuple(ps[i + 2:i + 5]))
                i += 5
            else:
                if 30 <= p <= 37 or 40 <= p <= 47 or 90 <= p <= 97 or 100 <= p <= 107:
                    kinds["basic"].append(p)
                i += 1
    return kinds


@pytest.mark.parametrize("flag", ["none", "16", "256", "truecolor"])
def test_color_system_flag(install, home, flag):
    with Tmux([DESTER, "--dir", install, "--color-system", flag], env=term_env(home, COLORTERM="truecolor")) as t:
        t.wait_for(re.compile(r"Score \d+/100"), timeout=30)
        screen = t.capture(escapes=True)
        t.send("C-q")
        t.wait_exit()
    kinds = _colour_kinds(screen)
    params = {k: sorted(set(v))[:8] for k, v in kinds.items()}  # for the failure message
    rgb, indexed, basic = kinds["rgb"], kinds["indexed"], kinds["basic"]
    if flag == "none":
        # As NO_COLOR: no hue at all. Textual keeps shades of grey so the
        # highlighted row stays visible; no 16- or 256-colour codes either.
        assert not indexed and not basic and _only_grey(screen), params
    elif flag == "16":
        assert basic and not rgb and not indexed, params
    elif flag == "256":
        assert indexed and not rgb, params
    else:
        assert rgb, params


def test_no_color_is_honoured(install, home):
    with Tmux([DESTER, "--dir", install], env=term_env(home, NO_COLOR="1", COLORTERM="truecolor")) as t:
        t.wait_for(re.compile(r"Score \d+/100"), timeout=30)
        screen = t.capture(escapes=True)
        t.send("C-q")
        t.wait_exit()
    kinds = _colour_kinds(screen)
    assert not kinds["indexed"] and not kinds["basic"] and _only_grey(screen), kinds
    assert kinds["rgb"]  # greys are drawn: the check above is not vacuous


def _only_grey(screen: str) -> bool:
    """NO_COLOR in Textual draws in shades of grey (r == g == b), never a hue."""
    return all(r == g == b for r, g, b in _colour_kinds(screen)["rgb"])


def test_a_terminal_below_80x24_gets_a_notice(install, home):
    with Tmux([DESTER, "--dir", install], width=70, height=20, env=term_env(home)) as t:
        t.wait_for("smaller than 80x24", timeout=30)
        t.resize(80, 24)
        t.wait_gone("smaller than 80x24")
        t.send("C-q")
        t.wait_exit()


def _big_media(install: str, n: int) -> None:
    """A media library of ``n`` files the docs' `chmod -R 755` left executable."""
    media = os.path.join(install, "media", "Library")
    os.makedirs(media)
    per = 1000
    for d in range(n // per):
        sub = os.path.join(media, f"d{d:04d}")
        os.mkdir(sub)
        for i in range(per):
            fd = os.open(os.path.join(sub, f"e{i:04d}.mkv"), os.O_CREAT | os.O_WRONLY, 0o755)
            os.close(fd)
            os.chmod(os.path.join(sub, f"e{i:04d}.mkv"), 0o755)


def _gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            # Reaped between open() and read(): the read fails with ESRCH.
            return True
        time.sleep(0.05)
    return False


def _drop_while_applying_permissions(t: Tmux, drop=None) -> None:
    """Skip the first two previews, apply the permissions step, and drop the terminal while it applies
    (or call ``drop`` then instead)."""
    _walk_to_review(t)
    for n in (1, 2):
        t.wait_for(f"({n} of 4)")
        t.send("s")
    t.wait_for("File permissions (3 of 4)", timeout=60)
    t.send("a")
    t.wait_for("Applying File permissions", timeout=60)
    (drop or t.kill_session)()


def _assert_permissions_committed(install: str) -> None:
    """Wholly after: one applied transaction, every media file lost its exec bit, .env is 0600."""
    txns = list_txns(install)
    assert [x.state for x in txns] == ["applied"], [x.state for x in txns]
    lib = os.path.join(install, "media", "Library")
    assert {_mode(os.path.join(dp, f)) for dp, _, fs in os.walk(lib) for f in fs} == {0o644}
    assert _mode(os.path.join(install, ".env")) == 0o600


def test_a_dropped_terminal_during_apply_lets_the_transaction_finish(install, home):
    """SIGHUP (the SSH session gone) while the engine applies: the app finishes the transaction, then exits."""
    _big_media(install, 60_000)
    with Tmux([DESTER, "--dir", install], env=term_env(home)) as t:
        pid = t.pid()
        _drop_while_applying_permissions(t)
        assert _gone(pid), "the assistant did not exit after SIGHUP"
    _assert_permissions_committed(install)
    assert not [f for f in os.listdir(install) if ".tmp" in f or f.startswith(".dh-")]


def test_sigterm_during_apply_lets_the_transaction_finish(install, home):
    """SIGTERM (a `kill`, a stopping service manager) while the engine applies: the same as a hangup.

    The apply runs in a worker thread that a signal cannot interrupt, so the app
    lets it commit and then exits, rather than dying between two files.
    """
    _big_media(install, 60_000)
    with Tmux([DESTER, "--dir", install], env=term_env(home)) as t:
        pid = t.pid()
        _drop_while_applying_permissions(t, lambda: os.kill(pid, signal.SIGTERM))
        assert _gone(pid), "the assistant did not exit after SIGTERM"
    _assert_permissions_committed(install)


def test_a_dropped_terminal_when_idle_exits_at_once(install, home):
    with Tmux([DESTER, "--dir", install], env=term_env(home)) as t:
        pid = t.pid()
        t.wait_for(re.compile(r"Score \d+/100"), timeout=30)
        t.kill_session()
        assert _gone(pid, 30)
    assert not os.path.exists(os.path.join(install, ".dester-harden", "txn"))


def test_a_dropped_ssh_connection_during_apply_lets_the_transaction_finish(install, home):
    """The same through sshd: the client dies, sshd hangs up the session, the app still commits."""
    _big_media(install, 60_000)
    term = term_env(home)
    pairs = [f"{k}={v}" for k, v in term.items() if k != "TERM"]
    remote = shlex.join(["env", *pairs, DESTER, "--dir", install])
    with SSHServer() as sshd, Tmux(sshd.ssh_argv(remote), env=term) as t:
        _drop_while_applying_permissions(t)  # the ssh client goes; sshd sends SIGHUP to the remote session
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _running(install):
            time.sleep(0.1)
        assert not _running(install), "the assistant is still running after the ssh session dropped"
    _assert_permissions_committed(install)


def _running(install: str) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    continue
        except OSError:
            continue
        if install.encode() in cmd and any(c.endswith(b"dester-harden") for c in cmd):
            return True
    return False
