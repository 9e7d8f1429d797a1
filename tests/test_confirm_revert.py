"""Confirm-or-revert with real processes: a change on trial is reverted by itself unless confirmed.

The plan is :mod:`tests.trialdriver`'s (a system file under a tmp ``--root``, the boot hook and the
reload pair, applied through the use cases as ``fix`` does); the applying process runs in a real
terminal (tmux) or as a plain child, and is killed the way an SSH session dies. Waiting is by polling
the record and the files; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from checks.assistant import usecases
from checks.change.engine import EngineError
from checks.change.journal import list_txns
from checks.change.plan import FileEdit
from checks.core.sysroot import SystemRoot
from checks.firewall import confirm as fc
from tests.conftest import PROJECT, run_cli
from tests.termharness import Tmux, term_env
from tests.trialdriver import AFTER, BEFORE, build

UNIT = Path("etc/systemd/system") / fc.UNIT
WANTS = Path("etc/systemd/system/multi-user.target.wants") / fc.UNIT


def setup(tmp_path: Path) -> tuple[Path, Path]:
    install = tmp_path / "desterlib"
    install.mkdir()
    (install / "docker-compose.yml").write_bytes(b"services: {}\n")
    sysroot = tmp_path / "sys"
    (sysroot / "etc/ufw").mkdir(parents=True)
    (sysroot / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    (sysroot / "etc/ufw/user.rules").write_bytes(BEFORE)
    (sysroot / "live").write_bytes(BEFORE)
    return install, sysroot


def state(install: Path, sysroot: Path) -> tuple[bytes, bytes, bool, bool]:
    """(the rules file, the 'live rules', the unit exists, its wants link exists)."""
    return ((sysroot / "etc/ufw/user.rules").read_bytes(), (sysroot / "live").read_bytes(),
            (sysroot / UNIT).exists(), os.path.lexists(sysroot / WANTS))


BEFORE_STATE = (BEFORE, BEFORE, False, False)
AFTER_STATE = (AFTER, AFTER, True, True)


def wait_until(what: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as gone: PID 1 here may not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def watcher_pid(install: Path) -> int:
    record = fc.load(str(install))
    assert record is not None and record.watcher and record.watcher.startswith("process "), record
    return int(record.watcher.split()[1])


@pytest.fixture
def watchers():
    """Watcher pids a test started: killed at teardown if still running (by pid, never by name)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def driver(install: Path, sysroot: Path, seconds: float, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.trialdriver", str(install), str(sysroot), str(seconds), *extra]


def env_for(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return term_env(home, DESTER_HARDEN_STATE_DIR=os.environ["DESTER_HARDEN_STATE_DIR"], DESTER_HARDEN_NO_LIVE="1",
                    PYTHONPATH=str(PROJECT))


def applied_with_yes(tmp_path: Path, install: Path, sysroot: Path, seconds: float) -> str:
    out = subprocess.run(driver(install, sysroot, seconds, "--yes"), capture_output=True, text=True, cwd=PROJECT,
                         env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=60)
    assert out.returncode == 0 and "ON TRIAL" in out.stdout and "KEPT" in out.stdout, out.stdout + out.stderr
    assert "run `dester-harden confirm --dir" in out.stdout and f"within {seconds:g} s" in out.stdout
    return out.stdout


# -- not confirmed: reverted with the session gone ---------------------------------------------


def test_not_confirmed_it_is_reverted_after_the_timeout_with_the_assistant_and_its_terminal_gone(tmp_path, watchers):
    install, sysroot = setup(tmp_path)
    with Tmux(driver(install, sysroot, 3), env=env_for(tmp_path), cwd=PROJECT) as t:
        t.wait_for("ON TRIAL")  # applied and waiting at the countdown (or, on a slow machine, already past it)
        pid = t.pid()
        watchers.append(watcher := watcher_pid(install))
        # The watcher is in no process group or session of the applying process (double fork, setsid).
        assert os.getpgid(watcher) != os.getpgid(pid) and os.getsid(watcher) != os.getsid(pid)
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the whole group of the assistant, at once
        t.kill_session()  # and its terminal
    assert fc.load(str(install)).txn is not None  # type: ignore[union-attr]  # it was applied on trial
    wait_until(lambda: (r := fc.load(str(install))) is not None and r.state == fc.REVERTED)
    assert state(install, sysroot) == BEFORE_STATE  # files, live rules (the reload pair), the boot hook: gone
    record = fc.load(str(install))
    assert record is not None and "not confirmed within 3 s" in (record.result or "")
    assert [t.state for t in list_txns(str(install))] == ["rolled-back"]
    wait_until(lambda: not alive(watcher))


def test_confirmed_it_stays_and_the_watcher_exits_without_undoing(tmp_path, watchers):
    install, sysroot = setup(tmp_path)
    applied_with_yes(tmp_path, install, sysroot, 30)
    watchers.append(watcher := watcher_pid(install))
    res = run_cli("confirm", "--dir", str(install))
    assert res.code == 0 and "Confirmed: transaction" in res.out, res.err
    wait_until(lambda: not alive(watcher))  # it saw the confirmation: no wait for the deadline
    assert state(install, sysroot) == AFTER_STATE
    assert [t.state for t in list_txns(str(install))] == ["applied"]
    again = run_cli("confirm", "--dir", str(install))
    assert again.code == 0 and "Nothing waits for confirmation" in again.out


@pytest.mark.parametrize(("keys", "kept"), [(["Enter"], True), (["n", "Enter"], False)])
def test_the_countdown_on_a_terminal_keeps_it_on_enter_and_reverts_at_once_otherwise(tmp_path, watchers, keys, kept):
    install, sysroot = setup(tmp_path)
    with Tmux(driver(install, sysroot, 120), env=env_for(tmp_path), cwd=PROJECT) as t:
        t.wait_for("Keep this change?")
        watchers.append(watcher := watcher_pid(install))
        for key in keys:
            t.send(key) if key == "Enter" else t.type(key)
        t.wait_for("KEPT" if kept else "NOT KEPT")
        assert ("Confirmed: transaction" if kept else "Reverted: rolled back transaction") in t.capture(history=True)
        assert t.wait_exit() == 0
    assert state(install, sysroot) == (AFTER_STATE if kept else BEFORE_STATE)
    record = fc.load(str(install))
    assert record is not None and record.state == (fc.CONFIRMED if kept else fc.REVERTED)
    wait_until(lambda: not alive(watcher))


# -- after a reboot ------------------------------------------------------------------------------


def reboot(install: Path) -> None:
    """What a reboot leaves: the watcher gone, another boot id."""
    pid = watcher_pid(install)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid))
    record = fc.load(str(install))
    assert record is not None
    record.boot_id = "00000000-0000-0000-0000-000000000000"
    fc._save(str(install), record)


