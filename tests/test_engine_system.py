"""System files (under ``Plan.system``), owned new files, links and the reload pair, on real files.

A copy of /etc in a temp dir (``--root DIR``: DIR/etc/nginx, DIR/etc/caddy) stands in for the
system; the server "reload" is a small script that records its calls. Nothing here starts a
server. Root is needed to give a new file another owner (``root:www-data``); without it the
tests skip, saying so.
"""

from __future__ import annotations

import base64
import ctypes
import grp
import json
import os
import secrets
import signal
import stat
import sys
from pathlib import Path

import pytest

from checks.change.confined import ConfinementError, system_problem
from checks.change.engine import Engine, EngineError, recover_install
from checks.change.hostjournal import records
from checks.change.intent import BadJournal
from checks.change.journal import list_txns
from checks.change.plan import Change, Command, FileEdit, Link, Plan
from checks.change.preview import render
from tests.treesnap import differences, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving a new file another owner (root:www-data) needs root")

CADDYFILE = b":80 {\n\troot * /usr/share/caddy\n\tfile_server\n}\n"
SITE = b"server {\n    listen 443 ssl;\n    server_name media.example.org;\n}\n"
PASSWORD = "Gen3rated-Login-" + "x7Q9"


def pem() -> str:
    body = base64.b64encode(secrets.token_bytes(300)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


def www_gid() -> int:
    try:
        return grp.getgrnam("www-data").gr_gid
    except KeyError:
        return 12345  # any other group shows the owner is the plan's, not the directory's


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


class Site:
    """An installation and a system root DIR with Debian's layout of nginx and caddy."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.install = tmp / "desterlib"
        write(self.install / "docker-compose.yml", b"services: {}\n")
        write(self.install / ".env", b"A=1\n", 0o600)
        self.dir = tmp / "sysroot"
        self.nginx = self.dir / "etc" / "nginx"
        self.caddy = self.dir / "etc" / "caddy"
        write(self.nginx / "nginx.conf", b"include /etc/nginx/sites-enabled/*;\n")
        write(self.nginx / "sites-available" / "default", b"server { listen 80 default_server; }\n")
        (self.nginx / "sites-enabled").mkdir()
        os.symlink("../sites-available/default", self.nginx / "sites-enabled" / "default")
        write(self.caddy / "Caddyfile", CADDYFILE)
        for d in (self.dir, self.dir / "etc", self.nginx, self.caddy):
            os.chmod(d, 0o755)
        self.log = tmp / "reloads.log"
        self.reload = write(tmp / "bin" / "reload", f"#!/bin/sh\necho \"$*\" >> {self.log}\n".encode(), 0o755)
        self.key = pem()

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def plan(self, last: Command | None = None) -> Plan:
        """The TLS install's shape: reload pair around a site, a password file, a key, a Caddyfile edit, a link."""
        reload = (str(self.reload), "nginx")
        htpasswd = f"dester:{'$2b$04$' + 'a' * 53}\n".encode()
        changes: list[Change] = [
            Command(("true",), reload, "reload nginx when this is taken back", host=True),
            FileEdit(str(self.nginx / "sites-available" / "desterlib"), None, SITE, 0o644, (0, 0)),
            FileEdit(str(self.nginx / "desterlib.htpasswd"), None, htpasswd, 0o640, (0, www_gid())),
            FileEdit(str(self.nginx / "desterlib.key"), None, self.key.encode(), 0o600, (0, 0)),
            FileEdit(str(self.caddy / "Caddyfile"), CADDYFILE, CADDYFILE + b"import /etc/caddy/desterlib\n"),
            Link(str(self.nginx / "sites-enabled" / "desterlib"), "../sites-available/desterlib"),
            last or Command(reload, ("true",), "reload nginx", host=True),
        ]
        return Plan(checks=["TLS-001"], changes=changes, secrets={self.key, PASSWORD},
                    system=[str(self.nginx), str(self.caddy)], shown_secrets={"login": PASSWORD})


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


def undo_last(root: Path) -> None:
    engine = Engine(str(root), "undo")
    txn = engine.find(None)
    plan, conflicts = engine.undo_plan(txn)
    assert not conflicts, conflicts
    engine.apply(plan, kind="undo", undoes=txn.id)


# -- apply and undo ---------------------------------------------------------------------------------


def test_install_then_undo_leaves_the_system_tree_byte_identical(site):
    before = snapshot(site.dir)
    result = Engine(str(site.install)).apply(site.plan())
    now = snapshot(site.dir)
    assert now["etc/nginx/desterlib.htpasswd"][:4] == ("f", 0o640, 0, www_gid())
    assert now["etc/nginx/desterlib.key"][:4] == ("f", 0o600, 0, 0)
    assert now["etc/nginx/sites-available/desterlib"][:4] == ("f", 0o644, 0, 0)
    assert now["etc/nginx/sites-enabled/desterlib"][0::4] == ("l", "../sites-available/desterlib")
    assert (site.nginx / "sites-enabled" / "desterlib").read_bytes() == SITE
    assert (site.caddy / "Caddyfile").read_bytes().endswith(b"import /etc/caddy/desterlib\n")
    assert site.calls() == ["nginx"]  # the apply-side reload, after the files; the rollback side did nothing
    intent = result.txn.intent
    assert intent["format"] == 4 and intent["system"] == sorted([str(site.caddy), str(site.nginx)])
    assert intent["named"] == []  # system files are not files the user named
    marks = [e.get("system") for e in intent["entries"] if e["type"] in ("file", "link")]
    assert marks == [True] * 5
    # The host journal knows the transaction changed the host.
    assert [r["id"] for r in records()] == [result.txn.id]
    # The key is in the journal only as a token.
    for name in os.listdir(result.txn.dir):
        blob = (Path(result.txn.dir) / name).read_bytes()
        assert site.key.splitlines()[1].encode() not in blob, name
    undo_last(site.install)
    assert not differences(before, snapshot(site.dir)), differences(before, snapshot(site.dir))
    assert site.calls() == ["nginx", "nginx"]  # undo reloads again, after the files are back


def test_a_failing_reload_rolls_back_every_file_and_the_link(site):
    before = snapshot(site.dir)
    with pytest.raises(EngineError, match="reload nginx failed"):
        Engine(str(site.install)).apply(site.plan(Command(("false",), ("true",), "reload nginx", host=True)))
    assert not differences(before, snapshot(site.dir)), differences(before, snapshot(site.dir))
    assert [t.state for t in list_txns(str(site.install))] == ["rolled-back"]
    assert site.calls() == ["nginx"]  # the rollback-side reload, with the old files back


def test_the_preview_names_system_paths_absolutely_and_masks_the_key(site):
    text = render(site.plan(), str(site.install))
    link = site.nginx / "sites-enabled" / "desterlib"
    assert f"+ link {link} -> ../sites-available/desterlib" in text, text
    assert f"new file {site.nginx / 'desterlib.htpasswd'} (mode 0640, owner root:{grp.getgrgid(www_gid()).gr_name})" \
        in text, text
    assert "+-----BEGIN PRIVATE KEY-----" in text  # what the file is stays readable
    for line in site.key.splitlines()[1:-1]:
        assert line not in text
    assert "1 link(s)" in text.splitlines()[0]


def test_a_pem_key_as_a_secret_round_trips_through_the_secret_store_and_undo(site):
    old, new = pem(), pem()
    key = write(site.nginx / "old.key", old.encode(), 0o600)
    before = snapshot(site.dir)
    plan = Plan(checks=["TLS-001"], changes=[FileEdit(str(key), old.encode(), new.encode())], secrets={old, new},
                system=[str(site.nginx)])
    result = Engine(str(site.install)).apply(plan)
    assert key.read_bytes() == new.encode()
    assert result.secret_store == "keyring"  # the hermetic plaintext keyring: the store's real path
    for name in os.listdir(result.txn.dir):
        blob = (Path(result.txn.dir) / name).read_bytes()
        assert old.splitlines()[2].encode() not in blob and new.splitlines()[2].encode() not in blob
    undo_last(site.install)
    assert key.read_bytes() == old.encode()
    assert not differences(before, snapshot(site.dir))


def test_an_owned_new_file_inside_the_installation_and_its_undo(site):
    path = site.install / "extra.conf"
    Engine(str(site.install)).apply(Plan(checks=["X"], changes=[FileEdit(str(path), None, b"x\n", 0o640, (0, 12345))]))
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 12345)
    undo_last(site.install)
    assert not path.exists()


