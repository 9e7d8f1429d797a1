"""The journal as an attack surface: an unprivileged owner (uid 65534) attacking root.

Root runs dester-harden on an installation another user owns; whatever the
journal says decides what root writes where. Every attack plants a journal (or
a part of one) and runs a command as root; a *victim tree* outside the
installation (root-owned files: a passwd, a copy of bash, a daemon.json, a
directory of directories, a root-only file) must stay byte for byte as it was,
the command must say in one line which path it refused and who owns it, and
an audit must still run (exit 0 or 1, never 3).

Also here: root's own journal outside an installation it does not own, the
move of an installation between a fix and its undo, the validation of journal
entries, and the faults that must tell the truth (a failing commit, a journal
that cannot be locked, SIGTERM mid-apply, a forced undo followed by another).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
from pathlib import Path

import pytest

from checks.change import treerecords as _records
from checks.core.names import JOURNAL_DIR

from .conftest import run_cli
from .installs import cli_install, tree_snapshot

NOBODY = 65534
CMDS = {
    "audit": ["audit"],
    "history": ["history"],
    "undo-dry-run": ["undo", "--dry-run"],
    "undo-last-yes": ["undo", "--last", "--yes"],
    "fix-dry-run": ["fix", "--dry-run"],
    "fix-yes": ["fix", "--yes"],
}
TXN = "20260101T000000-a1b2c3"
EVIL = b"evil::0:0::/root:/bin/sh\n"
SECRET = b"ROOT-ONLY-SECRET-4242\n"


def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the attack tests must run as root in CI")
        pytest.skip("attack tests run as root (the installation belongs to uid 65534, the command runs as root)")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def content(top: Path) -> dict:
    """:func:`tree_snapshot` without inodes (an atomic replace makes a new one) and without the journal."""
    return tree_snapshot(top, skip=(JOURNAL_DIR,))


def chown_tree(top: Path, uid: int = NOBODY) -> None:
    for d, dirs, files in os.walk(top):
        os.lchown(d, uid, uid)
        for n in dirs + files:
            os.lchown(os.path.join(d, n), uid, uid)


@pytest.fixture
def victim(tmp_path) -> Path:
    """Root's files outside the installation, the targets of every attack."""
    v = tmp_path / "victim"
    (v / "etc").mkdir(parents=True)
    (v / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/bash\n")
    os.chmod(v / "etc" / "passwd", 0o644)
    (v / "bin").mkdir()
    (v / "bin" / "bash").write_bytes(b"\x7fELF not really bash\n")
    os.chmod(v / "bin" / "bash", 0o755)
    (v / "docker").mkdir()
    (v / "docker" / "daemon.json").write_bytes(b'{"userns-remap": "default"}\n')
    (v / "shadow").write_bytes(SECRET)
    os.chmod(v / "shadow", 0o600)
    for sub in ("a", "b", "c"):
        (v / "tree" / sub).mkdir(parents=True)
        (v / "tree" / sub / "file").write_bytes(b"x")
        os.chmod(v / "tree" / sub / "file", 0o644)
    os.chmod(v, 0o755)
    return v


@pytest.fixture
def attacked(tmp_path):
    """An installation owned by uid 65534 (its home and media too), and a host root for the TLS checks."""
    need_root()
    os.chmod(tmp_path, 0o755)  # 65534 must reach its own home
    home = tmp_path / "alice"
    home.mkdir()
    root = cli_install(home)
    host = tmp_path / "host"
    host.mkdir()
    chown_tree(home)
    return root, host


def plant_txn(journal: Path, txn: str, intent: dict, blobs: dict[str, bytes], state: str | None = "prepared") -> Path:
    d = journal / "txn" / txn
    d.mkdir(parents=True, exist_ok=True)
    for name, data in blobs.items():
        (d / name).write_bytes(data)
    (d / "intent.json").write_text(json.dumps({"id": txn, "kind": "fix", "checks": ["FS-001"], "undoes": None,
                                               "secret_store": None, **intent}))
    if state is not None:
        (d / "state").write_text(state)
    return d


def passwd_and_setuid_attack(journal: Path, victim: Path) -> None:
    """A prepared transaction whose rollback writes a uid-0 line into a passwd and setuid onto bash."""
    passwd = victim / "etc" / "passwd"
    current = passwd.read_bytes()
    plant_txn(journal, TXN, {"entries": [
        {"type": "file", "path": str(passwd), "before_sha": sha(current + EVIL), "before": "b0",
         "after_sha": sha(current), "after": "a0", "mode": 0o666, "uid": 0, "gid": 0},
        {"type": "mode", "path": str(victim / "bin" / "bash"), "before": 0o4755, "after": 0o755},
    ]}, {"b0": current + EVIL, "a0": current})


def tree_attack(journal: Path, victim: Path) -> None:
    """Bulk-chmod records that would give 0777 to every entry of a root-owned tree."""
    top = victim / "tree"
    st = os.lstat(top)
    groups = []
    for d, dirs, files in os.walk(top):
        dst = os.lstat(d)
        recs = []
        for n in dirs + files:
            est = os.lstat(os.path.join(d, n))
            # The current format, fingerprints and all: an attacker can compute them too.
            recs.append(_records.RECORD.pack(est.st_ino, 0o7777 & 0o777, stat.S_IMODE(est.st_mode),
                                             _records.fingerprint(est)))
        for dir_ino in {dst.st_ino, 0 if d == str(top) else dst.st_ino}:
            groups.append(_records.HEADER.pack(st.st_dev, dir_ino, len(recs)) + b"".join(recs))
    plant_txn(journal, TXN, {"entries": [{"type": "tree", "root": str(top), "records": "tree0.bin"}]},
              {"tree0.bin": _records.MAGIC + b"".join(groups)})


def txn_symlink_attack(journal: Path, victim: Path) -> None:
    """``txn`` a link to a directory of directories: 'unstarted transactions' that recovery would delete."""
    journal.mkdir(parents=True, exist_ok=True)
    os.symlink(victim / "tree", journal / "txn")


def secrets_symlink_attack(journal: Path, victim: Path) -> None:
    """``secrets`` a link to /etc/docker, and an unstarted transaction named 'daemon'."""
    (journal / "txn" / "daemon").mkdir(parents=True)
    os.symlink(victim / "docker", journal / "secrets")


def abs_blob_attack(journal: Path, victim: Path, root: Path) -> None:
    """An applied transaction whose blob names a root-only file: undo --dry-run would print it."""
    env = root / ".env"
    cur = env.read_bytes()
    plant_txn(journal, TXN, {"entries": [
        {"type": "file", "path": str(env), "before_sha": sha(SECRET), "before": str(victim / "shadow"),
         "after_sha": sha(cur), "after": "../../../../victim/shadow", "mode": 0o644, "uid": 0, "gid": 0},
    ]}, {}, state="applied")


ATTACKS = {
    "passwd-setuid": lambda j, v, r: passwd_and_setuid_attack(j, v),
    "tree-records": lambda j, v, r: tree_attack(j, v),
    "txn-symlink": lambda j, v, r: txn_symlink_attack(j, v),
    "secrets-symlink": lambda j, v, r: secrets_symlink_attack(j, v),
    "absolute-blob": abs_blob_attack,
}


def check_run(r, victim_before, victim, may_warn=True):
    assert "Traceback" not in r.out + r.err and "internal error" not in r.err, r.out + r.err
    assert r.code != 3, r.err
    assert tree_snapshot(victim, inodes=True) == victim_before, "the victim tree outside the installation changed"
    assert SECRET.decode().strip() not in r.out + r.err


# -- an installation owned by uid 65534: root never reads the owner's journal -------


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("cmd", sorted(CMDS))
def test_owner_planted_journal_is_never_read_by_root(attacked, victim, attack, cmd):
    root, host = attacked
    journal = root / JOURNAL_DIR
    ATTACKS[attack](journal, victim, root)
    chown_tree(journal)
    before, planted = tree_snapshot(victim, inodes=True), tree_snapshot(journal)
    args = CMDS[cmd] + ["--dir", str(root)] + (["--host-root", str(host)] if cmd.startswith("fix") else [])
    r = run_cli(*args)
    check_run(r, before, victim)
    assert tree_snapshot(journal) == planted, "root touched the owner's journal"
    if cmd == "audit":
        assert r.code in (0, 1) and "warning" not in r.err, r.err  # no noise in every cron audit


def test_root_session_recover_ignores_the_owners_journal(attacked, victim):
    from checks.assistant.session import Session

    root, host = attacked
    journal = root / JOURNAL_DIR
    passwd_and_setuid_attack(journal, victim)
    chown_tree(journal)
    before = tree_snapshot(victim, inodes=True)
    assert Session(str(root), host_root=str(host)).recover() == []
    assert tree_snapshot(victim, inodes=True) == before


# -- a root-owned installation whose journal (or a part of it) another user could write --


def _root_install(tmp_path) -> tuple[Path, Path]:
    need_root()
    (tmp_path / "opt").mkdir(exist_ok=True)
    root = cli_install(tmp_path / "opt")
    host = tmp_path / "host"
    host.mkdir(exist_ok=True)
    return root, host


def _owned_by_nobody(journal: Path, victim: Path, root: Path) -> str:
    passwd_and_setuid_attack(journal, victim)
    chown_tree(journal)
    return str(journal)


def _txn_dir_nobody(journal: Path, victim: Path, root: Path) -> str:
    passwd_and_setuid_attack(journal, victim)
    chown_tree(journal / "txn" / TXN)
    return str(journal / "txn" / TXN)


def _intent_symlink(journal: Path, victim: Path, root: Path) -> str:
    passwd_and_setuid_attack(journal, victim)
    intent = journal / "txn" / TXN / "intent.json"
    elsewhere = victim.parent / "planted-intent.json"
    shutil.move(intent, elsewhere)
    os.symlink(elsewhere, intent)
    return str(intent)


def _state_symlink(journal: Path, victim: Path, root: Path) -> str:
    passwd_and_setuid_attack(journal, victim)
    state = journal / "txn" / TXN / "state"
    elsewhere = victim.parent / "planted-state"
    shutil.move(state, elsewhere)
    os.symlink(elsewhere, state)
    return str(state)


def _group_writable(journal: Path, victim: Path, root: Path) -> str:
    passwd_and_setuid_attack(journal, victim)
    os.chmod(journal / "txn", 0o770)
    return str(journal / "txn")


def _journal_symlink(journal: Path, victim: Path, root: Path) -> str:
    other = victim.parent / "attacker-journal"
    passwd_and_setuid_attack(other, victim)
    chown_tree(other)
    os.symlink(other, journal)
    return str(journal)


def _txn_symlink(journal: Path, victim: Path, root: Path) -> str:
    txn_symlink_attack(journal, victim)
    return str(journal / "txn")


def _secrets_symlink(journal: Path, victim: Path, root: Path) -> str:
    secrets_symlink_attack(journal, victim)
    return str(journal / "secrets")


def _blob_file_nobody(journal: Path, victim: Path, root: Path) -> str:
    passwd_and_setuid_attack(journal, victim)
    os.lchown(journal / "txn" / TXN / "b0", NOBODY, NOBODY)
    return str(journal / "txn" / TXN / "b0")


UNTRUSTED = {
    "journal-owned-by-65534": (_owned_by_nobody, "65534"),
    "txn-dir-owned-by-65534": (_txn_dir_nobody, "65534"),
    "blob-owned-by-65534": (_blob_file_nobody, "65534"),
    "intent-symlink": (_intent_symlink, "symbolic link"),
    "state-symlink": (_state_symlink, "symbolic link"),
    "txn-group-writable": (_group_writable, "writable by group"),
    "journal-symlink": (_journal_symlink, "symbolic link"),
    "txn-symlink": (_txn_symlink, "symbolic link"),
    "secrets-symlink": (_secrets_symlink, "symbolic link"),
}


@pytest.mark.parametrize("cmd", sorted(CMDS))
@pytest.mark.parametrize("kind", sorted(UNTRUSTED))
def test_untrusted_journal_is_refused_in_one_line(tmp_path, victim, kind, cmd):
    root, host = _root_install(tmp_path)
    journal = root / JOURNAL_DIR
    plant, says = UNTRUSTED[kind]
    path = plant(journal, victim, root)
    before = tree_snapshot(victim, inodes=True)
    planted = tree_snapshot(journal) if not journal.is_symlink() else os.readlink(journal)
    args = CMDS[cmd] + ["--dir", str(root)] + (["--host-root", str(host)] if cmd.startswith("fix") else [])
    r = run_cli(*args)
    check_run(r, before, victim)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert path in lines[0] and says in lines[0] and "owned by uid" in lines[0], lines[0]
    if cmd in ("audit", "history"):
        assert r.code in (0, 1), r.err
        if cmd == "audit":
            assert json.loads(run_cli("audit", "--format", "json", "--dir", str(root)).out)  # still audits
    else:
        assert r.code == 2, r.err
    assert (tree_snapshot(journal) if not journal.is_symlink() else os.readlink(journal)) == planted


@pytest.mark.parametrize("kind", sorted(UNTRUSTED))
def test_untrusted_journal_session_recover_warns(tmp_path, victim, kind):
    from checks.assistant.session import Session

    root, host = _root_install(tmp_path)
    plant, says = UNTRUSTED[kind]
    path = plant(root / JOURNAL_DIR, victim, root)
    before = tree_snapshot(victim, inodes=True)
    session = Session(str(root), host_root=str(host))
    (msg,) = session.recover()
    assert msg.startswith("warning:") and path in msg and says in msg and "owned by uid" in msg, msg
    assert session.audit().findings  # the audit still runs
    assert session.transactions() == []
    assert tree_snapshot(victim, inodes=True) == before


# -- entries the engine would not have written --------------------------------------


def _entry_variants(root: Path, victim: Path):
    env = root / ".env"
    cur = env.read_bytes() if env.exists() else b""
    good = {"type": "file", "path": str(env), "before_sha": sha(cur + b"#"), "before": "b0",
            "after_sha": sha(cur), "after": "a0", "mode": 0o644, "uid": 0, "gid": 0}
    yield "outside-the-install", dict(good, path=str(victim / "etc" / "passwd"))
    yield "dotdot-path", dict(good, path=str(root) + "/../victim/etc/passwd")
    yield "relative-path", dict(good, path="etc/passwd")
    yield "absolute-blob", dict(good, before=str(victim / "shadow"))
    yield "dotdot-blob", dict(good, before="../../b0")
    yield "mode-too-big", dict(good, mode=0o17777)
    yield "mode-not-int", dict(good, mode="4755")
    yield "tree-at-slash", {"type": "tree", "root": "/", "records": "tree0.bin"}
    yield "tree-at-etc", {"type": "tree", "root": "/etc/ssl", "records": "tree0.bin"}
    yield "tree-records-abs", {"type": "tree", "root": str(victim / "tree"), "records": "/etc/shadow"}
    yield "unknown-type", {"type": "exec", "cmd": "id"}


@pytest.mark.parametrize("variant", [v for v, _ in _entry_variants(Path("/x"), Path("/y"))])
@pytest.mark.parametrize("state", ["prepared", "applied"])
def test_malformed_entry_is_refused_in_one_line(tmp_path, victim, variant, state):
    root, host = _root_install(tmp_path)
    entry = dict(_entry_variants(root, victim))[variant]
    cur = (root / ".env").read_bytes()
    plant_txn(root / JOURNAL_DIR, TXN, {"entries": [entry]}, {"b0": cur + b"#", "a0": cur}, state=state)
    before, env_before = tree_snapshot(victim, inodes=True), cur
    cmd = ["audit"] if state == "prepared" else ["undo", "--last", "--yes"]
    r = run_cli(*cmd, "--dir", str(root))
    check_run(r, before, victim)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not acted on" in lines[0] and TXN in lines[0], r.err
    assert r.code in ((0, 1) if state == "prepared" else (2,)), r.err
    assert (root / ".env").read_bytes() == env_before


def test_undoes_must_be_a_plain_transaction_id(tmp_path, victim):
    root, host = _root_install(tmp_path)
    plant_txn(root / JOURNAL_DIR, TXN, {"undoes": "../../../victim", "entries": []}, {})
    before = tree_snapshot(victim, inodes=True)
    r = run_cli("audit", "--dir", str(root))
    check_run(r, before, victim)
    assert "not acted on" in r.err and "undone transaction" in r.err, r.err


# -- root's own journal -------------------------------------------------------------


def test_roots_journal_lands_in_the_state_dir_and_round_trips(attacked):
    root, host = attacked
    media = root.parent / "Media"
    before_install, before_media = content(root), content(media)
    r = run_cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code in (0, 1), r.out + r.err
    assert not (root / JOURNAL_DIR).exists(), "root wrote into the owner's installation's journal"
    state = Path(os.environ["DESTER_HARDEN_STATE_DIR"])
    st = os.stat(root)
    jdir = state / "installs" / f"{st.st_dev}-{st.st_ino}"
    (txn,) = os.listdir(jdir / "txn")
    assert (jdir / "txn" / txn / "state").read_text().strip() == "applied"
    assert json.loads((jdir / "install.json").read_text())["path"] == str(root)
    for d in (state, state / "installs", jdir, jdir / "txn"):
        assert os.lstat(d).st_uid == 0 and stat.S_IMODE(os.lstat(d).st_mode) == 0o700, d
    # The owner's files stay the owner's.
    assert os.lstat(root / ".env").st_uid == NOBODY
    h = run_cli("history", "--dir", str(root))
    assert h.code == 0 and txn in h.out, h.out + h.err
    u = run_cli("undo", "--last", "--yes", "--dir", str(root))
    assert u.code == 0, u.out + u.err
    assert content(root) == before_install and content(media) == before_media


@pytest.mark.parametrize("where", ["state-dir", "in-install"])
def test_undo_after_the_install_was_moved(tmp_path, where):
    need_root()
    if where == "state-dir":
        os.chmod(tmp_path, 0o755)
        home = tmp_path / "alice"
        home.mkdir()
        root = cli_install(home)
        chown_tree(home)
    else:
        (tmp_path / "opt").mkdir(exist_ok=True)
        root = cli_install(tmp_path / "opt")
    host = tmp_path / "host"
    host.mkdir()
    before = content(root)
    r = run_cli("fix", "--yes", "--only", "FS-001,SEC-001", "--dir", str(root), "--host-root", str(host))
    assert r.code in (0, 1), r.out + r.err
    moved = root.parent / "moved-desterlib"
    os.rename(root, moved)
    u = run_cli("undo", "--last", "--yes", "--dir", str(moved))
    assert u.code == 0, u.out + u.err
    assert content(moved) == before


def test_secrets_are_keyed_by_transaction_and_the_old_key_is_still_read(tmp_path):
    from checks.change.journal import SecretStore

    journal = tmp_path / "inst" / JOURNAL_DIR
    journal.mkdir(parents=True)
    store = SecretStore(str(journal))
    assert store.put("T1", {"@@t@@": "s3cret"}) == "keyring"
    assert store.get("T1", "keyring") == {"@@t@@": "s3cret"}
    import keyring

    legacy = f"{os.path.realpath(tmp_path / 'inst')}:T2"
    keyring.get_keyring().set_password(SecretStore.SERVICE, legacy, json.dumps({"@@u@@": "old"}))
    assert SecretStore(str(journal)).get("T2", "keyring") == {"@@u@@": "old"}
    # Moved: the new key does not depend on the path.
    assert SecretStore(str(tmp_path / "elsewhere" / JOURNAL_DIR)).get("T1", "keyring") == {"@@t@@": "s3cret"}


@pytest.fixture
def no_keyring(monkeypatch):
    """No working keyring, in this process (keyring caches its backend) and in the CLI it runs."""
    import keyring
    from keyring.backends import fail

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_fallback_secrets_file_is_in_the_state_dir_not_the_journal(tmp_path, no_keyring):
    from checks.change.journal import SecretStore

    journal = tmp_path / "inst" / JOURNAL_DIR
    journal.mkdir(parents=True)
    where = SecretStore(str(journal)).put("T1", {"@@t@@": "s3cret"})
    state = Path(os.environ["DESTER_HARDEN_STATE_DIR"])
    assert where == str(state / "secrets" / "T1.json")
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state / "secrets").st_mode) == 0o700
    assert not any(journal.rglob("*"))
    assert SecretStore(str(journal)).get("T1", where) == {"@@t@@": "s3cret"}
    with pytest.raises(ValueError):
        SecretStore(str(journal)).get("T1", str(tmp_path / "elsewhere.json"))


