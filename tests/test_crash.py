"""Crash safety: ``kill -9`` at any instant of apply, undo and recovery.

The requirement: after a SIGKILL at any instant of ``fix`` or ``undo``, the next
run of any command finds the unfinished transaction and completes or rolls it
back, so every file is wholly before or wholly after, and no temp file is left.

A template install (the bundled demo plus a few thousand media entries with
0755/0666 files and 0777 directories) is recorded in its two legitimate states:
BEFORE, and AFTER an uninterrupted fix with seeded secrets (so AFTER is the
same bytes in every copy). Each instant takes a copy of the template at
BEFORE, starts a fix (or an undo of a fix, or a recovery of a fully applied but
uncommitted fix) in a child process, SIGKILLs it after a random delay drawn over
the measured duration, then runs the next command (audit, history or
fix --dry-run) as a user would and checks the install, the journal and the
absence of temp files; every FULL_EVERY-th instant then also runs fix --yes and
undo --last --yes until nothing is left, which must give BEFORE back byte for
byte.

Random instants come from a seeded generator; every assertion names the seed,
the instant and the delay. The seed is fixed by default; set DH_CRASH_SEED to
another number to replay a run, or to "random" for a fresh one each run, DH_CRASH_APPLY,
DH_CRASH_UNDO and DH_CRASH_RECOVER to change how many instants run,
DH_CRASH_FILES for the media tree's size and DH_CRASH_JOBS for parallelism.

Deterministic instants complement the random ones: the driver can kill itself
at a named point (after the transaction's mkdir, before intent.json, before a
state is written, between a temp file's write and its rename, after the n-th
change or chmod, during rollback), so the narrow windows are always covered.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pytest

from checks.change.journal import JOURNAL_DIR, has_unfinished
from checks.demo import materialize
from tests.conftest import PROJECT, run_cli

N_APPLY = int(os.environ.get("DH_CRASH_APPLY", "60"))
N_UNDO = int(os.environ.get("DH_CRASH_UNDO", "60"))
N_RECOVER = int(os.environ.get("DH_CRASH_RECOVER", "20"))
N_FILES = int(os.environ.get("DH_CRASH_FILES", "3000"))
JOBS = int(os.environ.get("DH_CRASH_JOBS", str(min(2, os.cpu_count() or 1))))
#: A fixed default, so a run is repeatable; CI may set DH_CRASH_SEED=random (printed in every failure).
_SEED_ENV = os.environ.get("DH_CRASH_SEED", "")
SEED = int.from_bytes(os.urandom(4), "big") if _SEED_ENV == "random" else int(_SEED_ENV or "20260901")
#: Every k-th random instant also runs a full fix --yes and undo afterwards.
FULL_EVERY = int(os.environ.get("DH_CRASH_FULL_EVERY", "5"))

FIXED_NOW = 1_790_000_000.0
TEMP_RE = re.compile(r"^\..*\.dh-.*\.tmp$")

# The driver, a fork server: it imports the engine once, then for each request
# forks a child that plans like ``fix`` does (but with seeded secrets and a
# fixed clock), says "go <pid>" on stdout, then applies through the engine
# exactly as the CLI does. The child is the process that gets killed. With
# DH_KILL=point=n in the request's environment the child SIGKILLs itself the
# n-th time it passes ``point`` after "go".
DRIVER = r'''
import json, os, random, re, signal, sys, time, traceback
sys.path.insert(0, sys.argv[1])
from checks.change import engine as E
from checks.change import journal as J
from checks.change import walk as W
from checks.fix.planner import plan_fixes

armed = False
target, nth, seen = "", 0, {}

def hit(point):
    if not armed or point != target:
        return
    seen[point] = seen.get(point, 0) + 1
    if seen[point] == nth:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def go():
    global armed
    armed = True
    print("go %d" % os.getpid(), flush=True)
    return time.perf_counter()

_set_state = J.Txn.set_state
def set_state(self, state):
    hit("state:" + state)
    _set_state(self, state)
    hit("state-done:" + state)
J.Txn.set_state = set_state

_write_private = J.write_private
def write_private(path, data):
    hit("write:" + os.path.basename(path))
    if os.path.basename(os.path.dirname(path)) == "secrets":
        hit("write:secrets")
    _write_private(path, data)
J.write_private = E.write_private = write_private

_replace = os.replace
def replace(src, dst, *a, **k):
    if ".dh-" in os.path.basename(str(src)):
        hit("replace-r" if str(src).endswith("r.tmp") else "replace")
    return _replace(src, dst, *a, **k)
os.replace = replace

import configparser, io
_cp_write = configparser.RawConfigParser.write
def cp_write(self, fp, *a, **k):
    # keyrings.alt rewrites its whole file in place: die halfway through.
    buf = io.StringIO()
    _cp_write(self, buf, *a, **k)
    text = buf.getvalue()
    fp.write(text[:len(text) // 2])
    fp.flush()
    hit("keyring-write")
    fp.write(text[len(text) // 2:])
configparser.RawConfigParser.write = cp_write

_mkdir = os.mkdir
def mkdir(path, *a, **k):
    _mkdir(path, *a, **k)
    if os.path.basename(os.path.dirname(str(path))) == "txn":
        hit("mkdir")
os.mkdir = mkdir

_chmod_entry = W.chmod_entry
def chmod_entry(e, m):
    r = _chmod_entry(e, m)
    hit("chmod")
    return r
W.chmod_entry = chmod_entry

_apply_entry = E.Engine._apply_entry
def apply_entry(self, *a, **k):
    _apply_entry(self, *a, **k)
    hit("entry")
E.Engine._apply_entry = apply_entry

_write = os.write
def write(fd, data):
    # Bulk chmod records (txn/<id>/tree<N>.bin): die with a group half written.
    if armed and target == "records-cut" and re.search(r"/tree[0-9]+[.]bin$", os.readlink("/proc/self/fd/%d" % fd)):
        seen[target] = seen.get(target, 0) + 1
        if seen[target] == nth:
            _write(fd, bytes(data)[:len(data) // 2 + 5])
            os.kill(os.getpid(), signal.SIGKILL)
    return _write(fd, data)
os.write = write

import shutil
_rmtree = shutil.rmtree
def rmtree(path, *a, **k):
    # Discarding an unstarted transaction: die with half its directory removed.
    if armed and target == "discard-cut":
        seen[target] = seen.get(target, 0) + 1
        if seen[target] == nth:
            for name in sorted(os.listdir(path))[::2]:
                os.unlink(os.path.join(path, name))
            os.kill(os.getpid(), signal.SIGKILL)
    return _rmtree(path, *a, **k)
shutil.rmtree = rmtree

from checks.change.handlers import files as HF
_restore_file = HF.FileHandler.restore
def restore_file(self, *a, **k):
    _restore_file(self, *a, **k)
    hit("restore")
HF.FileHandler.restore = restore_file

ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

plans = {}

def plan(root, now):
    rng = random.Random(1)
    def new_secret(nbytes):
        return "".join(rng.choice(ALPHA) for _ in range(max(16, nbytes * 4 // 3)))
    return plan_fixes(root, now=float(now), new_secret=new_secret)[0]

def child(mode, root):
    global target, nth
    spec = os.environ.get("DH_KILL", "")
    target, _, n = spec.rpartition("=")
    nth = int(n or 0)
    def fix():
        return plans[root] if root in plans else plan(root, os.environ["DH_NOW"])
    if mode == "fix":
        plan = fix()
        t0 = go()
        E.Engine(root, "fix").apply(plan)
    elif mode == "undo":
        E.Engine(root, "fix").apply(fix())
        engine = E.Engine(root, "undo")
        with engine.locked():  # what tui.changes._undo does
            engine.recover()
            txn = engine.find(None)
            plan, conflicts = engine.undo_plan(txn)
            assert not conflicts, conflicts
            t0 = go()
            engine.apply(plan, kind="undo", undoes=txn.id)
    elif mode == "recover":
        engine = E.Engine(root, "recover")
        with engine.locked():  # what tui.changes.recover does
            t0 = go()
            engine.recover()
    else:
        raise ValueError("unknown mode " + mode)
    # One write: killed between "done ..." and its newline, the driver's own
    # "exit -9" line would run on behind it.
    sys.stdout.write("done %.6f\n" % (time.perf_counter() - t0))
    sys.stdout.flush()

for line in sys.stdin:
    req = json.loads(line)
    if req["mode"] == "plan":
        # Planning takes longer than applying: plan an install (at BEFORE) once,
        # and let every child that starts from BEFORE at that path apply it.
        plans[req["root"]] = plan(req["root"], req["env"]["DH_NOW"])
        print("exit 0", flush=True)
        continue
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.environ.clear()
            os.environ.update(req["env"])
            child(req["mode"], req["root"])
        except BaseException:
            print("error " + json.dumps(traceback.format_exc()), flush=True)
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("exit %d" % os.waitstatus_to_exitcode(status), flush=True)
'''


# -- the install's state -----------------------------------------------------


def snapshot(root: str) -> dict[str, tuple]:
    """rel path -> (kind, mode, uid, gid, bytes) of every entry but the journal."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and JOURNAL_DIR in dirnames:
            dirnames.remove(JOURNAL_DIR)
        rel_dir = os.path.relpath(dirpath, root)
        st = os.lstat(dirpath)
        out["." if rel_dir == "." else rel_dir] = ("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    data = fh.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            rel = os.path.relpath(path, root)
            out[rel] = ("f" if stat.S_ISREG(st.st_mode) else "o", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data)
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                st = os.lstat(os.path.join(dirpath, name))
                out[os.path.relpath(os.path.join(dirpath, name), root)] = ("l", 0, st.st_uid, st.st_gid, None)
    return out


def temp_files(root: str) -> list[str]:
    """Atomic-write temps anywhere in the install, and any *.tmp in its journal."""
    found = []
    journal = os.path.join(root, JOURNAL_DIR)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            if TEMP_RE.match(name) or (name.endswith(".tmp") and path.startswith(journal + os.sep)):
                found.append(os.path.relpath(path, root))
    return found


def journal_problems(root: str) -> list[str]:
    """Transactions left unfinished (no state, or prepared) after a command ran."""
    tdir = os.path.join(root, JOURNAL_DIR, "txn")
    problems: list[str] = []
    if not os.path.isdir(tdir):
        return problems
    for name in sorted(os.listdir(tdir)):
        try:
            with open(os.path.join(tdir, name, "state"), encoding="ascii") as fh:
                state = fh.read().strip()
        except FileNotFoundError:
            state = None
        if state not in ("applied", "rolled-back"):
            problems.append(f"txn {name} is {state or 'without state'}")
    return problems


def classify(now: dict, before: dict, after: dict) -> tuple[str | None, list[str]]:
    """("before" | "after" | None, entries that are neither wholly before nor wholly after)."""
    half = sorted(rel for rel in set(now) | set(before) | set(after)
                  if now.get(rel) not in (before.get(rel), after.get(rel)))
    if now == before:
        return "before", half
    if now == after:
        return "after", half
    return None, half


def describe(rel: str, now: dict, before: dict, after: dict) -> str:
    def short(v):
        if v is None:
            return "absent"
        kind, mode, uid, gid, data = v
        return f"{kind} {mode:04o} {uid}:{gid} {len(data) if data is not None else '-'}B"
    return f"{rel}: now {short(now.get(rel))}, before {short(before.get(rel))}, after {short(after.get(rel))}"


# -- running things ----------------------------------------------------------


KEYRING = "keyrings.alt.file.PlaintextKeyring"
NO_KEYRING = "keyring.backends.fail.Keyring"  # the engine falls back to its own 0600 file


def env_for(home: str, backend: str = KEYRING) -> dict:
    """A hermetic environment of the instant's own (keyring in its own HOME)."""
    os.makedirs(home, exist_ok=True)
    drop = ("DESTERLIB_DIR", "DESTER_HARDEN_DEBUG", "NO_COLOR", "DH_KILL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({"HOME": home, "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
                "XDG_CONFIG_HOME": os.path.join(home, ".config"), "LC_ALL": "C.UTF-8", "TERM": "xterm-256color",
                "PYTHON_KEYRING_BACKEND": backend, "DH_NOW": repr(FIXED_NOW),
                "DESTER_HARDEN_STATE_DIR": os.path.join(home, "state"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


@dataclass
class Run:
    rc: int
    out: str
    err: str
    duration: float | None  # seconds from "go" to done, when it finished


class Driver:
    """One fork server (see DRIVER); a thread's instants go through its own."""

    def __init__(self, path: str, home: str) -> None:
        os.makedirs(home, exist_ok=True)
        self.log = os.path.join(home, "driver.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, path, str(PROJECT)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, env=env_for(home), cwd=str(PROJECT))
        self.planned: set[str] = set()

    def run(self, mode: str, root: str, env: dict, delay: float | None) -> Run:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"mode": mode, "root": root, "env": env}) + "\n").encode())
        self.proc.stdin.flush()
        lines: list[str] = []
        err, duration = "", None
        while True:
            line = self.proc.stdout.readline().decode()
            if not line:
                with open(self.log, encoding="utf-8", errors="replace") as fh:
                    raise RuntimeError("the crash driver died: " + "".join(lines) + fh.read()[-3000:])
            lines.append(line)
            word, _, rest = line.strip().partition(" ")
            if word == "go" and delay is not None:
                time.sleep(delay)
                with suppress(ProcessLookupError):
                    os.kill(int(rest), signal.SIGKILL)
            elif word == "done":
                # Killed right after "done" was written: the "exit" line follows on the same line.
                rest, _, exited = rest.partition("exit ")
                duration = float(rest)
                if exited:
                    return Run(int(exited), "".join(lines), err, duration)
            elif word == "error":
                err = json.loads(rest)
            elif word == "exit":
                return Run(int(rest), "".join(lines), err, duration)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@dataclass
