"""The change engine: apply-then-undo is the identity, and nothing escapes the install.

A property test applies random subsets of fixes to random installations (each
layout and the demo, with varied modes, owners, line endings, BOMs, comments
and media trees) and undoes them: every byte, mode and owner comes back.
Targeted cases cover the media walk's symlink safety, symlinked env files,
owners and modes kept by rewrites, and the journal's own permissions.

As root (CI), drawn files are given to uid/gid 65534 to check that owners
survive a rewrite; as another user the same tests run with every file the
developer's own, and only the owner tests are skipped.
"""

from __future__ import annotations

import base64
import os
import random
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from checks.change import walk
from checks.change.engine import Engine, EngineError
from checks.change.journal import JOURNAL_DIR, Redactor
from checks.change.plan import FileEdit, ModeChange, Plan, TreeChmod
from checks.demo import materialize
from checks.fix.planner import plan_fixes
from checks.fix.registry import FIXERS

from .installs import CLI_PASSWORD, cli_install, newer_install, setup_script_install

#: Only the tests of owners need root; the others (the property test too) run for any developer.
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root to give files to uid 65534")

NOBODY = 65534


def give_to_nobody(path: str | Path) -> None:
    """Drawn owners: uid 65534 as root; as another user every file stays the developer's own."""
    if ROOT:
        os.chown(path, NOBODY, NOBODY)
FIX_IDS = sorted(f.id for f in FIXERS)


# -- helpers ---------------------------------------------------------------------


def snapshot(top: str | Path, skip: tuple[str, ...] = (JOURNAL_DIR,)) -> dict[str, tuple]:
    """rel path -> (type and mode, uid, gid, content or link target) of everything under ``top``."""
    top = str(top)
    out: dict[str, tuple] = {}
    st0 = os.lstat(top)
    out["."] = (st0.st_mode, st0.st_uid, st0.st_gid, None)
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if x not in skip]
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            data: bytes | str | None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    data = fh.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            else:
                data = None
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, data)
    return out


def diff_snapshots(a: dict, b: dict) -> list[str]:
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            ka, kb = a.get(k), b.get(k)
            lines.append(f"{k}: {ka and (oct(ka[0]), ka[1], ka[2])} -> {kb and (oct(kb[0]), kb[1], kb[2])}"
                         + (" (content differs)" if ka and kb and ka[3] != kb[3] else ""))
    return lines


def secret_maker(seed: int):
    """A deterministic stand-in for secrets.token_urlsafe."""
    rng = random.Random(seed)

    def new_secret(nbytes: int = 32) -> str:
        return base64.urlsafe_b64encode(rng.randbytes(nbytes)).rstrip(b"=").decode()

    return new_secret


def build(layout: str, tmp: Path, hardened: bool = False) -> tuple[Path, Path]:
    """(install dir, media dir) of a fresh installation of ``layout`` under ``tmp``."""
    if layout == "demo":
        root = Path(materialize(str(tmp)))
        return root, root / "media"
    builder = {"cli": cli_install, "setup": setup_script_install, "newer": newer_install}[layout]
    root = builder(tmp, hardened=hardened)
    if layout == "setup" and not hardened:
        return root, root.parent / "srv-media"  # named by the compose file, created by the test
    return root, root.parent / "Media"


def text_files(root: Path) -> list[Path]:
    """The configuration files of an install, in a stable order."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in (JOURNAL_DIR, "media", "backups"))
        for name in sorted(files):
            if name.startswith(".env") or name.endswith((".yml", ".yaml")) or name in ("README.md", "Dockerfile"):
                out.append(Path(d) / name)
    return out


def secret_forms(secret: str) -> set[bytes]:
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe=""))
    forms = {secret, quote(secret, safe=""), quote(secret), lower_hex}
    return {f.encode() for f in forms}


def assert_journal_hides(root: Path, secrets: set[str]) -> None:
    """No secret, raw or percent-encoded, in any journal file but the keyring fallback's."""
    journal = Path(root) / JOURNAL_DIR
    for d, _dirs, files in os.walk(journal):
        for name in files:
            path = Path(d) / name
            if path.parent.name == "secrets" and path.parent.parent == journal:
                continue
            data = path.read_bytes()
            for secret in secrets:
                for form in secret_forms(secret):
                    assert form not in data, f"{form!r} in {path.relative_to(journal)}"


