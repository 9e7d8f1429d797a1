"""The ufw backend against real ufw 0.36 and iptables in the firewall sandbox (tests/fwlab.py).

The planned files are written into the sandbox's private /etc copies, ``python -m
checks.firewall.sync ufw`` runs inside it: ``ufw status`` lists our rules in order with SSH first,
DH-DOCKER holds the conntrack rules with one jump from DOCKER-USER, a second sync and a ``ufw
reload`` change nothing, and restoring the old files then syncing leaves iptables as they were
(ufw-docker's "undo that only a reboot fixed" does not happen). Marked ``firewall``; skips with the
reason where the sandbox cannot run (fails under CI=true).
"""

from __future__ import annotations

import difflib
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from checks.core.sysroot import SystemRoot
from checks.firewall import ufw
from checks.firewall.wants import Want
from checks.live.fwmodel import FirewallState, RunResult
from tests.fwlab import FwSandbox

pytestmark = pytest.mark.firewall
REPO = Path(__file__).resolve().parent.parent
WANTS = [Want("allow", 22, why="SSH"), Want("allow", 3001, source="10.78.0.0/24", forwarded=True, v6=False),
         Want("allow", 3001, source="fd78::/64", forwarded=True, v6=True),
         Want("deny", 5432, forwarded=True), Want("deny", 6379), Want("deny", None, proto="any")]


def _rules(fw: FwSandbox) -> str:
    """iptables-save and ip6tables-save, counters and comments out (what a reload must not change)."""
    out = []
    for save in ("iptables-save", "ip6tables-save"):
        text = fw.run([save], check=True).stdout
        out += [re.sub(r"\[\d+:\d+\]", "", ln) for ln in text.splitlines() if not ln.startswith("#")]
    return "\n".join(out)


def _sync(fw: FwSandbox, root: Path | None = None) -> tuple[int, str, float]:
    args = [sys.executable, "-m", "checks.firewall.sync", "ufw"] + (["--root", str(root)] if root else [])
    t0 = time.monotonic()
    done = fw.run(["env", f"PYTHONPATH={REPO}", *args])
    return done.returncode, done.stderr.strip(), time.monotonic() - t0


def _apply(fw: FwSandbox, wants: Sequence[Want]) -> dict[str, bytes | None]:
    sr = SystemRoot(str(fw.root / "private"))
    bp = ufw.plan(wants, FirewallState("ufw", True, ufw_installed=True), sr)
    saved = {}
    for path, before, after, _mode, _owner in bp.edits:
        saved[path] = before
        Path(path).write_bytes(after)
    return saved


def _restore(saved: dict[str, bytes | None]) -> None:
    for path, before in saved.items():
        assert before is not None
        Path(path).write_bytes(before)


def test_rendered_files_load_sync_is_idempotent_and_restoring_leaves_the_chains_as_before(fw):
    fw.run(["ufw", "--force", "enable"], check=True)
    fw.run(["ufw", "deny", "5432"], check=True)
    fw.run(["ufw", "allow", "6379/tcp"], check=True)  # FW-002: removed by the plan
    fw.run(["ufw", "reload"], check=True)  # a rule added live lacks some of what a load from the files has
    before = _rules(fw)
    saved = _apply(fw, WANTS)
    code, err, seconds = _sync(fw, fw.root / "private")  # --root: the private copy IS /etc/ufw in there
    assert code == 0, err
    print(f"\nufw apply+verify (sync): {seconds:.2f} s")
    status = fw.run(["ufw", "status", "numbered"], check=True).stdout
    rows = [ln for ln in status.splitlines() if ln.startswith("[")]
    assert rows[0].startswith("[ 1] 22/tcp") and "ALLOW IN" in rows[0]
    assert "10.78.0.0/24" in rows[1] and "5432/tcp" in rows[2] and "DENY IN" in rows[2]
    assert not any("6379/tcp" in r and "ALLOW" in r for r in rows)
    chain = fw.run(["iptables", "-S", "DH-DOCKER"], check=True).stdout
    assert "-s 10.78.0.0/24 -p tcp -m conntrack --ctorigdstport 3001 --ctdir ORIGINAL -j RETURN" in chain
    assert "-p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j DROP" in chain
    assert "fd78::/64" in fw.run(["ip6tables", "-S", "DH-DOCKER"], check=True).stdout
    assert fw.run(["iptables", "-S", "DOCKER-USER"], check=True).stdout.count("-j DH-DOCKER") == 1
    applied = _rules(fw)
    assert _sync(fw)[0] == 0 and _rules(fw) == applied  # idempotent
    fw.run(["ufw", "reload"], check=True)
    assert _rules(fw) == applied  # loaded twice (the sync, then ufw's own reload): nothing duplicated
    _restore(saved)
    code, err, _ = _sync(fw)
    assert code == 0, err
    assert fw.run(["iptables", "-S", "DH-DOCKER"]).returncode != 0  # gone without a reboot
    after = _rules(fw)
    assert after == before, "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm=""))


def test_sync_disables_ufw_when_the_files_say_so_and_removes_the_chain(fw):
    saved = _apply(fw, WANTS)
    assert _sync(fw)[0] == 0
    assert "Status: active" in fw.run(["ufw", "status"], check=True).stdout
    _restore(saved)  # ENABLED=no again, no block
    code, err, _ = _sync(fw)
    assert code == 0, err
    assert "Status: inactive" in fw.run(["ufw", "status"], check=True).stdout
    assert fw.run(["iptables", "-S", "DH-DOCKER"]).returncode != 0
    assert fw.run(["ip6tables", "-S", "DH-DOCKER"]).returncode != 0


def test_verify_names_a_live_rule_the_files_do_not_hold(fw):
    _apply(fw, WANTS)
    assert _sync(fw)[0] == 0

    def runner(argv: Sequence[str], timeout: float) -> RunResult:
        done = fw.run(list(argv), timeout=timeout)
        return RunResult(done.returncode, done.stdout, done.stderr)

    sr = SystemRoot(str(fw.root / "private"))
    ufw.verify(sr, runner, True, True, "DROP")  # equal: no error
    fw.run(["iptables", "-A", "DH-DOCKER", "-s", "10.9.9.9", "-j", "RETURN"], check=True)
    with pytest.raises(ufw.SyncError, match="iptables: chain DH-DOCKER differs from after.rules"):
        ufw.verify(sr, runner, True, True, "DROP")
    fw.run(["ip6tables", "-I", "ufw6-user-input", "1", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"], check=True)
    assert _sync(fw)[0] == 0  # the sync itself puts both right again
    ufw.verify(sr, runner, True, True, "DROP")


def test_sync_outside_the_namespace_of_the_files_refuses_with_one_line(fw, tmp_path):
    other = tmp_path / "root"
    (other / "etc" / "ufw").mkdir(parents=True)
    code, err, _ = _sync(fw, other)
    assert code == 1 and "ufw reads /etc/ufw" in err and len(err.splitlines()) == 1