@pytest.mark.parametrize("command", [["confirm", "--boot"], ["history"]])
def test_after_a_reboot_the_boot_hook_and_any_command_revert_a_change_still_on_trial(tmp_path, watchers, command):
    install, sysroot = setup(tmp_path)
    applied_with_yes(tmp_path, install, sysroot, 600)
    watchers.append(watcher_pid(install))
    unit = (sysroot / UNIT).read_text()
    assert f"confirm --boot --dir {install}" in unit and "WantedBy=multi-user.target" in unit
    if command[0] == "confirm":
        same_boot = run_cli("confirm", "--boot", "--dir", str(install))  # the hook started by hand: nothing
        assert same_boot.code == 0 and same_boot.out == "" and state(install, sysroot) == AFTER_STATE
    reboot(install)
    res = run_cli(*command, "--dir", str(install))
    assert res.code == 0, res.err
    said = res.out if command[0] == "confirm" else res.err
    assert "not confirmed before the machine rebooted" in said
    assert state(install, sysroot) == BEFORE_STATE
    record = fc.load(str(install))
    assert record is not None and record.state == fc.REVERTED


# -- the record and the command line ---------------------------------------------------------------


@pytest.fixture
def on_trial(tmp_path, monkeypatch):
    """A change on trial applied in this process, with no watcher (the record's deadline is the test's)."""
    monkeypatch.setattr(fc, "start_watcher", lambda root, pending, host_root="/": "none (test)")
    install, sysroot = setup(tmp_path)
    done = usecases.apply(str(install), build(str(install), str(sysroot), 600), command="fix", profile="local",
                          host_root=str(sysroot))
    assert done.trial is not None and done.trial.txn == done.txn_id
    return install, sysroot


