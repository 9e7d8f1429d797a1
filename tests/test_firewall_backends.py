"""The firewalld and nft backends' plans and syncs, without a running firewall.

The zone is still checked by the real firewalld parser (a scratch directory, nothing under /etc)
and the nft file by the real ``nft -c`` (in an empty network namespace when root), where they are
installed; the syncs run against a fake :data:`~checks.live.fwmodel.Runner` here and against the
real programs in tests/test_firewall_backends_real.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from checks.core.sysroot import SystemRoot
from checks.firewall import firewalld, nft
from checks.firewall.wants import TAILSCALE_V4, TAILSCALE_V6, Want
from checks.live.fwmodel import FirewallState, RunResult

LAN4, LAN6 = "10.78.0.0/24", "fd78::/64"
PUBLIC = Path("/usr/lib/firewalld/zones/public.xml")


def local_wants() -> list[Want]:
    """What the local profile asks for a stack that publishes 3001 and 5432 on every address."""
    return [Want("allow", 22, why="SSH, so this session is never cut off"),
            Want("allow", 3001, source=LAN4, forwarded=True, why="the API from the LAN"),
            Want("allow", 3001, source=LAN6, forwarded=True, why="the API from the LAN"),
            Want("deny", 5432, forwarded=True, why="PostgreSQL stays inside"),
            Want("deny", None, why="default deny incoming")]


def state(version: str = "1.3.3", **kw: object) -> FirewallState:
    return FirewallState("firewalld", True, version=version, zone="public", **kw)  # type: ignore[arg-type]


def need_firewalld() -> None:
    if not shutil.which("firewall-cmd") or not PUBLIC.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("firewalld is not installed, and .ci/run installs it")
        pytest.skip("firewalld is not installed (its parser validates the zone)")


def need_nft() -> None:
    if not shutil.which("nft"):
        if os.environ.get("CI") == "true":
            pytest.fail("nft is not installed, and .ci/run installs it")
        pytest.skip("nft is not installed (nft -c validates the table)")


@pytest.fixture
def root(tmp_path: Path) -> SystemRoot:
    (tmp_path / "etc/firewalld/zones").mkdir(parents=True)
    (tmp_path / "etc/firewalld/firewalld.conf").write_text("DefaultZone=public\nFirewallBackend=nftables\n")
    return SystemRoot(str(tmp_path))


def zone_after(plan: object) -> str:
    edits = [e for e in plan.edits if e[0].endswith(".xml")]  # type: ignore[attr-defined]
    assert len(edits) == 1, plan
    return edits[0][2].decode()


def body(xml: str) -> list[str]:
    return [ln.strip() for ln in xml.splitlines()[2:-1]]


# --- firewalld: the zone ---------------------------------------------------------------------------

def test_zone_from_the_packaged_one_ssh_first_lan_rich_rules_and_the_net007_refusal(root: SystemRoot) -> None:
    need_firewalld()
    bp = firewalld.plan(local_wants(), state(), root, None)
    path, before, after, mode, _owner = bp.edits[0]
    assert path == root.path("/etc/firewalld/zones/public.xml") and before is None and mode == 0o644
    lines = body(after.decode())
    elements = [ln for ln in lines if ln.startswith("<") and not ln.startswith(("<!--", "<short", "<description"))]
    assert elements[0] == '<service name="ssh"/>', "SSH comes first"
    text = after.decode()
    for net, fam in ((LAN4, "ipv4"), (LAN6, "ipv6")):
        assert (f'<rule family="{fam}">\n    <source address="{net}"/>\n    <port port="3001" protocol="tcp"/>\n'
                "    <accept/>\n  </rule>") in text
    assert '<service name="dhcpv6-client"/>' in text and "<forward/>" in text, "the packaged elements stay"
    assert "target=" not in text, "public's target default already rejects: kept"
    assert 'port="5432"' not in text
    # 1.3.3: nothing in the zone closes a Docker publish, so NET-007 is refused with the fix to use instead.
    assert bp.refusals == [("NET-007", "firewalld 1.3.3 has no StrictForwardPorts: Docker-published ports "
                                       "(3001, 5432) bypass its zones",
                            "bind them to 127.0.0.1 (the network step, NET-001) or upgrade to firewalld 2.3")]
    assert not any(e[0].endswith("firewalld.conf") for e in bp.edits)
    assert bp.sync[-3:] == ("firewalld", "--root", root.root) and bp.sync[1:3] == ("-m", "checks.firewall.sync")
    assert any("--add-rich-rule" in c and LAN4 in c for c in bp.commands)
    assert bp.system_dirs == [root.path("/etc/firewalld")]


def test_fw002_removes_what_opens_the_database_and_keeps_the_rest_in_order(root: SystemRoot) -> None:
    need_firewalld()
    Path(root.path("/etc/firewalld/zones/public.xml")).write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<zone>\n  <short>Public</short>\n'
        '  <service name="dhcpv6-client"/>\n  <service name="postgresql"/>\n  <port port="8080" protocol="tcp"/>\n'
        '  <port port="5400-5500" protocol="tcp"/>\n'
        '  <rule family="ipv4">\n    <source address="192.0.2.7"/>\n    <port port="5432" protocol="tcp"/>\n'
        '    <accept/>\n  </rule>\n'
        '  <rule family="ipv4">\n    <source address="192.0.2.9"/>\n    <service name="http"/>\n'
        '    <accept/>\n  </rule>\n  <forward/>\n</zone>\n')
    bp = firewalld.plan(local_wants(), state(), root, None)
    text = zone_after(bp)
    assert "postgresql" not in text and "5400-5500" not in text and "192.0.2.7" not in text
    kept = [ln for ln in body(text) if "dhcpv6" in ln or "8080" in ln or "192.0.2.9" in ln or "<forward/>" in ln]
    assert kept == ['<service name="dhcpv6-client"/>', '<port port="8080" protocol="tcp"/>',
                    '<source address="192.0.2.9"/>', "<forward/>"], "the user's elements stay, in order"
    assert sum("FW-002" in n for n in bp.notes) == 3
    assert "firewall-cmd --permanent --zone=public --remove-service=postgresql" in bp.commands


def test_planning_again_is_a_no_op_and_a_new_profile_replaces_only_ours(root: SystemRoot) -> None:
    need_firewalld()
    path = Path(root.path("/etc/firewalld/zones/public.xml"))
    first = firewalld.plan(local_wants(), state(), root, None)
    path.write_bytes(first.edits[0][2])
    asked: list[bytes] = []

    def spy(data: bytes, zone: str) -> str | None:
        asked.append(data)
        return None

    again = firewalld.plan(local_wants(), state(), root, None, validate=spy)
    assert not [e for e in again.edits if e[0] == str(path)], "the same wants: nothing to change"
    assert asked == [], "an unchanged zone is not validated again"
    tail = [Want("allow", 22), Want("allow", 3001, source=TAILSCALE_V4), Want("allow", 3001, source=TAILSCALE_V6),
            Want("deny", None)]
    text = zone_after(firewalld.plan(tail, state(), root, None))
    assert LAN4 not in text and LAN6 not in text, "our old rules are gone"
    assert TAILSCALE_V4 in text and TAILSCALE_V6 in text
    assert text.count('<service name="ssh"/>') == 1 and '<service name="dhcpv6-client"/>' in text


def test_an_accept_zone_gets_the_default_target(root: SystemRoot) -> None:
    need_firewalld()
    Path(root.path("/etc/firewalld/zones/public.xml")).write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<zone target="ACCEPT">\n  <short>Public</short>\n</zone>\n')
    bp = firewalld.plan(local_wants(), state(), root, None)
    assert "target=" not in zone_after(bp)
    assert "firewall-cmd --permanent --zone=public --set-target=default" in bp.commands


def test_firewalld_23_strict_forward_ports_and_forward_ports_for_what_stays_reachable(root: SystemRoot) -> None:
    need_firewalld()
    bp = firewalld.plan(local_wants(), state("2.3.0"), root, None)
    assert not bp.refusals
    conf = [e for e in bp.edits if e[0].endswith("firewalld.conf")]
    assert len(conf) == 1 and conf[0][2].decode().rstrip().endswith("StrictForwardPorts=yes")
    assert conf[0][1] == b"DefaultZone=public\nFirewallBackend=nftables\n"
    text = zone_after(bp)
    for net in (LAN4, LAN6):
        assert f'<source address="{net}"/>\n    <forward-port port="3001" protocol="tcp" to-port="3001"/>' in text
    assert 'forward-port port="5432"' not in text, "the database stays blocked by StrictForwardPorts"
    # An existing setting is replaced, not doubled.
    assert firewalld.strict_conf(b"A=1\nStrictForwardPorts=no\nB=2\n") == b"A=1\nStrictForwardPorts=yes\nB=2\n"


def test_a_zone_firewalld_would_refuse_is_never_planned(root: SystemRoot) -> None:
    need_firewalld()
    Path(root.path("/etc/firewalld/zones/public.xml")).write_text(
        '<?xml version="1.0"?>\n<zone>\n  <bogus/>\n</zone>\n')
    bp = firewalld.plan(local_wants(), state(), root, None)
    assert not bp.edits
    invalid = [c for c, r, _ in bp.refusals
               if r == "the planned zone public does not validate with firewalld: "
                       "PARSE_ERROR: Unexpected element bogus"]
    assert sorted(invalid) == sorted(firewalld.CHECKS)


def test_a_dtd_or_a_broken_zone_is_one_line_and_no_edit(root: SystemRoot) -> None:
    p = Path(root.path("/etc/firewalld/zones/public.xml"))
    p.write_text('<?xml version="1.0"?>\n<!DOCTYPE zone [<!ENTITY a "b">]>\n<zone/>\n')
    bp = firewalld.plan(local_wants(), state(), root, None, validate=lambda d, z: None)
    assert not bp.edits and "declares a DTD" in bp.refusals[0][1]
    p.write_text("<zone>")
    bp = firewalld.plan(local_wants(), state(), root, None, validate=lambda d, z: None)
    assert not bp.edits and "not well-formed XML" in bp.refusals[0][1] and "\n" not in bp.refusals[0][1]


def test_the_default_zone_comes_from_firewalld_conf_without_a_live_state(root: SystemRoot) -> None:
    Path(root.path("/etc/firewalld/firewalld.conf")).write_text("# x\nDefaultZone=home\n")
    assert firewalld.default_zone(root) == "home"
    assert firewalld.default_zone(root, state()) == "public"


# --- firewalld: the sync ----------------------------------------------------------------------------

LIST_ALL = """public
  target: default
  icmp-block-inversion: no
  interfaces: 
  sources: 
  services: dhcpv6-client ssh
  ports: 
  protocols: 
  forward: yes
  masquerade: no
  forward-ports: 
  source-ports: 
  icmp-blocks: 
  rich rules: 
	rule family="ipv4" source address="10.78.0.0/24" port port="3001" protocol="tcp" accept