# -- links ------------------------------------------------------------------------------------------


def test_a_link_replaced_since_is_a_conflict_and_undo_leaves_it(site):
    Engine(str(site.install)).apply(site.plan())
    link = site.nginx / "sites-enabled" / "desterlib"
    link.unlink()
    os.symlink("/elsewhere", link)
    engine = Engine(str(site.install), "undo")
    plan, conflicts = engine.undo_plan(engine.find(None))
    assert [c.path for c in conflicts] == [str(link)]
    assert b"/elsewhere" in (conflicts[0].current or b"")
    assert not any(isinstance(c, Link) for c in plan.changes)


def test_a_rollback_leaves_a_link_someone_replaced_meanwhile(site):
    link = site.nginx / "sites-enabled" / "desterlib"
    swap = Command(("sh", "-c", f"ln -sfn /elsewhere {link}; exit 1"), ("true",), "swap the link")
    with pytest.raises(EngineError):
        Engine(str(site.install)).apply(site.plan(swap))
    assert os.readlink(link) == "/elsewhere"
    assert not (site.nginx / "desterlib.key").exists()


def test_a_link_inside_the_installation_is_confined_like_its_files(site):
    (site.install / "conf").mkdir()
    plan = Plan(checks=["X"], changes=[Link(str(site.install / "conf" / "current"), "../docker-compose.yml")])
    before = snapshot(site.install)
    Engine(str(site.install)).apply(plan)
    assert os.readlink(site.install / "conf" / "current") == "../docker-compose.yml"
    undo_last(site.install)
    after = {k: v for k, v in snapshot(site.install).items() if not k.startswith(".dester-harden")}
    assert not differences({k: v for k, v in before.items() if not k.startswith(".dester-harden")}, after)


