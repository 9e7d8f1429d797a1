"""The firewall lab itself (tests/fwlab.py), and the facts issue 12 builds on, each measured for real.

The sandbox tests are marked ``firewall``: they skip with the reason where the lab cannot run (and
fail under CI=true). The host guard's own test needs nothing: it proves the guard would notice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import fwlab
from tests.fwlab import FwSandbox, host_snapshot, snapshot_diff
from tests.livelab import procs

# -- without a namespace ----------------------------------------------------------------


def _fake_host(root: Path) -> None:
    (root / "etc/ufw/applications.d").mkdir(parents=True)
    (root / "etc/ufw/user.rules").write_text("*filter\nCOMMIT\n")
    (root / "etc/ufw/applications.d/openssh-server").write_text("[OpenSSH]\n")
    (root / "etc/default").mkdir()
    (root / "etc/default/ufw").write_text("IPV6=yes\n")


def test_the_host_guard_notices_a_changed_file_a_new_file_and_a_changed_rule(tmp_path):
    _fake_host(tmp_path)
    rules = {"iptables-save": "# Generated at 1\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"}
    commands = (("iptables-save",),)

    def runner(argv):
        return rules[argv[0]]

    before = host_snapshot(tmp_path, commands, runner)
    assert "/etc/ufw/user.rules" in before and "/etc/default/ufw" in before
    assert before["/etc/firewalld"] == "<missing>"
    # Only the timestamp comment differs: no difference.
    rules["iptables-save"] = rules["iptables-save"].replace("at 1", "at 2")
    assert snapshot_diff(before, host_snapshot(tmp_path, commands, runner)) == []

    (tmp_path / "etc/ufw/user.rules").write_text("*filter\n-A ufw-user-input -p tcp --dport 5432 -j DROP\nCOMMIT\n")
    (tmp_path / "etc/firewalld").mkdir()
    (tmp_path / "etc/firewalld/firewalld.conf").write_text("DefaultZone=public\n")
    os.chmod(tmp_path / "etc/default/ufw", 0o600)
    rules["iptables-save"] = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n"
    diff = snapshot_diff(before, host_snapshot(tmp_path, commands, runner))
    assert "changed: /etc/ufw/user.rules" in diff
    assert "changed: /etc/default/ufw" in diff  # the mode alone
    assert "new: /etc/firewalld/firewalld.conf" in diff and "gone: /etc/firewalld" in diff
    assert any(d.startswith("changed: $ iptables-save: :INPUT DROP") for d in diff), diff


def test_the_sandbox_path_refuses_what_is_not_private(tmp_path):
    sb = FwSandbox(tmp_path)
    assert sb.path("/etc/ufw/user.rules") == tmp_path / "private/etc/ufw/user.rules"
    assert sb.path("/run/dbus/system_bus_socket") == tmp_path / "run/dbus/system_bus_socket"
    for bad in ("/etc/passwd", "etc/ufw", "/etc/ufw/../passwd", "/etc/ufwx"):
        with pytest.raises(ValueError):
            sb.path(bad)


def test_an_unavailable_lab_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no ufw here"):
        fwlab.unavailable("no ufw here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no ufw here \(\.ci/run installs"):
        fwlab.unavailable("no ufw here")


# -- the sandbox ---------------------------------------------------------------------------

firewall = pytest.mark.firewall


@firewall
def test_a_sandbox_whose_session_died_is_reaped_by_the_next(tmp_path, monkeypatch):
    fwlab.require()
    base = tmp_path / "base"
    base.mkdir()
    monkeypatch.setattr(fwlab, "BASE", base)
    sb = FwSandbox.start()
    try:
        holder = sb.holder_pid
        (sb.root / "owner").write_text("999999999\ngone\n")  # its owner is gone
        assert fwlab.reap_stale(base) == [sb.root]
        assert procs.wait_gone([holder], 5) == []
        assert not sb.root.exists()
    finally:
        sb.close()


@firewall
def test_ufw_in_the_sandbox_writes_only_the_private_copies(fw):
    host_conf = Path("/etc/ufw/ufw.conf").read_bytes()
    fw.run(["ufw", "--force", "enable"], check=True)
    fw.run(["ufw", "deny", "5432"], check=True)
    assert "ENABLED=yes" in fw.path("/etc/ufw/ufw.conf").read_text()
    assert "5432" in fw.path("/etc/ufw/user.rules").read_text()
    assert Path("/etc/ufw/ufw.conf").read_bytes() == host_conf
    status = fw.run(["ufw", "status", "verbose"], check=True).stdout
    assert "Status: active" in status and "5432" in status
    assert "ufw-user-input" in fw.run(["iptables", "-S"], check=True).stdout
    # The namespace has loopback only: no route out.
    assert fw.run(["ip", "route"], check=True).stdout.strip() == ""


@firewall
def test_reset_restores_the_pristine_files_in_place_and_flushes_the_rules(fw):
    fw.run(["ufw", "--force", "enable"], check=True)
    fw.run(["nft", "add", "table", "inet", "lab_own"], check=True)
    fw.path("/etc/default/ufw").write_text("IPV6=no\n")
    fw.path("/etc/ufw/after.rules.new").write_text("x\n")
    fw.reset()
    assert fw.path("/etc/default/ufw").read_bytes() == Path("/etc/default/ufw").read_bytes()
    assert not fw.path("/etc/ufw/after.rules.new").exists()
    # In place: the namespace sees the restored copy through the same bind mount.
    assert fw.run(["cat", "/etc/ufw/ufw.conf"], check=True).stdout == Path("/etc/ufw/ufw.conf").read_text()
    assert fw.run(["nft", "list", "ruleset"], check=True).stdout.strip() == ""
    assert "Status: inactive" in fw.run(["ufw", "status"], check=True).stdout


@firewall
def test_an_atomic_rename_into_etc_default_works_in_the_sandbox(fw):
    # The change engine writes by rename: a file bind over /etc/default/ufw would refuse it (EBUSY).
    fw.run(["sh", "-c", 'printf "IPV6=yes\\n" > /etc/default/.ufw.tmp && mv /etc/default/.ufw.tmp /etc/default/ufw'],
           check=True)
    assert fw.path("/etc/default/ufw").read_text() == "IPV6=yes\n"
    assert Path("/etc/default/ufw").read_text() != "IPV6=yes\n"


@firewall
def test_etc_ssh_is_a_read_only_copy_without_the_host_keys(fw):
    if "/etc/ssh" not in fw.bound:
        pytest.skip("the host has no /etc/ssh")
    assert fw.run(["touch", "/etc/ssh/probe"]).returncode != 0
    assert not list(fw.path("/etc/ssh").glob("ssh_host_*_key"))
    # Written from the host side, seen inside: how a test simulates an sshd on another port.
    if fw.path("/etc/ssh/sshd_config").exists():
        fw.path("/etc/ssh/sshd_config").write_text("Port 2222\n")
        assert fw.run(["cat", "/etc/ssh/sshd_config"], check=True).stdout == "Port 2222\n"


@firewall
def test_firewalld_runs_on_a_private_bus_and_writes_only_the_private_copy(fw):
    fw.start_firewalld()
    assert fw.run(["firewall-cmd", "--state"]).stdout.strip() == "running"
    assert (fw.root / "run/dbus/system_bus_socket").exists()
    fw.run(["firewall-cmd", "--permanent", "--zone=public", "--add-port=3001/tcp"], check=True)
    assert 'port="3001"' in fw.path("/etc/firewalld/zones/public.xml").read_text()
    assert not Path("/etc/firewalld/zones/public.xml").exists() or \
        "3001" not in Path("/etc/firewalld/zones/public.xml").read_text()
    assert "firewalld" in fw.run(["nft", "list", "tables"], check=True).stdout
    fw.stop_firewalld()
    # Stopped before its bus: firewalld cleaned up its own table.
    assert "firewalld" not in fw.run(["nft", "list", "tables"], check=True).stdout


@firewall
def test_the_tool_runs_inside_the_sandbox(fw):
    done = fw.tool(["--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


# -- with Docker: the facts issue 12 builds on ----------------------------------------------

PG, API, PLAIN = 5432, 3001, 8080
#: The lab README's DOCKER-USER rule: the original destination port, after DNAT, from the LAN side only.
CONNTRACK_DROP = ("-p", "tcp", "-m", "conntrack", "--ctorigdstport", str(PG), "--ctdir", "ORIGINAL", "-j", "DROP")


@firewall
def test_ufw_deny_does_not_close_a_docker_published_port_but_closes_a_plain_listener(fw_lab):
    lab = fw_lab
    lab.run(["ufw", "deny", str(PG)], check=True)
    lab.run(["ufw", "deny", f"{PLAIN}/tcp"], check=True)
    with lab.listener(PLAIN):
        assert lab.lan_probe(lab.server_ip, PLAIN) == "open"
        lab.run(["ufw", "--force", "enable"], check=True)
        assert "Status: active" in lab.run(["ufw", "status"], check=True).stdout
        # The bypass is real: DNAT in PREROUTING, then FORWARD, where Docker's chains sit above ufw's.
        assert lab.lan_probe(lab.server_ip, PG) == "open"
        assert lab.lan_http(f"http://{lab.server_ip}:{API}/health") == 200
        # ...while ufw does govern INPUT: the plain listener is blocked.
        assert lab.lan_probe(lab.server_ip, PLAIN) == "timeout"
    # Docker 20.10 without IPv6 serves [::]:5432 through docker-proxy, which is INPUT: ufw's deny applies.
    assert lab.lan_probe(lab.server_ip6, PG) == "timeout"


@firewall
def test_a_docker_user_conntrack_rule_closes_the_published_port_to_the_lan_only(fw_lab):
    lab = fw_lab
    lab.run(["ufw", "--force", "enable"], check=True)
    lab.run(["ufw", "deny", str(PG)], check=True)
    assert lab.lan_probe(lab.server_ip, PG) == "open"
    lab.run(["iptables", "-I", "DOCKER-USER", "-i", lab.server_if, *CONNTRACK_DROP], check=True)
    assert lab.lan_probe(lab.server_ip, PG) == "timeout"
    assert lab.server_probe("127.0.0.1", PG) == "open"  # loopback in the namespace still reaches it
    assert lab.lan_http(f"http://{lab.server_ip}:{API}/health") == 200  # other publishes untouched


@firewall
def test_reset_returns_the_docker_lab_to_its_baseline(fw_lab):
    lab = fw_lab
    lab.run(["ufw", "--force", "enable"], check=True)
    lab.run(["iptables", "-I", "DOCKER-USER", "-i", lab.server_if, *CONNTRACK_DROP], check=True)
    lab.run(["nft", "add", "table", "inet", "lab_own"], check=True)
    assert lab.lan_probe(lab.server_ip, PG) == "timeout"
    lab.reset()
    assert lab.lan_probe(lab.server_ip, PG) == "open"
    assert "Status: inactive" in lab.run(["ufw", "status"], check=True).stdout
    assert "lab_own" not in lab.run(["nft", "list", "tables"], check=True).stdout
    assert "ufw-" not in lab.run(["iptables-save"], check=True).stdout


@firewall
def test_firewalld_zone_ports_do_not_govern_a_docker_publish(fw_lab_firewalld):
    lab = fw_lab_firewalld
    ports = lab.run(["firewall-cmd", "--zone=public", "--list-ports"], check=True).stdout.split()
    assert f"{PG}/tcp" not in ports and f"{API}/tcp" not in ports
    # Neither port is open in the zone, yet the LAN reaches both: firewalld accepts DNATed forwards.
    assert lab.lan_probe(lab.server_ip, PG) == "open"
    assert lab.lan_http(f"http://{lab.server_ip}:{API}/health") == 200
    with lab.listener(PLAIN):
        # A plain listener is governed by the zone: rejected until the port is added.
        assert lab.lan_probe(lab.server_ip, PLAIN) in ("unreachable", "refused")
        lab.run(["firewall-cmd", "--zone=public", f"--add-port={PLAIN}/tcp"], check=True)
        assert lab.lan_probe(lab.server_ip, PLAIN) == "open"


@firewall
def test_the_firewalld_lab_resets_runtime_and_permanent_changes_with_docker_s_rules_back(fw_lab_firewalld):
    lab = fw_lab_firewalld
    lab.run(["firewall-cmd", "--zone=public", "--add-port=9999/tcp"], check=True)
    lab.run(["firewall-cmd", "--permanent", "--zone=public", "--add-port=9998/tcp"], check=True)
    lab.run(["iptables", "-I", "DOCKER-USER", "-i", lab.server_if, *CONNTRACK_DROP], check=True)
    assert lab.lan_probe(lab.server_ip, PG) == "timeout"
    lab.reset()
    assert lab.run(["firewall-cmd", "--zone=public", "--list-ports"], check=True).stdout.split() == []
    public = lab.path("/etc/firewalld/zones/public.xml")
    assert not public.exists() or "9998" not in public.read_text()
    assert lab.lan_probe(lab.server_ip, PG) == "open"
    assert lab.lan_http(f"http://{lab.server_ip}:{API}/health") == 200


@firewall
def test_the_tool_in_the_docker_lab_sees_the_lab_s_dockerd(fw_lab, monkeypatch):
    monkeypatch.delenv("DESTER_HARDEN_NO_LIVE")  # the tool's live input here is the lab's Engine
    # Inside the sandbox /run is private: without the lab's DOCKER_HOST nothing would find a dockerd.
    assert "desterlib-postgres" in fw_lab.run(["docker", "ps", "--format", "{{.Names}}"], check=True).stdout.split()
    args = ["audit", "--dir", str(fw_lab.install), "--only", "DKR-005", "--format", "json"]
    seen = json.loads(fw_lab.tool(args).stdout)["findings"]
    assert [(f["id"], f["status"]) for f in seen] == [("DKR-005", "pass")]
    # The live check is skipped where the Engine cannot be reached: the pass above came from the lab's.
    blind = json.loads(fw_lab.tool(args, env={"DOCKER_HOST": "unix:///nonexistent.sock"}).stdout)["findings"]
    assert [f["status"] for f in blind] == ["skipped"]