def test_confirm_with_nothing_on_trial_says_so_and_exits_0(tmp_path):
    install, _ = setup(tmp_path)
    res = run_cli("confirm", "--dir", str(install))
    assert (res.code, res.out.strip()) == (0, "Nothing waits for confirmation.")


def test_confirm_too_late_reverts_and_exits_1(on_trial):
    install, sysroot = on_trial
    record = fc.load(str(install))
    assert record is not None
    record.deadline = time.time() - 1
    fc._save(str(install), record)
    res = run_cli("confirm", "--dir", str(install))
    assert res.code == 1 and res.out.startswith("Too late: rolled back transaction"), res.out + res.err
    assert state(install, sysroot) == BEFORE_STATE


@pytest.mark.parametrize("how", ["writable", "owner"])
def test_a_pending_record_another_user_could_write_is_refused(on_trial, how):
    install, sysroot = on_trial
    path = fc.record_path(str(install))
    if how == "writable":
        os.chmod(path, 0o666)
    else:
        os.chown(path, 65534, 65534)
    res = run_cli("confirm", "--dir", str(install))
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "confirm.json" in res.err, res.err
    record_id = "x"
    assert fc.watch(str(install), record_id) == 1  # nor does the watcher act on it
    assert state(install, sysroot) == AFTER_STATE


def test_a_second_change_is_refused_while_one_is_on_trial(on_trial):
    install, sysroot = on_trial
    with pytest.raises(EngineError, match="still waits for confirmation"):
        usecases.apply(str(install), build(str(install), str(sysroot), 60), command="fix", profile="local",
                       host_root=str(sysroot))
    assert usecases.pending_confirmation(str(install)) is not None


@pytest.mark.parametrize("value", ["0", "-5", "abc", "3601"])
def test_a_bad_confirm_timeout_is_one_line_and_exit_2(tmp_path, value):
    install, _ = setup(tmp_path)
    res = run_cli("fix", "--dir", str(install), "--confirm-timeout", value, "--yes")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "--confirm-timeout" in res.err, res.err
    assert not (install / ".dester-harden").exists()


def test_the_boot_hook_is_a_cron_line_without_systemd_and_joins_an_existing_hook(tmp_path):
    sysroot = tmp_path / "sys"
    (sysroot / "etc/cron.d").mkdir(parents=True)
    [cron] = fc.boot_hook_changes(SystemRoot(str(sysroot)), "/srv/desterlib")
    assert isinstance(cron, FileEdit)
    assert cron.path == str(sysroot / "etc/cron.d/dester-harden-revert") and cron.before is None
    assert b"@reboot root " in cron.after and cron.after.rstrip().endswith(b"confirm --boot --dir /srv/desterlib")
    (sysroot / "etc/cron.d/dester-harden-revert").write_bytes(cron.after)
    assert fc.boot_hook_changes(SystemRoot(str(sysroot)), "/srv/desterlib") == []  # already there
    [second] = fc.boot_hook_changes(SystemRoot(str(sysroot)), "/srv/other install")
    assert isinstance(second, FileEdit)
    assert second.before == cron.after and second.after.endswith(b"--dir '/srv/other install'\n")
    assert fc.boot_hook_dirs([second]) == [str(sysroot / "etc/cron.d")]


# -- kill -9 at random instants of applying -----------------------------------------------------------

ROUNDS = int(os.environ.get("DH_CONFIRM_CRASH_ROUNDS", "3"))