# -- faults tell the truth ----------------------------------------------------------


def _engine_and_plan(tmp_path):
    from checks.change.engine import Engine
    from checks.fix.planner import plan_fixes

    (tmp_path / "opt").mkdir(exist_ok=True)
    root = cli_install(tmp_path / "opt")
    host = tmp_path / "host"
    host.mkdir(exist_ok=True)
    plan, _ = plan_fixes(str(root), only={"FS-001", "SEC-001"}, host_root=str(host))
    return root, Engine(str(root)), plan


def test_commit_overwrites_the_state_in_place(tmp_path, monkeypatch):
    """The commit needs no new disk block: the state file made at prepare time is overwritten."""
    from checks.change import journal as J

    root, engine, plan = _engine_and_plan(tmp_path)
    inodes = []
    real = J.Txn.set_state

    def spy(self, state):
        real(self, state)
        inodes.append((state, os.lstat(os.path.join(self.dir, "state")).st_ino))
    monkeypatch.setattr(J.Txn, "set_state", spy)
    engine.apply(plan)
    assert [s for s, _ in inodes] == ["prepared", "applied"]
    assert inodes[0][1] == inodes[1][1], "the commit replaced the state file (it needs free space then)"


def test_a_failing_commit_rolls_back_and_says_so(tmp_path, monkeypatch):
    import errno

    from checks.change import journal as J
    from checks.core.errors import EngineError

    root, engine, plan = _engine_and_plan(tmp_path)
    before = content(root.parent)
    real = J.Txn.set_state

    def full(self, state):
        if state == "applied":
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.dir, "state"))
        real(self, state)
    monkeypatch.setattr(J.Txn, "set_state", full)
    with pytest.raises(EngineError) as exc:
        engine.apply(plan)
    msg = str(exc.value)
    assert "rolled back" in msg and "No space left on device" in msg and "nothing more was changed" not in msg
    assert content(root.parent) == before