def test_a_link_is_only_made_where_nothing_is(site):
    write(site.nginx / "sites-enabled" / "desterlib", b"a file\n")
    before = snapshot(site.dir)
    with pytest.raises(EngineError, match="exists"):
        Engine(str(site.install)).apply(site.plan())
    assert not differences(before, snapshot(site.dir))
    assert "exists already" in (system_problem(str(site.nginx / "sites-enabled" / "desterlib"),
                                               [str(site.nginx)], link=True) or "")


# -- trust ------------------------------------------------------------------------------------------


def _owner_other(site: Site) -> Path:
    os.chown(site.nginx, 1000, 1000)
    return site.nginx


def _group_writable(site: Site) -> Path:
    os.chmod(site.nginx / "sites-available", 0o775)
    return site.nginx / "sites-available"


def _sticky_inside(site: Site) -> Path:
    os.chmod(site.nginx / "sites-available", 0o1777)
    return site.nginx / "sites-available"


def _symlink_inside(site: Site) -> Path:
    real = site.tmp / "elsewhere"
    (site.nginx / "sites-available").rename(real)
    os.symlink(str(real), site.nginx / "sites-available")
    return site.nginx / "sites-available"


def _symlinked_system_dir(site: Site) -> Path:
    real = site.tmp / "nginx-real"
    site.nginx.rename(real)
    os.symlink(str(real), site.nginx)
    return site.nginx


def _group_writable_above(site: Site) -> Path:
    os.chmod(site.dir / "etc", 0o775)
    return site.dir / "etc"


def _hard_linked(site: Site) -> Path:
    os.link(site.caddy / "Caddyfile", site.tmp / "other-name")
    return site.caddy / "Caddyfile"


@pytest.mark.parametrize("spoil", [_owner_other, _group_writable, _sticky_inside, _symlink_inside,
                                   _symlinked_system_dir, _group_writable_above, _hard_linked])
def test_an_untrusted_way_to_a_system_file_is_refused_in_one_line_and_nothing_changes(site, spoil):
    where = spoil(site)
    before = snapshot(site.dir)
    with pytest.raises(ConfinementError) as exc:
        Engine(str(site.install)).apply(site.plan())
    message = str(exc.value)
    assert "\n" not in message and str(where) in message, message
    assert not differences(before, snapshot(site.dir))
    assert list_txns(str(site.install)) == [] and site.calls() == []
    # The planner asks the same rule beforehand.
    target = site.caddy / "Caddyfile" if spoil is _hard_linked else site.nginx / "sites-available" / "desterlib"
    why = system_problem(str(target), [str(site.nginx), str(site.caddy)])
    assert why is not None and str(where) in why, why


def test_a_root_reached_through_a_trusted_link_above_the_system_dir_is_followed(site):
    alias = site.tmp / "alias"
    os.symlink(str(site.dir), alias)
    plan = Plan(checks=["TLS-001"], changes=[FileEdit(str(alias / "etc/nginx/conf.d-site"), None, SITE, 0o644)],
                system=[str(alias / "etc" / "nginx")])
    assert system_problem(str(alias / "etc/nginx/conf.d-site"), plan.system) is None
    Engine(str(site.install)).apply(plan)
    assert (site.nginx / "conf.d-site").read_bytes() == SITE
    undo_last(site.install)
    assert not (site.nginx / "conf.d-site").exists()


def test_a_file_outside_the_installation_and_the_system_dirs_stays_refused(site):
    other = write(site.dir / "etc" / "passwd", b"root:x:0:0::/root:/bin/sh\n")
    plan = Plan(checks=["X"], changes=[FileEdit(str(other), other.read_bytes(), b"owned\n")], system=[str(site.nginx)])
    with pytest.raises(ConfinementError, match="outside the installation"):
        Engine(str(site.install)).apply(plan)
    assert other.read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert system_problem(str(other), [str(site.nginx)]) is not None


def test_a_system_dir_overlapping_the_installation_is_refused(site):
    plan = Plan(checks=["X"], changes=[FileEdit(str(site.install / ".env"), b"A=1\n", b"A=2\n")],
                system=[str(site.tmp)])
    with pytest.raises(ConfinementError, match="overlaps"):
        Engine(str(site.install)).apply(plan)