class Slot:
    """A copy of the template (at BEFORE when handed out), a HOME, and a driver of its own."""

    root: str
    home: str
    driver: Driver


def drive(slot: Slot, mode: str, delay: float | None = None, kill: str | None = None, backend: str = KEYRING) -> Run:
    """Run ``mode`` in a fresh child; SIGKILL it ``delay`` seconds after it says go (None: let it finish)."""
    d = slot.driver
    env = env_for(slot.home, backend)
    if mode in ("fix", "undo") and slot.root not in d.planned:  # the install is at BEFORE here
        run = d.run("plan", slot.root, env, None)
        assert run.rc == 0, run.err
        d.planned.add(slot.root)
    if kill:
        env["DH_KILL"] = kill
    return d.run(mode, slot.root, env, delay)


def copy_install(template_root: str, dest_parent: str) -> str:
    os.makedirs(dest_parent)
    dest = os.path.join(dest_parent, os.path.basename(template_root))
    subprocess.run(["cp", "-a", template_root, dest], check=True)
    return dest


def reset(root: str, before: dict) -> None:
    """Put a used copy back to BEFORE in place (creating thousands of files is slow; chmod is not)."""
    shutil.rmtree(os.path.join(root, JOURNAL_DIR), ignore_errors=True)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            if os.path.relpath(path, root) not in before:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
    for rel, (kind, mode, uid, gid, data) in sorted(before.items()):
        path = root if rel == "." else os.path.join(root, rel)
        if kind == "d":
            os.makedirs(path, exist_ok=True)
        elif kind == "f":
            try:
                with open(path, "rb") as fh:
                    same = fh.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                with open(path, "wb") as fh:
                    fh.write(data)
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)