"""


class FakeRunner:
    """Answers by the first words of argv; records every call."""

    def __init__(self, answers: dict[tuple[str, ...], object]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> RunResult:
        self.calls.append(list(argv))
        for n in range(len(argv), 0, -1):
            ans = self.answers.get(tuple(argv[:n]))
            if ans is not None:
                return ans() if callable(ans) else ans  # type: ignore[return-value]
        return RunResult(1, "", "unexpected")


def write_zone(root: SystemRoot) -> None:
    Path(root.path("/etc/firewalld/zones/public.xml")).write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<zone>\n  <service name="dhcpv6-client"/>\n'
        '  <service name="ssh"/>\n  <rule family="ipv4">\n    <source address="10.78.0.0/24"/>\n'
        '    <port port="3001" protocol="tcp"/>\n    <accept/>\n  </rule>\n</zone>\n')


@pytest.fixture(autouse=True)
def _fw_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """firewalld's interpreter is "fwpython" for the fake runners (its client script: 3 = cannot load)."""
    monkeypatch.setattr(firewalld, "interpreter", lambda: "fwpython")


def fw_answers(**over: object) -> dict[tuple[str, ...], object]:
    ans: dict[tuple[str, ...], object] = {
        ("fwpython",): RunResult(3, "firewalld's client module cannot be loaded (x)\n"),
        ("firewall-cmd", "--state"): RunResult(0, "running\n"),
        ("firewall-cmd", "--reload"): RunResult(0, "success\n"),
        ("iptables", "-w", "-t", "nat", "-S", "DOCKER"): RunResult(1, "", "No chain/target/match by that name."),
        ("firewall-cmd", "--zone=public", "--list-all"): RunResult(0, LIST_ALL),
        ("firewall-cmd", "--permanent", "--zone=public", "--list-all"): RunResult(0, LIST_ALL),
    }
    ans.update({tuple(k.split()): v for k, v in over.items()})
    return ans