# -- the journal --------------------------------------------------------------------------------------


def _tamper(site: Site, change) -> None:
    txn = list_txns(str(site.install))[-1]
    path = Path(txn.dir) / "intent.json"
    intent = json.loads(path.read_bytes())
    change(intent)
    path.write_text(json.dumps(intent))


@pytest.mark.parametrize("how", ["outside", "format3", "unmarked"])
def test_a_tampered_journal_naming_a_system_path_outside_its_dirs_is_refused(site, how):
    Engine(str(site.install)).apply(site.plan())
    passwd = str(site.dir / "etc" / "passwd")

    def change(intent):
        entry = next(e for e in intent["entries"] if e["type"] == "file")
        if how == "outside":
            entry["path"] = passwd
        elif how == "format3":
            intent["format"] = 3
        else:
            entry["path"], entry["system"] = passwd, False

    _tamper(site, change)
    engine = Engine(str(site.install), "undo")
    with pytest.raises(BadJournal):
        engine.undo_plan(engine.find(None))


def test_a_transaction_without_system_changes_stays_format_3_for_older_releases(site):
    plan = Plan(checks=["X"], changes=[FileEdit(str(site.install / ".env"), b"A=1\n", b"A=2\n")],
                system=[str(site.nginx)])
    intent = Engine(str(site.install)).apply(plan).txn.intent
    assert intent["format"] == 3 and "system" not in intent
    assert records() == []  # nothing changed on the host: no host record


# -- kill -9 ------------------------------------------------------------------------------------------

POINTS = [f"mark:{n}" for n in range(1, 15)] + ["link-rename", "file-rename:1", "file-rename:3"]


def _killed_child(site: Site, point: str, recover: bool = False) -> int:
    """Fork a child that applies the plan (``recover``: recovers) and SIGKILLs itself at ``point``; its wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns to pytest
        try:
            from checks.change.handlers import link as link_mod
            from checks.change.progress import Progress

            kind, _, n = point.partition(":")
            count = [0]

            def hit() -> None:
                count[0] += 1
                if count[0] == int(n or 1):
                    os.kill(os.getpid(), signal.SIGKILL)

            if kind == "mark":
                real_mark = Progress.mark

                def mark(self, state, i):
                    real_mark(self, state, i)
                    hit()

                Progress.mark = mark  # type: ignore[method-assign]
            elif kind == "link-rename":
                real_rename = link_mod.rename_noreplace

                def rename(*a):
                    hit()
                    real_rename(*a)

                link_mod.rename_noreplace = rename
            else:
                real_replace = os.replace

                def replace(src, dst, *a, **k):
                    if ".dh-" in str(src):
                        hit()
                    return real_replace(src, dst, *a, **k)

                os.replace = replace
            if recover:
                recover_install(str(site.install))
            else:
                Engine(str(site.install)).apply(site.plan())
        finally:
            sys.stdout.flush()
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_entry_boundary_is_recovered_to_wholly_before(site, point):
    before = snapshot(site.dir)
    status = _killed_child(site, point)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"{point} was never reached"
    messages = recover_install(str(site.install))
    assert messages and "rolled back" in messages[0], messages
    assert not differences(before, snapshot(site.dir)), differences(before, snapshot(site.dir))
    assert [t.state for t in list_txns(str(site.install))] == ["rolled-back"]


@pytest.mark.parametrize("n", range(1, 7))
def test_a_kill_during_the_recovery_is_recovered_by_the_next_one(site, n):
    before = snapshot(site.dir)
    assert os.WTERMSIG(_killed_child(site, "mark:14")) == signal.SIGKILL
    status = _killed_child(site, f"mark:{n}", recover=True)  # after the n-th entry taken back
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    recover_install(str(site.install))
    assert not differences(before, snapshot(site.dir)), differences(before, snapshot(site.dir))
    assert [t.state for t in list_txns(str(site.install))] == ["rolled-back"]


def test_a_link_is_made_without_renameat2_too(site, monkeypatch):
    from checks.change.handlers import link as link_mod

    class NoRenameat2:
        def __init__(self, *a, **k) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoRenameat2)
    d = os.open(site.nginx / "sites-enabled", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.symlink("a", ".t1", dir_fd=d)
        link_mod.rename_noreplace(d, ".t1", "one")
        os.symlink("b", ".t2", dir_fd=d)
        with pytest.raises(FileExistsError):
            link_mod.rename_noreplace(d, ".t2", "one")
    finally:
        os.close(d)
    assert os.readlink(site.nginx / "sites-enabled" / "one") == "a"
    assert not (site.nginx / "sites-enabled" / ".t1").is_symlink()