def apply_and_undo(root: str, plan: Plan) -> Engine:
    engine = Engine(root)
    engine.apply(plan)
    txn = engine.find(None)
    undo, conflicts = engine.undo_plan(txn)
    assert conflicts == []
    engine.apply(undo, kind="undo", undoes=txn.id)
    return engine


# -- the property ------------------------------------------------------------------

FILE_MODES = st.sampled_from([0o600, 0o640, 0o644, 0o664, 0o666])
DIR_MODES = st.sampled_from([0o777, 0o775, 0o755, 0o700])
MEDIA_FILE_MODES = st.sampled_from([0o755, 0o644, 0o666, 0o4755])
NAMES = st.sampled_from(["Movies", "TV Shows", "Heat (1995)", "Season 01", "extras", "a"])

TEXT_MOD = st.fixed_dictionaries({
    "mode": FILE_MODES,
    "crlf": st.booleans(),
    "bom": st.booleans(),
    "comment": st.sampled_from([None, "top", "bottom"]),
    "nobody": st.booleans(),
})

MEDIA_ENTRY = st.tuples(
    st.lists(NAMES, min_size=0, max_size=3),  # directory path
    st.sampled_from(["dir", "file", "file", "link-outside", "link-inside", "link-env"]),
    DIR_MODES, MEDIA_FILE_MODES, st.booleans(),  # dir mode, file mode, owned by nobody
)


@st.composite
def installations(draw):
    layout = draw(st.sampled_from(["demo", "cli", "setup", "newer"]))
    return {
        "layout": layout,
        "hardened": layout != "demo" and draw(st.booleans()),
        "text": draw(st.lists(TEXT_MOD, min_size=8, max_size=8)),
        "media_root_mode": draw(DIR_MODES),
        "media": draw(st.lists(MEDIA_ENTRY, max_size=8)),
        "only": draw(st.none() | st.sets(st.sampled_from(FIX_IDS), min_size=1)),
        "seed": draw(st.integers(0, 2**32)),
        # The CLI install's own password: some collide with the journal's token text, some need URL encoding.
        "password": draw(st.sampled_from([CLI_PASSWORD, "secret", "dester", "harden-secret-0", "p@ss w/rd!",
                                          "Zq%41x:y"])),
    }