def test_sync_reloads_and_verifies_runtime_permanent_and_file(root: SystemRoot) -> None:
    write_zone(root)
    run = FakeRunner(fw_answers())
    firewalld.sync(root, run)
    assert ["firewall-cmd", "--reload"] in run.calls


def test_sync_says_when_firewalld_did_not_load_the_file(root: SystemRoot) -> None:
    write_zone(root)
    stock = LIST_ALL.replace("\trule family", "#").replace("services: dhcpv6-client ssh", "services: ssh")
    run = FakeRunner(fw_answers(**{"firewall-cmd --permanent --zone=public --list-all": RunResult(0, stock),
                                   "firewall-cmd --zone=public --list-all": RunResult(0, stock)}))
    with pytest.raises(firewalld.SyncError, match="firewalld did not load .*public.xml .services"):
        firewalld.sync(root, run)


def test_sync_says_when_runtime_differs_from_permanent(root: SystemRoot) -> None:
    write_zone(root)
    live = LIST_ALL.replace("ports: \n", "ports: 5432/tcp\n", 1)
    run = FakeRunner(fw_answers(**{"firewall-cmd --zone=public --list-all": RunResult(0, live)}))
    with pytest.raises(firewalld.SyncError, match=r"running ports \(5432/tcp\) differ from the permanent"):
        firewalld.sync(root, run)


