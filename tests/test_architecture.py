"""The architecture's guards: checks/ never imports the UI, screens never touch the disk.

Each guard is one function (:func:`ui_imports`, :func:`disk_access`) that the
real scan runs on every file and the sample tests run on code that must be
caught and code that must pass, so a guard that misses a sample fails here.
import-linter's contracts from pyproject.toml are a second, independent guard
for the imports (when its ``lint-imports`` executable is installed next to
this Python); the import test checks what importing checks/ loads at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT, need_venv_tool

FORBIDDEN = {"textual", "rich", "tui", "screens"}
CHECKS = PROJECT / "checks"
#: The functions that import a module named by a string.
IMPORT_FUNCS = {"import_module", "__import__"}


def _package(path: Path) -> str:
    """The package a module at ``path`` (under the project) belongs to, for relative imports."""
    dotted = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
    return dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]


def _imports(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``, relative ones resolved.

    Lazy imports (inside a function) count as much as top-level ones; so does
    ``importlib.import_module`` or ``__import__`` of a constant string, also
    under an alias. A call of those with anything but a constant is reported as
    the module ``"<dynamic>"``: no scan can tell what it imports.
    """
    loaders = set(IMPORT_FUNCS)  # local names bound to an import function
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "importlib":
            loaders |= {a.asname or a.name for a in node.names if a.name in IMPORT_FUNCS}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module:
                out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}".lstrip(".")) for alias in node.names]
        elif isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id in loaders)
                or (isinstance(node.func, ast.Attribute) and node.func.attr in IMPORT_FUNCS)):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((node.lineno, arg.value))
            else:
                out.append((node.lineno, "<dynamic>"))
    return out


def ui_imports(source: str, package: str = "checks") -> list[str]:
    """The guard of checks/: ``"LINE: imports MODULE"`` for every UI (or unverifiable) import in ``source``."""
    tree = ast.parse(source)
    return [f"{line}: imports {module}" for line, module in _imports(tree, package)
            if module.split(".")[0] in FORBIDDEN | {"<dynamic>"}]


def _checks_files() -> list[Path]:
    return sorted(CHECKS.rglob("*.py"))


def test_scan_sees_every_checks_module():
    files = _checks_files()
    assert CHECKS / "audit" / "run.py" in files and CHECKS / "audit" / "rules" / "net.py" in files
    run = CHECKS / "audit" / "run.py"
    assert "checks.audit.findings" in {m for _, m in _imports(ast.parse(run.read_text(encoding="utf-8")),
                                                             _package(run))}


def test_checks_never_imports_the_ui():
    bad = []
    for path in _checks_files():
        found = ui_imports(path.read_text(encoding="utf-8"), _package(path))
        bad += [f"{path.relative_to(PROJECT)}:{v}" for v in found]
    assert not bad, "\n".join(bad)


#: Code in checks/ that the UI guard must catch, and the line it must name.
UI_SAMPLES = {
    "import": ("import textual\n", 1),
    "aliased import": ("import os\nimport textual.app as tx\n", 2),
    "from import": ("from rich.text import Text\n", 1),
    "aliased from import": ("from textual import app as a\n", 1),
    "lazy import": ("def f():\n    if True:\n        from tui.cli import main\n    return main\n", 3),
    "import_module": ("import importlib\nimportlib.import_module('textual.widgets')\n", 2),
    "aliased import_module": ("from importlib import import_module as load\n\ndef f():\n    return load('rich')\n", 4),
    "importlib aliased": ("import importlib as il\nx = il.import_module('tui')\n", 2),
    "__import__": ("m = __import__('screens.review')\n", 1),
    "dynamic import_module": ("import importlib\nname = 'text' + 'ual'\nimportlib.import_module(name)\n", 3),
}


@pytest.mark.parametrize("name", sorted(UI_SAMPLES))
def test_the_ui_guard_catches(name):
    source, line = UI_SAMPLES[name]
    found = ui_imports(source, "checks.audit.rules")
    assert any(v.startswith(f"{line}: ") for v in found), f"{name} slipped through: {found}"