def materialize_case(case: dict, tmp: Path) -> tuple[Path, Path, Path]:
    """Build the drawn installation; return (install, media dir, a file outside everything)."""
    root, media = build(case["layout"], tmp, case["hardened"])
    if case["layout"] == "cli" and not case["hardened"]:
        pw = case["password"]
        for name in ("docker-compose.yml", ".env"):
            text = (root / name).read_text()
            text = text.replace(f":{CLI_PASSWORD}@", ":" + quote(pw, safe="") + "@").replace(CLI_PASSWORD, pw)
            (root / name).write_text(text)
    outside = tmp / "outside-secret.txt"
    outside.write_text("not part of the media library\n")
    os.chmod(outside, 0o666)
    for path, mod in zip(text_files(root), case["text"], strict=False):  # more files than drawn edits: fine
        data = path.read_bytes()
        if mod["comment"] == "top":
            data = b"# added by hand\n" + data
        elif mod["comment"] == "bottom":
            data = data + b"# added by hand, at the end\n"
        if mod["crlf"]:
            data = data.replace(b"\n", b"\r\n")
        if mod["bom"]:
            data = b"\xef\xbb\xbf" + data
        path.write_bytes(data)
        if mod["nobody"]:
            give_to_nobody(path)
        os.chmod(path, mod["mode"])
    media.mkdir(exist_ok=True)
    for i, (parts, kind, dmode, fmode, nobody) in enumerate(case["media"]):
        d = media.joinpath(*parts)
        if any(p.is_symlink() or (p.exists() and not p.is_dir()) for p in [d, *d.parents] if media in p.parents):
            continue
        d.mkdir(parents=True, exist_ok=True)
        target = d / f"entry{i}"
        if kind == "dir":
            target.mkdir()
            if nobody:
                give_to_nobody(target)
            os.chmod(target, dmode)
        elif kind == "file":
            target.write_bytes(b"\x00video%d" % i)
            if nobody:
                give_to_nobody(target)
            os.chmod(target, fmode)
        elif kind == "link-outside":
            os.symlink(outside, target)
        elif kind == "link-env":
            os.symlink(root / ".env" if (root / ".env").exists() else outside, target)
        else:
            os.symlink(".", target)
        if kind != "dir" and d != media:
            os.chmod(d, dmode)
    os.chmod(media, case["media_root_mode"])
    host = tmp / "host"
    host.mkdir()
    return root, media, outside


