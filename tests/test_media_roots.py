"""The media fix never walks what is not a media library, nor another filesystem; undo never misfires.

Attacks are made as the installation's unprivileged owner (uid 65534) against
root running dester-harden: the owner writes the compose file, so the media
bind mount may name a system tree, a home directory, the directory holding
the installation, or ``/``. Each is refused with one line, and a victim tree
outside the installation is compared byte for byte (contents, modes, owners,
link targets) before and after. Mount points inside the library are made in a
private mount namespace (``unshare -m``): a bind mount of a ``/usr``-like
tree (same filesystem, same st_dev) and a tmpfs (another one); neither is
entered. System paths are only ever judged as paths, or hidden behind a bind
mount in such a namespace: no test writes a system tree.

Also: undo leaves alone a file that reuses a changed file's inode number,
journals of the previous format still undo, shared group libraries keep
their group write, and a symlinked media directory is named as one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from checks.audit.run import run_audit
from checks.change import treerecords, walk
from checks.change.engine import Engine
from checks.change.plan import Plan, TreeChmod
from checks.core.errors import EngineError
from checks.core.mediaroot import media_root_problem
from checks.core.names import JOURNAL_DIR
from checks.fix.planner import plan_fixes
from checks.install.discovery import discover

from .conftest import PROJECT, run_cli
from .installs import tree_snapshot

NOBODY = 65534
CI = os.environ.get("CI") == "true"


def need_root() -> None:
    if os.geteuid() != 0:
        if CI:
            pytest.fail("these attack tests run as root (the usual user) and CI runs as root")
        pytest.skip("needs root: the attack tests run dester-harden as root against files of uid 65534")


def need_unshare() -> None:
    need_root()
    why = None
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        why = "unshare/mount (util-linux, installed by .ci/run) are missing"
    else:
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
        if probe.returncode:
            why = f"no private mount namespace here: {probe.stderr.strip()}"
    if why:
        if CI:
            pytest.fail(why)
        pytest.skip(why)


# -- helpers ------------------------------------------------------------------------




def chown_tree(top: Path, uid: int = NOBODY, gid: int = NOBODY) -> None:
    os.lchown(top, uid, gid)
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(d, name), uid, gid)


def usr_like(top: Path) -> Path:
    """A root-owned ``/usr``-like tree: executables, a setuid binary, a setgid one, a 1777 directory."""
    for d in ("bin", "lib/x86_64", "share/doc", "tmp"):
        (top / d).mkdir(parents=True, exist_ok=True)
    files = {"bin/tool": 0o755, "bin/su": 0o4755, "bin/wall": 0o2755, "lib/x86_64/libc.so.6": 0o755,
             "share/doc/README": 0o644, "share/doc/group-notes": 0o664}
    for rel, mode in files.items():
        (top / rel).write_bytes(b"\x7fELF" + rel.encode())
        os.chmod(top / rel, mode)
    for d in ("bin", "lib", "lib/x86_64", "share", "share/doc"):
        os.chmod(top / d, 0o755)
    os.chmod(top / "tmp", 0o1777)
    os.chmod(top / "share", 0o775)
    os.chmod(top, 0o755)
    os.symlink("tool", top / "bin" / "tool-link")
    return top


def media_library(top: Path) -> Path:
    """The owner's library as the docs' ``chmod -R 755`` leaves it, plus a 0777 share."""
    (top / "Movies" / "Heat (1995)").mkdir(parents=True)
    (top / "Shared").mkdir()
    (top / "Movies" / "Heat (1995)" / "Heat (1995).mkv").write_bytes(b"\x1aE\xdf\xa3heat")
    (top / "Movies" / "poster.jpg").write_bytes(b"\xff\xd8poster")
    for d in (top, top / "Movies", top / "Movies" / "Heat (1995)"):
        os.chmod(d, 0o755)
    os.chmod(top / "Shared", 0o777)
    os.chmod(top / "Movies" / "Heat (1995)" / "Heat (1995).mkv", 0o755)
    os.chmod(top / "Movies" / "poster.jpg", 0o755)
    if os.geteuid() == 0:
        chown_tree(top)
    return top


def install(base: Path, media: str) -> Path:
    """An installation of uid 65534 whose API mounts ``media`` as its library."""
    root = base / "install"
    root.mkdir(parents=True)
    (root / "docker-compose.yml").write_text(
        "services:\n  api:\n    image: desterlib/api:1.4.2\n    volumes:\n"
        f"      - {media}:/media:ro\n")
    os.chmod(root / "docker-compose.yml", 0o644)
    os.chmod(root, 0o755)
    chown_tree(root)
    return root


def fs005(root: Path):
    return run_audit(discover(str(root)), "local", only={"FS-005"}).by_id("FS-005")


def refusals(root: Path) -> list[str]:
    plan, _ = plan_fixes(str(root), only={"FS-005"})
    assert not [c for c in plan.changes if isinstance(c, TreeChmod)], "a refused root was planned"
    return [r.reason for r in plan.refusals if r.check == "FS-005"]


def no_walk(monkeypatch) -> None:
    """For roots that must never be walked (``/``, ``/usr``): any walk fails the test, nothing is changed."""
    def boom(*a, **k):
        pytest.fail("the media walk started on a refused root")
    monkeypatch.setattr(walk, "apply_rule", boom)
    monkeypatch.setattr(walk, "preview", boom)
    monkeypatch.setattr(walk, "chmod_entry", boom)


# -- the judgement, by path -------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/", "/usr", "/usr/local/media", "/etc", "/bin", "/sbin", "/lib", "/lib64/x", "/libx32", "/boot",
    "/var", "/var/lib/media", "/proc", "/sys/kernel", "/dev", "/dev/shm/films", "/run", "/run/user/0",
    "/run/media", "/run/media/alice", "/media", "/mnt", "/srv", "/opt", "/tmp", "/home", "/root", "/snap/x",
    "/usr/../etc",
])
def test_system_trees_and_mount_parents_are_refused(tmp_path, path):
    problem = media_root_problem(path, str(tmp_path / "install"))
    assert problem is not None and problem.startswith(os.path.abspath(path)), problem


@pytest.mark.parametrize("path", [
    "/media/disk/films", "/media/disk", "/mnt/films", "/srv/media", "/run/media/alice/disk/Films",
    "/opt/media", "/data/Media", "/library", "/home/nobody-at-all/Media", "/root/Media",
])
def test_the_usual_library_places_are_accepted(tmp_path, path):
    assert media_root_problem(path, str(tmp_path / "install")) is None


def test_home_directories_themselves_are_refused_what_is_inside_them_is_not(tmp_path, monkeypatch):
    import pwd

    home = tmp_path / "alice"
    (home / "Media").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    inst = str(tmp_path / "install")
    assert "home directory of $HOME" in (media_root_problem(str(home), inst) or "")
    assert media_root_problem(str(home / "Media"), inst) is None
    for pw in pwd.getpwall():
        if pw.pw_dir.startswith("/") and os.path.realpath(pw.pw_dir) != "/":
            assert media_root_problem(pw.pw_dir, inst) is not None, pw.pw_name


def test_the_install_a_directory_holding_it_and_its_journal_are_refused(tmp_path):
    root = tmp_path / "base" / "install"
    (root / "media").mkdir(parents=True)
    (root / JOURNAL_DIR / "txn").mkdir(parents=True)
    for path in (tmp_path / "base", tmp_path, root, root / JOURNAL_DIR / "txn"):
        assert media_root_problem(str(path), str(root)) is not None, path
    assert media_root_problem(str(root / "media"), str(root)) is None
    assert media_root_problem(str(tmp_path / "base" / "Media"), str(root)) is None


def test_a_root_is_judged_by_what_it_resolves_to(tmp_path):
    (tmp_path / "install").mkdir()
    os.symlink("/usr", tmp_path / "Media")
    problem = media_root_problem(str(tmp_path / "Media" / "lib"), str(tmp_path / "install"))
    assert problem is not None and "(which is /usr/lib)" in problem
    problem = media_root_problem(str(tmp_path / "Media"), str(tmp_path / "install"))
    assert "symbolic link, not followed" in (problem or "")


# -- attacks as the owner, through the CLI and the engine ------------------------------------


def test_the_owner_mounting_roots_home_is_refused_and_nothing_changes(tmp_path, monkeypatch):
    need_root()
    home = tmp_path / "victim-home"
    usr_like(home)
    (home / ".ssh").mkdir()
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA root@host\n")
    monkeypatch.setenv("HOME", str(home))  # the invoking user's home (sudo -E keeps it)
    root = install(tmp_path / "owner", str(home))
    before = tree_snapshot(home)
    r = run_cli("fix", "--dir", str(root), "--only", "FS-005", "--yes")
    assert r.code in (0, 1), r.err
    assert "Traceback" not in r.err + r.out
    lines = [line for line in r.out.splitlines() if line.strip().startswith("FS-005:")]
    assert len(lines) == 1 and "home directory" in lines[0], r.out
    assert tree_snapshot(home) == before
    f = fs005(root)
    assert f.status == "fail" and "home directory" in f.evidence[0].text


def test_the_owner_mounting_the_directory_that_holds_the_install_is_refused(tmp_path):
    need_root()
    base = tmp_path / "owner"
    media_library(base / "Media")
    root = install(base, str(base))
    (base / "notes.sh").write_text("#!/bin/sh\n")
    os.chmod(base / "notes.sh", 0o755)
    before = tree_snapshot(base)
    r = run_cli("fix", "--dir", str(root), "--only", "FS-005", "--yes")
    assert "Traceback" not in r.err + r.out and r.code in (0, 1), r.err
    assert "holds the installation directory" in r.out
    assert tree_snapshot(base) == before
    # The engine refuses the same plan when it is handed over directly.
    with pytest.raises(EngineError, match="holds the installation directory"):
        Engine(str(root)).apply(Plan(checks=["FS-005"], changes=[TreeChmod(str(base))]))
    assert tree_snapshot(base, skip=(JOURNAL_DIR,)) == before  # the engine's lock file aside


@pytest.mark.parametrize("media", ["/", "/usr", "/usr/lib", "/etc", "/var/lib"])
def test_a_system_tree_is_refused_by_the_planner_the_audit_and_the_engine(tmp_path, monkeypatch, media):
    need_root()
    root = install(tmp_path / "owner", media)
    no_walk(monkeypatch)  # a broken guard fails the test here, it never reaches the system's files
    [reason] = refusals(root)
    assert "system" in reason or "whole system" in reason
    f = fs005(root)
    assert f.status == "fail" and "not walked" in f.evidence[0].text
    with pytest.raises(EngineError, match="system"):
        Engine(str(root)).apply(Plan(checks=["FS-005"], changes=[TreeChmod(media)]))


def test_the_engine_judges_the_directory_it_opened_not_the_path_it_was_given(tmp_path, monkeypatch):
    """A component swapped for a symlink after the plan (to /usr) cannot lead the walk into /usr/lib."""
    need_root()
    base = tmp_path / "owner"
    media_library(base / "Media" / "lib")
    root = install(base, str(base / "Media" / "lib"))
    plan, _ = plan_fixes(str(root), only={"FS-005"})
    assert [c.root if isinstance(c, TreeChmod) else c for c in plan.changes] == [str(base / "Media" / "lib")]
    os.rename(base / "Media", base / "Media.real")
    os.symlink("/usr", base / "Media")
    no_walk(monkeypatch)
    with pytest.raises(EngineError, match=r"/usr/lib\): a system directory"):
        Engine(str(root)).apply(plan)
    assert Engine(str(root)).pending() == []


# -- mount points: never entered -----------------------------------------------------------

_NS_DRIVER = r"""
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
for args in spec["mounts"]:
    subprocess.run(["mount", *args], check=True)
