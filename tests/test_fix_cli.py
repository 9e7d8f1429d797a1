"""The fix, history and undo commands, run as a user runs them.

Every command runs in a subprocess (``python -m tui``), without a terminal
unless a test gives it one (a pty). The installations are our own fixtures
(tests/installs.py) and the bundled demo; the host root is an empty directory.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from checks.audit.run import exit_code
from checks.core.names import JOURNAL_DIR
from checks.fix.planner import plan_fixes

from .conftest import PROJECT, run_cli
from .installs import CLI_PASSWORD, cli_install

TXN_RE = re.compile(r"Applied as transaction (\S+) ")


def cli(*args: str, env: dict | None = None):
    r = run_cli(*args, env=env)
    assert "Traceback" not in r.out + r.err, r.out + r.err
    assert "internal error" not in r.err, r.err
    return r


def snapshot(top: Path, times: bool = False, skip: tuple[str, ...] = (JOURNAL_DIR,)) -> dict[str, tuple]:
    """Everything under ``top``: type and mode, owner, content or link target (and mtimes)."""
    out = {}
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if x not in skip]
        paths = ([d] if d == str(top) else []) + [os.path.join(d, n) for n in dirs + files]
        for p in paths:
            st = os.lstat(p)
            data: bytes | str | None
            if stat.S_ISREG(st.st_mode):
                data = Path(p).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            else:
                data = None
            out[os.path.relpath(p, top)] = ((st.st_mode, st.st_uid, st.st_gid, data)
                                            + ((st.st_mtime_ns,) if times else ()))
    return out


def new_password(env_file: Path, key: str = "POSTGRES_PASSWORD") -> str:
    for line in env_file.read_text().splitlines():
        if line.startswith(key + "="):
            value = line.split("=", 1)[1]
            return value[1:-1] if value[:1] in "'\"" and value[-1:] == value[:1] else value
    raise AssertionError(f"{key} not in {env_file}")


def txn_id(out: str) -> str:
    m = TXN_RE.search(out)
    assert m, out
    return m.group(1)


@pytest.fixture
def box(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    return tmp_path, host


@pytest.fixture
def cli_box(box):
    tmp, host = box
    root = cli_install(tmp)
    return root, host, tmp


# -- fix --dry-run, and fix without a terminal ------------------------------------------


@pytest.mark.parametrize("fail_on", ["high", "medium", "low", "never"])
def test_dry_run_writes_nothing_and_exits_on_the_planned_result(cli_box, fail_on):
    root, host, tmp = cli_box
    before = snapshot(tmp, times=True, skip=())
    r = cli("fix", "--dry-run", "--dir", str(root), "--host-root", str(host), "--fail-on", fail_on)
    assert snapshot(tmp, times=True, skip=()) == before
    assert not (root / JOURNAL_DIR).exists()
    assert "Dry run: nothing was changed." in r.out
    _, planner = plan_fixes(str(root), only=None, host_root=str(host))
    assert r.code == exit_code(planner.final_report, fail_on), r.out + r.err
    assert snapshot(tmp, times=True, skip=()) == before
    if fail_on == "high":
        # The audit fails at high; the planned result does not.
        assert cli("audit", "--dir", str(root), "--host-root", str(host)).code == 1
        assert r.code == 0
    assert CLI_PASSWORD not in r.out + r.err


def test_fix_without_a_terminal_and_without_yes_refuses_and_writes_nothing(cli_box):
    root, host, tmp = cli_box
    before = snapshot(tmp, times=True, skip=())
    r = cli("fix", "--dir", str(root), "--host-root", str(host))
    assert r.code == 2
    assert "--yes" in r.err and len(r.err.strip().splitlines()) == 1
    assert snapshot(tmp, times=True, skip=()) == before
    assert not (root / JOURNAL_DIR).exists()


def test_history_and_undo_on_a_fresh_install_write_nothing(cli_box):
    root, host, tmp = cli_box
    before = snapshot(tmp, times=True, skip=())
    r = cli("history", "--dir", str(root))
    assert r.code == 0 and "No transactions yet" in r.out
    r = cli("undo", "--dir", str(root), "--yes")
    assert r.code == 2 and "nothing to undo" in r.err
    assert snapshot(tmp, times=True, skip=()) == before


# -- on a terminal: it asks ---------------------------------------------------------------


def run_on_pty(args: list[str], answer: str | None, timeout: float = 60,
               before_answer=None) -> tuple[int, str]:
    """Run ``python -m tui ARGS`` on a pseudo-terminal; type ``answer`` at the question.

    ``before_answer`` runs once the question is asked, before the answer is typed
    (while the plan is on screen).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the pty
        os.chdir(PROJECT)
        try:
            os.execvpe(sys.executable, [sys.executable, "-m", "tui", *args], dict(os.environ))
        finally:
            os._exit(127)
    out = b""
    asked = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the pty
                    break
                if not chunk:
                    break
                out += chunk
            if not asked and b"[y/N]" in out and answer is not None:
                if before_answer is not None:
                    before_answer()
                os.write(fd, answer.encode() + b"\r")
                asked = True
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("timed out on the pty: " + out.decode(errors="replace"))
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_on_a_terminal_fix_asks_and_no_changes_nothing(cli_box):
    root, host, tmp = cli_box
    before = snapshot(tmp, times=True, skip=())
    code, out = run_on_pty(["fix", "--dir", str(root), "--host-root", str(host)], "n")
    assert "Apply these changes? [y/N]" in out
    assert "Nothing was changed." in out and code == 0
    assert "Traceback" not in out
    assert snapshot(tmp, times=True, skip=()) == before
    assert CLI_PASSWORD not in out