def test_audit_warns_when_the_journal_cannot_be_locked(tmp_path, victim):
    root, host = _root_install(tmp_path)
    cur = (root / ".env").read_bytes()
    plant_txn(root / JOURNAL_DIR, TXN, {"entries": []}, {"a0": cur})
    os.mkdir(root / JOURNAL_DIR / "lock", 0o700)  # cannot be opened for writing: like a read-only disk
    r = run_cli("audit", "--dir", str(root))
    assert r.code in (0, 1), r.err
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "warning" in lines[0] and "could not lock" in lines[0], r.err


def test_sigterm_during_apply_rolls_back_and_says_so(tmp_path, monkeypatch, capsys):
    from checks.change import engine as E
    from tui.cli import main

    (tmp_path / "opt").mkdir(exist_ok=True)
    root = cli_install(tmp_path / "opt")
    host = tmp_path / "host"
    host.mkdir()
    before = content(root.parent)
    real = E.Engine._apply_entry
    calls = []

    def entry(self, *a, **k):
        real(self, *a, **k)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(E.Engine, "_apply_entry", entry)
    code = main(["fix", "--yes", "--dir", str(root), "--host-root", str(host)])
    err = capsys.readouterr().err
    assert code == 143, err
    assert "SIGTERM" in err and "rolled back" in err and len(err.strip().splitlines()) == 1, err
    assert content(root.parent) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler lives only during the change