for rel, mode in spec.get("populate", {}).items():
    path = os.path.join(spec["populate_in"], rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"inside the mount")
    os.chmod(path, int(mode, 8))
out = {}
for cmd in spec["commands"]:
    p = subprocess.run([sys.executable, "-m", "tui", *cmd], capture_output=True, text=True, cwd=spec["cwd"])
    out.setdefault("runs", []).append([p.returncode, p.stdout, p.stderr])
modes = {}
for d, dirs, files in os.walk(spec.get("report", "/nonexistent")):
    for name in dirs + files:
        p = os.path.join(d, name)
        modes[os.path.relpath(p, spec["report"])] = os.lstat(p).st_mode & 0o7777
out["modes"] = modes
print(json.dumps(out))
"""


def in_namespace(spec: dict) -> dict:
    """Run ``spec``'s mounts, then dester-harden commands, in a private mount namespace that ends with it."""
    spec = {"cwd": str(PROJECT), **spec}
    argv = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _NS_DRIVER, json.dumps(spec)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_system_path_with_a_real_tree_behind_it_is_refused(tmp_path):
    need_unshare()
    victim = usr_like(tmp_path / "victim")
    target = "/usr/local/games" if os.path.isdir("/usr/local/games") else "/usr/local/src"
    root = install(tmp_path / "owner", target)
    before = tree_snapshot(victim)
    out = in_namespace({"mounts": [["--bind", str(victim), target]],
                        "commands": [["fix", "--dir", str(root), "--only", "FS-005", "--yes"]]})
    code, stdout, stderr = out["runs"][0]
    assert "Traceback" not in stderr and code in (0, 1), stderr
    assert f"FS-005: {target}: a system directory" in stdout
    assert tree_snapshot(victim) == before


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_a_mount_point_inside_the_library_is_not_entered(tmp_path, kind):
    """A bind mount keeps the st_dev of its filesystem (mountinfo sees it); a tmpfs has its own."""
    need_unshare()
    media = media_library(tmp_path / "owner" / "Media")
    (media / "Movies" / "usr").mkdir()
    os.chown(media / "Movies" / "usr", NOBODY, NOBODY)
    root = install(tmp_path / "owner", str(media))
    victim = usr_like(tmp_path / "victim")
    before = tree_snapshot(victim)
    mountpoint = str(media / "Movies" / "usr")
    spec: dict = {"commands": [["fix", "--dir", str(root), "--only", "FS-005", "--dry-run"],
                               ["fix", "--dir", str(root), "--only", "FS-005", "--yes"],
                               ["undo", "--dir", str(root), "--last", "--yes"]],
                  "report": mountpoint}
    if kind == "bind":
        spec["mounts"] = [["--bind", str(victim), mountpoint]]
    else:
        spec["mounts"] = [["-t", "tmpfs", "-o", "mode=0777", "tmpfs", mountpoint]]
        spec["populate_in"] = mountpoint
        spec["populate"] = {"bin/su": "4755", "bin/tool": "0755", "share/film.mkv": "0777"}
    out = in_namespace(spec)
    (dcode, dry, derr), (code, applied, err), (ucode, undone, uerr) = out["runs"]
    assert "Traceback" not in derr + err + uerr and code in (0, 1), err
    assert "1 mount point inside" in dry and "Movies/usr" in dry
    assert f"FS-005: {media}: " in dry  # the plan names the absolute root it walks
    assert "Mount points inside the media library, not entered (another filesystem): 1" in applied
    if kind == "bind":
        assert tree_snapshot(victim) == before
        assert out["modes"]["bin/su"] == 0o4755
    else:
        assert out["modes"] == {"bin": 0o755, "share": 0o755, "bin/su": 0o4755, "bin/tool": 0o755,
                                "share/film.mkv": 0o777}
    # The library itself was fixed, then put back by the undo.
    assert ucode == 0, uerr
    assert stat.S_IMODE(os.stat(media / "Movies" / "poster.jpg").st_mode) == 0o755