def test_on_a_terminal_fix_asks_and_yes_applies(cli_box):
    root, host, tmp = cli_box
    code, out = run_on_pty(["fix", "--dir", str(root), "--host-root", str(host)], "y")
    assert "Apply these changes? [y/N]" in out
    assert "Applied as transaction" in out, out
    assert code == 0 and "Traceback" not in out
    assert CLI_PASSWORD not in (root / ".env").read_text()
    assert new_password(root / ".env") not in out


def test_a_file_changed_after_the_shown_plan_is_refused_at_the_confirmation(cli_box):
    """What is previewed is exactly what is applied: an edit between the plan and the "y" writes nothing."""
    root, host, tmp = cli_box
    compose = root / "docker-compose.yml"
    edited = {}

    def edit_while_the_plan_is_shown() -> None:
        with open(compose, "a", encoding="utf-8") as fh:
            fh.write("# edited by hand while the plan was on screen\n")
        edited.update(snapshot(tmp))

    code, out = run_on_pty(["fix", "--dir", str(root), "--host-root", str(host)], "y",
                           before_answer=edit_while_the_plan_is_shown)
    assert "Apply these changes? [y/N]" in out
    assert code != 0 and "Applied as transaction" not in out, out
    assert "Traceback" not in out and "internal error" not in out
    after_question = out.split("[y/N]", 1)[1]
    errors = [line for line in after_question.splitlines() if "dester-harden: error:" in line]
    assert len(errors) == 1 and "changed" in errors[0], out
    # Nothing was written: every file, mode and owner as right after the hand edit (the journal aside).
    assert snapshot(tmp) == edited
    assert "edited by hand" in compose.read_text() and CLI_PASSWORD in (root / ".env").read_text()


# -- fix --yes ------------------------------------------------------------------------------


def test_fix_and_undo_save_the_baseline_so_the_next_run_is_the_reaudit(cli_box):
    """Whichever face applied it: after `fix --yes` the assistant opens in re-audit, not as a first run."""
    from checks.assistant.baseline import drift, load_baseline
    from checks.assistant.session import Session

    root, host, tmp = cli_box
    assert Session(str(root)).first_run
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 0, r.out + r.err
    txn = txn_id(r.out)
    base = load_baseline(str(root))
    assert base is not None and base.txn == txn and base.profile == "local"
    session = Session(str(root), host_root=str(host))
    assert not session.first_run
    d = drift(base, session.audit())
    assert not d.regressions and not d.new, "nothing drifted right after the fix"
    u = cli("undo", "--last", "--yes", "--dir", str(root))
    assert u.code == 0, u.out + u.err
    m = re.search(r"recorded as (\S+)\)", u.out)
    assert m, u.out
    undo_txn = m.group(1)
    after = load_baseline(str(root))
    assert after is not None and after.txn == undo_txn and after.score < base.score


