"""The TLS step on the command line: ``--root DIR`` on every command, ``fix --domain D --proxy P``.

``--root`` is checked in a subprocess, as a user runs it; the front door's use cases are replaced by
recording fakes (the real ones are the fixer's, tested beside them) and the command runs in this
process, so the test sees exactly what reached them. The password test gives stdout a pty.
"""

from __future__ import annotations

import io
import os
import pty
import sys
import threading
from pathlib import Path

import pytest

from checks.assistant import frontdoor, usecases
from checks.proxy.model import Choice
from checks.proxy.servers import Server

from .conftest import run_cli
from .installs import cli_install

PASSWORD = "pw-proxy-Zq8vT3nW5yL0"


def _one_line_error(r) -> None:
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1, r.err


# -- --root on every command ---------------------------------------------------------------------

COMMANDS = [
    ("audit",), ("fix", "--dry-run"), ("history",), ("undo", "--dry-run"), ("reaudit",), ("assistant",),
    ("demo", "--audit"), ("settings",), ("explain", "NET-001"), ("suppress", "NET-001", "--reason", "x"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_root_is_documented_on_every_command(command):
    r = run_cli(command[0], "--help")
    assert r.code == 0, r.err
    flat = " ".join(r.out.split())
    assert "--root DIR" in flat and "treat DIR as / for system paths: /etc/caddy, /etc/nginx" in flat
    assert "--host-root" not in r.out  # the old name still works, unlisted


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
@pytest.mark.parametrize("option", ["--root", "--host-root"])
def test_root_that_is_not_a_directory_is_one_line_and_exit_2(tmp_path, command, option):
    install = cli_install(tmp_path)
    before = sorted(p.name for p in install.iterdir())
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "missing", tmp_path / "afile"):
        extra = () if command[0] in ("demo", "explain") else ("--dir", str(install))
        r = run_cli(*command, *extra, option, str(bad))
        _one_line_error(r)
        assert "not a directory" in r.err and option in r.err, r.err
    assert sorted(p.name for p in install.iterdir()) == before  # nothing written (no journal either)


def _spy(monkeypatch, module, name: str, seen: dict) -> None:
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen[name] = kwargs.get("host_root", args[2] if name == "discover" and len(args) > 2 else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def _main(*argv: str) -> int:
    from tui.cli import main

    return main(list(argv))


def test_root_reaches_discovery_planning_apply_and_undo(tmp_path, monkeypatch, capsys):
    """A change made under --root, and its undo with --root: the same DIR reaches every use case."""
    from checks.install import discovery

    install = cli_install(tmp_path)
    system = tmp_path / "sys"
    system.mkdir()
    seen: dict[str, object] = {}
    _spy(monkeypatch, discovery, "discover", seen)
    assert _main("audit", "--dir", str(install), "--root", str(system), "--no-live") == 1
    assert seen.pop("discover") == str(system)
    for name in ("plan", "apply", "undo", "reaudit"):
        _spy(monkeypatch, usecases, name, seen)
    code = _main("fix", "--dir", str(install), "--root", str(system), "--only", "FS-001", "--yes")
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert seen == {"plan": str(system), "apply": str(system), "discover": str(system)}  # and the audit after
    assert f"undo: dester-harden undo --root {system} " in out  # the undo needs the same root
    assert _main("undo", "--dir", str(install), "--root", str(system), "--yes") == 0
    assert seen["undo"] == str(system)
    assert _main("reaudit", "--dir", str(install), "--host-root", str(system)) in (0, 1)
    assert seen["reaudit"] == str(system)


def test_root_reaches_the_assistant(tmp_path, monkeypatch):
    import tui.run

    install = cli_install(tmp_path)
    got: dict[str, object] = {}

    def fake_run_assistant(args):
        got["host_root"] = args.host_root
        return 0

    monkeypatch.setattr(tui.run, "run_assistant", fake_run_assistant)
    assert _main("assistant", "--dir", str(install), "--root", str(tmp_path)) == 0
    assert got["host_root"] == str(tmp_path)


# -- fix --domain D --proxy P ---------------------------------------------------------------------


class FrontDoorFakes:
    """The TLS use cases, recording what the CLI asked of them."""

    def __init__(self, monkeypatch, saved: Choice | None = None, preselected: str = "caddy") -> None:
        self.choices: list[Choice | None] = []
        self.kept: list[tuple[Choice, str]] = []
        self.saved = saved
        self.preselected = preselected
        real_plan = usecases.plan

        def plan(root, profile, **kw):
            choice = kw.pop("front_door", None)
            self.choices.append(choice)
            planned = real_plan(root, profile, **{**kw, "only": (kw.get("only") or set()) - {"TLS-001", "TLS-002",
                                                                                          "TLS-003"} or {"FS-001"}})
            if choice is not None:
                planned.plan.checks += ["TLS-001", "TLS-002", "TLS-003"]
                planned.plan.shown_secrets = {"login": PASSWORD}
                planned.plan.secrets.add(PASSWORD)
            return planned

        def options(root, *, host_root="/"):
            servers = {k: Server(k, f"/usr/bin/{k}", "2.6.2" if k == "caddy" else "1.22.1", False)
                       for k in ("caddy", "nginx")}
            return frontdoor.Options(servers, self.preselected, self.saved, (), 3001)

        def keep_password(choice, password):
            self.kept.append((choice, password))
            return frontdoor.Kept("the system keyring (dester-harden / proxy:" + choice.domain + ")", True)

        real_apply = usecases.apply
        self.applied_for: list[Choice | None] = []

        def apply(root, plan, **kw):
            self.applied_for.append(kw.get("front_door"))
            return real_apply(root, plan, **kw)

        monkeypatch.setattr(usecases, "plan", plan)
        monkeypatch.setattr(frontdoor, "options", options)
        monkeypatch.setattr(frontdoor, "keep_password", keep_password)
        monkeypatch.setattr(usecases, "apply", apply)


@pytest.fixture
def install(tmp_path) -> Path:
    return cli_install(tmp_path)


def test_domain_and_proxy_build_the_choice(install, monkeypatch, capsys):
    fakes = FrontDoorFakes(monkeypatch)
    code = _main("fix", "--dir", str(install), "--profile", "internet", "--only", "TLS-001,TLS-002,TLS-003",
                 "--domain", "Media.Example.COM", "--proxy", "nginx", "--open", "docs,logs", "--dry-run")
    capsys.readouterr()
    assert code in (0, 1)
    assert fakes.choices == [Choice("media.example.com", "nginx", frozenset({"docs", "logs"}))]
    assert fakes.kept == [] and fakes.applied_for == []  # a dry run keeps and applies nothing


def test_domain_without_proxy_takes_the_saved_one_else_the_preselected(install, monkeypatch, capsys):
    fakes = FrontDoorFakes(monkeypatch, preselected="nginx")
    _main("fix", "--dir", str(install), "--only", "TLS-001", "--domain", "a.example.org", "--dry-run")
    fakes.saved = Choice("old.example.org", "caddy", frozenset({"docs"}))
    _main("fix", "--dir", str(install), "--only", "TLS-001", "--domain", "a.example.org", "--dry-run")
    _main("fix", "--dir", str(install), "--only", "TLS-001", "--dry-run")  # the saved choice as it is
    _main("fix", "--dir", str(install), "--only", "TLS-001", "--proxy", "nginx", "--dry-run")
    capsys.readouterr()
    assert fakes.choices == [Choice("a.example.org", "nginx"), Choice("a.example.org", "caddy"),
                             Choice("old.example.org", "caddy", frozenset({"docs"})),
                             Choice("old.example.org", "nginx", frozenset({"docs"}))]


@pytest.mark.parametrize("bad", ["not a domain", "nodot", "x.example.com/path", "192.0.2.1", "a_b.example.com"])
def test_a_bad_domain_is_one_line_exit_2_and_nothing_is_planned(install, monkeypatch, capsys, bad):
    fakes = FrontDoorFakes(monkeypatch)
    before = sorted(p.name for p in install.iterdir())
    assert _main("fix", "--dir", str(install), "--domain", bad, "--proxy", "caddy", "--yes") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("dester-harden: error: "), err
    assert fakes.choices == []
    assert sorted(p.name for p in install.iterdir()) == before


def test_bad_proxy_and_open_are_usage_errors(install):
    for extra in (("--proxy", "apache"), ("--open", "logs,secrets")):
        r = run_cli("fix", "--dir", str(install), "--domain", "a.example.com", *extra, "--dry-run")
        _one_line_error(r)


def test_tls_fixes_without_a_domain_are_refused_with_the_command_that_would(install, monkeypatch, capsys):
    fakes = FrontDoorFakes(monkeypatch)
    assert _main("fix", "--dir", str(install), "--only", "TLS-001,TLS-002,TLS-003", "--yes") == 2
    err = capsys.readouterr().err
    assert err.strip() == "dester-harden: error: TLS-001 needs a domain: dester-harden fix --domain D --proxy caddy"
    assert fakes.choices == []
    assert not (install / ".dester-harden").exists()


def test_proxy_without_domain_or_saved_choice_is_refused(install, monkeypatch, capsys):
    FrontDoorFakes(monkeypatch)
    assert _main("fix", "--dir", str(install), "--proxy", "caddy", "--dry-run") == 2
    assert "need --domain" in capsys.readouterr().err


def test_all_fixes_on_internet_without_domain_note_the_tls_command(install, monkeypatch, capsys):
    fakes = FrontDoorFakes(monkeypatch)
    _main("fix", "--dir", str(install), "--profile", "internet", "--dry-run")
    out = capsys.readouterr().out
    assert fakes.choices == [None]
    assert "Note: TLS-001 needs a domain: dester-harden fix --domain D --proxy caddy" in out


def test_in_a_pipe_the_password_is_never_printed_only_where_it_is_kept(install, monkeypatch, capsys):
    fakes = FrontDoorFakes(monkeypatch)
    code = _main("fix", "--dir", str(install), "--only", "TLS-001,TLS-002,TLS-003", "--domain", "a.example.com",
                 "--proxy", "caddy", "--yes")
    out, err = capsys.readouterr()
    assert code in (0, 1), out + err
    assert PASSWORD not in out + err
    assert "Proxy login: desterlib / (the password is not printed" in out
    assert "kept in the system keyring (dester-harden / proxy:a.example.com)" in out
    assert fakes.kept == [(Choice("a.example.com", "caddy"), PASSWORD)]
    assert fakes.applied_for == [Choice("a.example.com", "caddy")]  # apply records it in the settings


def test_the_preview_never_shows_the_password(install, monkeypatch, capsys):
    FrontDoorFakes(monkeypatch)
    _main("fix", "--dir", str(install), "--only", "TLS-001", "--domain", "a.example.com", "--dry-run", "--reveal")
    assert PASSWORD not in capsys.readouterr().out


def test_on_a_terminal_the_password_is_shown_once(install, monkeypatch):
    fakes = FrontDoorFakes(monkeypatch)
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # a pty holds a few KiB: read while the command writes
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    tty_out = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8", line_buffering=True)
    monkeypatch.setattr(sys, "stdout", tty_out)
    try:
        code = _main("fix", "--dir", str(install), "--only", "TLS-001,TLS-002,TLS-003", "--domain",
                     "a.example.com", "--proxy", "caddy", "--yes")
        tty_out.flush()
    finally:
        monkeypatch.undo()
        tty_out.close()
        reader.join(timeout=10)
        os.close(master)
    out = b"".join(chunks).decode()
    assert code in (0, 1), out
    assert out.count(PASSWORD) == 1, out
    assert (f"Proxy login: desterlib / {PASSWORD}  (shown once; kept in the system keyring "
            "(dester-harden / proxy:a.example.com))") in out
    assert len(fakes.kept) == 1
