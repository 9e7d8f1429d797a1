"""The firewalld zone and the own nft table against the real firewalld and nft, in the firewall lab's sandbox.

One sandbox for the module (tests/fwlab.py): a private dbus and firewalld, private /etc/firewalld,
and nft in the sandbox's own network namespace. The plans are made on the host side against the
private copies (``SystemRoot(ROOT/private)``); the syncs run inside the namespace, where those
copies are /etc/firewalld itself.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks.core.sysroot import SystemRoot
from checks.firewall import firewalld, nft
from checks.firewall.wants import Want
from checks.live.fwmodel import FirewallState
from tests.fwlab import REPO, FwSandbox, require

pytestmark = pytest.mark.firewall

LAN4, LAN6 = "10.78.0.0/24", "fd78::/64"
ZONE = "/etc/firewalld/zones/public.xml"

#: Runs one backend's sync in the namespace; a SyncError is its one line on stdout and exit 1.
_SYNC = """
import sys
from checks.core.sysroot import SystemRoot
from checks.firewall import firewalld, nft
from checks.firewall.sysfiles import run
mod = {"firewalld": firewalld, "nft": nft}[sys.argv[1]]
try:
    mod.sync(SystemRoot(sys.argv[2]), run)
except mod.SyncError as exc:
    print(exc)
    sys.exit(1)
"""


def wants() -> list[Want]:
    return [Want("allow", 22, why="SSH"),
            Want("allow", 3001, source=LAN4, forwarded=True), Want("allow", 3001, source=LAN6, forwarded=True),
            Want("deny", 5432, forwarded=True), Want("deny", None)]


def sync(sb: FwSandbox, backend: str, root: str = "/") -> tuple[int, str]:
    done = sb.run([sys.executable, "-c", _SYNC, backend, root], env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.strip()


def list_all(sb: FwSandbox, *extra: str) -> str:
    return sb.run(["firewall-cmd", *extra, "--zone=public", "--list-all"], check=True).stdout


@pytest.fixture(scope="module")
def fwd(fw_sandbox: FwSandbox) -> Iterator[FwSandbox]:
    """The module's sandbox with firewalld running (started once: about a second)."""
    require(firewalld=True)
    fw_sandbox.reset()
    fw_sandbox.start_firewalld()
    yield fw_sandbox
    fw_sandbox.stop_firewalld()


def test_the_zone_loads_ssh_and_the_rich_rules_and_restoring_it_gives_the_old_runtime_back(fwd: FwSandbox) -> None:
    host = SystemRoot(str(fwd.root / "private"))
    before_runtime = list_all(fwd)
    version = fwd.run(["firewall-cmd", "--version"], check=True).stdout.strip()
    bp = firewalld.plan(wants(), FirewallState("firewalld", True, version=version, zone="public"), host, None)
    (path, before, after, _mode, _owner), = bp.edits
    assert path == str(fwd.path(ZONE)) and before is None
    Path(path).write_bytes(after)
    try:
        assert sync(fwd, "firewalld") == (0, "")
        shown = list_all(fwd)
        services = next(ln for ln in shown.splitlines() if ln.strip().startswith("services:"))
        assert "ssh" in services.split()
        for net, fam in ((LAN4, "ipv4"), (LAN6, "ipv6")):
            assert f'rule family="{fam}" source address="{net}" port port="3001" protocol="tcp" accept' in shown
    finally:
        Path(path).unlink()  # the undo of a new file
    assert sync(fwd, "firewalld") == (0, "")
    assert list_all(fwd) == before_runtime


def test_a_zone_firewalld_does_not_load_fails_the_sync(fwd: FwSandbox) -> None:
    p = fwd.path(ZONE)
    p.write_text('<?xml version="1.0" encoding="utf-8"?>\n<zone>\n  <service name="ssh"/>\n'
                 '  <port port="4000" protocol="tcp"/>\n  <bogus/>\n</zone>\n')
    try:
        code, line = sync(fwd, "firewalld")
        assert code == 1 and "\n" not in line
        assert line.startswith(("firewall-cmd --reload failed", "zone public: firewalld did not load")), line
    finally:
        p.unlink()
    assert sync(fwd, "firewalld") == (0, "")