def test_a_failing_reload_is_a_sync_error(root: SystemRoot) -> None:
    write_zone(root)
    run = FakeRunner(fw_answers(**{"firewall-cmd --reload": RunResult(28, "", "Error: INVALID_ZONE\n")}))
    with pytest.raises(firewalld.SyncError, match="^firewall-cmd --reload failed: Error: INVALID_ZONE$"):
        firewalld.sync(root, run)


def test_sync_waits_for_docker_to_put_its_rules_back(root: SystemRoot) -> None:
    write_zone(root)
    counts = iter([3, 0, 0, 2, 3])  # before the reload, then while Docker's handler re-applies them
    docker = lambda: RunResult(0, "-N DOCKER\n" + "-A DOCKER x\n" * next(counts))  # noqa: E731
    run = FakeRunner(fw_answers(**{"iptables -w -t nat -S DOCKER": docker}))
    firewalld.sync(root, run)
    assert sum(c[:2] == ["iptables", "-w"] for c in run.calls) == 5
    assert run.calls.index(["firewall-cmd", "--reload"]) == 2


def test_sync_without_a_running_firewalld_changes_nothing_live(root: SystemRoot) -> None:
    run = FakeRunner(fw_answers(**{"firewall-cmd --reload": RunResult(252, "FirewallD is not running\n")}))
    firewalld.sync(root, run)
    assert [c for c in run.calls if c[0] == "firewall-cmd"] == [["firewall-cmd", "--reload"]]


# --- nft ----------------------------------------------------------------------------------------------

@pytest.fixture
def nroot(tmp_path: Path) -> SystemRoot:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nftables.conf").write_text('#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n')
    return SystemRoot(str(tmp_path))


def test_the_own_table_returns_for_docker_accepts_allowed_sources_and_drops_the_rest() -> None:
    assert nft.rule_lines(local_wants()) == [
        'iifname "docker0" return', 'iifname "br-*" return', "ct state established,related accept",
        "ip saddr 10.78.0.0/24 meta l4proto tcp ct original proto-dst 3001 accept",
        "ip6 saddr fd78::/64 meta l4proto tcp ct original proto-dst 3001 accept",
        "ct state new ct status dnat meta l4proto tcp ct original proto-dst 3001 drop",
        "ct state new ct status dnat meta l4proto tcp ct original proto-dst 5432 drop"]
    text = nft.render(local_wants())
    idiom = text.index("table inet dester_harden\ndelete table inet dester_harden\ntable inet dester_harden {")
    assert idiom > 0 and "type filter hook forward priority filter - 1; policy accept;" in text
    ts = nft.rule_lines([Want("allow", 3001, interface="tailscale0", forwarded=True)])
    assert 'iifname "tailscale0" meta l4proto tcp ct original proto-dst 3001 accept' in ts


def test_nft_plan_writes_the_file_and_the_include_once(nroot: SystemRoot) -> None:
    need_nft()
    bp = nft.plan(local_wants(), FirewallState("none", False, docker_backend="nftables"), nroot, None)
    assert not bp.refusals, bp.refusals
    paths = {e[0]: e for e in bp.edits}
    f, conf = paths[nroot.path("/etc/dester-harden.nft")], paths[nroot.path("/etc/nftables.conf")]
    assert f[1] is None and f[2].decode() == nft.render(local_wants()) and f[3] == 0o644
    assert conf[2].decode().endswith('\ninclude "/etc/dester-harden.nft"\n')
    assert conf[2].startswith(conf[1] or b"x"), "nftables.conf keeps everything it had"
    assert bp.system_dirs == [nroot.path("/etc")] and bp.sync[3:] == ("nft", "--root", nroot.root)
    assert any("host's own ports" in n for n in bp.notes)
    for path, _before, after, _m, _o in bp.edits:
        Path(path).write_bytes(after)
    assert nft.plan(local_wants(), FirewallState("none", False), nroot, None).edits == []


def test_nft_plan_refuses_what_nft_c_rejects(nroot: SystemRoot) -> None:
    bad = lambda argv, timeout: RunResult(1, "", "Error: syntax error, unexpected junk\n")  # noqa: E731
    bp = nft.plan(local_wants(), FirewallState("none", False), nroot, None, runner=bad)
    assert not bp.edits
    assert bp.refusals[0][1] == "the planned nft table does not pass `nft -c`: Error: syntax error, unexpected junk"


