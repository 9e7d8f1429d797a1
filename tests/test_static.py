"""Static analysis is part of the suite: a red ``ruff check .`` or ``mypy`` is a red test.

Both run bare from the repository root, as ``.ci/run`` and the README run them,
so what they check is what pyproject.toml configures. They come with the test
extras; without them the tests skip, and fail under ``CI=true``. The README's
set-up commands and ``.ci/run`` are checked against each other here too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import PROJECT, need_venv_tool

#: The folders a bare run must cover (everything with Python in it but the demo's data and the SVGs).
COVERED = ("checks", "tui", "screens", "tests", "benchmarks")


def _run(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=str(PROJECT), timeout=900)


def _python_files() -> list[str]:
    """Every Python file of the project, relative to it (the demo's install/ holds data, not code)."""
    demo_data = PROJECT / "checks" / "demo" / "install"
    return sorted(str(p.relative_to(PROJECT)) for folder in COVERED for p in (PROJECT / folder).rglob("*.py")
                  if not p.is_relative_to(demo_data))


def test_ruff_check_passes():
    proc = _run(need_venv_tool("ruff"), "check", ".")
    assert proc.returncode == 0, "ruff check . found problems:\n" + proc.stdout[-6000:] + proc.stderr[-2000:]


def test_ruff_checks_every_python_file():
    proc = _run(need_venv_tool("ruff"), "check", "--show-files", ".")
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = {str(Path(line).relative_to(PROJECT)) for line in proc.stdout.splitlines()
            if line.endswith(".py") and Path(line).is_relative_to(PROJECT)}
    missing = [f for f in _python_files() if f not in seen]
    assert _python_files() and not missing, f"a bare `ruff check .` skips {missing}"


def test_mypy_passes_on_the_whole_project():
    proc = _run(need_venv_tool("mypy"))
    assert proc.returncode == 0, "mypy found problems:\n" + proc.stdout[-6000:] + proc.stderr[-2000:]
    checked = re.search(r"in (\d+) source files?", proc.stdout)
    assert checked and int(checked.group(1)) >= len(_python_files()), proc.stdout[-500:]


def test_a_missing_tool_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        need_venv_tool("no-such-linter")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/run installs it"):
        need_venv_tool("no-such-linter")
    assert need_venv_tool("python") == str(Path(sys.executable).parent / "python")


def test_mypy_is_strict_on_checks():
    config = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert set(COVERED) <= set(config["files"])
    for override in config.get("overrides", []):
        relaxed = [k for k, v in override.items()
                   if (k != "module" and v is False) or (k == "ignore_errors" and v is True)]
        if relaxed:
            modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
            assert not [m for m in modules if m.split(".")[0] == "checks"], f"{modules} relax {relaxed}"


# -- the README's set-up commands and .ci/run -----------------------------------------


def _readme_commands() -> list[str]:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    setup = text.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def test_ci_runs_the_readme_test_command_verbatim():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    demo, tests = commands
    ci = (PROJECT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci, f".ci/run does not run the README's test command:\n{tests}"
    # The test command is the one that runs the suite and both analysers, and must pass as a whole.
    steps = [s.strip() for s in tests.split("&&")]
    assert ".venv/bin/python -m pytest" in steps and ".venv/bin/ruff check ." in steps and ".venv/bin/mypy" in steps
    # Both commands make the same virtual environment, the one the tests' tools are looked up in.
    assert demo.split("&&")[0].strip() == steps[0] == "python3 -m venv .venv"
    others = [s.strip() for s in demo.split("&&")[1:]] + steps[1:]
    assert all(s.startswith(".venv/bin/") for s in others), commands