class Installs:
    """Slots, handed out one per worker at a time, their copy reset to BEFORE."""

    def __init__(self, template_root: str, base: str, before: dict, driver: str) -> None:
        self.template_root, self.base, self.before, self.driver = template_root, base, before, driver
        self.free: list[Slot] = []
        self.all: list[Slot] = []
        self.count = 0
        self.lock = threading.Lock()

    def add(self) -> Slot:
        """A new copy, and a driver started now (so it runs the code as it is now)."""
        with self.lock:
            self.count += 1
            work = os.path.join(self.base, f"install-{self.count}")
        root = copy_install(self.template_root, work)
        slot = Slot(root, os.path.join(work, "home"), Driver(self.driver, os.path.join(work, "driver-home")))
        with self.lock:
            self.all.append(slot)
        return slot

    @contextmanager
    def get(self) -> Iterator[Slot]:
        with self.lock:
            slot = self.free.pop() if self.free else None
        if slot is None:
            slot = self.add()
        reset(slot.root, self.before)
        shutil.rmtree(slot.home, ignore_errors=True)
        os.makedirs(slot.home)
        yield slot
        with self.lock:  # not when the test failed: a broken copy is not reused
            self.free.append(slot)

    def close(self) -> None:
        for slot in self.all:
            slot.driver.close()


