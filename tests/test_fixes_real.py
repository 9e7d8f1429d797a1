"""Every fix on every installation: it fixes its check, breaks nothing, and Compose still accepts the file.

For each real installation built from ../shared/real-desterlib (the builders of
tests/test_real_desterlib.py) and each of the project's own fixtures
(tests/installs.py, so a fresh clone tests this too), and for every fixable
check that fails there, the fix is planned alone (``only={id}``, which also
runs the offered ones: NET-002, DKR-001), applied through the change engine on
a fresh copy, and the installation is audited again from disk:

* the check passes now, unless the plan refuses it (then with a reason and
  what to do by hand);
* no other check went from pass (or skipped) to fail;
* ``docker compose config --no-interpolate --no-env-resolution -q`` still
  accepts every compose file, alone and together (skipped, with the reason,
  where the Compose plugin is not installed: never a silent pass).

The default plan (every default fix together) is checked the same way. No
output of a failing check shows a secret: messages name checks and files only.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from checks.audit.findings import FAIL
from checks.audit.run import run_audit
from checks.change.engine import Engine
from checks.core.secrets import Masker
from checks.fix.planner import plan_fixes
from checks.fix.registry import FIXERS
from checks.install.discovery import discover

from . import installs
from .conftest import FIXED_NOW, REAL, need_shared
from .test_real_desterlib import CASES as REAL_CASES
from .test_real_desterlib import REAL_SECRETS

FIXABLE = [f.id for f in FIXERS]
#: FS-005 changes the media tree; the planner's re-audit cannot see it, the engine applies it.
TREE_RULE = "FS-005"


# -- docker compose ---------------------------------------------------------------------------

_COMPOSE: list[bool] = []


def compose_version_ok() -> bool:
    if not _COMPOSE:
        try:
            ok = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        _COMPOSE.append(ok)
    return _COMPOSE[0]


def compose_config(root: Path, files: list[str]) -> tuple[int, str]:
    """``docker compose -f F... config --no-interpolate --no-env-resolution -q`` in the install dir."""
    args = ["docker", "compose"]
    for f in files:
        args += ["-f", f]
    args += ["config", "--no-interpolate", "--no-env-resolution", "-q"]
    proc = subprocess.run(args, cwd=str(root), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COMPOSE_DISABLE_ENV_FILE": "1"})
    return proc.returncode, proc.stderr + proc.stdout


def compose_verdicts(root: Path, files: list[str]) -> dict[str, tuple[int, str]]:
    out = {f: compose_config(root, [f]) for f in files}
    if len(files) > 1:
        out["(together)"] = compose_config(root, files)
    return out


# -- installations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    name: str
    build: Callable[[Path], Path]
    files: tuple[str, ...] | None = None
    real: bool = False


def _real(name: str) -> Install:
    c = REAL_CASES[name]
    return Install(name, c.build, tuple(c.files) if c.files else None, real=True)


OWN = {
    "own-cli": Install("own-cli", lambda tmp: installs.cli_install(tmp)),
    "own-setup-script": Install("own-setup-script", lambda tmp: installs.setup_script_install(tmp)),
    "own-newer": Install("own-newer", lambda tmp: installs.newer_install(tmp)),
    "own-cli-hardened": Install("own-cli-hardened", lambda tmp: installs.cli_install(tmp, hardened=True)),
    "own-setup-script-hardened": Install("own-setup-script-hardened",
                                         lambda tmp: installs.setup_script_install(tmp, hardened=True)),
    "own-newer-hardened": Install("own-newer-hardened", lambda tmp: installs.newer_install(tmp, hardened=True)),
}


def _real_pairs() -> list[tuple[str, str]]:
    """(install, check) for every fixable check the real installation fails (its spelled-out statuses)."""
    return [(name, cid) for name, c in REAL_CASES.items() for cid in FIXABLE if c.status.get(cid) == FAIL]


def _own_pairs() -> list[tuple[str, str]]:
    """(install, check) for every fixable check the project's fixture fails, found by auditing it."""
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, inst in OWN.items():
            base = Path(tmp) / name
            base.mkdir()
            host = base / "host-root"
            host.mkdir()
            root = inst.build(base)
            report = run_audit(discover(str(root), host_root=str(host), now=FIXED_NOW), "local")
            pairs += [(name, f.id) for f in report.findings if f.status == FAIL and f.id in FIXABLE]
    return pairs


REAL_PAIRS = _real_pairs()
OWN_PAIRS = _own_pairs()


def _all_secrets(*more) -> set[str]:
    out = set(REAL_SECRETS) | set(installs.SECRETS)
    for m in more:
        out |= set(m)
    return {s for s in out if s}


_BEFORE: dict[str, dict[str, tuple[int, str]]] = {}