def test_secrets_gone_message_never_says_to_delete_the_journal_and_resolve_works(tmp_path, no_keyring):
    root, engine, plan = _engine_and_plan(tmp_path)
    # A prepared transaction with secrets, as a kill leaves it: apply, then mark prepared again.
    result = engine.apply(plan)
    result.txn.set_state("prepared")
    os.unlink(result.secret_store)
    r = run_cli("audit", "--dir", str(root))
    assert r.code in (0, 1)
    assert "remove that directory" not in r.err and "delete" not in r.err, r.err
    assert f"dester-harden undo --resolved {result.txn.id}" in r.err, r.err
    fix = run_cli("fix", "--dry-run", "--dir", str(root), "--host-root", str(tmp_path / "host"))
    assert fix.code == 2 and "--resolved" in fix.err
    res = run_cli("undo", "--resolved", result.txn.id, "--dir", str(root))
    assert res.code == 0, res.out + res.err
    r = run_cli("audit", "--dir", str(root))
    assert r.code in (0, 1) and not r.err.strip(), r.err
    h = run_cli("history", "--dir", str(root))
    assert "resolved" in h.out


def test_forced_undo_of_an_older_transaction_then_undo_of_the_later_one_is_refused(tmp_path):
    from checks.change.engine import Engine
    from checks.change.plan import FileEdit, Plan
    from checks.core.errors import EngineError

    (tmp_path / "opt").mkdir(exist_ok=True)
    root = cli_install(tmp_path / "opt")
    x = root / "README.md"
    v0 = x.read_bytes()
    v1, v2 = v0 + b"v1\n", v0 + b"v1\nv2\n"
    engine = Engine(str(root))
    a = engine.apply(Plan(checks=["A"], changes=[FileEdit(str(x), v0, v1)])).txn
    engine.apply(Plan(checks=["B"], changes=[FileEdit(str(x), v1, v2)]))
    with engine.locked():
        plan, conflicts = engine.undo_plan(engine.find(a.id))
        assert conflicts  # B changed X since: only --force goes on
        engine.apply(plan, kind="undo", undoes=a.id)
    assert x.read_bytes() == v0
    with engine.locked():
        b = engine.find(None)
        assert b.intent["checks"] == ["B"]
        with pytest.raises(EngineError) as exc:
            engine.undo_plan(b)
    assert "would write" in str(exc.value) and a.id in str(exc.value)
    assert x.read_bytes() == v0


