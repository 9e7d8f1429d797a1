"""``fix`` and ``undo`` on the command line when the stack runs: flags, questions, progress, outcomes.

In-process, with a fake live state (``usecases.live_state``) and a fake stack in place of the docker
CLI's (``DefaultStack.recreate``); the real thing is tests/test_stack_real.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from checks.assistant import stackrun, usecases
from checks.change.plan import Recreate
from checks.change.stack import GateResult, Reporter
from checks.live.model import Container, EngineInfo, LiveState
from tests.conftest import run_cli
from tests.installs import cli_install
from tui.cli import main


def _live(root: str) -> LiveState:
    def c(service: str) -> Container:
        return Container(id=service, name=service, service=service, status="running", health=None, restart_count=0,
                         started_at="", image="x", image_id="x", image_created=None)

    return LiveState(project="desterlib", engine=EngineInfo("20.10.24", "1.41", "unix:///x"),
                     containers=tuple(c(s) for s in ("postgres", "redis", "api")))


class Fake:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls: list[tuple[str, tuple[str, ...], float]] = []

    def recreate(self, _self: object, change: Recreate, secrets: Mapping[str, str],
                 report: Reporter | None = None) -> GateResult:
        self.calls.append((change.when, change.services, change.timeout))
        if report is not None:
            report(f"recreating {', '.join(change.services)}", 0.0)
            report(f"waiting for {', '.join(change.services)} to be healthy", 1.2)
        if self.ok or change.when == "rollback":
            return GateResult(True, "", change.services, (), 2.4)
        return GateResult(False, "restarted 3 times", change.services,
                          ("Database: postgresql://desterlib:Zq9-very-secret-pw@postgres:5432/desterlib",), 30.0, "api")


@pytest.fixture
def fake(monkeypatch):
    stack = Fake()
    monkeypatch.setattr(usecases, "live_state", _live, raising=False)
    monkeypatch.setattr(stackrun.DefaultStack, "recreate", lambda s, *a, **k: stack.recreate(s, *a, **k))
    return stack


def test_fix_recreates_what_it_changed_and_says_so(tmp_path, fake, capsys):
    root = cli_install(tmp_path)
    code = main(["fix", "--dir", str(root), "--only", "NET-001", "--yes", "--health-timeout", "30"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert "docker compose -p desterlib" in out and "--no-deps --wait --wait-timeout 30 postgres" in out
    assert "recreating postgres..." in out and "waiting for postgres to be healthy (1.2 s)..." in out
    assert "recreated postgres (healthy in 2.4 s)" in out
    assert fake.calls == [("apply", ("postgres",), 30.0)]
    capsys.readouterr()
    assert main(["undo", "--dir", str(root), "--yes"]) == 0
    assert "recreated postgres (healthy in 2.4 s)" in capsys.readouterr().out
    assert fake.calls[-1] == ("apply", ("postgres",), 30.0)


def test_the_prisma_question_is_answered_by_yes_and_refused_by_no(tmp_path, fake, capsys, monkeypatch):
    root = cli_install(tmp_path)
    answers = iter(["y", "n"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return next(answers)

    monkeypatch.setattr("builtins.input", ask)
    assert main(["fix", "--dir", str(root), "--only", "SEC-001"]) == 0
    assert asked[1].startswith("recreating api runs `prisma db push --accept-data-loss` at start")
    assert "Nothing was changed." in capsys.readouterr().out and fake.calls == []
    assert main(["fix", "--dir", str(root), "--only", "SEC-001", "--yes"]) in (0, 1)
    assert fake.calls == [("apply", ("api",), 120.0)]


def test_a_failed_gate_is_one_error_line_and_masked_log_lines(tmp_path, fake, capsys):
    fake.ok = False
    root = cli_install(tmp_path)
    before = (root / "docker-compose.yml").read_bytes()
    code = main(["fix", "--dir", str(root), "--only", "SEC-001", "--yes"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[0] == ("dester-harden: error: api did not become healthy within 120 s (restarted 3 "
                                   "times): the files were restored and api recreated with them; its last log lines:")
    assert "Zq9-very-secret-pw" not in err and "Database: postgresql://desterlib:" in err
    assert (root / "docker-compose.yml").read_bytes() == before
    assert [c[0] for c in fake.calls] == ["apply", "rollback"]


def test_files_only_recreates_nothing(tmp_path, fake, capsys):
    root = cli_install(tmp_path)
    assert main(["fix", "--dir", str(root), "--only", "NET-001", "--yes", "--files-only"]) in (0, 1)
    assert "recreate" not in capsys.readouterr().out and fake.calls == []


def test_undo_files_only_puts_the_files_back_without_docker(tmp_path, fake, capsys):
    root = cli_install(tmp_path)
    before = (root / "docker-compose.yml").read_bytes()
    main(["fix", "--dir", str(root), "--only", "NET-001", "--yes"])
    calls = len(fake.calls)
    capsys.readouterr()
    assert main(["undo", "--dir", str(root), "--yes", "--files-only"]) == 0
    out = capsys.readouterr().out
    assert "docker compose" not in out and "recreated" not in out and len(fake.calls) == calls
    assert (root / "docker-compose.yml").read_bytes() == before


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "99999"])
def test_a_bad_health_timeout_is_one_line_and_exit_2(tmp_path, bad):
    root = cli_install(tmp_path)
    res = run_cli("fix", "--dir", str(root), "--dry-run", "--health-timeout", bad)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert "--health-timeout" in res.err and "Traceback" not in res.err


def test_help_says_yes_answers_the_questions():
    res = run_cli("fix", "--help")
    flat = " ".join(res.out.split())
    assert "also answers yes to the plan's questions" in flat and "--files-only" in flat
