"""The own nft table and the firewalld zone with a real dockerd publishing 5432 and 3001, seen from the LAN.

The firewall lab with Docker (tests/fwdocker.py): dockerd (its iptables-nft backend) in the
sandbox, the demo install deployed (5432 and 6379 on every address, 0.0.0.0:3001), a LAN client
at 10.78.0.2 on a veth pair. Each test starts from the lab's baseline (``fw_lab`` /
``fw_lab_firewalld`` reset it).

* nft: dester-harden's own table governs the forward path whatever Docker's backend is, since it
  hooks ``forward`` at filter - 1, before Docker's chains: 5432 times out from the LAN, 3001 still
  answers, loopback still reaches 5432. (IPv6 is not this table's: Docker 20.10 without IPv6 serves
  ``[::]`` through docker-proxy, the INPUT path, which is the host firewall's.)
* firewalld 1.3.3: the zone does not close a Docker publish, which is why NET-007 is refused there;
  SSH and the API stay reachable from the LAN, and a port the zone does not allow is closed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from checks.core.sysroot import SystemRoot
from checks.firewall import firewalld, nft, zonefile
from checks.firewall.wants import Want
from checks.live.fwmodel import FirewallState
from tests.fwlab import REPO, require

pytestmark = pytest.mark.firewall

SRV4, SRV6 = "10.78.0.1", "fd78::1"
LAN4, LAN6 = "10.78.0.0/24", "fd78::/64"

_SYNC = """
import sys
from checks.core.sysroot import SystemRoot
from checks.firewall import firewalld, nft, zonefile
from checks.firewall.sysfiles import run
mod = {"firewalld": firewalld, "nft": nft}[sys.argv[1]]
try:
    mod.sync(SystemRoot(sys.argv[2]), run)
except mod.SyncError as exc:
    print(exc)
    sys.exit(1)
"""


def local_wants() -> list[Want]:
    """The local profile for the demo install: SSH, the API from the LAN, the database and cache denied."""
    return [Want("allow", 22, why="SSH"),
            Want("allow", 3001, source=LAN4, forwarded=True), Want("allow", 3001, source=LAN6, forwarded=True),
            Want("deny", 5432, forwarded=True), Want("deny", 6379, forwarded=True), Want("deny", None)]


def sync(lab: object, backend: str, root: str = "/") -> tuple[int, str]:
    done = lab.run([sys.executable, "-c", _SYNC, backend, root],  # type: ignore[attr-defined]
                   env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.strip()


@pytest.fixture(autouse=True)
def _needs() -> None:
    require("dockerd", "nft")


def test_the_own_nft_table_closes_5432_to_the_lan_and_keeps_3001_and_loopback(fw_lab, tmp_path: Path) -> None:
    assert fw_lab.lan_probe(SRV4, 5432) == "open", "the bypass is real before the table"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nftables.conf").write_text("#!/usr/sbin/nft -f\n\nflush ruleset\n")
    root = SystemRoot(str(tmp_path))
    bp = nft.plan(local_wants(), FirewallState("none", False, docker_backend="iptables"), root, None)
    for path, _before, after, _m, _o in bp.edits:
        Path(path).write_bytes(after)
    try:
        assert sync(fw_lab, "nft", root.root) == (0, "")
        assert fw_lab.lan_probe(SRV4, 5432) == "timeout"
        assert fw_lab.lan_probe(SRV4, 6379) == "timeout"
        assert fw_lab.lan_http(f"http://{SRV4}:3001/health") == 200, "the API from the LAN network still answers"
        assert fw_lab.server_probe("127.0.0.1", 5432) == "open", "loopback is not the forward path"
    finally:
        (tmp_path / "etc/nftables.conf").write_text("#!/usr/sbin/nft -f\n\nflush ruleset\n")
        assert sync(fw_lab, "nft", root.root) == (0, ""), "the undo's sync removes the table"
    assert fw_lab.lan_probe(SRV4, 5432) == "open", "without the include the table is gone, and so is the drop"


def test_the_firewalld_zone_keeps_ssh_and_the_api_but_does_not_close_a_docker_publish(fw_lab_firewalld) -> None:
    lab = fw_lab_firewalld
    require(firewalld=True)
    version = lab.run(["firewall-cmd", "--version"], check=True).stdout.strip()
    state = FirewallState("firewalld", True, version=version, zone="public")
    bp = firewalld.plan(local_wants(), state, SystemRoot(str(lab.root / "private")), None)
    old = (zonefile.parse_version(version) or (0,)) < firewalld.STRICT_SINCE
    if old:
        assert [c for c, _, _ in bp.refusals] == ["NET-007"]
        assert "has no StrictForwardPorts" in bp.refusals[0][1]
    zone = next(e for e in bp.edits if e[0].endswith("/zones/public.xml"))
    Path(zone[0]).write_bytes(zone[2])
    assert sync(lab, "firewalld") == (0, ""), "the reload waited for Docker's rules and the zone verified"
    with lab.listener(22), lab.listener(8080):
        assert lab.lan_probe(SRV4, 22) == "open", "SSH first: still reachable from the LAN"
        assert lab.lan_probe(SRV4, 8080) != "open", "a port the zone does not allow is closed"
    assert lab.lan_http(f"http://{SRV4}:3001/health") == 200
    if old:
        # What the refusal says: the zone has no say over a Docker publish before StrictForwardPorts.
        assert lab.lan_probe(SRV4, 5432) == "open"