def test_the_walk_does_not_cross_a_mount_point_even_when_the_listing_missed_it(tmp_path, monkeypatch):
    """The last line (_depth_first's fence) holds when a directory is mounted on after it was listed."""
    need_root()
    media = media_library(tmp_path / "Media")
    sub = media / "Shared"
    real_outside = walk.Fence.outside
    seen = []

    def outside(self, st):
        if (st.st_dev, st.st_ino) == (os.lstat(sub).st_dev, os.lstat(sub).st_ino):
            seen.append(1)
            return len(seen) > 1  # the listing's look says "ours"; the fence after the open says "mounted"
        return real_outside(self, st)

    monkeypatch.setattr(walk.Fence, "outside", outside)
    mounts: list[str] = []
    walk.apply_rule(str(media), lambda data: None, [], mounts=mounts)
    assert mounts == ["Shared"]
    assert stat.S_IMODE(os.lstat(sub).st_mode) == 0o777  # recorded from the listing, but neither entered nor changed
    assert stat.S_IMODE(os.lstat(media / "Movies" / "poster.jpg").st_mode) == 0o644


# -- undo and reused inode numbers; the previous journal format --------------------------------


def _apply_media(root: Path) -> Engine:
    plan, _ = plan_fixes(str(root), only={"FS-005"})
    assert [type(c) for c in plan.changes] == [TreeChmod]
    engine = Engine(str(root))
    engine.apply(plan)
    return engine


