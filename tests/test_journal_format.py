"""Journal formats: what the previous release wrote is still undone and recovered; unknown formats are refused.

The journals below are written by hand exactly as the release before typed
entries laid them out (intent format 2, entries without a ``format``), so a
change to how entries are read cannot quietly drop them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from checks.change.engine import Engine, recover_install
from checks.change.intent import BadJournal
from checks.change.journal import JOURNAL_DIR, history, list_txns
from tests.conftest import run_cli

TXN = "20260101T000000-abcdef"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_install(tmp_path: Path) -> Path:
    root = tmp_path / "desterlib"
    root.mkdir()
    (root / "docker-compose.yml").write_bytes(b"services: {}\n")
    return root


def legacy_txn(root: Path, state: str, txn: str = TXN) -> Path:
    """A fix as the previous release journaled it: .env rewritten, a file created, a mode changed."""
    env, new, compose = root / ".env", root / "new.conf", root / "docker-compose.yml"
    before, after, created = b"A=1\n", b"A=2\n", b"fresh\n"
    env.write_bytes(after)
    env.chmod(0o600)
    new.write_bytes(created)
    new.chmod(0o600)
    compose.chmod(0o600)
    tdir = root / JOURNAL_DIR / "txn" / txn
    tdir.mkdir(parents=True)
    for d in (root / JOURNAL_DIR, root / JOURNAL_DIR / "txn", tdir):
        d.chmod(0o700)
    blobs = {"b0": before, "a0": after, "a1": created}
    for name, data in blobs.items():
        (tdir / name).write_bytes(data)
        (tdir / name).chmod(0o600)
    uid, gid = os.geteuid(), os.getegid()
    intent = {
        "format": 2, "id": txn, "kind": "fix", "checks": ["SEC-001", "FS-001"], "undoes": None,
        "secret_store": None, "by": {"pid": 1, "user": "root", "host": "h", "command": "fix", "since": "x"},
        "install": str(root), "named": [],
        "entries": [
            {"type": "file", "path": str(env), "before_sha": sha(before), "before": "b0", "after_sha": sha(after),
             "after": "a0", "mode": 0o600, "uid": uid, "gid": gid},
            {"type": "file", "path": str(new), "before_sha": None, "before": None, "after_sha": sha(created),
             "after": "a1", "mode": 0o600, "uid": uid, "gid": gid},
            {"type": "mode", "path": str(compose), "before": 0o644, "after": 0o600},
        ],
    }
    (tdir / "intent.json").write_text(json.dumps(intent, indent=1))
    (tdir / "state").write_bytes(state.encode().ljust(16))
    for name in ("intent.json", "state"):
        (tdir / name).chmod(0o600)
    return tdir


def assert_before(root: Path) -> None:
    assert (root / ".env").read_bytes() == b"A=1\n"
    assert not (root / "new.conf").exists()
    assert (root / "docker-compose.yml").stat().st_mode & 0o777 == 0o644


def test_a_journal_of_the_previous_release_is_undone(tmp_path):
    root = make_install(tmp_path)
    legacy_txn(root, "applied")
    engine = Engine(str(root), "undo")
    with engine.locked():
        txn = engine.find(None)
        plan, conflicts = engine.undo_plan(txn)
        assert not conflicts
        engine.apply(plan, kind="undo", undoes=txn.id)
    assert_before(root)
    [summary] = [s for s in history(str(root)) if s.id == TXN]
    assert summary.undone_by and summary.files == [".env", "docker-compose.yml", "new.conf"]


def test_a_journal_of_the_previous_release_is_recovered(tmp_path):
    root = make_install(tmp_path)
    legacy_txn(root, "prepared")
    messages = recover_install(str(root))
    assert messages and "rolled back" in messages[0]
    assert_before(root)
    assert [t.state for t in list_txns(str(root))] == ["rolled-back"]


@pytest.mark.parametrize("where", ["entry", "intent"])
def test_an_unknown_format_is_refused_with_one_line_and_nothing_is_done(tmp_path, where):
    root = make_install(tmp_path)
    tdir = legacy_txn(root, "prepared")
    intent = json.loads((tdir / "intent.json").read_text())
    if where == "entry":
        intent["entries"][0]["format"] = 99
    else:
        intent["format"] = 99
    (tdir / "intent.json").write_text(json.dumps(intent))
    with pytest.raises(BadJournal, match="format"):
        recover_install(str(root))
    assert (root / ".env").read_bytes() == b"A=2\n" and (root / "new.conf").exists()
    res = run_cli("fix", "--dir", str(root), "--dry-run")
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "format" in lines[0] and "Traceback" not in res.err
    assert (root / ".env").read_bytes() == b"A=2\n" and (root / "new.conf").exists()