def test_fix_yes_applies_prints_the_transaction_and_the_score(cli_box):
    root, host, tmp = cli_box
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 0, r.out + r.err
    txn = txn_id(r.out)
    assert (root / JOURNAL_DIR / "txn" / txn / "intent.json").is_file()
    m = re.search(r"Score: (\d+)/100 -> (\d+)/100", r.out)
    assert m and int(m.group(2)) > int(m.group(1)), r.out
    # The preview masked both the old and the new password.
    pw = new_password(root / ".env")
    assert CLI_PASSWORD not in r.out + r.err and pw not in r.out + r.err
    assert "••••" in r.out
    assert stat.S_IMODE(os.stat(root / ".env").st_mode) == 0o600
    h = cli("history", "--dir", str(root))
    assert h.code == 0 and txn in h.out and "applied" in h.out and "SEC-001" in h.out


def test_fix_reveal_shows_the_new_password(cli_box):
    root, host, tmp = cli_box
    r = cli("fix", "--yes", "--reveal", "--dir", str(root), "--host-root", str(host))
    assert r.code == 0, r.out + r.err
    assert new_password(root / ".env") in r.out


def test_fix_only_applies_just_those_checks(cli_box):
    root, host, tmp = cli_box
    r = cli("fix", "--yes", "--only", "NET-001", "--dir", str(root), "--host-root", str(host))
    assert r.code in (0, 1), r.out + r.err
    assert '"127.0.0.1:5432:5432"' in (root / "docker-compose.yml").read_text()
    assert CLI_PASSWORD in (root / ".env").read_text()  # SEC-001 was not asked for
    intent = json.loads((root / JOURNAL_DIR / "txn" / txn_id(r.out) / "intent.json").read_text())
    assert intent["checks"] == ["NET-001"]


def test_fix_with_nothing_to_fix_exits_per_fail_on(box):
    tmp, host = box
    root = cli_install(tmp, hardened=True)
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 0 and "Nothing to change" in r.out
    assert not (root / JOURNAL_DIR).exists()


def test_fix_usage_errors_exit_2(cli_box, tmp_path):
    root, host, tmp = cli_box
    assert cli("fix", "--yes", "--dry-run", "--dir", str(root)).code == 2
    assert cli("fix", "--yes", "--dir", str(tmp_path / "missing")).code == 2
    assert cli("undo", "--dir", str(tmp_path / "missing")).code == 2
    assert cli("history", "--dir", str(tmp_path / "missing")).code == 2


# -- two instances -----------------------------------------------------------------------------