# -- the template ------------------------------------------------------------


@dataclass
class Template:
    base: str
    root: str
    driver: str
    before: dict
    after: dict
    apply_s: float
    undo_s: float
    recover_s: float
    installs: Installs


def build_media(root: str, n_files: int) -> None:
    library = os.path.join(root, "media", "Library")
    os.makedirs(library)
    os.chmod(library, 0o777)
    per_dir = 50
    for d in range(max(1, n_files // per_dir)):
        sub = os.path.join(library, f"Show {d:03d}")
        os.mkdir(sub)
        os.chmod(sub, (0o777, 0o755, 0o775)[d % 3])
        for f in range(per_dir):
            path = os.path.join(sub, f"Episode {f:02d}.mkv")
            with open(path, "wb") as fh:
                fh.write(b"\x1a\x45\xdf\xa3")
            os.chmod(path, (0o755, 0o666, 0o644, 0o777)[f % 4])


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Iterator[Template]:
    base = tmp_path_factory.mktemp("crash")
    driver = str(base / "driver.py")
    with open(driver, "w") as fh:
        fh.write(DRIVER)
    tdir = base / "template"
    tdir.mkdir()
    root = materialize(str(tdir))
    build_media(root, N_FILES)
    before = snapshot(root)

    installs = Installs(root, str(base), before, driver)
    installs.free.extend(installs.add() for _ in range(JOBS))

    def calibrate(mode: str, kill: str | None = None, then_recover: bool = False) -> tuple[dict, float]:
        times, states = [], []
        for _i in range(2):
            with installs.get() as slot:
                r = slot.root
                run = drive(slot, mode, kill=kill)
                if then_recover:
                    assert run.rc == -signal.SIGKILL, (run.rc, run.out, run.err)
                    run = drive(slot, "recover")
                assert run.rc == 0 and run.duration is not None, (mode, run.rc, run.out, run.err)
                assert not temp_files(r) and not journal_problems(r)
                times.append(run.duration)
                states.append(snapshot(r))
        assert states[0] == states[1], f"{mode}: two uninterrupted runs from the same template differ"
        return states[0], max(times)

    after, apply_s = calibrate("fix")
    assert after != before
    end, undo_s = calibrate("undo")
    assert end == before, "an uninterrupted fix then undo must give back the template byte for byte"
    end, recover_s = calibrate("fix", kill="state:applied=1", then_recover=True)
    assert end == before, "recovery of a fully applied but uncommitted fix must give back the template"
    changed = sum(1 for k in before if before[k] != after.get(k))
    print(f"\ncrash template: {len(before)} entries, {changed} changed by the fix; apply {apply_s * 1000:.0f} ms, "
          f"undo {undo_s * 1000:.0f} ms, recovery {recover_s * 1000:.0f} ms; seed {SEED}")
    yield Template(str(base), root, driver, before, after, apply_s, undo_s, recover_s, installs)
    installs.close()


# -- checking one instant ----------------------------------------------------

NEXT_COMMANDS = (
    ("audit", "--format", "json"),
    ("history",),
    ("fix", "--dry-run"),
)


def after_next_command(t: Template, root: str, home: str, label: str, i: int, allowed: tuple[str, ...],
                       full: bool, backend: str = KEYRING) -> str:
    """Run the next command, check everything; return "before" or "after"."""
    cmd = NEXT_COMMANDS[i % len(NEXT_COMMANDS)]
    env = env_for(home, backend)
    res = run_cli(*cmd, "--dir", root, env=env)
    where = f"{label}; next command: {' '.join(cmd)}"
    assert res.code in (0, 1), f"{where}: exit {res.code}\n{res.err}"
    assert "Traceback" not in res.err and "internal error" not in res.err, f"{where}: {res.err}"
    if cmd[0] == "audit":
        json.loads(res.out)
    assert not journal_problems(root), f"{where}: {journal_problems(root)}"
    temps = temp_files(root)
    assert not temps, f"{where}: temp files left: {temps}"
    now = snapshot(root)
    state, half = classify(now, t.before, t.after)
    assert not half, f"{where}: half state:\n" + "\n".join(describe(r, now, t.before, t.after) for r in half[:10])
    assert state is not None, f"{where}: every entry is before or after, but the install mixes the two"
    assert state in allowed, f"{where}: ended {state}, expected one of {allowed}"
    assert not has_unfinished(root), f"{where}: the journal still says a transaction is unfinished"
    if full:
        full_cycle(t, root, env, where)
    return state


def full_cycle(t: Template, root: str, env: dict, where: str) -> None:
    """fix --yes, then undo --last --yes until nothing is left: back to BEFORE, byte for byte."""
    res = run_cli("fix", "--yes", "--dir", root, env=env)
    assert res.code in (0, 1), f"{where}: fix --yes after recovery: exit {res.code}\n{res.out}\n{res.err}"
    for _ in range(4):
        res = run_cli("undo", "--last", "--yes", "--dir", root, env=env)
        if res.code != 0:
            break
    assert res.code == 2 and "nothing to undo" in res.err, \
        f"{where}: undo --last after recovery: exit {res.code}\n{res.out}\n{res.err}"
    now = snapshot(root)
    diff = [r for r in sorted(set(now) | set(t.before)) if now.get(r) != t.before.get(r)]
    assert not diff, f"{where}: fix + undo did not give back BEFORE:\n" + "\n".join(
        describe(r, now, t.before, t.after) for r in diff[:10])
    assert not temp_files(root) and not journal_problems(root), where


def run_instants(t: Template, kind: str, n: int) -> dict[str, int]:
    """n random kill instants of ``kind``: fix, undo, or recover (of a fully applied, uncommitted fix)."""
    rng = random.Random(f"{SEED}-{kind}")
    span = {"fix": t.apply_s, "undo": t.undo_s, "recover": t.recover_s}[kind] * 1.1
    delays = [rng.uniform(0, span) for _ in range(n)]
    allowed = {"fix": ("before", "after"), "undo": ("after", "before"), "recover": ("before",)}[kind]

    def one(i: int) -> tuple[str, bool]:
        label = f"seed {SEED}, {kind} instant {i}, delay {delays[i] * 1000:.2f} ms of {span * 1000:.1f}"
        with t.installs.get() as slot:
            root, home = slot.root, slot.home
            if kind == "recover":
                run = drive(slot, "fix", kill="state:applied=1")
                assert run.rc == -signal.SIGKILL, f"{label}: {run.out} {run.err}"
                run = drive(slot, "recover", delay=delays[i])
            else:
                run = drive(slot, kind, delay=delays[i])
            assert run.rc in (0, -signal.SIGKILL), f"{label}: driver exit {run.rc}\n{run.out}\n{run.err}"
            state = after_next_command(t, root, home, label, i, allowed, full=(i % FULL_EVERY == 0))
        return state, run.rc == -signal.SIGKILL

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        results = list(pool.map(one, range(n)))
    summary = {"killed": sum(k for _, k in results), "before": sum(s == "before" for s, _ in results),
               "after": sum(s == "after" for s, _ in results)}
    print(f"\n{kind}: {n} instants, {summary}")
    return summary


# -- random instants ----------------------------------------------------------


def test_kill_during_apply_at_random_instants(template):
    s = run_instants(template, "fix", N_APPLY)
    if N_APPLY >= 20:
        assert s["killed"] >= N_APPLY // 4, f"seed {SEED}: too few instants hit the apply: {s}"
        assert s["before"] >= 1, f"seed {SEED}: no instant was rolled back: {s}"


def test_kill_during_undo_at_random_instants(template):
    s = run_instants(template, "undo", N_UNDO)
    if N_UNDO >= 20:
        assert s["killed"] >= N_UNDO // 4, f"seed {SEED}: too few instants hit the undo: {s}"
        assert s["after"] >= 1, f"seed {SEED}: no undo was rolled back: {s}"


def test_kill_during_recovery_at_random_instants(template):
    s = run_instants(template, "recover", N_RECOVER)
    if N_RECOVER >= 10:
        assert s["killed"] >= N_RECOVER // 4, f"seed {SEED}: too few instants hit the recovery: {s}"


# -- deterministic instants ----------------------------------------------------


@pytest.fixture
def install(template):
    """A copy of the template at BEFORE, a HOME and a driver of its own."""
    with template.installs.get() as slot:
        yield slot


#: (mode, kill point, the state the install must end in)
EDGES = [
    ("fix", "mkdir=1", "before"),                 # an empty transaction directory
    ("fix", "write:b0=1", "before"),              # killed while writing the blobs
    ("fix", "write:intent.json=1", "before"),     # blobs, no intent
    ("fix", "state:prepared=1", "before"),        # intent, no state: discarded
    ("fix", "replace=1", "before"),               # first temp written, not renamed
    ("fix", "entry=1", "before"),                 # one file replaced, the rest not
    ("fix", "replace=2", "before"),
    ("fix", "entry=3", "before"),                 # files done, a mode changed
    ("fix", "chmod=1", "before"),                 # the media walk has begun
    ("fix", "chmod=700", "before"),               # mid media walk
    ("fix", "records-cut=1", "before"),           # a group of chmod records half written
    ("fix", "records-cut=9", "before"),
    ("fix", "state:applied=1", "before"),         # everything done but the commit
    ("fix", "state-done:applied=1", "after"),     # committed
    ("undo", "state:prepared=1", "after"),
    ("undo", "replace=1", "after"),
    ("undo", "entry=1", "after"),
    ("undo", "chmod=700", "after"),
    ("undo", "records-cut=5", "after"),
    ("undo", "write:undone-by=1", "after"),       # the fix's "undone-by" mark, before the commit
    ("undo", "state:applied=1", "after"),         # undone on disk and marked, not committed
    ("undo", "state-done:applied=1", "before"),
    # keyrings.alt rewrites its file in place: a kill there must not cost the fix its secrets.
    ("undo", "keyring-write=1", "after"),
    ("undo", "keyring-write=2", "after"),
    ("undo", "keyring-write=3", "after"),
]
#: Without any keyring: the secrets go to the journal's own 0600 file.
FILE_EDGES = [
    ("fix", "write:secrets=1", "before"),
    ("undo", "write:secrets=1", "after"),
    ("fix", "entry=1", "before"),
    ("undo", "write:undone-by=1", "after"),
]
ALL_EDGES = [(m, k, e, KEYRING) for m, k, e in EDGES] + [(m, k, e, NO_KEYRING) for m, k, e in FILE_EDGES]


def optional(point: str) -> bool:
    """Points our code may rightly never pass (the keyring file is not written on every path)."""
    return point.startswith("keyring-write")


@pytest.mark.parametrize("mode,kill,expected,backend", ALL_EDGES,
                         ids=[f"{m}-{k}" + ("-nokeyring" if b == NO_KEYRING else "") for m, k, _, b in ALL_EDGES])
def test_kill_at_named_point(template, install, mode, kill, expected, backend):
    root, home = install.root, install.home
    run = drive(install, mode, kill=kill, backend=backend)
    if optional(kill) and run.rc == 0:
        expected = "before" if mode == "undo" else "after"
    else:
        assert run.rc == -signal.SIGKILL, f"{kill} was never reached: exit {run.rc}\n{run.out}\n{run.err}"
    if mode == "fix" and expected == "before" and kill.split("=")[0] in (
            "mkdir", "write:b0", "write:intent.json", "state:prepared", "write:secrets"):
        assert snapshot(root) == template.before, f"{kill}: the install changed before the transaction was prepared"
    # The full fix + undo afterwards matters most where the journal or the secrets are at stake.
    full = mode == "undo" or backend == NO_KEYRING or "secrets" in kill or kill.startswith("state")
    state = after_next_command(template, root, home, f"kill at {kill} of {mode}", 0, (expected,), full=full,
                               backend=backend)
    assert state == expected
    secrets = os.path.join(home, "state", "secrets")
    if os.path.isdir(secrets):
        live = set(os.listdir(os.path.join(root, JOURNAL_DIR, "txn")))
        orphans = [n for n in os.listdir(secrets) if n.removesuffix(".json") not in live]
        assert not orphans, f"{kill}: secrets of discarded transactions kept: {orphans}"


# Kills during recovery itself: the recovery of the recovery must still finish.
RECOVERY_EDGES = [
    ("fix", "state:applied=1", "restore=1"),
    ("fix", "state:applied=1", "replace-r=1"),
    ("fix", "state:applied=1", "replace-r=2"),
    ("fix", "state:applied=1", "chmod=700"),
    ("fix", "state:applied=1", "state:rolled-back=1"),
    ("fix", "state:applied=1", "keyring-write=1"),
    ("fix", "entry=2", "replace-r=1"),
    ("fix", "state:prepared=1", "discard-cut=1"),
    ("fix", "write:intent.json=1", "discard-cut=1"),
    ("undo", "state:applied=1", "replace-r=1"),
    ("undo", "state:applied=1", "chmod=700"),
    ("undo", "state:applied=1", "keyring-write=1"),
    ("undo", "write:undone-by=1", "restore=1"),
]


@pytest.mark.parametrize("mode,first,second", RECOVERY_EDGES, ids=[f"{m}-{a}-then-{b}" for m, a, b in RECOVERY_EDGES])
def test_kill_during_recovery_at_named_point(template, install, mode, first, second):
    root, home = install.root, install.home
    run = drive(install, mode, kill=first)
    assert run.rc == -signal.SIGKILL, f"{first} was never reached: exit {run.rc}\n{run.err}"
    run = drive(install, "recover", kill=second)
    if not (optional(second) and run.rc == 0):
        assert run.rc == -signal.SIGKILL, f"{second} was never reached during recovery: exit {run.rc}\n{run.err}"
    expected = "before" if mode == "fix" else "after"
    state = after_next_command(template, root, home, f"kill at {first} of {mode}, then at {second} of its recovery",
                               1, (expected,), full=True)
    assert state == expected


def test_leftover_temp_of_an_unfinished_transaction_is_removed(template, install):
    """A temp file next to a config file, named for the prepared transaction, goes with the rollback."""
    root, home = install.root, install.home
    run = drive(install, "fix", kill="replace=2")
    assert run.rc == -signal.SIGKILL
    temps = temp_files(root)
    assert temps, "the kill between write and rename should have left a temp file"
    assert has_prepared(root)
    state = after_next_command(template, root, home, "leftover temp", 0, ("before",), full=False)
    assert state == "before"


def has_prepared(root: str) -> bool:
    return any("prepared" in p for p in journal_problems(root))


def test_intent_without_state_is_discarded_and_nothing_changes(template, install):
    """Killed while journaling (no keyring, so its secrets are in the journal's file): all of it goes."""
    root, home = install.root, install.home
    run = drive(install, "fix", kill="state:prepared=1", backend=NO_KEYRING)
    assert run.rc == -signal.SIGKILL
    tdir = os.path.join(root, JOURNAL_DIR, "txn")
    (txn,) = os.listdir(tdir)
    assert os.path.exists(os.path.join(tdir, txn, "intent.json"))
    assert not os.path.exists(os.path.join(tdir, txn, "state"))
    secrets = os.path.join(home, "state", "secrets", f"{txn}.json")
    assert os.path.exists(secrets)
    assert snapshot(root) == template.before
    res = run_cli("audit", "--dir", root, "--format", "json", env=env_for(home, NO_KEYRING))
    assert res.code in (0, 1), res.err
    assert not os.path.exists(os.path.join(tdir, txn)), "an unstarted transaction must be discarded"
    assert not os.path.exists(secrets), "the secrets of a discarded transaction must go with it"
    assert snapshot(root) == template.before
    assert not temp_files(root) and not journal_problems(root)
