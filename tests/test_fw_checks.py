"""FW-001, FW-002, FW-003, FW-004 and NET-007 on FirewallState data (no firewall touched), and how
gather() and usecases.live_state bring the firewall in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED
from checks.audit.run import run_audit
from checks.live.firewall import NEEDS_ROOT
from checks.live.fwmodel import FirewallState, FwRule
from checks.live.gather import gather, settle_backend
from checks.live.model import EngineInfo, LiveState

from .test_live_checks import NEW_ENGINE, UNREACHABLE, cli_inst, running, texts

RETURN = ("-N DOCKER-USER", "-A DOCKER-USER -j RETURN")


def drop(port: int, chain: str = "DOCKER-USER") -> str:
    return f"-A {chain} -p tcp -m conntrack --ctorigdstport {port} --ctdir ORIGINAL -j DROP"


def ufw(**kw) -> FirewallState:
    base: dict[str, Any] = dict(
        frontend="ufw", active=True, version="0.36.2", ufw_installed=True, default_incoming="deny",
        iptables="nft", docker_backend="iptables", docker_user=RETURN,
        rules=(FwRule("allow", 22, "tcp", text="22/tcp ALLOW IN Anywhere"),))
    base.update(kw)
    return FirewallState(**base)


def finding(tmp_path, fw: FirewallState | None, cid: str, hardened: bool = False, **live):
    inst = cli_inst(tmp_path, hardened=hardened)
    state = running(inst, firewall=fw, **live) if fw is not None else running(inst, **live)
    return run_audit(inst, "local", only={cid}, live=state).by_id(cid)


# -- reading failures: skipped or error, never pass -----------------------------------------------
@pytest.mark.parametrize("cid", ["FW-001", "FW-002", "FW-004", "NET-007"])
def test_unreadable_firewall_is_never_a_pass(tmp_path, cid):
    inst = cli_inst(tmp_path)
    assert run_audit(inst, "local", only={cid}).by_id(cid).reason == "live checks not run"
    f = finding(tmp_path, None, cid, firewall_error="the host firewall was not read")
    assert (f.status, f.reason) == (SKIPPED, "the host firewall was not read")
    f = finding(tmp_path, ufw(active=None, errors=(NEEDS_ROOT,)), cid)
    assert (f.status, f.reason) == (SKIPPED, NEEDS_ROOT)
    f = finding(tmp_path, ufw(active=None, errors=("iptables -S: iptables did not answer in 2 s",)), cid)
    assert (f.status, f.reason) == (ERROR, "iptables -S: iptables did not answer in 2 s")


def test_fw_003_is_the_plan_time_guard(tmp_path):
    f = finding(tmp_path, ufw(), "FW-003")
    assert f.status == SKIPPED and "guard on firewall plans" in (f.reason or "")


# -- FW-001 ------------------------------------------------------------------------------------------
def test_fw_001(tmp_path):
    f = finding(tmp_path, FirewallState("none", False), "FW-001")
    assert f.status == FAIL and "neither ufw nor firewalld installed" in texts(f)
    f = finding(tmp_path, ufw(active=False), "FW-001")
    assert f.status == FAIL and "ufw installed, not active" in texts(f)
    f = finding(tmp_path, ufw(), "FW-001")
    assert f.status == PASS and "ufw 0.36.2 active, default incoming deny" in texts(f)
    f = finding(tmp_path, ufw(default_incoming="allow"), "FW-001")
    assert f.status == FAIL and "default allow" in (f.reason or "")


# -- FW-002 ------------------------------------------------------------------------------------------
def test_fw_002(tmp_path):
    allow = FwRule("allow", 5432, "any", text="5432 ALLOW IN Anywhere")
    f = finding(tmp_path, ufw(rules=(allow,)), "FW-002")
    assert f.status == FAIL and f.evidence[0].text == "5432 ALLOW IN Anywhere"
    # an inactive firewall's rule counts: enabling it would open the port
    f = finding(tmp_path, ufw(active=False, rules=(replace(allow, live=False),)), "FW-002")
    assert f.status == FAIL and f.evidence[0].note == "not active"
    f = finding(tmp_path, ufw(rules=(FwRule("allow", 3001, "tcp", text="3001/tcp ALLOW IN 192.168.1.0/24"),
                                     FwRule("deny", 5432, "tcp", text="5432/tcp DENY IN Anywhere"),
                                     FwRule("allow", 6379, "udp", text="6379/udp ALLOW IN Anywhere"))), "FW-002")
    assert f.status == PASS
    redis = FwRule("allow", 6379, "tcp", "10.0.0.0/8", text="public: port 6379/tcp")
    assert finding(tmp_path, ufw(rules=(redis,)), "FW-002").status == FAIL


def test_fw_002_the_host_port_a_database_service_publishes(tmp_path):
    inst = cli_inst(tmp_path)
    state = running(inst, firewall=ufw(rules=(FwRule("allow", 15432, "tcp", text="15432/tcp ALLOW IN Anywhere"),)))
    pg = next(c for c in state.containers if c.service == "postgres")
    state.containers = tuple(replace(c, bindings=(replace(c.bindings[0], host_port=15432),)) if c is pg else c
                             for c in state.containers)
    f = run_audit(inst, "local", only={"FW-002"}, live=state).by_id("FW-002")
    assert f.status == FAIL and f.evidence[0].service == "postgres"


# -- FW-004 ------------------------------------------------------------------------------------------
def test_fw_004(tmp_path):
    assert finding(tmp_path, ufw(), "FW-004").status == PASS
    f = finding(tmp_path, ufw(unpersisted=(f"{drop(5432)} (DOCKER-USER: in no file loaded at boot)",)), "FW-004")
    assert f.status == FAIL and f.evidence[0].note == "gone after a reboot"
    f = finding(tmp_path, ufw(container_ip_rules=("-A DOCKER-USER -d 172.17.0.5/32 -j DROP",)), "FW-004")
    assert f.status == FAIL and "container" in (f.evidence[0].note or "")


# -- NET-007 -----------------------------------------------------------------------------------------
def test_net_007_no_docker_user_rule_fails(tmp_path):
    f = finding(tmp_path, ufw(), "NET-007")
    assert f.status == FAIL
    assert "5432 -> 5432 (container desterlib-postgres): no DOCKER-USER rule drops --ctorigdstport 5432" in texts(f)
    assert "3001" in texts(f)
    assert f.evidence[0].file is not None  # points at the compose file's ports: line (the first fix)


def test_net_007_conntrack_drops_govern(tmp_path):
    fw = ufw(docker_user=(*RETURN[:1], drop(5432), drop(3001), RETURN[1]))
    assert finding(tmp_path, fw, "NET-007").status == PASS
    # a port range, and REJECT, count too
    fw = ufw(docker_user=("-N DOCKER-USER", "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 3000:6000 -j REJECT"))
    assert finding(tmp_path, fw, "NET-007").status == PASS
    # a drop matching the packet's own --dport sees the container's port after DNAT: it is not trusted
    fw = ufw(docker_user=("-N DOCKER-USER", "-A DOCKER-USER -p tcp -m tcp --dport 5432 -j DROP"))
    assert finding(tmp_path, fw, "NET-007").status == FAIL


def test_net_007_dester_hardens_own_chain(tmp_path):
    jump = ("-N DOCKER-USER", "-A DOCKER-USER -j DH-DOCKER", "-A DOCKER-USER -j RETURN")
    own = ("-N DH-DOCKER", "-A DH-DOCKER -i docker0 -j RETURN", drop(5432, "DH-DOCKER"), drop(3001, "DH-DOCKER"))
    assert finding(tmp_path, ufw(docker_user=jump, own_chain=own), "NET-007").status == PASS
    assert finding(tmp_path, ufw(docker_user=jump, own_chain=own[:3]), "NET-007").status == FAIL
    assert finding(tmp_path, ufw(docker_user=RETURN, own_chain=own), "NET-007").status == FAIL  # no jump to it


def test_net_007_a_port_the_firewall_opens_to_all_is_not_bypassed(tmp_path):
    api = FwRule("allow", 3001, "tcp", text="3001/tcp ALLOW IN Anywhere")
    f = finding(tmp_path, ufw(rules=(api,), docker_user=(*RETURN, drop(5432))), "NET-007")
    assert f.status == PASS, texts(f)


def test_net_007_ipv6(tmp_path):
    fw = ufw(docker_user=(*RETURN, drop(5432), drop(3001)), docker_user6=RETURN)
    f = finding(tmp_path, fw, "NET-007")  # "5432:5432" is every interface, IPv6 too
    assert f.status == FAIL and "(ip6tables)" in texts(f) and "3001" not in texts(f)  # 0.0.0.0:3001 is IPv4 only
    assert finding(tmp_path, replace(fw, ipv6=False), "NET-007").status == PASS
    assert finding(tmp_path, replace(fw, docker_user6=None), "NET-007").status == PASS  # docker-proxy: INPUT path


def test_net_007_firewalld(tmp_path):
    fw = FirewallState("firewalld", True, "1.3.3", firewalld_installed=True, zone="public", iptables="nft",
                       docker_backend="iptables", docker_user=RETURN)
    f = finding(tmp_path, fw, "NET-007")
    assert f.status == FAIL and "firewalld 1.3.3 has no StrictForwardPorts (2.3.0+)" in texts(f)
    f = finding(tmp_path, replace(fw, version="2.3.0", strict_forward_ports=False), "NET-007")
    assert f.status == FAIL and "without StrictForwardPorts=yes" in texts(f)
    assert finding(tmp_path, replace(fw, version="2.3.0", strict_forward_ports=True), "NET-007").status == PASS


def test_net_007_nftables_backend(tmp_path):
    fw = ufw(docker_backend="nftables", docker_user=None)
    f = finding(tmp_path, fw, "NET-007")
    assert f.status == FAIL and "inet dester_harden is not loaded" in texts(f)
    assert finding(tmp_path, replace(fw, own_table=True), "NET-007").status == PASS


def test_net_007_without_firewall_loopback_publishes_or_containers(tmp_path):
    f = finding(tmp_path, FirewallState("none", False), "NET-007")
    assert f.status == PASS and "FW-001" in texts(f)
    # hardened: 127.0.0.1:5432 and 0.0.0.0:3001; only 3001 is on the forward path
    f = finding(tmp_path, ufw(), "NET-007", hardened=True)
    assert f.status == FAIL and "5432" not in texts(f) and "3001" in texts(f)
    inst = cli_inst(tmp_path)
    f = run_audit(inst, "local", only={"NET-007"}, live=LiveState("p", engine_error=UNREACHABLE,
                                                                  firewall=ufw())).by_id("NET-007")
    assert (f.status, f.reason) == (SKIPPED, UNREACHABLE)
    f = run_audit(inst, "local", only={"NET-007"}, live=LiveState("p", engine=NEW_ENGINE,
                                                                  firewall=ufw())).by_id("NET-007")
    assert f.status == SKIPPED and "no container" in (f.reason or "")


# -- gather and live_state -------------------------------------------------------------------------
class NoEngine:
    def engine_info(self):
        from checks.live.errors import LiveError

        raise LiveError(UNREACHABLE)

    def containers(self, project):
        return self.engine_info()

    def logs(self, container_id, tail=0):
        return []

    def close(self):
        pass


def test_gather_reads_the_firewall_beside_the_engine(tmp_path):
    inst = cli_inst(tmp_path)
    kw: dict[str, Any] = dict(proc_net=str(tmp_path), probe=False, logs=False, engine=NoEngine)
    state = gather(inst, firewall_reader=ufw, **kw)
    assert state.firewall is not None and state.firewall.active and state.engine_error == UNREACHABLE
    state = gather(inst, firewall=False, firewall_reader=ufw, **kw)
    assert state.firewall is None and state.firewall_error == "the host firewall was not read"
    state = gather(inst, **kw)  # conftest: the host's firewall is never read in a test
    assert state.firewall is None and "is set" in (state.firewall_error or "")

    def broken() -> FirewallState:
        raise RuntimeError("boom\nsecond line")

    state = gather(inst, firewall_reader=broken, **kw)
    assert state.firewall is None and state.firewall_error == "the host firewall could not be read: boom"


def test_docker_backend_from_the_engine():
    fw = ufw(docker_backend=None)
    settle_backend(fw, EngineInfo("29.0.0", "1.52", "unix:///x", firewall_backend="nftables"))
    assert fw.docker_backend == "nftables"
    fw = ufw(docker_backend=None)
    settle_backend(fw, EngineInfo("20.10.24", "1.41", "unix:///x"))
    assert fw.docker_backend == "iptables"  # an Engine that does not say has only the iptables one
    fw = ufw(docker_backend=None)
    settle_backend(fw, None)
    assert fw.docker_backend is None


def test_live_state_reads_the_firewall_only_for_its_checks(tmp_path, monkeypatch):
    from checks.assistant import usecases
    from checks.live import gather as gather_mod

    monkeypatch.delenv("DESTER_HARDEN_NO_LIVE")
    seen: list[bool] = []

    def fake(install, **kw):
        seen.append(kw["firewall"])
        return LiveState("p")

    monkeypatch.setattr(gather_mod, "gather", fake)
    inst = cli_inst(tmp_path)
    assert usecases.live_state(inst, only={"FW-004"}) is not None
    usecases.live_state(inst, only={"NET-006"})
    usecases.live_state(inst, skip={"FW-001", "FW-002", "FW-004", "NET-007"})
    assert seen == [True, False, False]
