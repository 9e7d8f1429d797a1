"""Changes stay inside the installation, even when its owner attacks root.

Every attack here is planted by an unprivileged owner: the installation and
the attacker's links and files belong to uid/gid 65534, and dester-harden
runs as root (the test process). A *victim tree* outside the installation
(root's files next to it) is compared byte for byte (contents, modes, owners,
link targets) before and after: each attack is refused with its reason in
the plan, and nothing outside the installation changes.

Hard links are made by the test itself (as root): with
``fs.protected_hardlinks`` off, or to a file of its own elsewhere, the owner
could make them too.
"""

from __future__ import annotations

import errno
import os
import pty
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks.change.confined import Confined, ConfinementError, ImmutableError
from checks.change.engine import Engine, EngineError
from checks.change.journal import JOURNAL_DIR, list_txns
from checks.change.plan import FileEdit, ModeChange
from checks.fix.planner import plan_fixes

from .conftest import PROJECT, run_cli
from .installs import CLI_PASSWORD, cli_install, tree_snapshot

NOBODY = 65534
IN_CI = os.environ.get("CI") == "true"
MODE_FIXES = "FS-001,FS-002,FS-003,FS-006"

if os.geteuid() != 0:
    if IN_CI:
        raise RuntimeError("tests/test_confine.py must run as root under CI=true (the attacks need uid 65534)")
    pytestmark = pytest.mark.skip(reason="needs root: the installation's owner (uid 65534) attacks root")


# -- helpers ----------------------------------------------------------------------




def give_to_owner(top: Path) -> None:
    """The installation belongs to uid/gid 65534, links included (never their targets)."""
    os.lchown(top, NOBODY, NOBODY)
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(d, name), NOBODY, NOBODY)


def cli(*args: str):
    r = run_cli(*args)
    assert "Traceback" not in r.out + r.err, r.out + r.err
    assert "internal error" not in r.err, r.err
    return r