def _undo(engine: Engine):
    txn = engine.find(None)
    plan, _ = engine.undo_plan(txn)
    return engine.apply(plan, kind="undo", undoes=txn.id)


def test_undo_leaves_alone_a_new_file_that_reuses_a_changed_files_inode(tmp_path):
    need_root()
    media = media_library(tmp_path / "owner" / "Media")
    root = install(tmp_path / "owner", str(media))
    engine = _apply_media(root)
    d = media / "Movies"
    old = d / "poster.jpg"
    assert stat.S_IMODE(os.lstat(old).st_mode) == 0o644
    ino = os.lstat(old).st_ino
    old.unlink()
    reused = None
    for i in range(2000):  # bounded: ext4 and most filesystems hand the number out again at once
        candidate = d / f"new-{i}.jpg"
        candidate.write_bytes(b"another picture, same inode number")
        if os.lstat(candidate).st_ino == ino:
            reused = candidate
            break
    if reused is None:
        pytest.skip("this filesystem did not reuse the inode number within 2000 files")
    for extra in d.glob("new-*.jpg"):
        if extra != reused:
            extra.unlink()
    os.chmod(reused, 0o644)  # the very mode the fix gave the old file
    os.chown(reused, NOBODY, NOBODY)
    _undo(engine)
    assert stat.S_IMODE(os.lstat(reused).st_mode) == 0o644, "undo gave the old file's mode to a new one"
    assert stat.S_IMODE(os.lstat(d / "Heat (1995)" / "Heat (1995).mkv").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(media / "Shared").st_mode) == 0o777


