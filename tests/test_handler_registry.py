"""A new change kind is one handler registered, and nothing else.

The kind here exists only in this test: ``Stamp`` writes a value into a file
of a side directory (outside the engine's confined file operations, as a
host change would be). It is applied next to an ordinary file edit, killed
(SIGKILL) at seeded random instants, recovered, and undone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checks.change import handlers as H
from checks.change.engine import Engine, recover_install
from checks.change.journal import list_txns
from checks.change.plan import FileEdit, Plan
from tests.conftest import PROJECT

SEED = int(os.environ.get("DH_CRASH_SEED", "") or "20260901") if os.environ.get("DH_CRASH_SEED") != "random" \
    else int.from_bytes(os.urandom(4), "big")
N_STAMPS = 12
INSTANTS = int(os.environ.get("DH_REGISTRY_INSTANTS", "8"))


@dataclass(frozen=True)
class Stamp:
    """Write ``value`` into ``path`` (whole file)."""

    path: str
    value: str


@dataclass(frozen=True, slots=True)
class StampEntry(H.Entry):
    TYPE = "test-stamp"
    path: str
    before: str | None
    after: str


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None


def _write(path: str, value: str | None) -> None:
    if value is None:
        if os.path.exists(path):
            os.unlink(path)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(value)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class StampHandler:
    entry_type = "test-stamp"
    changes: tuple[type, ...] = (Stamp,)

    def prepare(self, change: Stamp, index: int, ctx: H.Context) -> H.Prepared:
        return H.Prepared(StampEntry(change.path, _read(change.path), change.value))

    def load(self, raw: dict[str, Any], loader: Any) -> StampEntry:
        return StampEntry(loader.path(raw.get("path"), "stamp"), raw.get("before"), loader.text(raw.get("after"), "v"))

    def apply(self, entry: StampEntry, ctx: H.Context) -> None:
        time.sleep(float(os.environ.get("STAMP_DELAY", "0")))  # spreads the apply over time for the kills
        _write(entry.path, entry.after)

    def rollback(self, entry: StampEntry, ctx: H.Context) -> list[str]:
        if os.path.exists(entry.path + ".tmp"):  # killed between its write and its rename
            os.unlink(entry.path + ".tmp")
        if _read(entry.path) == entry.after:
            _write(entry.path, entry.before)
        return []

    def undo(self, entry: StampEntry, ctx: H.Context) -> tuple[list[Any], list[H.UndoConflict]]:
        return [Stamp(entry.path, entry.before or "")], []

    def headline(self, changes: Sequence[Stamp]) -> str | None:
        return f"{len(changes)} stamp(s)" if changes else None

    def describe(self, changes: Sequence[Stamp], root: str, masker: Any) -> list[str]:
        return [f"stamp {c.path} = {c.value}" for c in changes]

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return [str(raw["path"])], []


STAMPS = StampHandler()


@pytest.fixture
def stamp_kind():
    H.register(STAMPS)
    yield STAMPS
    H.unregister(STAMPS)


def make_site(tmp_path: Path) -> tuple[Path, Path, Plan]:
    root, side = tmp_path / "install", tmp_path / "side"
    root.mkdir(parents=True)
    side.mkdir()
    (root / ".env").write_bytes(b"A=1\n")
    for i in range(N_STAMPS):
        (side / f"s{i}").write_text("old")
    plan = Plan(checks=["TEST-1"])
    plan.changes.append(FileEdit(str(root / ".env"), b"A=1\n", b"A=2\n"))
    plan.changes += [Stamp(str(side / f"s{i}"), f"new{i}") for i in range(N_STAMPS)]  # type: ignore[misc]
    return root, side, plan


def state_of(root: Path, side: Path) -> str | None:
    env = (root / ".env").read_bytes()
    stamps = [(side / f"s{i}").read_text() for i in range(N_STAMPS)]
    leftovers = [p.name for p in side.iterdir() if p.name.endswith(".tmp")]
    if env == b"A=1\n" and stamps == ["old"] * N_STAMPS and not leftovers:
        return "before"
    if env == b"A=2\n" and stamps == [f"new{i}" for i in range(N_STAMPS)] and not leftovers:
        return "after"
    return None


def test_a_registered_kind_is_applied_previewed_listed_and_undone(tmp_path, stamp_kind):
    from checks.change.journal import history
    from checks.change.preview import render

    root, side, plan = make_site(tmp_path)
    text = render(plan, str(root))
    assert f"{N_STAMPS} stamp(s)" in text and f"stamp {side / 's0'} = new0" in text
    result = Engine(str(root)).apply(plan)
    assert state_of(root, side) == "after"
    assert str(side / "s3") in history(str(root))[-1].files
    engine = Engine(str(root), "undo")
    undo, conflicts = engine.undo_plan(result.txn)
    assert not conflicts
    engine.apply(undo, kind="undo", undoes=result.txn.id)
    assert state_of(root, side) == "before"


CHILD = r'''
import os, sys
sys.path.insert(0, sys.argv[1])
from checks.change import handlers as H
from checks.change.engine import Engine
from tests.test_handler_registry import STAMPS, make_site
from pathlib import Path
H.register(STAMPS)
tmp = Path(sys.argv[2])
root, side, plan = make_site(tmp)
print("go", flush=True)
Engine(str(root)).apply(plan)
print("done", flush=True)
'''


def run_child(tmp: Path, delay: float | None) -> tuple[int, float]:
    env = dict(os.environ, STAMP_DELAY="0.01")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(PROJECT), str(tmp)], stdout=subprocess.PIPE,
                            env=env, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "go"
    t0 = time.perf_counter()
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode, time.perf_counter() - t0


def test_a_registered_kind_survives_a_kill_at_random_instants(tmp_path, stamp_kind):
    code, span = run_child(tmp_path / "measure", None)
    assert code == 0
    rng = random.Random(f"{SEED}-registry")
    seen = set()
    for i in range(INSTANTS):
        delay = rng.uniform(0, span)
        where = f"seed {SEED}, instant {i}, delay {delay * 1000:.1f} ms of {span * 1000:.1f}"
        tmp = tmp_path / f"i{i}"
        code, _ = run_child(tmp, delay)
        root, side = tmp / "install", tmp / "side"
        recover_install(str(root))
        state = state_of(root, side)
        assert state in ("before", "after"), f"{where}: neither wholly before nor wholly after"
        seen.add(state)
        txns = list_txns(str(root))
        assert all(t.state in ("applied", "rolled-back") for t in txns), f"{where}: {[t.state for t in txns]}"
        if state == "after":
            engine = Engine(str(root), "undo")
            with engine.locked():
                txn = engine.find(None)
                undo, conflicts = engine.undo_plan(txn)
                assert not conflicts, where
                engine.apply(undo, kind="undo", undoes=txn.id)
            assert state_of(root, side) == "before", f"{where}: undo did not give the before back"
    assert "before" in seen, f"seed {SEED}: no instant interrupted the apply"


def test_progress_log_says_which_entries_ran(tmp_path, stamp_kind):
    root, side, plan = make_site(tmp_path)
    result = Engine(str(root)).apply(plan)
    lines = (Path(result.txn.dir) / "progress").read_text().split("\n")
    assert lines[:2] == ["started 0", "done 0"] and f"done {N_STAMPS}" in lines
    intent = json.loads((Path(result.txn.dir) / "intent.json").read_text())
    assert {e["format"] for e in intent["entries"]} == {1}


def test_recovery_skips_entries_the_progress_log_says_never_started(tmp_path, stamp_kind):
    """A stamp rolled back although it never ran would overwrite a value someone wrote since."""
    root, side, plan = make_site(tmp_path)
    result = Engine(str(root)).apply(plan)
    txn = result.txn
    # As a kill after the second entry leaves it: the rest never started.
    (Path(txn.dir) / "progress").write_text("started 0\ndone 0\nstarted 1\ndone 1\n")
    txn.set_state("prepared")
    for i in range(1, N_STAMPS):
        (side / f"s{i}").write_text(f"new{i}")  # the values a later entry would have written, by someone else
    recover_install(str(root))
    assert (root / ".env").read_bytes() == b"A=1\n"
    assert (side / "s0").read_text() == "old"
    assert [(side / f"s{i}").read_text() for i in range(1, N_STAMPS)] == [f"new{i}" for i in range(1, N_STAMPS)]