#: Checks whose fix may be refused on an installation. None of the real files
#: nor the project's fixtures needs one: a refusal there is a planner bug
#: (mixing two compose files, say) dressed up as caution.
EXPECTED_REFUSALS: dict[str, set[str]] = {}


def check_fix(tmp: Path, inst: Install, only: set[str] | None) -> None:
    if inst.real:
        need_shared(REAL)
    host = tmp / "host-root"
    host.mkdir()
    root = inst.build(tmp)
    files = [str(root / f) for f in inst.files] if inst.files else None

    def audit():
        i = discover(str(root), files=files, host_root=str(host), now=FIXED_NOW)
        return i, {f.id: f.status for f in run_audit(i, "local").findings}

    inst_before, before = audit()
    compose_files = [os.path.relpath(s.path, root) for s in inst_before.compose_files]
    compose_before = None
    if compose_version_ok():
        if inst.name not in _BEFORE:  # the builders are deterministic: Compose's verdict on the original once
            _BEFORE[inst.name] = {k: (rc, "") for k, (rc, _) in compose_verdicts(root, compose_files).items()}
        compose_before = _BEFORE[inst.name]

    plan, planner = plan_fixes(str(root), "local", only=only, files=files, host_root=str(host), now=FIXED_NOW)
    masker = Masker(_all_secrets(plan.secrets, inst_before.secrets, planner.generated))
    refused = {r.check for r in plan.refusals}
    assert refused <= EXPECTED_REFUSALS.get(inst.name, set()), f"{inst.name}: unexpected refusals {sorted(refused)}"
    for r in plan.refusals:
        assert r.reason.strip() and r.manual.strip(), f"{r.check}: a refusal needs a reason and what to do by hand"
    wanted = set(only) if only is not None else set(plan.checks)
    if only is not None:
        assert plan.changes or wanted <= refused, (
            f"{sorted(wanted)}: fails, yet the plan neither changes nor refuses anything")

    Engine(str(root)).apply(plan)

    inst_after, after = audit()  # re-parses every file: a broken one raises here
    for cid in sorted(wanted):
        if cid in refused:
            continue
        assert after[cid] != FAIL, f"{cid} still fails after its own fix on {inst.name}"
    regressed = sorted(cid for cid, st in after.items() if st == FAIL and before.get(cid) != FAIL)
    assert not regressed, (
        f"{inst.name}: the fix for {sorted(wanted) if only else 'the default plan'} made {regressed} fail")


    if compose_before is None:
        pytest.skip("`docker compose version` fails here: the Compose v2 plugin is not installed, so "
                    "`docker compose config` could not validate the fixed files (.ci/run installs it)")
    now_files = [os.path.relpath(s.path, root) for s in inst_after.compose_files]
    assert now_files == compose_files
    compose_after = compose_verdicts(root, compose_files)
    for key, (rc, out) in compose_after.items():
        if compose_before[key][0] != 0:
            continue  # Compose refused the original already (not the fix's doing)
        shown = " ".join(masker.text(out.replace(str(root) + "/", "")).split())[:400]
        assert rc == 0, f"{inst.name} {key}: docker compose config rejects the fixed file: {shown}"


# -- the real installations -----------------------------------------------------------------------


@pytest.mark.parametrize("name,cid", REAL_PAIRS, ids=[f"{n}-{c}" for n, c in REAL_PAIRS])
def test_each_fix_on_each_real_install(tmp_path, name, cid):
    check_fix(tmp_path, _real(name), {cid})


@pytest.mark.parametrize("name", list(REAL_CASES))
def test_default_plan_on_each_real_install(tmp_path, name):
    check_fix(tmp_path, _real(name), None)


def test_real_pairs_cover_every_fixer_that_fails_somewhere():
    """The matrix is not empty by accident: the real files exercise most fixers."""
    covered = {cid for _, cid in REAL_PAIRS}
    assert {"NET-001", "NET-002", "NET-005", "SEC-001", "SEC-003", "SEC-005", "SEC-007",
            "FS-001", "FS-002", "DKR-003", "DKR-008"} <= covered


# -- the project's own fixtures (no ../shared needed) ---------------------------------------------


@pytest.mark.parametrize("name,cid", OWN_PAIRS, ids=[f"{n}-{c}" for n, c in OWN_PAIRS])
def test_each_fix_on_each_own_install(tmp_path, name, cid):
    check_fix(tmp_path, OWN[name], {cid})


@pytest.mark.parametrize("name", list(OWN))
def test_default_plan_on_each_own_install(tmp_path, name):
    check_fix(tmp_path, OWN[name], None)


def test_own_pairs_are_not_empty():
    assert {n for n, _ in OWN_PAIRS} >= {"own-cli", "own-setup-script", "own-newer"}
    # The hardened fixtures fail only what is offered, not default (the loopback-published database).
    assert {c for n, c in OWN_PAIRS if n.endswith("-hardened")} <= {f.id for f in FIXERS if not f.default}
