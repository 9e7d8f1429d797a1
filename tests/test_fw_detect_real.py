"""The firewall read and its checks against a real ufw, firewalld and dockerd, in the firewall lab's own
namespaces (tests/fwlab.py, tests/fwdocker.py): ``dester-harden audit`` runs inside the sandbox and reads
the sandbox's rules and private /etc copies, never the host's.

One sandbox per module (``fw``), one Docker lab per session (``fw_lab``); each case a fail and a pass.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tests import installs
from tests.fwlab import FwSandbox

pytestmark = pytest.mark.firewall

#: conftest turns the live layer and the firewall read off for tests; inside the sandbox they are the point.
ON = {"DESTER_HARDEN_NO_LIVE": "0", "DESTER_HARDEN_NO_FIREWALL": "0"}
FW_CHECKS = "FW-001,FW-002,FW-004,NET-007"
CONNTRACK_DROP = ("-p", "tcp", "-m", "conntrack", "--ctorigdstport", "5432", "--ctdir", "ORIGINAL", "-j", "DROP")


def audit(sb: FwSandbox, install: str, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``dester-harden audit --format json`` in the sandbox: finding id -> its JSON."""
    done = sb.tool(["audit", "--dir", install, "--only", FW_CHECKS, "--format", "json"], env={**ON, **(env or {})})
    assert done.stdout.strip(), done.stderr
    return {f["id"]: f for f in json.loads(done.stdout)["findings"]}


def evidence(f: dict[str, Any]) -> str:
    return "\n".join(str(e.get("text")) for e in f.get("evidence", []))


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(installs.cli_install(tmp_path_factory.mktemp("fwinst")))


def test_ufw_enabled_with_allow_5432_then_reset(fw, install):
    before = audit(fw, install)
    assert before["FW-001"]["status"] == "fail" and "installed, not active" in evidence(before["FW-001"])
    assert before["FW-002"]["status"] == "pass"
    fw.run(["ufw", "--force", "enable"], check=True)
    fw.run(["ufw", "allow", "22/tcp"], check=True)
    fw.run(["ufw", "allow", "5432"], check=True)
    found = audit(fw, install)
    assert found["FW-001"]["status"] == "pass", found["FW-001"]
    assert "ufw 0.36.2 active, default incoming deny" in evidence(found["FW-001"])
    assert found["FW-002"]["status"] == "fail" and "5432 ALLOW IN Anywhere" in evidence(found["FW-002"])
    # ufw's own rules are the persistent ones: the kernel's spelling of them is no "unpersisted" rule
    assert found["FW-004"]["status"] == "pass", found["FW-004"]
    # no Docker here: NET-007 cannot tell, and says why
    assert found["NET-007"]["status"] == "skipped" and "Docker Engine" in found["NET-007"]["reason"]
    fw.reset()
    assert audit(fw, install)["FW-001"]["status"] == "fail"


def test_a_live_rule_ufw_does_not_hold_is_fw_004(fw, install):
    fw.run(["ufw", "--force", "enable"], check=True)
    fw.run(["ufw", "limit", "22/tcp"], check=True)
    assert audit(fw, install)["FW-004"]["status"] == "pass"
    fw.run(["iptables", "-A", "ufw-user-input", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"], check=True)
    fw.run(["iptables", "-N", "DOCKER-USER"], check=True)
    fw.run(["iptables", "-A", "DOCKER-USER", *CONNTRACK_DROP], check=True)
    f = audit(fw, install)["FW-004"]
    assert f["status"] == "fail"
    assert "--dport 8080 -j ACCEPT (not in /etc/ufw/user.rules)" in evidence(f)
    assert "--ctorigdstport 5432" in evidence(f)


def test_not_root_is_skipped_with_the_reason(fw, install):
    fw.run(["ufw", "--force", "enable"], check=True)
    done = fw.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "true"])
    if done.returncode:
        pytest.skip(f"setpriv cannot drop to nobody here: {done.stderr.strip()}")
    code = ("import json, dataclasses; from checks.live.firewall import firewall_state; "
            "print(json.dumps(dataclasses.asdict(firewall_state())))")
    from tests.fwlab import REPO

    done = fw.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "env",
                   f"PYTHONPATH={REPO}", "python3", "-c", code], timeout=30)
    state = json.loads(done.stdout)
    assert state["active"] is None and state["errors"][0] == "reading the firewall needs root: run with sudo"


