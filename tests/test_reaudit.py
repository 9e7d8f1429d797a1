"""``dester-harden reaudit``: the drift since the last hardening, whichever face applied it."""

from __future__ import annotations

import json
import os

import pytest

from checks.demo import materialize
from tests.apphelpers import harden
from tests.conftest import run_cli
from tests.installs import cli_install


def _cli(*args: str):
    r = run_cli(*args)
    assert "Traceback" not in r.out + r.err and "internal error" not in r.err, r.out + r.err
    return r


@pytest.fixture
def hardened(tmp_path):
    root = materialize(str(tmp_path))
    session = harden(root)
    return root, session


def test_without_a_baseline_it_says_so_in_one_line_and_exits_2(tmp_path):
    root = materialize(str(tmp_path))
    for fmt in ("text", "json"):
        r = _cli("reaudit", "--dir", root, "--format", fmt)
        assert r.code == 2 and r.out == ""
        assert len(r.err.strip().splitlines()) == 1 and "no baseline yet" in r.err


def test_after_the_assistant_applied_reaudit_reports_no_drift(hardened):
    root, session = hardened
    r = _cli("reaudit", "--dir", root)
    assert r.code == 0, r.out + r.err
    assert "0 regressed, 0 new, 0 fixed" in r.out and "Nothing drifted since the last hardening." in r.out
    assert f"score {session.report.score}/100, {session.report.score}/100 at the last hardening" in r.out
    j = _cli("reaudit", "--dir", root, "--format", "json")
    assert j.code == 0, j.err
    data = json.loads(j.out)
    assert data["worse"] == [] and data["regressed"] == [] and data["new"] == []
    assert data["baseline"]["txn"] == session.baseline.txn and data["score"] == data["baseline"]["score"]
    assert session.choices.db_password not in r.out + j.out


def test_a_reopened_port_is_a_regression_exit_1_named_in_text_and_json(hardened):
    root, session = hardened
    compose = os.path.join(root, "docker-compose.yml")
    with open(compose, encoding="utf-8") as fh:
        text = fh.read()
    assert '"127.0.0.1:5432:5432"' in text
    with open(compose, "w", encoding="utf-8") as fh:
        fh.write(text.replace('"127.0.0.1:5432:5432"', '"5432:5432"'))
    r = _cli("reaudit", "--dir", root)
    assert r.code == 1, r.out + r.err
    assert "1 regressed" in r.out and "NET-001" in r.out.split("Regressed")[1].split("\n\n")[0]
    assert "docker-compose.yml:14" in r.out and "Worse since the last hardening at or above high: NET-001" in r.out
    j = _cli("reaudit", "--dir", root, "--format", "json")
    assert j.code == 1
    data = json.loads(j.out)
    assert data["worse"] == ["NET-001"] and [f["id"] for f in data["regressed"]] == ["NET-001"]
    assert data["regressed"][0]["severity"] == "critical"
    # Below --fail-on it is still reported, but not a failure.
    assert _cli("reaudit", "--dir", root, "--fail-on", "never").code == 0
    # Reading only: the baseline is what the last hardening left, not rewritten by the re-audit.
    assert _cli("reaudit", "--dir", root).code == 1


def test_a_stray_readable_env_copy_is_named_and_its_secret_masked(hardened):
    root, session = hardened
    stray = os.path.join(root, ".env.old")
    with open(os.path.join(root, ".env"), "rb") as src, open(stray, "wb") as dst:
        dst.write(src.read())
    os.chmod(stray, 0o644)
    data = json.loads(_cli("reaudit", "--dir", root, "--format", "json", "--fail-on", "never").out)
    assert "FS-006" in [f["id"] for f in data["regressed"] + data["new"]]
    assert session.choices.db_password not in json.dumps(data)  # the copy holds it: masked as everywhere


def test_cli_fix_then_reaudit_reports_no_drift(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    root = cli_install(tmp_path)
    r = _cli("fix", "--yes", "--dir", str(root), "--host-root", str(host))
    assert r.code == 0, r.out + r.err
    a = _cli("reaudit", "--dir", str(root), "--host-root", str(host))
    assert a.code == 0 and "Nothing drifted since the last hardening." in a.out, a.out + a.err


def test_reaudit_is_in_the_help_with_its_exit_codes():
    r = _cli("reaudit", "--help")
    assert r.code == 0
    flat = " ".join(r.out.split())
    assert "--fail-on" in flat and "Exit 0" in flat and "1 when" in flat and "2 when there is no baseline" in flat


def test_a_baseline_that_cannot_be_saved_is_told_and_the_change_stays(tmp_path, monkeypatch):
    from checks.assistant import baseline, usecases

    root = materialize(str(tmp_path))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(usecases, "save_baseline", refuse)
    planned = usecases.plan(root, "local", only={"NET-001"})
    done = usecases.apply(root, planned.plan, command="fix", profile="local")
    assert done.baseline is None and done.baseline_error == "Permission denied"
    assert done.report is not None and done.report.by_id("NET-001").status == "pass"
    assert done.files == ["docker-compose.yml"]
    assert [t.id for t in usecases.history(root).txns] == [done.txn_id]
    assert baseline.load_baseline(root) is None  # so the next run is still a first run, as the face warns