async def test_assistant_first_screen_warns_about_an_untrusted_journal_and_still_audits(tmp_path, victim):
    """A Pilot start on a root-owned install whose journal belongs to 65534: a warning, the audit, no recovery."""
    from tests.apphelpers import make_app, screen_text, wait_screen

    root, host = _root_install(tmp_path)
    path = _owned_by_nobody(root / JOURNAL_DIR, victim, root)
    before = tree_snapshot(victim, inodes=True)
    app = make_app(str(root), host_root=str(host))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        text = " ".join(screen_text(app).split())
        assert "warning:" in text and "65534" in text, text
        assert "Most urgent" in text  # the audit ran
    assert tree_snapshot(victim, inodes=True) == before
    assert path


def test_a_state_dir_another_user_owns_is_refused(attacked, victim):
    """Root's own place is checked like any journal: a base owned by 65534 is never used."""
    root, host = attacked
    state = Path(os.environ["DESTER_HARDEN_STATE_DIR"])
    state.mkdir(parents=True)
    plant = state / "installs" / f"{os.stat(root).st_dev}-{os.stat(root).st_ino}"
    passwd_and_setuid_attack(plant, victim)
    chown_tree(state)
    before, planted = tree_snapshot(victim, inodes=True), tree_snapshot(state)
    r = run_cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 2 and "65534" in r.err and str(state) in r.err, r.err
    a = run_cli("audit", "--dir", str(root))
    assert a.code in (0, 1) and "warning" in a.err and "65534" in a.err, a.err
    assert tree_snapshot(victim, inodes=True) == before and tree_snapshot(state) == planted


def test_session_recover_warns_when_the_journal_cannot_be_locked(tmp_path):
    from checks.assistant.session import Session

    root, host = _root_install(tmp_path)
    plant_txn(root / JOURNAL_DIR, TXN, {"entries": []}, {})
    os.mkdir(root / JOURNAL_DIR / "lock", 0o700)
    (msg,) = Session(str(root), host_root=str(host)).recover()
    assert msg.startswith("warning:") and "could not lock" in msg, msg