def write(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


VICTIM_ENV = "DATABASE_URL=postgresql://desterlib:Kx7pLm2Qw9@postgres:5432/desterlib\nJWT_SECRET=changeme\n"


def add_env_file(root: Path, ref: str) -> None:
    """``env_file: ref`` in the API service of the CLI install's compose file."""
    compose = root / "docker-compose.yml"
    text = compose.read_text()
    image = "    image: desterlib/api:latest\n"
    compose.write_text(text.replace(image, f"{image}    env_file: {ref}\n", 1))


# Each attack plants its files and returns the words its refusal must say.

def absolute_env_file(root: Path, victim: Path) -> str:
    write(victim / "secret.env", VICTIM_ENV, 0o644)
    write(victim / ".env.bak", "OLD=1\n", 0o644)  # FS-006 looks beside every env file
    add_env_file(root, str(victim / "secret.env"))
    return "is outside the installation directory"


def env_file_under_symlinked_dir(root: Path, victim: Path) -> str:
    write(victim / "conf" / "api.env", VICTIM_ENV, 0o644)
    write(victim / "conf" / ".env.bak", "OLD=1\n", 0o644)
    os.symlink(victim / "conf", root / "conf")
    add_env_file(root, "conf/api.env")
    return "is reached through the symbolic link conf"


def compose_file_outside(root: Path, victim: Path) -> str:
    write(victim / "compose" / "docker-compose.yml", (root / "docker-compose.yml").read_text(), 0o644)
    os.chmod(victim / "compose", 0o777)  # FS-003 would take group/other write off the compose file's directory
    with open(root / ".env", "a") as fh:
        fh.write(f"COMPOSE_FILE={victim / 'compose' / 'docker-compose.yml'}\n")
    return "is outside the installation directory"


def hardlinked_env(root: Path, victim: Path) -> str:
    write(victim / "app.env", (root / ".env").read_text(), 0o644)
    os.unlink(root / ".env")
    os.link(victim / "app.env", root / ".env")
    return "has 2 hard links"


def hardlinked_compose(root: Path, victim: Path) -> str:
    write(victim / "compose.yml", (root / "docker-compose.yml").read_text(), 0o666)
    os.unlink(root / "docker-compose.yml")
    os.link(victim / "compose.yml", root / "docker-compose.yml")
    return "has 2 hard links"


def symlinked_env(root: Path, victim: Path) -> str:
    write(victim / "app.env", (root / ".env").read_text(), 0o644)
    os.unlink(root / ".env")
    os.symlink(victim / "app.env", root / ".env")
    return ".env is a symbolic link"


ATTACKS = [absolute_env_file, env_file_under_symlinked_dir, compose_file_outside, hardlinked_env,
           hardlinked_compose, symlinked_env]


@pytest.fixture
def site(tmp_path):
    """(install root, victim tree, host root): the install is the owner's, the victim root's."""
    root = cli_install(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    host = tmp_path / "host"
    host.mkdir()
    return root, victim, host


def planted(site, attack):
    root, victim, host = site
    words = attack(root, victim)
    give_to_owner(root.parent)  # the install and the Media beside it; the victim stays root's
    return root, victim, host, words


# -- the attacks, through the command line ----------------------------------------------


@pytest.mark.parametrize("only", [None, MODE_FIXES], ids=["all-fixes", "mode-fixes"])
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_an_owner_cannot_make_root_change_a_file_outside_the_installation(site, attack, only):
    root, victim, host, words = planted(site, attack)
    before = tree_snapshot(victim)
    args = ["fix", "--dir", str(root), "--host-root", str(host)] + (["--only", only] if only else [])
    dry = cli(*args, "--dry-run")
    assert dry.code in (0, 1), dry.err
    assert "Not changed (do these by hand):" in dry.out, dry.out
    refusals = dry.out.split("Not changed (do these by hand):", 1)[1]
    assert words in refusals, dry.out
    # The preview shows no change of a victim file: not as a diff, not as a mode.
    for rel in before:
        if rel != ".":
            assert f"b/{victim / rel}" not in dry.out and f"\n{victim / rel} " not in dry.out, rel
    assert tree_snapshot(victim) == before

    done = cli(*args, "--yes")
    assert done.code in (0, 1), done.out + done.err
    assert done.err.strip() == "" or len(done.err.strip().splitlines()) == 1, done.err
    assert tree_snapshot(victim) == before, "a file outside the installation changed"
    if only is None:
        assert "Applied as transaction" in done.out, done.out  # what is inside was still fixed


def test_a_symlinked_env_is_refused_in_the_plan_not_at_apply(site):
    root, victim, host, words = planted(site, symlinked_env)
    dry = cli("fix", "--dir", str(root), "--host-root", str(host), "--dry-run")
    assert "b/.env" not in dry.out and "a/.env" not in dry.out, dry.out  # no diff of it at all
    done = cli("fix", "--dir", str(root), "--host-root", str(host), "--yes")
    assert done.code in (0, 1) and "symbolic link" not in done.err, done.err


def test_a_compose_file_named_with_file_is_changed_even_outside_and_the_plan_says_so(site):
    root, victim, host = site
    elsewhere = victim / "elsewhere"
    named = write(elsewhere / "compose.yml", (root / "docker-compose.yml").read_text(), 0o644)
    give_to_owner(root.parent)
    before_install = tree_snapshot(root)
    args = ["fix", "--dir", str(root), "--host-root", str(host), "--file", str(named), "--only", "NET-001"]
    dry = cli(*args, "--dry-run")
    assert f"+++ b/{named}" in dry.out, dry.out
    assert f"{named} is OUTSIDE the installation directory {root}" in dry.out, dry.out
    done = cli(*args, "--yes")
    assert done.code in (0, 1), done.err
    assert '"127.0.0.1:5432:5432"' in named.read_text()
    assert stat.S_IMODE(os.stat(named).st_mode) == 0o644
    assert {k: v for k, v in tree_snapshot(root).items() if not k.startswith(JOURNAL_DIR)} == before_install
    undo = cli("undo", "--dir", str(root), "--last", "--yes")
    assert undo.code == 0, undo.err
    assert '"5432:5432"' in named.read_text() and "127.0.0.1" not in named.read_text()


def test_planning_never_mirrors_a_compose_file_out_of_its_private_temp_dir(site):
    """compose_check copies the planned compose files to a temp dir: one outside the install must
    not land at temp/../../its/path (as root, before any question: a dry run already did it)."""
    from checks.fix.planner import compose_available

    if not compose_available():
        pytest.skip("docker compose is not installed: the planner's compose validation does not run")
    root, victim, host = site
    write(victim / "compose" / "override.yml", "services:\n  api:\n    environment:\n      EXTRA: \"1\"\n", 0o644)
    with open(root / ".env", "a") as fh:
        fh.write(f"COMPOSE_FILE=docker-compose.yml:{victim / 'compose' / 'override.yml'}\n")
    give_to_owner(root.parent)
    # temp/X/../.. is then the directory that holds the victim tree.
    tmpdir = root.parent.parent / "tmp"
    tmpdir.mkdir()
    outside = root.parent.parent
    before = {k: v for k, v in tree_snapshot(outside).items() if not k.startswith(("cli", "tmp"))}
    for mode in ("--dry-run", "--yes"):
        r = run_cli("fix", "--dir", str(root), "--host-root", str(host), mode, env={"TMPDIR": str(tmpdir)})
        assert "Traceback" not in r.err and r.code in (0, 1), r.err
        assert {k: v for k, v in tree_snapshot(outside).items() if not k.startswith(("cli", "tmp"))} == before, mode
    assert os.listdir(tmpdir) == []


# -- the engine: a directory swapped for a symbolic link after the plan ---------------------


@pytest.fixture
def conf_site(site):
    """An env file in a real directory conf/ of the install, and its exact copy in the victim tree."""
    root, victim, host = site
    write(root / "conf" / "api.env", VICTIM_ENV, 0o644)
    write(victim / "conf" / "api.env", VICTIM_ENV, 0o644)
    add_env_file(root, "conf/api.env")
    give_to_owner(root.parent)
    plan, _ = plan_fixes(str(root), only={"SEC-001", "SEC-007", "FS-001"}, host_root=str(host))
    conf_env = str(root / "conf" / "api.env")
    assert conf_env in plan.files(), plan.files()
    assert any(isinstance(c, ModeChange) and c.path == conf_env for c in plan.changes)
    return root, victim, plan


def swap_conf(root: Path, victim: Path) -> None:
    """What the owner does: conf/ moves aside (inside the install), a link to the victim takes its place."""
    os.rename(root / "conf", root / "conf.moved")
    os.symlink(victim / "conf", root / "conf")
    os.lchown(root / "conf", NOBODY, NOBODY)


def test_a_directory_swapped_for_a_symlink_between_plan_and_apply_redirects_nothing(conf_site):
    root, victim, plan = conf_site
    swap_conf(root, victim)
    before, before_install = tree_snapshot(victim), tree_snapshot(root)
    with pytest.raises(ConfinementError, match="conf is a symbolic link"):
        Engine(str(root)).apply(plan)
    assert tree_snapshot(victim) == before
    assert {k: v for k, v in tree_snapshot(root).items() if not k.startswith(JOURNAL_DIR)} == before_install
    assert Engine(str(root)).pending() == []  # refused while checking the plan: nothing journaled


def test_a_directory_swapped_mid_apply_redirects_nothing_and_rolls_back(conf_site, monkeypatch):
    root, victim, plan = conf_site
    before, before_install = tree_snapshot(victim), tree_snapshot(root)
    real = Engine._apply_entry
    done = []

    def apply_then_swap(self, entry, *a, **k):
        real(self, entry, *a, **k)
        done.append(entry.path)
        if len(done) == 1:
            swap_conf(root, victim)

    monkeypatch.setattr(Engine, "_apply_entry", apply_then_swap)
    with pytest.raises(EngineError):
        Engine(str(root)).apply(plan)
    monkeypatch.undo()
    assert tree_snapshot(victim) == before
    # The rollback went to the real files (now under conf.moved), not through the link.
    now = tree_snapshot(root)
    moved = {k.replace("conf.moved", "conf", 1): v for k, v in now.items() if k.startswith("conf.moved")}
    assert moved == {k: v for k, v in before_install.items() if k.startswith("conf")}
    assert {k: v for k, v in now.items() if not k.startswith((JOURNAL_DIR, "conf"))} == \
        {k: v for k, v in before_install.items() if not k.startswith("conf")}


def test_a_swap_after_the_directory_was_verified_cannot_redirect_the_rename(conf_site, monkeypatch):
    """The narrowest window: the directory is swapped right after the engine opened it."""
    root, victim, plan = conf_site
    before = tree_snapshot(victim)
    real = Confined.parent
    swapped: list[object] = []

    def parent_then_swap(self, path, named=False):
        out = real(self, path, named)
        if path.endswith("conf/api.env") and not swapped and os.path.isdir(root / "conf") \
                and not os.path.islink(root / "conf") and _in_replace():
            swap_conf(root, victim)
            swapped.append(path)
        return out

    monkeypatch.setattr(Confined, "parent", parent_then_swap)
    with pytest.raises(ConfinementError):  # FS-001's chmod of conf/api.env comes next: refused
        Engine(str(root)).apply(plan)
    monkeypatch.undo()
    assert swapped, "the swap never happened"
    assert tree_snapshot(victim) == before
    # The rename went to the directory that was verified (now conf.moved), not through the link.
    assert CLI_PASSWORD not in (root / "conf.moved" / "api.env").read_text()


def _in_replace() -> bool:
    frame = sys._getframe(2)
    return frame.f_code.co_name == "replace"


@pytest.mark.parametrize("only", ["FS-001", "SEC-001"])
def test_a_file_hard_linked_to_a_victim_after_the_plan_is_not_changed(site, only):
    root, victim, host = site
    env = root / ".env"
    give_to_owner(root.parent)
    plan, _ = plan_fixes(str(root), only={only}, host_root=str(host))
    assert any(c.path == str(env) for c in plan.changes if isinstance(c, (FileEdit, ModeChange)))
    # The owner puts a hard link to the victim (same bytes, same mode) where .env was.
    shutil.copy2(env, victim / "shadow")
    os.unlink(env)
    os.link(victim / "shadow", env)
    before = tree_snapshot(victim)
    with pytest.raises(ConfinementError, match="hard links"):
        Engine(str(root)).apply(plan)
    assert tree_snapshot(victim) == before


# -- xattrs and ACLs, immutable files ----------------------------------------------------


def _acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A system.posix_acl_access value: version 2, then (tag, perm, id) sorted by tag and id."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


_ANY = 0xFFFFFFFF
ACL = _acl([(0x01, 6, _ANY), (0x02, 4, NOBODY), (0x04, 4, _ANY), (0x10, 4, _ANY), (0x20, 4, _ANY)])


def test_xattrs_and_the_acl_survive_a_fix_and_come_back_with_undo(site):
    root, victim, host = site
    env = root / ".env"
    try:
        os.setxattr(env, "user.dester.test", b"kept")
        os.setxattr(env, "system.posix_acl_access", ACL)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip(f"the filesystem of {env.parent} has no user xattrs or ACLs")
        raise
    attrs = {k: os.getxattr(env, k) for k in os.listxattr(env)}
    mode = stat.S_IMODE(os.stat(env).st_mode)
    engine = Engine(str(root))
    plan, _ = plan_fixes(str(root), only={"SEC-001"}, host_root=str(host))
    assert str(env) in plan.files()
    engine.apply(plan)
    assert CLI_PASSWORD not in env.read_text()
    assert {k: os.getxattr(env, k) for k in os.listxattr(env)} == attrs
    assert stat.S_IMODE(os.stat(env).st_mode) == mode
    txn = engine.find(None)
    undo, conflicts = engine.undo_plan(txn)
    assert not conflicts
    engine.apply(undo, kind="undo", undoes=txn.id)
    assert CLI_PASSWORD in env.read_text()
    assert {k: os.getxattr(env, k) for k in os.listxattr(env)} == attrs


def chattr(flag: str, path: Path) -> None:
    proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr {flag} does not work on {path.parent}: {proc.stderr.strip()}")


@pytest.fixture
def immutable_later(site):
    """(root, host); .env and the compose file lose any +i a test gave them afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed")
    root, victim, host = site
    yield root, host
    for name in (".env", "docker-compose.yml"):
        subprocess.run(["chattr", "-i", str(root / name)], capture_output=True)


def test_an_immutable_file_is_refused_in_the_plan(immutable_later):
    root, host = immutable_later
    env = root / ".env"
    chattr("+i", env)
    dry = cli("fix", "--dir", str(root), "--host-root", str(host), "--dry-run")
    refusals = dry.out.split("Not changed (do these by hand):", 1)[-1]
    assert ".env is immutable (chattr +i)" in refusals, dry.out
    assert "b/.env" not in dry.out


def test_a_file_in_an_immutable_directory_is_refused_in_the_plan(immutable_later):
    root, host = immutable_later
    conf = root / "conf"
    write(conf / "api.env", VICTIM_ENV, 0o600)
    add_env_file(root, "conf/api.env")
    chattr("+i", conf)
    try:
        dry = cli("fix", "--dir", str(root), "--host-root", str(host), "--dry-run")
        done = cli("fix", "--dir", str(root), "--host-root", str(host), "--yes")
    finally:
        subprocess.run(["chattr", "-i", str(conf)], check=True)
    refusals = dry.out.split("Not changed (do these by hand):", 1)[-1]
    assert "the directory of conf/api.env is immutable (chattr +i)" in refusals, dry.out
    assert "b/conf/api.env" not in dry.out
    assert done.code in (0, 1) and "Applied as transaction" in done.out, done.out + done.err
    assert (conf / "api.env").read_text() == VICTIM_ENV


def test_a_file_made_immutable_after_the_plan_is_named_and_everything_is_rolled_back(immutable_later):
    root, host = immutable_later
    env, compose = root / ".env", root / "docker-compose.yml"
    plan, _ = plan_fixes(str(root), host_root=str(host))
    # .env comes first in the plan: it is replaced before the compose file is reached.
    assert plan.files() == [str(env), str(compose)]
    before = tree_snapshot(root)
    chattr("+i", compose)
    with pytest.raises(ImmutableError, match=r"docker-compose\.yml is immutable \(chattr \+i\)"):
        Engine(str(root)).apply(plan)
    subprocess.run(["chattr", "-i", str(compose)], check=True)
    assert {k: v for k, v in tree_snapshot(root).items() if not k.startswith(JOURNAL_DIR)} == before
    assert [t.state for t in list_txns(str(root))] == ["rolled-back"]


def test_fix_on_a_file_made_immutable_while_it_asks_is_one_line_exit_2(immutable_later):
    root, host = immutable_later
    compose = root / "docker-compose.yml"
    before = tree_snapshot(root)
    code, out = _fix_on_pty(root, host, lambda: chattr("+i", compose))
    subprocess.run(["chattr", "-i", str(compose)], check=True)
    assert code == 2, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("dester-harden: error:")]
    assert len(errors) == 1 and f"{compose} is immutable" in errors[0], out
    assert {k: v for k, v in tree_snapshot(root).items() if not k.startswith(JOURNAL_DIR)} == before


def _fix_on_pty(root: Path, host: Path, before_yes, timeout: float = 90) -> tuple[int, str]:
    """``fix`` on a pseudo-terminal; ``before_yes()`` runs once it asks, then it gets "y"."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(PROJECT)
        try:
            argv = [sys.executable, "-m", "tui", "fix", "--dir", str(root), "--host-root", str(host)]
            os.execvpe(sys.executable, argv, dict(os.environ))
        finally:
            os._exit(127)
    out, asked = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not asked and b"[y/N]" in out:
                before_yes()
                os.write(fd, b"y\r")
                asked = True
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("timed out on the pty: " + out.decode(errors="replace"))
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