HOLDER = """
import sys
from checks.change.engine import Engine
with Engine(sys.argv[1], "fix").locked():
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_instance_is_refused_and_told_who_holds_the_lock(cli_box):
    root, host, tmp = cli_box
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], cwd=PROJECT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(tmp)
        r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
        assert r.code == 2
        lines = r.err.strip().splitlines()
        assert len(lines) == 1, r.err
        assert f"pid {holder.pid}" in lines[0] and "user root" in lines[0], lines[0]
        assert snapshot(tmp) == before
        assert not (root / JOURNAL_DIR / "txn").exists() or not os.listdir(root / JOURNAL_DIR / "txn")
        r = cli("undo", "--yes", "--dir", str(root))
        assert r.code == 2
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # Once the holder is gone, the fix goes through.
    assert cli("fix", "--yes", "--dir", str(root), "--host-root", str(host)).code == 0


# -- undo -----------------------------------------------------------------------------------------


def test_undo_refuses_a_file_edited_since_shows_the_diff_masked_and_force_undoes(cli_box):
    root, host, tmp = cli_box
    original = snapshot(tmp)
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 0, r.out + r.err
    txn = txn_id(r.out)
    pw = new_password(root / ".env")
    env = root / ".env"
    env.write_text(env.read_text().replace(pw, pw + "EDITED") + "ADDED_BY_HAND=1\n")
    r = cli("undo", "--yes", "--dir", str(root))
    assert r.code == 2
    assert "ADDED_BY_HAND=1" in r.out and ".env" in r.out
    assert "--force" in r.err
    assert pw not in r.out + r.err and CLI_PASSWORD not in r.out + r.err
    assert "ADDED_BY_HAND=1" in env.read_text()  # refused: nothing changed
    r = cli("undo", txn, "--yes", "--force", "--dir", str(root))
    assert r.code == 0, r.out + r.err
    assert f"Undone: transaction {txn}" in r.out
    assert snapshot(tmp) == original
    # Twice: refused.
    r = cli("undo", txn, "--yes", "--dir", str(root))
    assert r.code == 2 and "already undone" in r.err
    h = cli("history", "--dir", str(root))
    assert "undone by" in h.out and "undo of " + txn in h.out


def test_undo_last_picks_the_newest_fix_not_yet_undone(cli_box):
    root, host, tmp = cli_box
    original = snapshot(tmp)
    first = txn_id(cli("fix", "--yes", "--only", "NET-001", "--dir", str(root), "--host-root", str(host)).out)
    after_first = snapshot(tmp)
    second = txn_id(cli("fix", "--yes", "--only", "DKR-003", "--dir", str(root), "--host-root", str(host)).out)
    assert first != second
    r = cli("undo", "--last", "--yes", "--dir", str(root))
    assert r.code == 0 and f"Undone: transaction {second}" in r.out, r.out + r.err
    assert snapshot(tmp) == after_first
    r = cli("undo", "--yes", "--dir", str(root))  # --last is the default
    assert r.code == 0 and f"Undone: transaction {first}" in r.out, r.out + r.err
    assert snapshot(tmp) == original
    r = cli("undo", "--last", "--yes", "--dir", str(root))
    assert r.code == 2 and "nothing to undo" in r.err
    r = cli("undo", "20990101T000000-abcdef", "--yes", "--dir", str(root))
    assert r.code == 2 and "no transaction" in r.err
    h = cli("history", "--dir", str(root))
    assert h.out.count("undone by") == 2


def test_undo_without_a_terminal_and_without_yes_refuses(cli_box):
    root, host, tmp = cli_box
    cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    before = snapshot(tmp)
    r = cli("undo", "--dir", str(root))
    assert r.code == 2 and "--yes" in r.err
    assert snapshot(tmp) == before
    r = cli("undo", "--dry-run", "--dir", str(root))
    assert r.code == 0 and snapshot(tmp) == before


# -- journal privacy and the secrets' keeping ---------------------------------------------------


def _forms(secret: str) -> set[bytes]:
    enc = quote(secret, safe="")
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), enc)
    return {s.encode() for s in (secret, enc, lower, quote(secret))}


@pytest.mark.parametrize("keyring_works", [True, False], ids=["keyring", "no-keyring"])
@pytest.mark.parametrize("password", [CLI_PASSWORD, "p@ss w/rd!9"], ids=["plain", "needs-encoding"])
def test_the_journal_never_holds_a_secret_in_plaintext(cli_box, keyring_works, password):
    root, host, tmp = cli_box
    for name in ("docker-compose.yml", ".env"):
        path = root / name
        text = path.read_text().replace(f":{CLI_PASSWORD}@", ":" + quote(password, safe="") + "@")
        path.write_text(text.replace(CLI_PASSWORD, password))
    original = snapshot(tmp)
    env = None if keyring_works else {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host), env=env)
    assert r.code == 0, r.out + r.err
    txn = txn_id(r.out)
    intent = json.loads((root / JOURNAL_DIR / "txn" / txn / "intent.json").read_text())
    assert {"SEC-001", "SEC-003"} <= set(intent["checks"])
    new = new_password(root / ".env")
    assert new != password and password not in (root / ".env").read_text()
    journal = root / JOURNAL_DIR
    secrets_file = Path(os.environ["DESTER_HARDEN_STATE_DIR"]) / "secrets" / f"{txn}.json"
    if keyring_works:
        # keyrings.alt's PlaintextKeyring is a file, and the message says so (not "the system keyring").
        assert "a plaintext keyring file (" in r.out and "system keyring" not in r.out, r.out
        assert not secrets_file.exists()
    else:
        assert str(secrets_file) in r.out and "No keyring" in r.out
        assert stat.S_IMODE(os.lstat(secrets_file).st_mode) == 0o600
        kept = json.loads(secrets_file.read_text())
        assert password in kept.values() and new in kept.values()
    for d, _dirs, files in os.walk(journal):
        assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700, d
        for name in files:
            path = Path(d) / name
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
            if path == secrets_file:
                continue
            data = path.read_bytes()
            for secret in (password, new):
                for form in _forms(secret):
                    assert form not in data, f"{form!r} in {path.relative_to(journal)}"
    r = cli("undo", "--yes", "--dir", str(root), env=env)
    assert r.code == 0, r.out + r.err
    assert snapshot(tmp) == original


@pytest.mark.parametrize("keyring_works", [True, False], ids=["keyring", "no-keyring"])
def test_undo_whose_secrets_are_gone_is_a_clear_error(cli_box, keyring_works):
    root, host, tmp = cli_box
    env = None if keyring_works else {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host), env=env)
    assert r.code == 0, r.out + r.err
    txn = txn_id(r.out)
    if keyring_works:
        store = Path(os.environ["XDG_DATA_HOME"]) / "python_keyring"
        for p in store.iterdir():
            p.unlink()
    else:
        (Path(os.environ["DESTER_HARDEN_STATE_DIR"]) / "secrets" / f"{txn}.json").unlink()
    before = snapshot(tmp)
    r = cli("undo", "--yes", "--dir", str(root), env=env)
    assert r.code == 2 and txn in r.err and "secrets" in r.err, r.err
    assert snapshot(tmp) == before


def test_undo_refuses_a_mode_changed_since_and_force_restores_it(cli_box):
    root, host, tmp = cli_box
    original = snapshot(tmp)
    r = cli("fix", "--yes", "--only", "FS-001", "--dir", str(root), "--host-root", str(host))
    assert r.code in (0, 1), r.out + r.err
    assert stat.S_IMODE(os.stat(root / ".env").st_mode) == 0o600
    os.chmod(root / ".env", 0o640)
    r = cli("undo", "--yes", "--dir", str(root))
    assert r.code == 2 and "mode changed since" in r.out, r.out + r.err
    assert stat.S_IMODE(os.stat(root / ".env").st_mode) == 0o640
    r = cli("undo", "--yes", "--force", "--dir", str(root))
    assert r.code == 0, r.out + r.err
    assert snapshot(tmp) == original


def test_undoing_an_undo_puts_the_fix_back(cli_box):
    root, host, tmp = cli_box
    fix = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert fix.code == 0
    fixed = snapshot(tmp)
    undo = cli("undo", "--yes", "--dir", str(root))
    assert undo.code == 0
    m = re.search(r"recorded as (\S+)\)", undo.out)
    assert m, undo.out
    undo_id = m.group(1)
    redo = cli("undo", undo_id, "--yes", "--dir", str(root))
    assert redo.code == 0, redo.out + redo.err
    assert snapshot(tmp) == fixed
    h = cli("history", "--dir", str(root))
    assert h.code == 0 and h.out.count("undone by") == 2


def test_a_file_where_the_journal_goes_is_a_clear_error(cli_box):
    root, host, tmp = cli_box
    (root / JOURNAL_DIR).write_text("not a directory\n")
    before = snapshot(tmp, skip=())
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 2 and JOURNAL_DIR in r.err, r.err
    assert snapshot(tmp, skip=()) == before
    assert cli("undo", "--yes", "--dir", str(root)).code == 2
    assert cli("history", "--dir", str(root)).code == 0


def test_a_journal_that_is_a_symlink_is_refused(cli_box):
    root, host, tmp = cli_box
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / JOURNAL_DIR)
    before = snapshot(tmp)
    r = cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 2 and "symbolic link" in r.err, r.err
    assert snapshot(tmp) == before
    assert os.listdir(elsewhere) == []


def test_plans_history_and_undo_show_control_characters_escaped(tmp_path):
    """ESC and \\r in a .env value, a bidi override in a key, markup and a newline in a file name."""
    from .installs import RAW_CONTROL, control_plan_install

    root = control_plan_install(tmp_path / "install")
    before = snapshot(root)
    outputs = []
    r = cli("fix", "--dir", str(root), "--host-root", str(tmp_path), "--dry-run")
    assert r.code in (0, 1), r.err
    assert ' NODE_ENV="production\\x1b[2J\\x1b[H\\rfake line"' in r.out  # a diff context line, whole and escaped
    assert " K\\u202eEY=1" in r.out
    assert "[red]api\\nx.env" in r.out  # the mode table
    outputs.append(r)
    r = cli("fix", "--dir", str(root), "--host-root", str(tmp_path), "--yes")
    assert r.code in (0, 1), r.err
    outputs.append(r)
    for args in (("history",), ("undo", "--dry-run"), ("undo", "--yes")):
        r = cli(*args, "--dir", str(root))
        assert r.code == 0, r.err
        outputs.append(r)
    assert "[red]api\\nx.env" in outputs[2].out  # history lists the file
    for r in outputs:
        assert not RAW_CONTROL.search(r.out + r.err), RAW_CONTROL.findall(r.out + r.err)
    assert snapshot(root) == before