@settings(max_examples=int(os.environ.get("ENGINE_EXAMPLES", 60)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=installations())
def test_apply_then_undo_restores_every_byte_mode_and_owner(case):
    tmp = Path(tempfile.mkdtemp(prefix="engine-prop-"))
    try:
        root, media, outside = materialize_case(case, tmp)
        before = snapshot(tmp, skip=(JOURNAL_DIR, "host"))
        plan, planner = plan_fixes(str(root), only=case["only"], host_root=str(tmp / "host"),
                                   new_secret=secret_maker(case["seed"]))
        tree = ", media" if any(isinstance(c, TreeChmod) for c in plan.changes) else ""
        event(f"{case['layout']}: {len(plan.changes)} change(s)" + tree)
        engine = Engine(str(root))
        engine.apply(plan)
        applied = snapshot(tmp, skip=(JOURNAL_DIR, "host"))
        for change in plan.changes:
            if isinstance(change, FileEdit):
                with open(change.path, "rb") as fh:
                    assert fh.read() == change.after, change.path
            elif isinstance(change, ModeChange):
                assert stat.S_IMODE(os.lstat(change.path).st_mode) == change.after, change.path
        # The outside file and every symlink are never touched.
        assert applied["outside-secret.txt"] == before["outside-secret.txt"]
        for rel, entry in before.items():
            if stat.S_ISLNK(entry[0]):
                assert applied[rel] == entry
        # Owners never change, and no temporary file is left behind.
        for rel, entry in before.items():
            assert applied[rel][1:3] == entry[1:3], rel
        created = {os.path.relpath(c.path, tmp) for c in plan.changes if isinstance(c, FileEdit) and c.is_new}
        assert set(applied) == set(before) | created
        for rel in created:  # a new env file holds secrets: 0600 from the start
            assert stat.S_IMODE(applied[rel][0]) == 0o600, rel

        secrets = set(planner.generated)
        if (case["layout"] == "cli" and not case["hardened"]
                and case["password"] in (CLI_PASSWORD, "p@ss w/rd!", "Zq%41x:y")):
            secrets.add(case["password"])
        assert_journal_hides(root, secrets)

        txn = engine.find(None)
        undo, conflicts = engine.undo_plan(txn)
        assert conflicts == []
        engine.apply(undo, kind="undo", undoes=txn.id)
        assert_journal_hides(root, secrets)
        after = snapshot(tmp, skip=(JOURNAL_DIR, "host"))
        assert diff_snapshots(before, after) == []
        assert after == before
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the journal's redaction is reversible ------------------------------------------

#: Pieces of the redaction token itself, so that secrets and data collide with it.
TOKENISH = st.text(alphabet="@dester-harden-secret-0123456789%", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None, database=None)
@given(secrets=st.sets(TOKENISH | st.sampled_from(["secret", "harden", "dester", "0@@", "postgres", "p@ss w/rd"]),
                      max_size=6),
       pieces=st.lists(TOKENISH | st.sampled_from(["secret", "postgres", "p%40ss%20w%2Frd", "\n"]), max_size=20))
def test_redaction_is_reversible_and_hides_every_secret(secrets, pieces):
    data = "".join(pieces).encode()
    redactor = Redactor(secrets)
    if b"@@dester-harden-secret-" in data:
        with pytest.raises(ValueError):
            redactor.redact(data)
        return
    hidden = redactor.redact(data)
    assert Redactor(dict(redactor.by_token)).restore(hidden) == data
    outside_tokens = re.sub(rb"@@dester-harden-secret-[0-9]+@@", b"\0", hidden)
    for s in secrets:
        if len(s) >= 3:
            assert s.encode() not in outside_tokens


def test_redaction_hides_percent_encoded_forms():
    redactor = Redactor({"p@ss w/rd!"})
    data = (b"POSTGRES_PASSWORD=p@ss w/rd!\nDATABASE_URL=postgresql://u:p%40ss%20w%2Frd%21@db/x\n"
            b"lower: p%40ss%20w%2frd%21\n")
    hidden = redactor.redact(data)
    for form in (b"p@ss w/rd!", b"p%40ss%20w%2Frd%21", b"p%40ss%20w%2frd%21", b"p%40ss+w%2Frd%21"):
        assert form not in hidden
    assert Redactor(dict(redactor.by_token)).restore(hidden) == data


# -- the media walk never leaves the tree -------------------------------------------


def _modes(top: Path) -> dict[str, tuple[int, int, int]]:
    return {rel: v[:3] for rel, v in snapshot(top).items()}


def _media_plan(root: Path, host: Path) -> Plan:
    plan, _ = plan_fixes(str(root), only={"FS-005"}, host_root=str(host))
    assert [type(c) for c in plan.changes] == [TreeChmod]
    return plan


@pytest.fixture
def cli_media(tmp_path):
    """A CLI install with a ``chmod -R 755`` media library, an outside dir and file to protect."""
    root = cli_install(tmp_path)
    media = root.parent / "Media"
    for d in (media, media / "Movies", media / "TV Shows", media / "Movies" / "Heat (1995)"):
        os.chmod(d, 0o777)  # group/other-writable directories: in the plan too
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o777)
    (outside / "sub").mkdir()
    os.chmod(outside / "sub", 0o777)
    (outside / "private.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(outside / "private.key", 0o666)
    host = tmp_path / "host"
    host.mkdir()
    return root, media, outside, host


def test_a_symlink_in_the_media_dir_to_a_file_outside_is_left_alone(cli_media):
    root, media, outside, host = cli_media
    os.symlink(outside / "private.key", media / "Movies" / "poster.jpg")
    os.symlink(outside, media / "TV Shows" / "more")
    os.symlink(root / ".env", media / "env-link")  # a sensitive file of the install, linked from the media dir
    env_mode = stat.S_IMODE(os.stat(root / ".env").st_mode)
    before = _modes(outside)
    result = Engine(str(root)).apply(_media_plan(root, host))
    assert result.tree_changed > 0
    assert _modes(outside) == before
    assert stat.S_IMODE(os.stat(root / ".env").st_mode) == env_mode
    assert os.readlink(media / "Movies" / "poster.jpg") == str(outside / "private.key")
    assert stat.S_IMODE(os.stat(media / "Movies" / "Heat (1995)" / "Heat (1995).mkv").st_mode) == 0o644


def test_a_directory_swapped_for_a_symlink_mid_walk_redirects_no_chmod(cli_media, monkeypatch):
    root, media, outside, host = cli_media
    plan = _media_plan(root, host)
    before = _modes(outside)
    real_open = os.open
    swapped: list[object] = []

    def open_and_swap(path, flags, mode=0o777, *, dir_fd=None):
        if path == "Movies" and dir_fd is not None and not swapped:
            os.rename(media / "Movies", media / "Movies.moved")
            os.symlink(outside, media / "Movies")
            swapped.append(flags)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_and_swap)
    result = Engine(str(root)).apply(plan)
    monkeypatch.undo()
    assert swapped, "the walk never opened Movies"
    assert _modes(outside) == before
    assert "Movies" in result.tree_skipped
    # The rest of the library was still fixed.
    episode = media / "TV Shows" / "Severance" / "Season 01" / "Severance S01E01.mkv"
    assert stat.S_IMODE(os.stat(episode).st_mode) == 0o644