@pytest.mark.parametrize("source", [
    "import os\nfrom collections.abc import Callable\n",
    "from . import findings\nfrom ..core.textio import read_text\n",
    "import textwrap\nimport richtext_not_rich\nfrom tuition import fees\n",
    "from importlib.resources import files\n",
    "x = {'textual': 1}\nprint('import textual')\n",
])
def test_the_ui_guard_passes_core_code(source):
    assert ui_imports(source, "checks.audit.rules") == []


def test_importing_checks_loads_no_ui_module():
    loaded = sorted(FORBIDDEN | {"docker"})
    code = ("import sys, checks, checks.audit.run, checks.audit.report, checks.install.discovery, checks.audit.catalog,"
            " checks.demo; from checks.audit.rules import load_all; load_all();"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {loaded!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(PROJECT), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_import_linter_contract():
    exe = need_venv_tool("lint-imports")
    pyproject = (PROJECT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.importlinter]" in pyproject and 'source_modules = ["checks"]' in pyproject
    proc = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=str(PROJECT), timeout=300)
    if proc.returncode != 0 and "no such option" in proc.stderr.lower():
        proc = subprocess.run([exe], capture_output=True, text=True, cwd=str(PROJECT), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "KEPT" in proc.stdout and "BROKEN" not in proc.stdout.replace("0 broken", "")


# -- the screens ------------------------------------------------------------------

SCREENS = PROJECT / "screens"
#: Names a screen may not use, called or passed along: the builtin that opens
#: files, and the ways around every other rule here.
DISK_NAMES = {"open", "__builtins__", "exec", "eval"}
#: Attributes that only a path object (or the os module) has; str.replace and a
#: screen's own walk() are fine.
DISK_METHODS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "chmod", "lchmod", "chown", "unlink",
                "mkdir", "rmdir", "rmtree", "stat", "lstat", "exists", "is_file", "is_dir", "is_symlink", "resolve",
                "iterdir", "glob", "rglob", "rename", "readlink", "samefile", "touch", "symlink_to", "hardlink_to",
                "scandir", "listdir", "makedirs", "fsync"}
#: Modules a screen may not import nor use (however it got hold of them).
DISK_MODULES = {"os", "shutil", "pathlib", "io", "tempfile", "glob", "builtins", "subprocess", "fcntl", "mmap"}


def disk_access(source: str, package: str = "screens") -> list[str]:
    """The guard of screens/: ``"LINE: WHAT"`` for every way ``source`` could reach the disk itself."""
    tree = ast.parse(source)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DISK_NAMES:
            bad.append((node.lineno, f"uses {node.id}"))
        elif isinstance(node, ast.Attribute) and (
                node.attr in DISK_METHODS
                or (isinstance(node.value, ast.Name) and node.value.id in DISK_MODULES | {"Path"})):
            bad.append((node.lineno, f"uses .{node.attr}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in DISK_METHODS | DISK_NAMES):
            bad.append((node.lineno, f"uses .{node.args[1].value} through {node.func.id}()"))
    bad += [(line, f"imports {module}") for line, module in _imports(tree, package)
            if module.split(".")[0] in DISK_MODULES | {"<dynamic>"}]
    return [f"{line}: {what}" for line, what in sorted(bad)]


def _screen_files() -> list[Path]:
    return sorted(SCREENS.rglob("*.py"))


def test_screens_never_touch_the_disk():
    files = _screen_files()
    assert SCREENS / "review.py" in files and SCREENS / "_base.py" in files
    bad = []
    for path in files:
        found = disk_access(path.read_text(encoding="utf-8"), _package(path))
        bad += [f"{path.relative_to(PROJECT)}:{v}" for v in found]
    assert not bad, "screens go through checks/ for every file access:\n" + "\n".join(bad)


#: Screen code that the disk guard must catch, and every line it must name.
DISK_SAMPLES = {
    "open()": ("def f():\n    return open('x').read()\n", {2}),
    "open passed to a thread": ("import asyncio\n\nasync def f():\n    return await asyncio.to_thread(open, 'x')\n",
                                {4}),
    "Path.read_text": ("def f(path):\n    return path.read_text(encoding='utf-8')\n", {2}),
    "Path.read_text unbound": ("def f(path):\n    return type(path).read_text(path)\n", {2}),
    "Path.open": ("def f(path):\n    with path.open('w') as fh:\n        fh.write('x')\n", {2}),
    "Path class": ("def f(name):\n    return Path(name).write_bytes(b'')\n", {2}),
    "chmod": ("def f(self):\n    self.target.chmod(0o600)\n", {2}),
    "getattr of a path method": ("def f(p):\n    return getattr(p, 'read_bytes')()\n", {2}),
    "os": ("import os\n\ndef f(p):\n    os.remove(p)\n", {1, 4}),
    "os without importing it": ("def f(p):\n    return os.path.getsize(p)\n", {2}),
    "shutil": ("import shutil\n\ndef f(p):\n    shutil.copy(p, p + '.bak')\n", {1, 4}),
    "aliased import": ("import shutil as sh\n\ndef f(p):\n    sh.move(p, '/tmp')\n", {1}),
    "aliased submodule": ("import os.path as osp\n", {1}),
    "from os import open": ("from os import open\n\ndef f():\n    return open('x', 0)\n", {1, 4}),
    "from os import open as": ("from os import open as os_open\n\ndef f():\n    return os_open('x', 0)\n", {1}),
    "lazy import": ("def f():\n    import tempfile\n    return tempfile.mkdtemp()\n", {2, 3}),
    "from pathlib": ("from pathlib import Path as P\n", {1}),
    "io.open": ("import io\nio.open('x')\n", {1, 2}),
    "builtins": ("import builtins\nbuiltins.open('x')\n", {1, 2}),
    "__builtins__": ("def f():\n    return __builtins__['open']('x')\n", {2}),
    "subprocess": ("import subprocess\nsubprocess.run(['rm', 'x'])\n", {1, 2}),
    "import_module": ("import importlib\nimportlib.import_module('shutil')\n", {2}),
    "__import__": ("m = __import__('os')\n", {1}),
    "dynamic import": ("import importlib\nm = importlib.import_module('o' + 's')\n", {2}),
    "exec": ("exec(\"open('x')\")\n", {1}),
}


@pytest.mark.parametrize("name", sorted(DISK_SAMPLES))
def test_the_disk_guard_catches(name):
    source, lines = DISK_SAMPLES[name]
    found = disk_access(source)
    named = {int(v.split(":")[0]) for v in found}
    assert lines <= named, f"{name}: lines {sorted(lines - named)} slipped through: {found}"


def test_the_disk_guard_catches_a_real_screen_that_opens_a_file():
    path = SCREENS / "review.py"
    source = path.read_text(encoding="utf-8")
    assert disk_access(source, _package(path)) == []
    leak = "\n\ndef _peek(self):\n    return open('/etc/shadow').read()\n"
    assert disk_access(source + leak, _package(path)) == [f"{len(source.splitlines()) + 4}: uses open"]


@pytest.mark.parametrize("source", [
    "from rich.text import Text\nfrom checks.audit.run import run_audit\nfrom textual.binding import Binding\n",
    "def f(s):\n    return s.replace('a', 'b').split()\n",
    "label = 'open the file, read_text it, import os'\n",
    "def f(self):\n    self.app.push_screen(self.walk())\n    self.dismiss(self.query_one('#x').value)\n",
    "import asyncio\n\nasync def f(self):\n    await asyncio.sleep(0)\n",
    "import datetime as _dt\nimport re\nx = re.compile('o').sub('', str(_dt.date.today()))\n",
    "def f(self):\n    return getattr(self.app, 'applied_notes', [])\n",
])
def test_the_disk_guard_passes_screen_code(source):
    assert disk_access(source) == []


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