def test_firewalld_running(fw, install):
    fw.start_firewalld()
    found = audit(fw, install)
    assert found["FW-001"]["status"] == "pass", found["FW-001"]
    assert "firewalld" in evidence(found["FW-001"]) and "zone public" in evidence(found["FW-001"])
    assert found["FW-002"]["status"] == "pass" and found["FW-004"]["status"] == "pass", found
    fw.run(["firewall-cmd", "--zone=public", "--add-port=5432/tcp"], check=True)  # runtime only
    found = audit(fw, install)
    assert found["FW-002"]["status"] == "fail" and "port 5432/tcp" in evidence(found["FW-002"])
    assert found["FW-004"]["status"] == "fail" and "runtime only" in evidence(found["FW-004"])
    fw.run(["firewall-cmd", "--runtime-to-permanent"], check=True)
    assert audit(fw, install)["FW-004"]["status"] == "pass"


# -- with Docker: NET-007 -------------------------------------------------------------------------
def test_net_007_ufw_deny_does_not_govern_a_docker_publish_and_the_conntrack_drop_does(fw_lab):
    lab = fw_lab
    lab.run(["ufw", "--force", "enable"], check=True)
    lab.run(["ufw", "allow", "22/tcp"], check=True)
    lab.run(["ufw", "deny", "5432"], check=True)
    assert lab.lan_probe(lab.server_ip, 5432) == "open"  # the bypass is real
    found = audit(lab, str(lab.install), env=lab.env)
    f = found["NET-007"]
    assert f["status"] == "fail", f
    assert "no DOCKER-USER rule drops --ctorigdstport 5432" in evidence(f)
    for port in (5432, 6379, 3001):
        lab.run(["iptables", "-I", "DOCKER-USER", "-p", "tcp", "-m", "conntrack", "--ctorigdstport", str(port),
                 "--ctdir", "ORIGINAL", "-j", "DROP"], check=True)
    assert lab.lan_probe(lab.server_ip, 5432) == "timeout"
    f = audit(lab, str(lab.install), env=lab.env)["NET-007"]
    assert f["status"] == "pass", f


def test_net_007_firewalld_1_3_3_zones_do_not_govern_a_docker_publish(fw_lab_firewalld):
    lab = fw_lab_firewalld
    assert lab.lan_probe(lab.server_ip, 5432) == "open"
    f = audit(lab, str(lab.install), env=lab.env)["NET-007"]
    assert f["status"] == "fail", f
    assert "has no StrictForwardPorts (2.3.0+)" in evidence(f)
    for port in (5432, 6379, 3001):
        lab.run(["iptables", "-I", "DOCKER-USER", "-p", "tcp", "-m", "conntrack", "--ctorigdstport", str(port),
                 "--ctdir", "ORIGINAL", "-j", "DROP"], check=True)
    assert lab.lan_probe(lab.server_ip, 5432) == "timeout"
    assert audit(lab, str(lab.install), env=lab.env)["NET-007"]["status"] == "pass"


def state_in(sb: FwSandbox) -> dict[str, Any]:
    """firewall_state() read inside the sandbox, as a dict."""
    from tests.fwlab import REPO

    code = ("import json, dataclasses; from checks.live.firewall import firewall_state; "
            "print(json.dumps(dataclasses.asdict(firewall_state())))")
    done = sb.run(["env", f"PYTHONPATH={REPO}", "python3", "-c", code], timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_own_nft_table_docker_nftables_tables_and_a_legacy_mix(fw):
    if not shutil.which("nft"):
        pytest.skip("nft is not installed")
    state = state_in(fw)
    assert (state["own_table"], state["docker_backend"], state["mixed_backends"]) == (False, None, False)
    fw.run(["nft", "add", "table", "inet", "dester_harden"], check=True)
    fw.run(["nft", "add", "table", "ip", "docker-bridges"], check=True)  # what Docker 29's nftables backend makes
    state = state_in(fw)
    assert (state["own_table"], state["docker_backend"], state["docker_user"]) == (True, "nftables", None)
    fw.run(["ufw", "--force", "enable"], check=True)  # rules in the nf_tables tables (iptables-nft)
    assert state_in(fw)["mixed_backends"] is False
    if not shutil.which("iptables-legacy"):
        pytest.skip("iptables-legacy is not installed")
    fw.run(["iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"], check=True)
    assert state_in(fw)["mixed_backends"] is True