def _start(install: Path, sysroot: Path, seconds: float, *extra: str) -> tuple[subprocess.Popen[str], float]:
    """The driver in its own process group, once it says GO (imports done, the apply about to start)."""
    proc = subprocess.Popen(driver(install, sysroot, seconds, "--yes", *extra), cwd=PROJECT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "GO"
    return proc, time.monotonic()


def test_kill_9_at_random_instants_of_applying_leaves_files_agreeing_with_the_journal(tmp_path, watchers):
    rng = random.Random(20261201)
    base = tmp_path / "measure"
    base.mkdir()
    install, sysroot = setup(base)
    proc, go = _start(install, sysroot, 1)
    assert proc.stdout is not None and proc.stdout.readline().startswith("ON TRIAL")
    window = time.monotonic() - go  # arm, watcher, journal, every change, commit, attach
    proc.communicate(timeout=60)
    wait_until(lambda: fc.load(str(install)).state == fc.REVERTED)  # type: ignore[union-attr]
    for n in range(ROUNDS):
        where = tmp_path / f"round{n}"
        where.mkdir()
        install, sysroot = setup(where)
        delay = rng.uniform(0, window)
        proc, go = _start(install, sysroot, 1.5)
        time.sleep(max(0.0, go + delay - time.monotonic()))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        with_record = fc.load(str(install))
        if with_record is not None and with_record.watcher and with_record.watcher.startswith("process "):
            watchers.append(watcher_pid(install))
        res = run_cli("history", "--dir", str(install))  # the next command
        assert res.code == 0, f"round {n}, delay {delay:.3f}: {res.err}"
        states = [t.state for t in list_txns(str(install))]
        expect = AFTER_STATE if any(s in ("applied-tentative", "applied") for s in states) else BEFORE_STATE
        assert state(install, sysroot) == expect, f"round {n}, delay {delay:.3f}: {states}"
        assert not [p for p in sysroot.rglob("*") if p.name.endswith(".tmp")], f"round {n}: temp files left"
        # And what was left on trial is reverted by itself: the watcher was started before the first change.
        wait_until(lambda: all(t.state == "rolled-back" for t in list_txns(str(install))))  # noqa: B023
        assert state(install, sysroot) == BEFORE_STATE, f"round {n}, delay {delay:.3f}"


# -- the crash windows between the journal and the record (docs/adr/0010) -------------------------------


def _expire(install: Path) -> None:
    record = fc.load(str(install))
    assert record is not None
    record.deadline = time.time() - 1
    fc._save(str(install), record)


def test_killed_between_the_commit_and_attach_the_tentative_transaction_is_still_found_and_reverted(
        tmp_path, monkeypatch):
    monkeypatch.setattr(fc, "start_watcher", lambda root, pending, host_root="/": "none (test)")
    monkeypatch.setattr(fc, "attach", lambda root, pending, txn_id: pending)  # the record never learns the id
    install, sysroot = setup(tmp_path)
    usecases.apply(str(install), build(str(install), str(sysroot), 600), command="fix", profile="local",
                   host_root=str(sysroot))
    assert fc.load(str(install)).txn is None  # type: ignore[union-attr]
    _expire(install)
    done = usecases.revert_expired(str(install))
    assert done is not None and done.state == fc.REVERTED and "rolled back transaction" in (done.result or "")
    assert state(install, sysroot) == BEFORE_STATE


def test_confirmed_in_the_journal_but_not_in_the_record_the_journal_wins(on_trial):
    from checks.change.engine import Engine

    install, sysroot = on_trial
    record = fc.load(str(install))
    assert record is not None and record.txn
    Engine(str(install)).confirm(record.txn)  # killed right after: the record still says armed
    _expire(install)
    done = usecases.revert_expired(str(install))
    assert done is not None and done.state == fc.CONFIRMED
    assert state(install, sysroot) == AFTER_STATE


def test_the_countdown_running_out_reverts_without_waiting_for_anyone(tmp_path, watchers):
    install, sysroot = setup(tmp_path)
    with Tmux(driver(install, sysroot, 2), env=env_for(tmp_path), cwd=PROJECT) as t:
        t.wait_for("ON TRIAL")
        watchers.append(watcher_pid(install))
        t.wait_for("NOT KEPT")  # nothing typed
        assert "Reverted: " in t.capture(history=True)
        assert t.wait_exit() == 0
    assert state(install, sysroot) == BEFORE_STATE


def test_where_systemd_runs_the_revert_is_a_transient_timer_and_a_failing_systemd_run_falls_back(
        tmp_path, monkeypatch, watchers):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "systemd-run"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\nexit "${{FAKE_RC:-0}}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(fc, "_systemd", lambda host_root: True)
    install, _ = setup(tmp_path)
    os.mkdir(install / ".dester-harden", 0o700)
    pending = fc.Pending("abcd1234", str(install), time.time(), time.time() + 60, 60, None)
    assert fc.start_watcher(str(install), pending) == "systemd dester-harden-revert-abcd1234.timer"
    argv = calls.read_text().splitlines()
    assert "--on-active=60" in argv and "--unit=dester-harden-revert-abcd1234" in argv
    assert argv[-5:] == ["watch", "--dir", str(install), "--id", "abcd1234"]
    monkeypatch.setenv("FAKE_RC", "1")
    how = fc.start_watcher(str(install), pending)
    assert how.startswith("process ")
    watchers.append(int(how.split()[1]))  # it exits at once: no record with this id


def test_kill_9_of_the_group_exactly_mid_transaction_is_rolled_back_by_the_next_command(tmp_path, watchers,
                                                                                       monkeypatch):
    install, sysroot = setup(tmp_path)
    proc, _ = _start(install, sysroot, 600, "--kill-mid")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    watchers.append(watcher_pid(install))
    assert [t.state for t in list_txns(str(install))] == ["prepared"]
    assert (sysroot / "etc/ufw/user.rules").read_bytes() == AFTER  # the file changed, the live rules not yet
    res = run_cli("history", "--dir", str(install))
    assert res.code == 0 and "interrupted while it was being applied" in res.err, res.err
    assert state(install, sysroot) == BEFORE_STATE
    assert [t.state for t in list_txns(str(install))] == ["rolled-back"]
    # Its record, armed until a deadline far off, does not stand in the way of the next change on trial.
    monkeypatch.setattr(fc, "start_watcher", lambda root, pending, host_root="/": "none (test)")
    done = usecases.apply(str(install), build(str(install), str(sysroot), 600), command="fix", profile="local",
                          host_root=str(sysroot))
    assert done.trial is not None and state(install, sysroot) == AFTER_STATE


def test_fix_shows_the_trial_applies_it_with_the_given_timeout_and_confirm_keeps_it(tmp_path, monkeypatch, capsys):
    """The CLI's wiring, in process: ``fix --confirm-timeout`` on a plan with revert_after, then ``confirm``."""
    from tui import cli

    monkeypatch.setattr(fc, "start_watcher", lambda root, pending, host_root="/": "none (test)")
    install, sysroot = setup(tmp_path)
    real_plan = usecases.plan

    def trial_plan(root, profile, **kw):
        planned = real_plan(root, profile, **kw)
        planned.plan = build(str(install), str(sysroot), 60)
        return planned

    monkeypatch.setattr(usecases, "plan", trial_plan)
    code = cli.main(["fix", "--dir", str(install), "--root", str(sysroot), "--yes", "--confirm-timeout", "5"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert "On trial: unless confirmed within 5 s" in out  # in the preview, before anything is applied
    assert f"run `dester-harden confirm --dir {install}` within 5 s or it is reverted by itself" in out
    record = fc.load(str(install))
    assert record is not None and record.state == fc.ARMED and record.seconds == 5
    assert cli.main(["confirm", "--dir", str(install)]) == 0
    assert "Confirmed: transaction" in capsys.readouterr().out
    assert state(install, sysroot) == AFTER_STATE


def test_the_countdown_s_revert_waits_for_the_watcher_holding_the_lock_at_that_moment(on_trial):
    import threading

    from checks.change.engine import Engine

    install, sysroot = on_trial
    held, release = threading.Event(), threading.Event()

    def watcher_at_work() -> None:
        with Engine(str(install), "confirm-revert").locked():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=watcher_at_work)
    thread.start()
    held.wait(30)
    threading.Timer(0.3, release.set).start()
    try:
        done = usecases.revert_now(str(install), "not confirmed at the prompt")
    finally:
        release.set()
        thread.join()
    assert done is not None and done.state == fc.REVERTED
    assert state(install, sysroot) == BEFORE_STATE
