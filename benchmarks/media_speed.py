#!/usr/bin/env python3
"""Media tree speed: prints the figures the FS-005 speed issue asks for.

On a generated media tree (200,000 entries by default: ~10% directories,
movies, TV seasons, albums and photo events with the modes real libraries have
-- ``chmod -R 755`` files, some 0777 shares, group-shared 02775 directories,
private 0700 ones, entries already fine, a few symbolic links):

1. FS-005's audit scan (``checks.audit.rules.fs.scan_media``) in a fresh Python
   process, against ``find TREE -perm /022 -o -type f -perm /111``.
   Target: <= 1.5x.
2. The fix -- the engine's bulk chmod plus its journal (``Engine.apply`` of a
   ``TreeChmod``) -- in a fresh process, against ``chmod -R u=rwX,go=rX`` on an
   identical copy of the tree. Target: <= 2x.
3. Journal bytes per changed entry (target <= 32), the undo's time, and the
   peak RSS of scan, fix and undo: ``getrusage`` in the child. With ``--big``
   a 1,000,000-entry tree is generated too for the memory target (<= 150 MB).

Wall times are medians of ``--runs`` runs, each in a fresh subprocess (Python's
cold start and imports included); the child's own timing of the operation
alone is shown as "in-process". Every command, ours and the baselines, is
started through ``sh -c '"$@"; exit $?'``: ru_maxrss survives execve(), so a
child forked straight from this (big) process would report this process's
size; forked from a small shell it reports its own. Each fix run gets
freshly generated, identical trees (one for chmod -R, one for ours), and
everything is synced first so the runs do not pay for each other's dirty
metadata. After each fix and undo the
tree's modes are checked against the rule and the original.

Usage: .venv/bin/python benchmarks/media_speed.py [--entries N] [--runs N] [--big] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

# -- the generated tree ---------------------------------------------------------

_WORDS = ["the", "silent", "river", "night", "last", "city", "dark", "blue", "road", "home", "winter", "summer",
          "king", "lost", "star", "fire", "stone", "garden", "ghost", "empire", "shadow", "secret", "golden", "iron",
          "red", "black", "white", "ocean", "storm", "wild", "heart", "moon", "sun", "edge", "dream", "glass",
          "paper", "broken", "second", "first"]
_SUBS = ("en", "en.forced", "de", "fr", "es", "it", "pt-BR", "ja")

# (name, weight, directory mode, file mode): modes as real libraries have them.
_PROFILES = (
    ("chmod -R 755", 50, 0o755, 0o755),
    ("already fine", 25, 0o755, 0o644),
    ("0777 share", 8, 0o777, 0o666),
    ("0777 everything", 3, 0o777, 0o777),
    ("group shared", 6, 0o2775, 0o664),
    ("private", 4, 0o700, 0o600),
    ("mixed", 4, None, None),
)
_MIXED_DIR = (0o755, 0o775, 0o777, 0o700, 0o750)
_MIXED_FILE = (0o644, 0o644, 0o755, 0o755, 0o666, 0o600, 0o664, 0o777, 0o640, 0o750) * 4 + (0o4755,)


class _Gen:
    """Creates entries through directory descriptors until the budget is spent."""

    def __init__(self, entries: int, seed: int) -> None:
        self.left = entries
        self.rng = random.Random(seed)
        self.counts = {"dirs": 0, "files": 0, "symlinks": 0, "other": 0}
        self.dmode = 0o755
        self.fmode = 0o644
        self.mixed = False

    def profile(self) -> None:
        r = self.rng.random() * sum(p[1] for p in _PROFILES)
        for chosen in _PROFILES:
            r -= chosen[1]
            if r < 0:
                break
        dmode, fmode = chosen[2], chosen[3]
        self.mixed = dmode is None
        self.dmode, self.fmode = (dmode or 0o755), (fmode or 0o644)

    def _dm(self) -> int:
        return self.rng.choice(_MIXED_DIR) if self.mixed else self.dmode

    def _fm(self) -> int:
        return self.rng.choice(_MIXED_FILE) if self.mixed else self.fmode

    def mkdir(self, parent: int, name: str, mode: int | None = None) -> int | None:
        if self.left <= 0:
            return None
        self.left -= 1
        mode = self._dm() if mode is None else mode
        os.mkdir(name, mode & 0o1777, dir_fd=parent)
        if mode & 0o6000:  # mkdir() ignores set-id bits
            os.chmod(name, mode, dir_fd=parent)
        self.counts["dirs"] += 1
        # Read+search for the owner is enough to fill it; private dirs stay usable.
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)

    def files(self, fd: int, names) -> bool:
        for name in names:
            if self.left <= 0:
                return False
            self.left -= 1
            mode = self._fm()
            os.mknod(name, stat.S_IFREG | (mode & 0o777), dir_fd=fd)
            if mode & 0o7000:
                os.chmod(name, mode, dir_fd=fd)
            self.counts["files"] += 1
        return True

    def symlink(self, fd: int, name: str, target: str) -> None:
        if self.left > 0:
            self.left -= 1
            os.symlink(target, name, dir_fd=fd)
            self.counts["symlinks"] += 1

    def fifo(self, fd: int, name: str) -> None:
        if self.left > 0:
            self.left -= 1
            os.mkfifo(name, 0o666, dir_fd=fd)
            self.counts["other"] += 1

    def title(self, used: set[str], year: bool = True) -> str:
        rng = self.rng
        words = " ".join(rng.choice(_WORDS).capitalize() for _ in range(rng.randint(1, 4)))
        name = f"{words} ({rng.randint(1950, 2024)})" if year else words
        base, k = name, 2
        while name in used:
            name, k = f"{base} {k}", k + 1
        used.add(name)
        return name


def _movie(g: _Gen, top: int, used: set[str]) -> None:
    title = g.title(used)
    fd = g.mkdir(top, title)
    if fd is None:
        return
    try:
        rng = g.rng
        names = [f"{title} 1080p.mkv", "poster.jpg", "fanart.jpg", "movie.nfo"]
        names += [f"{title}.{s}.srt" for s in rng.sample(_SUBS, rng.randint(0, 4))]
        if g.files(fd, names) and rng.random() < 0.4:
            extras = g.mkdir(fd, "Extras")
            if extras is not None:
                try:
                    g.files(extras, [f"Featurette {i}.mkv" for i in range(rng.randint(1, 4))])
                finally:
                    os.close(extras)
    finally:
        os.close(fd)


def _show(g: _Gen, top: int, used: set[str]) -> None:
    title = g.title(used, year=g.rng.random() < 0.5)
    fd = g.mkdir(top, title)
    if fd is None:
        return
    try:
        rng = g.rng
        if not g.files(fd, ["tvshow.nfo", "poster.jpg", "banner.jpg"]):
            return
        for s in range(1, rng.randint(1, 8) + 1):
            sfd = g.mkdir(fd, f"Season {s:02d}")
            if sfd is None:
                return
            try:
                names = []
                for e in range(1, rng.randint(4, 12) + 1):
                    ep = f"{title} - S{s:02d}E{e:02d} - Episode {e}"
                    names += [ep + ".mkv", ep + ".en.srt", ep + ".nfo"] if rng.random() < 0.3 else [ep + ".mkv"]
                if not g.files(sfd, names):
                    return
            finally:
                os.close(sfd)
    finally:
        os.close(fd)


def _album(g: _Gen, top: int, used: set[str]) -> None:
    artist = g.title(used, year=False)
    fd = g.mkdir(top, artist)
    if fd is None:
        return
    try:
        rng = g.rng
        albums: set[str] = set()
        for _ in range(rng.randint(1, 4)):
            album = g.title(albums)
            afd = g.mkdir(fd, album)
            if afd is None:
                return
            try:
                tracks = [f"{i:02d} - {rng.choice(_WORDS).capitalize()} {rng.choice(_WORDS)}.flac"
                          for i in range(1, rng.randint(6, 14) + 1)]
                if not g.files(afd, tracks + ["cover.jpg"]):
                    return
            finally:
                os.close(afd)
    finally:
        os.close(fd)


def _photos(g: _Gen, top: int, used: set[str]) -> None:
    name = f"{g.rng.randint(2005, 2024)}-{g.rng.randint(1, 12):02d} {g.title(set(), year=False)}"
    k = 2
    while name in used:
        name, k = f"{name} {k}", k + 1
    used.add(name)
    fd = g.mkdir(top, name)
    if fd is None:
        return
    try:
        g.files(fd, [f"IMG_{g.rng.randint(1000, 9999)}_{i:04d}.jpg" for i in range(g.rng.randint(4, 20))])
    finally:
        os.close(fd)


def _downloads(g: _Gen, top: int, used: set[str]) -> None:
    """Odd corners: symbolic links (some pointing outside), a FIFO, loose files."""
    rng = g.rng
    name = f"incoming-{len(used):05d}"
    used.add(name)
    fd = g.mkdir(top, name)
    if fd is None:
        return
    try:
        g.files(fd, [f"part{i}.rar" for i in range(rng.randint(1, 5))] + ["readme.txt"])
        g.symlink(fd, "latest.mkv", "../../Movies")
        g.symlink(fd, "passwd", "/etc/passwd")
        if len(used) % 50 == 0:
            g.fifo(fd, "pipe")
    finally:
        os.close(fd)


#: Fills one top directory of the library: (generator, its descriptor, names already used there).
Filler = Callable[[_Gen, int, set[str]], None]
_CATEGORIES: tuple[tuple[str, int, Filler], ...] = (
    ("Movies", 30, _movie), ("TV Shows", 25, _show), ("Music", 25, _album),
    ("Photos", 15, _photos), ("Downloads", 5, _downloads),
)


#: What modes_digest returns: (digest, entries, entries the fix changes, FS-005's three counts).
Digest = tuple[str, int, int, tuple[int, int, int]]


def generate(root: str, entries: int, seed: int = 2024) -> dict[str, int]:
    """Create a media tree of exactly ``entries`` entries (the root included) at ``root``."""
    g = _Gen(entries, seed)
    old = os.umask(0)
    try:
        g.left -= 1
        os.mkdir(root, 0o755)
        g.counts["dirs"] += 1
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        tops: list[tuple[int, int, Filler, set[str]]] = []
        try:
            for name, weight, fn in _CATEGORIES:
                fd = g.mkdir(root_fd, name, 0o777 if name == "Downloads" else 0o755)
                if fd is not None:
                    tops.append((fd, weight, fn, set()))
            weights = [t[1] for t in tops]
            while g.left > 0:
                fd, _w, fn, used = g.rng.choices(tops, weights)[0]
                g.profile()
                fn(g, fd, used)
        finally:
            for t in tops:
                os.close(t[0])
            os.close(root_fd)
    finally:
        os.umask(old)
    return g.counts


def modes_digest(root: str) -> Digest:
    """(digest of every (path, mode), entries, entries the fix changes, FS-005's three counts).

    Straightforward on purpose: it checks the scan, the fix and the undo.
    """
    from checks.core.mediarule import target_mode

    h = hashlib.blake2b(digest_size=16)
    n = bad = dw = fw = fx = 0
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            items = sorted((e.name, e.path, e.stat(follow_symlinks=False).st_mode, e.is_dir(follow_symlinks=False))
                           for e in it)
        for _name, path, mode, is_dir in items:
            n += 1
            bad += target_mode(mode) is not None
            if stat.S_ISDIR(mode):
                dw += bool(mode & 0o022)
            elif stat.S_ISREG(mode):
                fw += bool(mode & 0o022)
                fx += bool(mode & 0o6111)
            h.update(f"{path[len(root):]}\0{mode:o}\n".encode())
            if is_dir:
                stack.append(path)
    return h.hexdigest(), n + 1, bad, (dw, fw, fx)


# -- the runs ----------------------------------------------------------------------

_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
op, tree, install = sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
if op == "scan":
    from checks.audit.rules.fs import scan_media
    t1 = time.perf_counter()
    r = scan_media(tree)
    out = {"entries": r.entries, "offending": r.offending,
           "counts": [r.dirs_writable, r.files_writable, r.files_exec]}
elif op == "preview":  # the fix's plan: what fixes.fix_fs_005 walks for its TreeChmod
    from checks.change import walk
    t1 = time.perf_counter()
    if hasattr(walk, "preview"):
        entries, transitions = walk.preview(tree)
    else:  # before walk.preview: the loop fix_fs_005 had
        import stat
        entries, transitions = 0, {}
        for e in walk.walk(tree):
            entries += 1
            new = walk.target_mode(e.st.st_mode)
            if new is not None:
                key = ("dir" if stat.S_ISDIR(e.st.st_mode) else "file", stat.S_IMODE(e.st.st_mode), new)
                transitions[key] = transitions.get(key, 0) + 1
    out = {"entries": entries, "changes": sum(transitions.values())}
elif op == "fix":
    from checks.change.engine import Engine
    from checks.change.plan import Plan, TreeChmod
    t1 = time.perf_counter()
    res = Engine(install, "fix").apply(Plan(checks=["FS-005"], changes=[TreeChmod(tree)]))
    out = {"changed": res.tree_changed, "skipped": len(res.tree_skipped), "txn": res.txn.dir}
else:
    from checks.change.engine import Engine
    t1 = time.perf_counter()
    eng = Engine(install, "undo")
    with eng.locked():
        txn = eng.find(None)
        plan, _conflicts = eng.undo_plan(txn)
        res = eng.apply(plan, kind="undo", undoes=txn.id)
    out = {"changed": res.tree_changed, "skipped": len(res.tree_skipped), "txn": res.txn.dir}
t2 = time.perf_counter()
out["import_s"] = t1 - t0
out["op_s"] = t2 - t1
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/status") as fh:  # a cross-check: this image's own peak
    out["vmhwm_kb"] = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps(out))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd],
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or (cmd[0] == sys.executable and proc.returncode):
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def ours(op: str, tree: str, install: str = "-") -> tuple[float, dict]:
    elapsed, out = timed([sys.executable, "-c", _CHILD, REPO, op, tree, install])
    return elapsed, json.loads(out.strip().splitlines()[-1])


def find_cmd(tree: str) -> list[str]:
    return ["find", tree, "-perm", "/022", "-o", "-type", "f", "-perm", "/111"]


def chmod_cmd(tree: str) -> list[str]:
    return ["chmod", "-R", "u=rwX,go=rX", tree]


def txn_bytes(txn_dir: str) -> tuple[int, int]:
    """(bytes of the tree records, bytes of the whole transaction directory)."""
    records = total = 0
    for name in os.listdir(txn_dir):
        size = os.lstat(os.path.join(txn_dir, name)).st_size
        total += size
        if name.startswith("tree"):
            records += size
    return records, total


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


def bench_scan(tree: str, runs: int) -> dict:
    timed(find_cmd(tree))  # warm the caches for both
    ours("scan", tree)
    f_times, o_times, o_in, rss, hwm, p_times, p_in = [], [], [], [], [], [], []
    info: dict = {}
    for _ in range(runs):
        f_times.append(timed(find_cmd(tree))[0])
        t, info = ours("scan", tree)
        o_times.append(t)
        o_in.append(info["op_s"])
        rss.append(info["maxrss_kb"])
        hwm.append(info["vmhwm_kb"])
        t, pinfo = ours("preview", tree)
        p_times.append(t)
        p_in.append(pinfo["op_s"])
    return {"find": med(f_times), "ours": med(o_times), "in": med(o_in), "rss_kb": max(rss), "hwm_kb": max(hwm),
            "preview": med(p_times), "preview_in": med(p_in), "import": info["import_s"],
            "offending": info["offending"], "entries": info["entries"], "counts": tuple(info["counts"])}


def bench_fix(tmp: str, entries: int, runs: int, seed: int, original: Digest) -> dict:
    c_times, f_times, f_in, u_times, u_in = [], [], [], [], []
    rss_fix, rss_undo, per_entry, per_entry_total, undo_per_entry, hwm = [], [], [], [], [], []
    changed = 0
    for i in range(runs):
        a = os.path.join(tmp, f"copy-chmod-{i}")
        b = os.path.join(tmp, f"copy-ours-{i}")
        install = os.path.join(tmp, f"install-{i}")
        os.mkdir(install)
        generate(a, entries, seed)
        generate(b, entries, seed)
        os.sync()
        c_times.append(timed(chmod_cmd(a))[0])
        shutil.rmtree(a)
        os.sync()
        t, info = ours("fix", b, install)
        f_times.append(t)
        f_in.append(info["op_s"])
        rss_fix.append(info["maxrss_kb"])
        hwm.append(info["vmhwm_kb"])
        changed = info["changed"]
        if info["skipped"]:
            raise SystemExit(f"the fix skipped {info['skipped']} entries")
        rec, total = txn_bytes(info["txn"])
        per_entry.append(rec / max(changed, 1))
        per_entry_total.append(total / max(changed, 1))
        after = modes_digest(b)
        if after[2] != 0 or changed != original[2]:
            raise SystemExit(f"the fix left {after[2]} entries to change and changed {changed} of {original[2]}")
        os.sync()
        t, uinfo = ours("undo", b, install)
        u_times.append(t)
        u_in.append(uinfo["op_s"])
        rss_undo.append(uinfo["maxrss_kb"])
        hwm.append(uinfo["vmhwm_kb"])
        rec_u, _ = txn_bytes(uinfo["txn"])
        undo_per_entry.append(rec_u / max(uinfo["changed"], 1))
        if modes_digest(b)[0] != original[0] or uinfo["changed"] != changed:
            raise SystemExit("the undo did not give back every original mode")
        shutil.rmtree(b)
        shutil.rmtree(install)
    return {"chmod": med(c_times), "fix": med(f_times), "fix_in": med(f_in), "undo": med(u_times),
            "undo_in": med(u_in), "rss_fix_kb": max(rss_fix), "rss_undo_kb": max(rss_undo), "hwm_kb": max(hwm),
            "per_entry": max(per_entry), "per_entry_total": max(per_entry_total),
            "undo_per_entry": max(undo_per_entry), "changed": changed}


def report(entries: int, counts: dict, scan: dict, fix: dict, runs: int) -> bool:
    ok = True

    def verdict(good: bool) -> str:
        nonlocal ok
        ok = ok and good
        return "ok" if good else "MISSED"

    print(f"tree: {entries:,} entries ({counts['dirs']:,} dirs, {counts['files']:,} files, "
          f"{counts['symlinks']:,} symlinks, {counts['other']:,} other); "
          f"FS-005 flags {scan['offending']:,} (dirs writable, files writable, files executable: "
          f"{', '.join(f'{c:,}' for c in scan['counts'])}), the fix changes {fix['changed']:,}")
    print(f"scan   find -perm /022 -o -type f -perm /111    median {ms(scan['find'])}  ({runs} runs)")
    print(f"       scan_media, fresh process                median {ms(scan['ours'])}  "
          f"(in-process {ms(scan['in']).strip()}, imports {scan['import'] * 1000:.1f} ms)")
    r = scan["ours"] / scan["find"]
    print(f"       ratio {r:.2f}x   (target <= 1.5x: {verdict(r <= 1.5)}; in-process {scan['in'] / scan['find']:.2f}x)")
    print(f"       (the fix's plan, walk.preview: fresh process {ms(scan['preview']).strip()}, in-process "
          f"{ms(scan['preview_in']).strip()}; {scan['preview'] / scan['find']:.2f}x find)")
    print(f"fix    chmod -R u=rwX,go=rX                     median {ms(fix['chmod'])}")
    print(f"       Engine.apply(TreeChmod), fresh process   median {ms(fix['fix'])}  "
          f"(in-process {ms(fix['fix_in']).strip()})")
    r = fix["fix"] / fix["chmod"]
    print(f"       ratio {r:.2f}x   (target <= 2.0x: {verdict(r <= 2.0)}; "
          f"in-process {fix['fix_in'] / fix['chmod']:.2f}x)")
    print(f"undo   Engine.apply(undo plan), fresh process   median {ms(fix['undo'])}  "
          f"(in-process {ms(fix['undo_in']).strip()}; {fix['undo'] / fix['chmod']:.2f}x chmod -R)")
    print(f"journal  {fix['per_entry']:.2f} bytes of records per changed entry "
          f"(target <= 32: {verdict(fix['per_entry'] <= 32)}); whole transaction {fix['per_entry_total']:.2f}; "
          f"undo's records {fix['undo_per_entry']:.2f}")
    print(f"peak RSS  scan {scan['rss_kb'] / 1024:.1f} MB, fix {fix['rss_fix_kb'] / 1024:.1f} MB, "
          f"undo {fix['rss_undo_kb'] / 1024:.1f} MB (getrusage in the child; "
          f"VmHWM at most {max(scan['hwm_kb'], fix['hwm_kb']) / 1024:.1f} MB)")
    return ok


def bench_big(tmp: str, entries: int, seed: int) -> bool:
    tree = os.path.join(tmp, "big")
    install = os.path.join(tmp, "install-big")
    os.mkdir(install)
    t0 = time.perf_counter()
    counts = generate(tree, entries, seed)
    gen = time.perf_counter() - t0
    original = modes_digest(tree)
    os.sync()
    find_t = timed(find_cmd(tree))[0]
    scan_t, scan = ours("scan", tree)
    os.sync()
    fix_t, fix = ours("fix", tree, install)
    if modes_digest(tree)[2] != 0 or fix["changed"] != original[2]:
        raise SystemExit("the big fix did not change what the rule says")
    rec, _ = txn_bytes(fix["txn"])
    os.sync()
    undo_t, undo = ours("undo", tree, install)
    if modes_digest(tree)[0] != original[0]:
        raise SystemExit("the big undo did not give back every original mode")
    mb = [x["maxrss_kb"] / 1024 for x in (scan, fix, undo)]
    print(f"\nbig tree: {entries:,} entries ({counts['dirs']:,} dirs), generated in {gen:.1f} s; "
          f"the fix changes {fix['changed']:,}")
    print(f"       find {ms(find_t)}, scan {ms(scan_t)} ({scan_t / find_t:.2f}x); fix {ms(fix_t)}; undo {ms(undo_t)}; "
          f"journal {rec / max(fix['changed'], 1):.2f} bytes/entry")
    good = max(mb) <= 150
    hwm = max(x["vmhwm_kb"] for x in (scan, fix, undo)) / 1024
    print(f"peak RSS  scan {mb[0]:.1f} MB, fix {mb[1]:.1f} MB, undo {mb[2]:.1f} MB   "
          f"(target <= 150 MB: {'ok' if good else 'MISSED'}; VmHWM at most {hwm:.1f} MB)")
    shutil.rmtree(tree)
    shutil.rmtree(install)
    return good


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also the 1,000,000-entry tree (memory target)")
    ap.add_argument("--big-entries", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--tmp", default=None, help="where to generate the trees (default: the system temp dir)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="dh-media-", dir=args.tmp)
    try:
        tree = os.path.join(tmp, "media")
        t0 = time.perf_counter()
        counts = generate(tree, args.entries, args.seed)
        gen = time.perf_counter() - t0
        original = modes_digest(tree)
        assert original[1] == args.entries, original
        print(f"(generated {args.entries:,} entries in {gen:.1f} s under {tmp})")
        scan = bench_scan(tree, args.runs)
        if scan["counts"] != original[3] or scan["entries"] != args.entries - 1:
            raise SystemExit(f"scan_media counted {scan['counts']} of {scan['entries']}; "
                             f"expected {original[3]} of {args.entries - 1}")
        fix = bench_fix(tmp, args.entries, args.runs, args.seed, original)
        ok = report(args.entries, counts, scan, fix, args.runs)
        if args.big:
            ok = bench_big(tmp, args.big_entries, args.seed) and ok
        print("\nevery target met" if ok else "\nSOME TARGET MISSED")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