def test_the_firewalld_23_zone_passes_firewalld_check_config(fwd: FwSandbox) -> None:
    """The 2.3 path (forward ports for the API) cannot run on 1.3.3, but its zone must still be one firewalld reads."""
    host = SystemRoot(str(fwd.root / "private"))
    bp = firewalld.plan(wants(), FirewallState("firewalld", True, version="2.3.0", zone="public"), host, None)
    zone = next(e for e in bp.edits if e[0].endswith(".xml"))
    p = fwd.path(ZONE)
    p.write_bytes(zone[2])
    try:
        assert b"forward-port" in zone[2]
        done = fwd.run(["firewall-cmd", "--check-config"])
        assert done.stdout.strip() == "success", done.stdout + done.stderr
    finally:
        p.unlink()


# --- nft ------------------------------------------------------------------------------------------------

@pytest.fixture
def nroot(fw_sandbox: FwSandbox, tmp_path: Path) -> Iterator[SystemRoot]:
    """A --root with Debian's nftables.conf (the sandbox has no private /etc/nftables.conf); no table loaded."""
    require("nft")
    (tmp_path / "etc").mkdir()
    conf = Path("/etc/nftables.conf")
    (tmp_path / "etc/nftables.conf").write_bytes(conf.read_bytes() if conf.is_file() else b"flush ruleset\n")
    fw_sandbox.run(["nft", "delete", "table", "inet", "dester_harden"])
    yield SystemRoot(str(tmp_path))
    fw_sandbox.run(["nft", "delete", "table", "inet", "dester_harden"])


def chain(sb: FwSandbox) -> tuple[dict[str, object], int]:
    doc = json.loads(sb.run(["nft", "-j", "list", "chain", "inet", "dester_harden", "forward"], check=True).stdout)
    items = doc["nftables"]
    c = next(i["chain"] for i in items if "chain" in i)
    return c, sum("rule" in i for i in items)


def test_the_own_table_loads_at_filter_minus_1_idempotently_and_goes_with_the_include(
        fw_sandbox: FwSandbox, nroot: SystemRoot) -> None:
    if not shutil.which("unshare"):
        pytest.skip("unshare is missing")
    bp = nft.plan(wants(), FirewallState("none", False, docker_backend="nftables"), nroot, None)
    assert not bp.refusals, bp.refusals
    conf_before = Path(nroot.path("/etc/nftables.conf")).read_bytes()
    for path, _before, after, _m, _o in bp.edits:
        Path(path).write_bytes(after)
    assert sync(fw_sandbox, "nft", nroot.root) == (0, "")
    c, n = chain(fw_sandbox)
    assert (c["hook"], c["prio"], c["type"], c["policy"]) == ("forward", -1, "filter", "accept")
    assert n == len(nft.rule_lines(wants())) == 7
    assert sync(fw_sandbox, "nft", nroot.root) == (0, "")
    assert chain(fw_sandbox)[1] == n, "loading the file again replaces the table, it does not add to it"
    # A rule added by hand is a difference the next sync repairs, not one it keeps.
    fw_sandbox.run(["nft", "add", "rule", "inet", "dester_harden", "forward", "tcp", "dport", "9", "drop"], check=True)
    assert chain(fw_sandbox)[1] == n + 1
    assert sync(fw_sandbox, "nft", nroot.root) == (0, "")
    assert chain(fw_sandbox)[1] == n
    # The undo: nftables.conf without the include (and the file gone); the sync deletes the table.
    Path(nroot.path("/etc/nftables.conf")).write_bytes(conf_before)
    Path(nroot.path(nft.NFT_FILE)).unlink()
    assert sync(fw_sandbox, "nft", nroot.root) == (0, "")
    assert fw_sandbox.run(["nft", "list", "table", "inet", "dester_harden"]).returncode != 0
    assert sync(fw_sandbox, "nft", nroot.root) == (0, ""), "no table: deleting it again is fine"