def test_a_file_swapped_for_a_symlink_before_its_chmod_is_skipped(cli_media, monkeypatch):
    root, media, outside, host = cli_media
    plan = _media_plan(root, host)
    victim = media / "Movies" / "Heat (1995)" / "Heat (1995).mkv"
    real_open = os.open
    swapped: list[object] = []

    def open_and_swap(path, flags, mode=0o777, *, dir_fd=None):
        if path == victim.name and not swapped:
            os.rename(victim, victim.with_name("moved.mkv"))
            os.symlink(outside / "private.key", victim)
            swapped.append(flags)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_and_swap)
    result = Engine(str(root)).apply(plan)
    monkeypatch.undo()
    assert swapped
    assert stat.S_IMODE(os.stat(outside / "private.key").st_mode) == 0o666
    assert "Movies/Heat (1995)/Heat (1995).mkv" in result.tree_skipped
    assert stat.S_IMODE(os.lstat(victim.with_name("moved.mkv")).st_mode) == 0o755  # not the file we listed any more
    assert stat.S_IMODE(os.stat(media / "Movies" / "Alien (1979)" / "Alien (1979).mp4").st_mode) == 0o644


def test_an_entry_removed_mid_walk_is_skipped_not_fatal(cli_media, monkeypatch):
    root, media, outside, host = cli_media
    plan = _media_plan(root, host)
    victim = media / "Movies" / "Alien (1979)" / "Alien (1979).mp4"
    real_open = os.open

    def open_and_delete(path, flags, mode=0o777, *, dir_fd=None):
        if path == victim.name and victim.exists():
            victim.unlink()
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_and_delete)
    result = Engine(str(root)).apply(plan)
    monkeypatch.undo()
    assert "Movies/Alien (1979)/Alien (1979).mp4" in result.tree_skipped
    assert stat.S_IMODE(os.stat(media / "Movies" / "Heat (1995)" / "Heat (1995).mkv").st_mode) == 0o644


# -- env files: symlinks refused, owners and modes kept ----------------------------------


def test_the_engine_refuses_to_edit_an_env_file_that_is_a_symlink(tmp_path):
    root = cli_install(tmp_path)
    real = tmp_path / "elsewhere.env"
    shutil.move(root / ".env", real)
    os.symlink(real, root / ".env")
    data = real.read_bytes()
    plan = Plan(checks=["SEC-001"], changes=[FileEdit(str(root / ".env"), data, data + b"X=1\n")])
    before = snapshot(tmp_path)
    with pytest.raises(EngineError, match="symbolic link"):
        Engine(str(root)).apply(plan)
    assert snapshot(tmp_path) == before
    assert Engine(str(root)).pending() == []