def _to_v1(path: Path) -> None:
    """Rewrite a records file as the previous release wrote it: no magic, 12-byte records."""
    data = path.read_bytes()
    assert data.startswith(treerecords.MAGIC)
    out, off = bytearray(), len(treerecords.MAGIC)
    hs, rs = treerecords.HEADER.size, treerecords.RECORD.size
    while off + hs <= len(data):
        header = data[off:off + hs]
        n = treerecords.HEADER.unpack(header)[2]
        out += header
        off += hs
        for _ in range(n):
            ino, before, after, _fp = treerecords.RECORD.unpack_from(data, off)
            out += treerecords.RECORD_V1.pack(ino, before, after)
            off += rs
    path.write_bytes(bytes(out))


@pytest.mark.parametrize("big", [False, True])
def test_a_journal_of_the_previous_format_still_undoes(tmp_path, monkeypatch, big):
    need_root()
    if big:  # the packed, sorted form of a huge directory's records
        monkeypatch.setattr(treerecords, "_BIG_GROUP", 0)
    media = media_library(tmp_path / "owner" / "Media")
    root = install(tmp_path / "owner", str(media))
    before = tree_snapshot(media)
    engine = _apply_media(root)
    txn = engine.find(None)
    [records] = [Path(txn.dir) / e["records"] for e in txn.intent["entries"] if e["type"] == "tree"]
    _to_v1(records)
    assert treerecords.load(str(records)).v1 and treerecords.load(str(records)).count() == 3
    result = _undo(engine)
    assert result.tree_changed == 3
    assert tree_snapshot(media) == before


