"""The domain core (checks/) never imports the UI (textual, rich, tui, screens).

Two independent guards: an AST scan of every import statement in checks/**/*.py
(runs everywhere), and import-linter's contract from pyproject.toml (when its
``lint-imports`` executable is installed next to this Python).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

FORBIDDEN = {"textual", "rich", "tui", "screens"}
CHECKS = PROJECT / "checks"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            out.append((node.lineno, str(node.args[0].value)))
    return out


def test_scan_sees_every_checks_module():
    files = sorted(CHECKS.rglob("*.py"))
    assert CHECKS / "audit" / "run.py" in files and CHECKS / "audit" / "rules" / "net.py" in files
    assert ("checks.audit.findings" in {m for _, m in _imports(CHECKS / "audit" / "run.py")})


def test_checks_never_imports_the_ui():
    bad = []
    for path in sorted(CHECKS.rglob("*.py")):
        for line, module in _imports(path):
            if module.split(".")[0] in FORBIDDEN:
                bad.append(f"{path.relative_to(PROJECT)}:{line}: imports {module}")
    assert not bad, "\n".join(bad)


def test_importing_checks_loads_no_ui_module():
    code = ("import sys, checks, checks.audit.run, checks.audit.report, checks.install.discovery, checks.audit.catalog, checks.demo;"
            "from checks.audit.rules import load_all; load_all();"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (FORBIDDEN | {"docker"},))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(PROJECT), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _lint_imports() -> str | None:
    local = Path(sys.executable).parent / "lint-imports"
    if local.exists():
        return str(local)
    return None


def test_import_linter_contract():
    exe = _lint_imports()
    if exe is None:
        found = shutil.which("lint-imports")
        pytest.skip("lint-imports (import-linter) is not installed in this virtual environment"
                    + (f"; one at {found} belongs to another environment" if found else ""))
    pyproject = (PROJECT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.importlinter]" in pyproject and 'source_modules = ["checks"]' in pyproject
    proc = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=str(PROJECT), timeout=300)
    if proc.returncode != 0 and "no such option" in proc.stderr.lower():
        proc = subprocess.run([exe], capture_output=True, text=True, cwd=str(PROJECT), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "KEPT" in proc.stdout and "BROKEN" not in proc.stdout.replace("0 broken", "")


# -- the screens ------------------------------------------------------------------

SCREENS = PROJECT / "screens"
#: What a screen may not do itself: read or write the disk. It asks checks/.
DISK_CALLS = {"open"}
#: Methods that only a path object has (str.replace and the like are fine).
DISK_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes", "chmod", "chown", "unlink", "mkdir", "rmdir",
                "rmtree", "lstat", "iterdir", "rglob", "touch", "symlink_to", "hardlink_to"}
DISK_MODULES = {"os", "shutil", "pathlib", "io", "tempfile", "glob"}


def test_screens_never_touch_the_disk():
    bad = []
    for path in sorted(SCREENS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name) and node.func.id in DISK_CALLS:
                    bad.append(f"{path.name}:{node.lineno}: calls {node.func.id}()")
                elif isinstance(node.func, ast.Attribute) and (
                        node.func.attr in DISK_METHODS or
                        (isinstance(node.func.value, ast.Name) and node.func.value.id in DISK_MODULES | {"Path"})):
                    bad.append(f"{path.name}:{node.lineno}: calls {node.func.attr}()")
        for line, module in _imports(path):
            if module.split(".")[0] in DISK_MODULES:
                bad.append(f"{path.name}:{line}: imports {module}")
    assert not bad, "screens go through checks/ for every file access:\n" + "\n".join(bad)


def test_the_disk_scan_catches_a_screen_that_opens_a_file(tmp_path):
    # The guard above must be able to fail.
    sample = "import os\ndef f():\n    return open('x').read()\n"
    tree = ast.parse(sample)
    calls = [getattr(n.func, "id", None) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "open" in calls and "open" in DISK_CALLS


def test_one_screen_per_file_with_its_styles_beside_it():
    import importlib
    import inspect

    from textual.screen import Screen

    from tui.app import SCREEN_STYLES

    for path in sorted(SCREENS.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = importlib.import_module(f"screens.{path.stem}")
        own = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, Screen) and c.__module__ == module.__name__]
        assert len(own) == 1, f"{path.name} defines {[c.__name__ for c in own]}"
        css = own[0].CSS_PATH
        assert css == f"{path.stem}.tcss" and (SCREENS / css).is_file(), path.name
        assert path.stem in SCREEN_STYLES, f"{path.stem}.tcss is not preloaded by the app"
        # Selectors are prefixed with the screen's class, so styles never leak between screens.
        for line in (SCREENS / css).read_text(encoding="utf-8").splitlines():
            if "{" in line:
                assert line.split("{")[0].strip().startswith(own[0].__name__), f"{css}: {line}"
    assert len(SCREEN_STYLES) == len(list(SCREENS.glob("*.tcss")))