def test_fixing_an_install_whose_env_is_a_symlink_never_writes_through_it(tmp_path):
    root = cli_install(tmp_path)
    real = tmp_path / "elsewhere.env"
    shutil.move(root / ".env", real)
    os.symlink(real, root / ".env")
    host = tmp_path / "host"
    host.mkdir()
    data, mode = real.read_bytes(), os.stat(real).st_mode
    try:
        plan, _ = plan_fixes(str(root), host_root=str(host), new_secret=secret_maker(1))
    except Exception as exc:  # a refusal to plan is fine; a crash is not
        assert type(exc).__name__ == "PlanError", exc
        return
    try:
        Engine(str(root)).apply(plan)
    except EngineError as exc:
        assert "symbolic link" in str(exc)
    assert os.path.islink(root / ".env")
    assert real.read_bytes() == data and os.stat(real).st_mode == mode


@pytest.mark.parametrize("with_fs001", [False, True])
@needs_root
def test_a_rewritten_env_keeps_its_owner_and_its_mode_unless_fs001_changes_it(tmp_path, with_fs001):
    root = cli_install(tmp_path)
    env = root / ".env"
    os.chown(env, NOBODY, NOBODY)
    os.chmod(env, 0o640)
    host = tmp_path / "host"
    host.mkdir()
    only = {"SEC-001", "FS-001"} if with_fs001 else {"SEC-001"}
    plan, _ = plan_fixes(str(root), only=only, host_root=str(host), new_secret=secret_maker(2))
    assert str(env) in plan.files()
    engine = Engine(str(root))
    engine.apply(plan)
    st_env = os.lstat(env)
    assert (st_env.st_uid, st_env.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(st_env.st_mode) == (0o600 if with_fs001 else 0o640)
    assert b"Kx7pLm2Qw9" not in env.read_bytes()
    txn = engine.find(None)
    undo, conflicts = engine.undo_plan(txn)
    assert conflicts == []
    engine.apply(undo, kind="undo", undoes=txn.id)
    st_env = os.lstat(env)
    assert (st_env.st_uid, st_env.st_gid, stat.S_IMODE(st_env.st_mode)) == (NOBODY, NOBODY, 0o640)


@needs_root
def test_an_env_file_created_by_the_fixes_is_0600_from_the_start(tmp_path):
    root = setup_script_install(tmp_path)
    os.chown(root, NOBODY, NOBODY)
    host = tmp_path / "host"
    host.mkdir()
    plan, _ = plan_fixes(str(root), host_root=str(host), new_secret=secret_maker(3))
    created = [c for c in plan.changes if isinstance(c, FileEdit) and c.is_new]
    assert created, "expected the fixes to create an env file"
    Engine(str(root)).apply(plan)
    for c in created:
        st_new = os.lstat(c.path)
        assert stat.S_IMODE(st_new.st_mode) == 0o600, c.path
        assert (st_new.st_uid, st_new.st_gid) == (NOBODY, NOBODY)  # the install dir's owner, not root


def test_the_journal_is_private(tmp_path):
    root = Path(materialize(str(tmp_path)))
    host = tmp_path / "host"
    host.mkdir()
    plan, _ = plan_fixes(str(root), host_root=str(host), new_secret=secret_maker(4))
    Engine(str(root)).apply(plan)
    journal = root / JOURNAL_DIR
    assert stat.S_IMODE(os.lstat(journal).st_mode) == 0o700
    for d, dirs, files in os.walk(journal):
        for name in dirs:
            assert stat.S_IMODE(os.lstat(os.path.join(d, name)).st_mode) == 0o700, name
        for name in files:
            assert stat.S_IMODE(os.lstat(os.path.join(d, name)).st_mode) == 0o600, name


def test_a_failing_chmod_rolls_the_media_back_and_nothing_runs_after_the_rollback(cli_media, monkeypatch):
    import gc

    root, media, outside, host = cli_media
    plan = _media_plan(root, host)
    before = snapshot(media)
    real_chmod = walk.chmod_entry
    calls = []

    def flaky(entry, mode):
        calls.append(entry.rel)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        return real_chmod(entry, mode)

    monkeypatch.setattr(walk, "chmod_entry", flaky)
    engine = Engine(str(root))
    with pytest.raises(OSError):
        engine.apply(plan)
    n = len(calls)
    gc.collect()
    assert len(calls) == n, "a chmod ran after the transaction was rolled back"
    monkeypatch.undo()
    assert snapshot(media) == before
    [txn] = engine.pending() or [t for t in __import__("checks.change.journal").change.journal.list_txns(str(root))]
    assert txn.state == "rolled-back"


# -- a file swapped for a symlink between the checks and the writes -------------------------


def _swap_after_prepare(monkeypatch, path: Path, target: Path) -> None:
    """Replace ``path`` by a symlink to ``target`` right after the engine checked its plan."""
    real = Engine._prepare_entries

    def prepare_then_swap(self, plan):
        out = real(self, plan)
        os.rename(path, path.with_name(path.name + ".moved"))
        os.symlink(target, path)
        return out

    monkeypatch.setattr(Engine, "_prepare_entries", prepare_then_swap)


def test_a_mode_change_never_follows_a_symlink_swapped_in_after_the_checks(tmp_path, monkeypatch):
    root = cli_install(tmp_path)
    victim = tmp_path / "shadow"
    victim.write_text("root:secret-hash:::\n")
    os.chmod(victim, 0o640)
    host = tmp_path / "host"
    host.mkdir()
    plan, _ = plan_fixes(str(root), only={"FS-001"}, host_root=str(host))
    assert [type(c) for c in plan.changes] == [ModeChange]
    _swap_after_prepare(monkeypatch, root / ".env", victim)
    with pytest.raises(EngineError):
        Engine(str(root)).apply(plan)
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o640


def test_a_rewrite_never_takes_the_mode_of_a_symlink_swapped_in_after_the_checks(tmp_path, monkeypatch):
    root = cli_install(tmp_path)
    env = root / ".env"
    os.chmod(env, 0o600)
    victim = tmp_path / "elsewhere"
    victim.write_text("x\n")
    os.chmod(victim, 0o644)
    host = tmp_path / "host"
    host.mkdir()
    plan, _ = plan_fixes(str(root), only={"SEC-001"}, host_root=str(host), new_secret=secret_maker(5))
    assert str(env) in plan.files()
    _swap_after_prepare(monkeypatch, env, victim)
    with pytest.raises(EngineError):
        Engine(str(root)).apply(plan)
    assert victim.read_text() == "x\n" and stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    # Nothing with the new secret was written with a symlink's 0777.
    for p in root.iterdir():
        if p.is_file() and not p.is_symlink():
            assert not stat.S_IMODE(os.lstat(p).st_mode) & 0o077 or p.name in ("docker-compose.yml", "README.md"), p


def test_the_last_transaction_is_the_newest_even_within_one_second(tmp_path, monkeypatch):
    import checks.change.engine as engine_mod

    root = cli_install(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    ids = iter(["20260101T000000-ffffff", "20260101T000000-000000"])
    monkeypatch.setattr(engine_mod, "new_txn_id", lambda: next(ids))
    engine = Engine(str(root))
    for check in ("NET-001", "DKR-003"):
        plan, _ = plan_fixes(str(root), only={check}, host_root=str(host))
        engine.apply(plan)
        time.sleep(0.01)
    assert engine.find(None).id == "20260101T000000-000000"
    assert engine.find(None).intent["checks"] == ["DKR-003"]


def test_redaction_hides_quoted_and_escaped_forms():
    secret = 'it\'s "q"\\x'
    redactor = Redactor({secret})
    data = ('A: "it\'s \\"q\\"\\\\x"\n'          # YAML double quotes
            "B: 'it''s \"q\"\\x'\n"              # YAML single quotes
            f"C={secret}\n").encode()
    hidden = redactor.redact(data)
    for needle in (b"q\\\"", b"it''s", secret.encode(), b'"q"'):
        assert needle not in hidden, needle
    assert Redactor(dict(redactor.by_token)).restore(hidden) == data
