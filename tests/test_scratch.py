"""Validation copies a killed run left behind are removed by the next run, and
nothing else ever is (checks/fix/scratch.py).

A killed run is a real process killed with SIGKILL while it holds its
directory; the next run is a real ``dester-harden fix --dry-run``. The attack
tests plant look-alikes as uid 65534 and compare a victim tree byte for byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from checks.fix import scratch

from .conftest import PROJECT, run_cli
from .installs import tree_snapshot

NOBODY = 65534

#: A child that takes a validation directory, writes a copy into it, prints the
#: path and then waits to be killed, as a run killed during validation would.
HOLDER = """
import sys, time
from checks.fix import scratch
with scratch.validation_dir() as d:
    open(d + "/docker-compose.yml", "w").write("services: {}\\n")
    print(d, flush=True)
    time.sleep(600)
"""


def holder(tmpdir: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, cwd=str(PROJECT),
                            env={**os.environ, "TMPDIR": str(tmpdir)})
    assert proc.stdout is not None  # stdout=PIPE
    path = Path(proc.stdout.readline().strip())
    assert path.parent == tmpdir and path.name.startswith(scratch.PREFIX), path
    return proc, path


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None  # every holder is started with stdout=PIPE
    proc.stdout.close()


def need_compose() -> None:
    try:
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail("docker compose is missing, and .ci/run installs it")
        pytest.skip("`docker compose version` fails here (.ci/run installs the Compose v2 plugin)")


def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the attack tests run as root in CI")
        pytest.skip("needs root to plant files as uid 65534")


def test_a_killed_runs_copies_are_removed_by_the_next_run(tmp_path):
    need_compose()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc, left = holder(tmpdir)
    kill(proc)
    assert (left / "docker-compose.yml").exists()  # what a killed run leaves behind
    root = tmp_path / "install"
    root.mkdir()
    (root / "docker-compose.yml").write_text('services:\n  db:\n    image: postgres:16.4\n'
                                             '    ports:\n      - "5432:5432"\n')

    r = run_cli("fix", "--dry-run", "--dir", str(root), "--only", "NET-001", env={"TMPDIR": str(tmpdir)})
    assert r.code in (0, 1), r.err
    assert "127.0.0.1:5432:5432" in r.out
    assert not left.exists()
    assert os.listdir(tmpdir) == []  # and its own copies went too


def test_a_running_runs_directory_is_kept(tmp_path):
    proc, live = holder(tmp_path)
    try:
        assert scratch.remove_abandoned(str(tmp_path)) == []
        assert (live / "docker-compose.yml").exists()
    finally:
        kill(proc)
    assert scratch.remove_abandoned(str(tmp_path)) == [live.name]
    assert not live.exists()


def test_a_directory_still_being_set_up_is_kept(tmp_path, monkeypatch):
    # Between mkdtemp and the rename of .lock.new the directory has no .lock: not abandoned.
    d = Path(tempfile.mkdtemp(prefix=scratch.PREFIX, dir=tmp_path))
    (d / ".lock.new").write_text("")
    assert scratch.remove_abandoned(str(tmp_path)) == []
    assert d.exists()


def test_validation_dir_is_private_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch.validation_dir() as d:
        assert (os.stat(d).st_mode & 0o777) == 0o700 and os.listdir(d) == [scratch.LOCK]
        assert scratch.remove_abandoned(str(tmp_path)) == []  # our own, in use
    assert os.listdir(tmp_path) == []




def test_look_alikes_planted_by_another_user_are_never_removed(tmp_path):
    """An unprivileged user plants entries named like ours (its own directory with a
    stale .lock, a link to a victim directory, a .lock that is a link to a FIFO);
    root's cleanup removes none of them and changes nothing outside."""
    need_root()
    tmpdir = tmp_path / "tmp"
    victim = tmp_path / "victim"
    for d in (tmpdir, victim):
        d.mkdir()
    os.chmod(tmpdir, 0o1777)
    (victim / "keep.txt").write_text("precious\n")
    (victim / scratch.LOCK).write_text("")
    os.chmod(victim, 0o700)
    os.mkfifo(tmp_path / "fifo")
    for p in (victim, victim / "keep.txt", victim / scratch.LOCK, tmp_path / "fifo"):
        os.chown(p, 0, 0)  # root's own: a cleanup that followed a link would take it
    own = tmpdir / (scratch.PREFIX + "nobody01")
    own.mkdir(mode=0o700)
    (own / scratch.LOCK).write_text("")
    link = tmpdir / (scratch.PREFIX + "link0001")
    link.symlink_to(victim)
    fifo = tmpdir / (scratch.PREFIX + "fifo0001")
    fifo.mkdir(mode=0o700)
    (fifo / scratch.LOCK).symlink_to(tmp_path / "fifo")
    other = tmpdir / "dester-harden-other"
    other.mkdir(mode=0o700)
    for p in (own, own / scratch.LOCK, link, fifo, fifo / scratch.LOCK, other):
        os.lchown(p, NOBODY, NOBODY)  # the attacker's
    # And root's own look-alikes that are not abandoned validation dirs: wrong mode, a .lock that is a link.
    wrong_mode = tmpdir / (scratch.PREFIX + "mode0001")
    wrong_mode.mkdir(mode=0o755)
    os.chmod(wrong_mode, 0o755)
    (wrong_mode / scratch.LOCK).write_text("")
    linked = tmpdir / (scratch.PREFIX + "lnk00001")
    linked.mkdir(mode=0o700)
    (linked / scratch.LOCK).symlink_to(victim / scratch.LOCK)
    before = tree_snapshot(tmp_path)
    assert scratch.remove_abandoned(str(tmpdir)) == []
    assert tree_snapshot(tmp_path) == before
