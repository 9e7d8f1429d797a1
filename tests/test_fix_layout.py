"""The fixers' layout: one module per area, each planning from what its rule hands it.

A fixer that imports a rule module's private helper (``_name``) is re-deriving what
the rule found with the rule's internals: shared logic belongs in a public function
of the rule module (or checks/install, checks/core). These tests read the source.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import checks.fix

FIX_DIR = Path(checks.fix.__file__).parent
REPO = FIX_DIR.parent.parent


def private_imports(source: str, filename: str) -> list[str]:
    """``module.name`` for each private name a module imports, or reaches through an imported module,
    from another package than checks.fix."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> module, for `import checks.x as y` and `from checks import x`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("checks"):
            if node.module.startswith("checks.fix"):
                continue
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
                else:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("checks") and not alias.name.startswith("checks.fix"):
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"{aliases[base.id]}.{node.attr}")
    return found


def test_the_scan_catches_a_private_rule_helper():
    sample = ("from checks.audit.rules.net import _allowed\n"
              "from checks.audit.rules import sec\n"
              "def f():\n    from checks.audit.rules.dkr import _truthy\n    return sec._redis_password\n"
              "from checks.fix.edit import _private_of_our_own\n")
    assert sorted(private_imports(sample, "sample.py")) == [
        "checks.audit.rules.dkr._truthy", "checks.audit.rules.net._allowed", "checks.audit.rules.sec._redis_password"]


@pytest.mark.parametrize("path", sorted(FIX_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_fixer_imports_a_private_helper(path):
    assert private_imports(path.read_text(), str(path)) == []


@pytest.mark.parametrize("path", sorted(FIX_DIR.glob("*.py")), ids=lambda p: p.name)
def test_fix_modules_stay_small(path):
    text = path.read_text()
    lines = text.count("\n")
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert lines <= 500 or "lines" in doc, f"{path.name}: {lines} lines and the docstring does not say why"


def test_every_fixer_lives_in_its_area_module():
    from checks.fix.firewall import FW_CHECKS
    from checks.fix.registry import FIXERS

    for fixer in FIXERS:
        area = fixer.id.split("-")[0].lower()
        if fixer.id in FW_CHECKS:  # one fixer for the host firewall's checks, NET-007 among them
            area = "firewall"
        assert fixer.run.__module__.startswith(f"checks.fix.{area}"), (fixer.id, fixer.run.__module__)


def test_the_audit_does_not_import_the_fixers(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services:\n  api:\n    image: desterlib/api:1.4.2\n")
    code = ("import sys\nfrom checks.install.discovery import discover\nfrom checks.audit.run import run_audit\n"
            f"run_audit(discover({str(tmp_path)!r}), 'local')\n"
            "print(sorted(m for m in sys.modules if m.startswith('checks.fix')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.strip() == "[]"