def test_the_include_is_seen_only_when_not_commented_out() -> None:
    assert nft.has_include('flush ruleset\ninclude "/etc/dester-harden.nft"\n')
    assert not nft.has_include('# include "/etc/dester-harden.nft"\n')
    assert not nft.has_include('include "/etc/dester-harden.nft.bak"\n')
    assert nft.with_include(b'include "/etc/dester-harden.nft"\n') == b'include "/etc/dester-harden.nft"\n'


def test_nft_sync_without_the_include_deletes_the_table_and_ignores_no_such_table(nroot: SystemRoot) -> None:
    run = FakeRunner({("nft", "delete"): RunResult(1, "", "Error: Could not process rule: No such file or directory\n"),
                      ("nft", "list"): RunResult(1, "", "Error: No such file or directory\n")})
    nft.sync(nroot, run)
    assert run.calls[0] == ["nft", "delete", "table", "inet", "dester_harden"]
    run = FakeRunner({("nft", "delete"): RunResult(1, "", "Error: Operation not permitted\n")})
    with pytest.raises(nft.SyncError, match="nft delete table failed: Error: Operation not permitted"):
        nft.sync(nroot, run)


def test_ssh_on_another_port_is_a_port_first_and_an_unknown_version_is_refused_too(root: SystemRoot) -> None:
    need_firewalld()
    ws = [Want("allow", 2222, why="SSH"), *local_wants()[1:]]
    bp = firewalld.plan(ws, state(version=None), root, None)  # type: ignore[arg-type]
    lines = [ln for ln in body(zone_after(bp)) if ln.startswith("<") and not ln.startswith(("<!--", "<short",
                                                                                           "<description"))]
    assert lines[0] == '<port port="2222" protocol="tcp"/>'
    assert bp.refusals[0][0] == "NET-007"
    assert bp.refusals[0][1].startswith("firewalld's version could not be read, so StrictForwardPorts cannot be "
                                        "relied on: Docker-published ports (3001, 5432)")


def test_sync_through_firewalds_client_reloads_once_and_compares_its_listings(root: SystemRoot) -> None:
    write_zone(root)
    view = {"services": ["ssh", "dhcpv6-client"], "ports": [], "sources": [], "forward_ports": [],
            "rich": ['rule family="ipv4" source address="10.78.0.0/24" port port="3001" protocol="tcp" accept']}
    listed = RunResult(0, json.dumps({"runtime": view, "permanent": view}))
    calls: list[list[str]] = []
    run = FakeRunner(fw_answers(**{"fwpython": lambda: listed if calls[-1][4] == "list" else RunResult(0, "")}))
    run.calls = calls
    firewalld.sync(root, run)
    assert not [c for c in run.calls if c[0] == "firewall-cmd"], "no firewall-cmd when the client answers"
    assert [c[4:] for c in run.calls if c[0] == "fwpython"] == [["reload"], ["list", "public"]]
    drift = dict(view, ports=["5432/tcp"])
    listed = RunResult(0, json.dumps({"runtime": drift, "permanent": view}))
    with pytest.raises(firewalld.SyncError, match=r"running ports \(5432/tcp\) differ"):
        firewalld.sync(root, run)


def test_firewalld_23_without_firewalld_conf_refuses_net007_once(root: SystemRoot) -> None:
    need_firewalld()
    Path(root.path("/etc/firewalld/firewalld.conf")).unlink()
    bp = firewalld.plan(local_wants(), state("2.3.1"), root, None)
    assert bp.refusals == [("NET-007", f"{root.path('/etc/firewalld/firewalld.conf')} is missing, so "
                                       "StrictForwardPorts cannot be set", "")]
    assert [e[0] for e in bp.edits] == [root.path("/etc/firewalld/zones/public.xml")]


def test_runtime_only_rules_are_named_before_the_reload_drops_them(root: SystemRoot) -> None:
    bp = firewalld.plan(local_wants(), state(unpersisted=("port=8443/tcp",)), root, None,
                        validate=lambda d, z: None)
    assert "firewall-cmd --reload drops 1 runtime-only rule(s) (port=8443/tcp): a reboot would too (FW-004); " \
           "make one permanent first to keep it" in bp.notes


def test_the_nft_check_runs_in_an_empty_network_namespace_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert nft._check_argv("/tmp/x.nft") == ["unshare", "--net", "/usr/bin/nft", "-c", "-f", "/tmp/x.nft"]