def test_records_are_16_bytes_and_marked(tmp_path):
    need_root()
    media = media_library(tmp_path / "owner" / "Media")
    root = install(tmp_path / "owner", str(media))
    engine = _apply_media(root)
    txn = engine.find(None)
    [records] = [Path(txn.dir) / e["records"] for e in txn.intent["entries"] if e["type"] == "tree"]
    data = records.read_bytes()
    rec = treerecords.load(str(records))
    assert data.startswith(treerecords.MAGIC) and not rec.v1 and rec.count() == 3
    groups = sum(len(spans) for spans in rec.index.values())
    assert len(data) == len(treerecords.MAGIC) + groups * treerecords.HEADER.size + 3 * 16


# -- shared group libraries -----------------------------------------------------------------


def _shared_gid() -> int:
    from checks.core.mediarule import primary_gids

    primary = primary_gids()
    return next(g for g in range(31000, 60000) if g not in primary)


def shared_library(top: Path, gid: int) -> Path:
    """``chmod 2775`` directories of a media group, g+w files of that group in them."""
    (top / "Films").mkdir(parents=True)
    os.chown(top, NOBODY, gid)
    os.chown(top / "Films", NOBODY, gid)
    os.chmod(top, 0o2775)
    os.chmod(top / "Films", 0o2775)
    files = {"Films/a.mkv": (0o664, gid), "Films/b.mkv": (0o666, gid), "Films/c.mkv": (0o775, gid),
             "Films/d.mkv": (0o664, NOBODY)}
    for rel, (mode, g) in files.items():
        (top / rel).write_bytes(rel.encode())
        os.chown(top / rel, NOBODY, g)
        os.chmod(top / rel, mode)
    return top


def _modes(top: Path) -> dict[str, int]:
    return {k: stat.S_IMODE(v[0]) for k, v in tree_snapshot(top).items()}


def test_a_shared_group_library_keeps_its_group_write_others_write_and_exec_go(tmp_path):
    need_root()
    media = shared_library(tmp_path / "owner" / "Media", _shared_gid())
    root = install(tmp_path / "owner", str(media))
    f = fs005(root)
    assert f.status == "fail"
    shown = " ".join(e.file or "" for e in f.evidence)
    assert "b.mkv" in shown and "c.mkv" in shown and "d.mkv" in shown and "a.mkv" not in shown
    assert "Films " not in shown + " " and not shown.endswith("Films")
    from checks.change.preview import list_tree

    plan, _ = plan_fixes(str(root), only={"FS-005"})
    assert all(isinstance(c, TreeChmod) for c in plan.changes)
    listed = [line.rsplit("/", 1)[-1] for c in plan.changes if isinstance(c, TreeChmod) for line in list_tree(c)]
    assert sorted(listed) == ["b.mkv", "c.mkv", "d.mkv"]  # --list shows what the walk changes, no more
    engine = _apply_media(root)
    assert _modes(media) == {".": 0o2775, "Films": 0o2775, "Films/a.mkv": 0o664, "Films/b.mkv": 0o664,
                             "Films/c.mkv": 0o664, "Films/d.mkv": 0o644}
    assert fs005(root).status == "pass"
    _undo(engine)
    assert _modes(media)["Films/b.mkv"] == 0o666 and _modes(media)["Films/c.mkv"] == 0o775


def test_group_write_of_a_primary_group_is_taken_off(tmp_path):
    """nogroup is nobody's primary group: as good as "everyone" on systems where all users share one."""
    need_root()
    media = shared_library(tmp_path / "owner" / "Media", NOBODY)
    root = install(tmp_path / "owner", str(media))
    assert fs005(root).status == "fail"
    _apply_media(root)
    assert _modes(media) == {".": 0o2755, "Films": 0o2755, "Films/a.mkv": 0o644, "Films/b.mkv": 0o644,
                             "Films/c.mkv": 0o644, "Films/d.mkv": 0o644}
    assert fs005(root).status == "pass"


def test_a_group_writable_directory_without_setgid_is_no_shared_library(tmp_path):
    need_root()
    gid = _shared_gid()
    media = shared_library(tmp_path / "owner" / "Media", gid)
    os.chmod(media / "Films", 0o775)  # the group's, but new files would not be
    root = install(tmp_path / "owner", str(media))
    _apply_media(root)
    modes = _modes(media)
    assert modes["Films"] == 0o755 and modes["."] == 0o2775
    assert modes["Films/a.mkv"] == 0o644  # not in a shared directory any more


# -- a symlinked media directory ---------------------------------------------------------------


def _two_libraries(tmp_path: Path, clean: Path) -> Path:
    """The API mounts ``clean``, the scanner a symlink to a library: both at /media."""
    real = media_library(tmp_path / "elsewhere")
    os.symlink(real, tmp_path / "Media")
    root = tmp_path / "owner" / "install"
    root.mkdir(parents=True)
    (root / "docker-compose.yml").write_text(
        "services:\n  api:\n    image: desterlib/api:1.4.2\n    volumes:\n"
        f"      - {clean}:/media:ro\n  scanner:\n    image: desterlib/scanner:1.4.2\n    volumes:\n"
        f"      - {tmp_path / 'Media'}:/media:ro\n")
    return root


def test_a_symlinked_media_directory_is_named_as_one_not_as_missing(tmp_path):
    real = media_library(tmp_path / "elsewhere")
    os.symlink(real, tmp_path / "Media")
    root = install(tmp_path / "owner", str(tmp_path / "Media"))
    f = fs005(root)
    assert f.status == "skipped" and "symbolic link, not followed" in f.reason and "not found" not in f.reason


def test_the_fix_refuses_a_symlinked_media_directory_and_the_check_shows_it(tmp_path):
    bad = media_library(tmp_path / "bad")
    root = _two_libraries(tmp_path, bad)
    f = fs005(root)
    assert f.status == "fail"
    assert any("symbolic link, not followed" in e.text for e in f.evidence)
    plan, _ = plan_fixes(str(root), only={"FS-005"})
    assert [c.root if isinstance(c, TreeChmod) else c for c in plan.changes] == [str(bad)]
    [reason] = [r.reason for r in plan.refusals if r.check == "FS-005"]
    assert reason.startswith(f"{tmp_path / 'Media'} is a symbolic link, not followed")


def test_a_clean_library_next_to_a_symlinked_one_is_no_pass(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    os.chmod(clean, 0o755)
    f = fs005(_two_libraries(tmp_path, clean))
    assert f.status == "skipped" and "symbolic link, not followed" in f.reason


def test_the_media_rule_is_written_once(tmp_path):
    """The audit's scan, the walk's per-entry mode and the bulk walk's masks are checks/core/mediarule.py's."""
    from checks.audit.rules import fs as fs_rule
    from checks.core import mediarule

    # The walk's own names for the rule (its module globals, re-exported or private): the very same objects.
    names = vars(walk)
    assert names["target_mode"] is mediarule.target_mode and names["shared_dir"] is mediarule.shared_dir
    assert names["_FILE_OFF"] == mediarule.FILE_OFF and names["_DIR_OFF"] == mediarule.DIR_OFF
    # The scan flags exactly what target_mode would change (no shared library here: gid checks aside).
    modes = [0o644, 0o600, 0o755, 0o664, 0o666, 0o4644, 0o2644, 0o744, 0o640, 0o604, 0o606]
    top = tmp_path / "lib"
    top.mkdir()
    os.chmod(top, 0o755)
    for i, mode in enumerate(modes):
        f = top / f"f{i}"
        f.write_text("x")
        os.chmod(f, mode)
        d = top / f"d{i}"
        d.mkdir()
        os.chmod(d, mode | 0o700)
    res = fs_rule.scan_media(str(top))
    expected = sum(mediarule.target_mode(os.lstat(p).st_mode) is not None for p in top.iterdir())
    assert res.offending == expected > 0
