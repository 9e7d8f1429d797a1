"""Reading the host firewall (checks.live.firewall, firewalld, iptables, ssh) with a fake Runner, a tmp
SystemRoot and a tmp /proc: ufw missing/inactive/active, firewalld 1.3.3 and 2.3.0, iptables flavours and a
mix, Docker's nftables backend, not root, the SSH session and sshd's ports, IPv6 off, the LAN networks."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from checks.core.sysroot import SystemRoot
from checks.live import firewall as fwmod
from checks.live import ssh
from checks.live.firewall import NEEDS_ROOT, firewall_state
from checks.live.fwmodel import RunResult, SshSession

MISSING = RunResult(127, "", "not installed")
NO_CHAIN = RunResult(1, "", "iptables: No chain/target/match by that name.")

BASE_V4 = """-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
"""
UFW_V4 = """-P INPUT DROP
-P FORWARD DROP
-P OUTPUT ACCEPT
-N ufw-before-input
-N ufw-user-input
-N ufw-user-forward
-A ufw-before-input -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 5432 -j ACCEPT
-A ufw-user-input -p udp -m udp --dport 5432 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 2222 -m conntrack --ctstate NEW -m recent --set --name DEFAULT \
--mask 255.255.255.255 --rsource
-A ufw-user-forward -d 172.18.0.3/32 -p tcp -m tcp --dport 5432 -j ACCEPT
"""
USER_RULES = """*filter
:ufw-user-input - [0:0]
### RULES ###

### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in
-A ufw-user-input -p tcp --dport 22 -j ACCEPT

### tuple ### allow any 5432 0.0.0.0/0 any 0.0.0.0/0 in
-A ufw-user-input -p tcp --dport 5432 -j ACCEPT
-A ufw-user-input -p udp --dport 5432 -j ACCEPT

### tuple ### limit tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in
-A ufw-user-input -p tcp --dport 2222 -m conntrack --ctstate NEW -m recent --set

### tuple ### route:allow tcp 5432 172.18.0.3 any 0.0.0.0/0 in
-A ufw-user-forward -p tcp -d 172.18.0.3 --dport 5432 -j ACCEPT

### END RULES ###
COMMIT
"""
DOCKER_USER = "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n"
DROP_5432 = "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j DROP"
ADDR = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "192.168.1.20", "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "fd77::1", "prefixlen": 64, "scope": "global"},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    {"ifname": "docker0", "addr_info": [{"family": "inet", "local": "172.17.0.1", "prefixlen": 16, "scope": "global"}]},
    {"ifname": "br-0123456789ab", "addr_info": [
        {"family": "inet", "local": "172.18.0.1", "prefixlen": 16, "scope": "global"}]},
    {"ifname": "tailscale0", "addr_info": [
        {"family": "inet", "local": "100.101.102.103", "prefixlen": 32, "scope": "global"}]},
]


class FakeRunner:
    """Answers by argv; anything not listed is a missing program. Records what was asked."""

    def __init__(self, answers: dict[tuple[str, ...], RunResult]):
        self.answers = answers
        self.asked: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> RunResult:
        self.asked.append(tuple(argv))
        return self.answers.get(tuple(argv), MISSING)


def ok(text: str) -> RunResult:
    return RunResult(0, text)


def answers(v4: str = BASE_V4, v6: str = BASE_V4, flavour: str = "nf_tables", tables: str = "",
            addr: list | None = None, extra: dict[str, RunResult] | None = None) -> dict[tuple[str, ...], RunResult]:
    out = {("iptables", "-S"): ok(v4), ("ip6tables", "-S"): ok(v6),
           ("iptables", "-V"): ok(f"iptables v1.8.9 ({flavour})\n"), ("nft", "list", "tables"): ok(tables),
           ("ip", "-j", "addr"): ok(json.dumps(ADDR if addr is None else addr))}
    for key, value in (extra or {}).items():
        out[tuple(key.split(" "))] = value
    return out


def write(root: Path, path: str, text: str) -> None:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    p = tmp_path / "proc"
    write(p, "sys/net/ipv6/conf/all/disable_ipv6", "0\n")
    return p


def ufw_files(root: Path, enabled: bool = True, user_rules: str = USER_RULES) -> None:
    write(root, "/etc/ufw/ufw.conf", f"ENABLED={'yes' if enabled else 'no'}\nLOGLEVEL=low\n")
    write(root, "/etc/default/ufw", 'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    write(root, "/etc/ufw/user.rules", user_rules)
    write(root, "/etc/ufw/user6.rules", "*filter\n### RULES ###\n### END RULES ###\nCOMMIT\n")
    write(root, "/usr/sbin/ufw", '#!/usr/bin/python3\nimport sys\nversion = "0.36.2"\n')


def read(root: Path, proc: Path, runner: FakeRunner, **kw):
    kw.setdefault("euid", 0)
    kw.setdefault("environ", {})
    return firewall_state(runner=runner, root=SystemRoot(str(root)), proc=str(proc), **kw)


# -- ufw -----------------------------------------------------------------------------------------
def test_no_firewall_installed(sysroot, proc):
    fw = read(sysroot, proc, FakeRunner(answers()))
    assert (fw.frontend, fw.active, fw.ufw_installed, fw.firewalld_installed) == ("none", False, False, False)
    assert fw.errors == ()


def test_ufw_installed_but_inactive(sysroot, proc):
    ufw_files(sysroot, enabled=False)
    fw = read(sysroot, proc, FakeRunner(answers()))
    assert (fw.frontend, fw.active, fw.version, fw.default_incoming) == ("ufw", False, "0.36.2", "deny")
    # user.rules' rules are there, persistent, not live: FW-002 still sees an allow an enable would load
    assert {(r.port, r.live, r.persistent) for r in fw.rules if not r.v6} >= {(5432, False, True)}
    assert fw.unpersisted == ()


def test_ufw_active_rules_live_and_persistent(sysroot, proc):
    ufw_files(sysroot)
    fw = read(sysroot, proc, FakeRunner(answers(UFW_V4, tables="table ip filter\n")))
    assert (fw.frontend, fw.active, fw.iptables) == ("ufw", True, "nft")
    allow = [r for r in fw.rules if r.port == 5432]
    assert allow and allow[0].text == "5432 ALLOW IN Anywhere" and allow[0].live and allow[0].persistent
    assert {r.action for r in fw.rules if r.port == 2222} == {"limit"}
    # the kernel's spelling (-m tcp, /32, the recent match's defaults) is the file's rule: nothing unpersisted
    assert fw.unpersisted == ()
    # a route allow to a container's address on a Docker bridge: wrong once the container is recreated
    assert fw.container_ip_rules == ("### tuple ### route:allow tcp 5432 172.18.0.3 any 0.0.0.0/0 in",)


def test_a_live_rule_not_in_user_rules_is_unpersisted(sysroot, proc):
    ufw_files(sysroot)
    v4 = UFW_V4 + "-A ufw-user-input -p tcp -m tcp --dport 8080 -j ACCEPT\n"
    fw = read(sysroot, proc, FakeRunner(answers(v4)))
    assert fw.unpersisted == ("-A ufw-user-input -p tcp -m tcp --dport 8080 -j ACCEPT (not in /etc/ufw/user.rules)",)
    extra = [r for r in fw.rules if r.port == 8080]
    assert extra and not extra[0].persistent and extra[0].live and extra[0].action == "allow"


def test_ufw_running_but_disabled_in_ufw_conf_is_gone_after_a_reboot(sysroot, proc):
    ufw_files(sysroot, enabled=False)
    fw = read(sysroot, proc, FakeRunner(answers(UFW_V4)))
    assert fw.active is True
    assert any("ENABLED=no" in u for u in fw.unpersisted)


def test_docker_user_rules_persisted_in_after_rules_or_not(sysroot, proc):
    ufw_files(sysroot)
    v4 = UFW_V4 + DOCKER_USER + DROP_5432 + "\n"
    fw = read(sysroot, proc, FakeRunner(answers(v4)))
    assert fw.docker_user == ("-N DOCKER-USER", "-A DOCKER-USER -j RETURN", DROP_5432)
    assert fw.docker_backend == "iptables"
    assert fw.unpersisted == (f"{DROP_5432} (DOCKER-USER: in no file loaded at boot)",)
    write(sysroot, "/etc/ufw/after.rules", "*filter\n:DOCKER-USER - [0:0]\n"
          "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j DROP\nCOMMIT\n")
    assert read(sysroot, proc, FakeRunner(answers(v4))).unpersisted == ()


def test_docker_user_rule_naming_a_container_address(sysroot, proc):
    v4 = BASE_V4 + DOCKER_USER + "-A DOCKER-USER -d 172.17.0.5/32 -p tcp -m tcp --dport 5432 -j DROP\n"
    fw = read(sysroot, proc, FakeRunner(answers(v4)))
    assert fw.container_ip_rules == ("-A DOCKER-USER -d 172.17.0.5/32 -p tcp -m tcp --dport 5432 -j DROP",)


# -- iptables flavours, Docker's backends ----------------------------------------------------------
def test_legacy_and_nft_flavours(sysroot, proc):
    assert read(sysroot, proc, FakeRunner(answers(flavour="nf_tables"))).iptables == "nft"
    assert read(sysroot, proc, FakeRunner(answers(flavour="legacy"))).iptables == "legacy"
    assert read(sysroot, proc, FakeRunner(answers(extra={"iptables -V": MISSING}))).iptables is None


def test_mixed_backends_need_rules_on_both_sides(sysroot, proc):
    write(proc, "net/ip_tables_names", "filter\n")
    v4 = BASE_V4 + DOCKER_USER
    with_rules = FakeRunner(answers(v4, extra={"iptables-legacy-save": ok("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n")}))
    assert read(sysroot, proc, with_rules).mixed_backends is True
    empty = FakeRunner(answers(v4, extra={"iptables-legacy-save": ok("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")}))
    assert read(sysroot, proc, empty).mixed_backends is False
    os.unlink(proc / "net/ip_tables_names")
    never = FakeRunner(answers(v4))
    assert read(sysroot, proc, never).mixed_backends is False
    assert ("iptables-legacy-save",) not in never.asked  # no legacy tables loaded: not even asked


def test_docker_nftables_backend_and_the_own_table(sysroot, proc):
    tables = "table ip docker-bridges\ntable ip6 docker-bridges\n"
    fw = read(sysroot, proc, FakeRunner(answers(tables=tables, extra={"iptables -S": ok(BASE_V4)})))
    assert (fw.docker_backend, fw.docker_user, fw.own_table) == ("nftables", None, False)
    fw = read(sysroot, proc, FakeRunner(answers(tables=tables + "table inet dester_harden\n")))
    assert fw.own_table is True
    # the Engine's own word wins
    assert read(sysroot, proc, FakeRunner(answers()), docker_backend="nftables").docker_backend == "nftables"


def test_an_iptables_that_fails_is_a_reason_not_a_guess(sysroot, proc):
    ufw_files(sysroot)
    runner = FakeRunner(answers(extra={"iptables -S": RunResult(124, "", "iptables did not answer in 2 s")}))
    fw = read(sysroot, proc, runner)
    assert fw.active is None and fw.docker_user is None
    assert "iptables -S: iptables did not answer in 2 s" in fw.errors


# -- not root --------------------------------------------------------------------------------------
def test_not_root_reads_nothing_that_needs_root_and_says_so(sysroot, proc):
    ufw_files(sysroot)
    runner = FakeRunner(answers(UFW_V4))
    fw = read(sysroot, proc, runner, euid=1000)
    assert fw.active is None and fw.errors[0] == NEEDS_ROOT
    assert (fw.rules, fw.docker_user, fw.iptables, fw.default_incoming) == ((), None, None, None)
    assert {a[0] for a in runner.asked} == {"ip"}  # the interfaces only: no iptables, nft or bus


# -- firewalld -------------------------------------------------------------------------------------
ZONE_XML = """<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <service name="ssh"/>
  <port protocol="tcp" port="3001"/>
</zone>
"""


def firewalld(root: Path, version: str, strict: str | None = None, rich: Sequence[str] = ()) -> dict:
    write(root, "/etc/firewalld/firewalld.conf", "DefaultZone=public\n" +
          (f"StrictForwardPorts={strict}\n" if strict else ""))
    write(root, "/etc/firewalld/zones/public.xml", ZONE_XML)
    write(root, "/usr/lib/firewalld/services/ssh.xml", '<service><port protocol="tcp" port="22"/></service>')
    settings = {"type": "a{sv}", "data": [{
        "target": {"type": "s", "data": "default"},
        "services": {"type": "as", "data": ["ssh"]},
        "ports": {"type": "a(ss)", "data": [["3001", "tcp"]]},
        "rules_str": {"type": "as", "data": list(rich)},
        "interfaces": {"type": "as", "data": ["eth0"]}}]}
    bus = "org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1"
    return {f"busctl --system -j get-property {bus} org.fedoraproject.FirewallD1 state version":
            ok('{"type":"s","data":"RUNNING"}\n' + json.dumps({"type": "s", "data": version}) + "\n"),
            f"busctl --system -j call {bus} org.fedoraproject.FirewallD1 getDefaultZone":
            ok('{"type":"s","data":["public"]}'),
            f"busctl --system -j call {bus} org.fedoraproject.FirewallD1.zone getZoneSettings2 s public":
            ok(json.dumps(settings))}


def test_firewalld_1_3_3_runtime_against_permanent(sysroot, proc):
    rich = 'rule family="ipv4" source address="10.0.0.0/8" port port="5432" protocol="tcp" accept'
    fw = read(sysroot, proc, FakeRunner(answers(extra=firewalld(sysroot, "1.3.3", rich=[rich]))))
    assert (fw.frontend, fw.active, fw.version, fw.zone, fw.default_incoming) == \
        ("firewalld", True, "1.3.3", "public", "reject")
    assert fw.strict_forward_ports is None  # 1.3.3 has no such setting
    ports = {(r.port, r.source, r.persistent) for r in fw.rules}
    assert {(22, "any", True), (3001, "any", True), (5432, "10.0.0.0/8", False)} <= ports
    assert fw.unpersisted == (f"public: {rich} (runtime only)",)


def test_firewalld_2_3_0_strict_forward_ports(sysroot, proc):
    fw = read(sysroot, proc, FakeRunner(answers(extra=firewalld(sysroot, "2.3.0", strict="yes"))))
    assert fw.strict_forward_ports is True and fw.unpersisted == ()
    fw = read(sysroot, proc, FakeRunner(answers(extra=firewalld(sysroot, "2.3.0"))))
    assert fw.strict_forward_ports is False


def test_firewalld_not_running_and_busctl_missing(sysroot, proc):
    write(sysroot, "/etc/firewalld/firewalld.conf", "DefaultZone=public\n")
    bus = ("busctl", "--system", "-j", "get-property", "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
           "org.fedoraproject.FirewallD1", "state", "version")
    fw = read(sysroot, proc, FakeRunner({**answers(), bus: RunResult(1, "", "Unit not found")}))
    assert (fw.frontend, fw.active) == ("firewalld", False)
    fw = read(sysroot, proc, FakeRunner(answers()))
    assert fw.active is None and any("busctl is missing" in e for e in fw.errors)


# -- interfaces, IPv6 ------------------------------------------------------------------------------
def test_lan_networks_tailscale_and_ipv6(sysroot, proc):
    fw = read(sysroot, proc, FakeRunner(answers()))
    assert fw.lan_networks == ("192.168.1.0/24", "fd77::/64")  # networks; no lo, link-local, Docker, tailnet
    assert fw.tailscale is True and fw.ipv6 is True
    write(proc, "sys/net/ipv6/conf/all/disable_ipv6", "1\n")
    assert read(sysroot, proc, FakeRunner(answers())).ipv6 is False
    os.unlink(proc / "sys/net/ipv6/conf/all/disable_ipv6")
    assert read(sysroot, proc, FakeRunner(answers())).ipv6 is False


# -- SSH -------------------------------------------------------------------------------------------
def test_ssh_session_from_the_environment_or_an_ancestor(tmp_path):
    assert ssh.ssh_session({"SSH_CONNECTION": "10.77.0.2 50022 10.77.0.1 22"}, str(tmp_path)) == \
        SshSession("10.77.0.2", 50022, "10.77.0.1", 22)
    assert ssh.ssh_session({"SSH_CONNECTION": "garbage"}, str(tmp_path)) is None
    # sudo drops SSH_CONNECTION: the shell above it still has it
    write(tmp_path, "100/stat", "100 (sudo) S 50 1 1 0")
    write(tmp_path, "50/stat", "50 (bash) S 1 1 1 0")
    (tmp_path / "50/environ").write_bytes(b"HOME=/root\0SSH_CONNECTION=192.168.1.5 40000 192.168.1.20 2222\0")
    assert ssh.ssh_session({}, str(tmp_path), pid=100) == SshSession("192.168.1.5", 40000, "192.168.1.20", 2222)
    assert ssh.ssh_session({}, str(tmp_path), pid=50) is None


def test_sshd_config_port_and_includes(sysroot):
    root = SystemRoot(str(sysroot))
    assert ssh.configured_ports(root) is None
    write(sysroot, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n#Port 22\n")
    assert ssh.configured_ports(root) == (22,)
    write(sysroot, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPort 2222\n"
          "ListenAddress 0.0.0.0:2201\nMatch User backup\n  Port 9999\n")
    write(sysroot, "/etc/ssh/sshd_config.d/10-extra.conf", "Port 2200\n")
    assert ssh.configured_ports(root) == (2200, 2201, 2222)


def test_sshd_listening_ports_from_its_sockets(tmp_path, sysroot):
    proc = tmp_path / "proc"
    write(proc, "200/comm", "sshd\n")
    (proc / "200/fd").mkdir()
    os.symlink("socket:[12345]", proc / "200/fd/3")
    os.symlink("/dev/null", proc / "200/fd/0")
    write(proc, "200/net/tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        "
          "0 12345 1 0000000000000000 100 0 0 10 0\n   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 "
          "00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n")
    write(proc, "300/comm", "bash\n")
    assert ssh.listening_ports(str(proc)) == (2222,)
    write(sysroot, "/etc/ssh/sshd_config", "Port 2022\n")
    assert ssh.ssh_ports(SystemRoot(str(sysroot)), str(proc)) == (2222,)  # what runs, before what is configured
    assert ssh.ssh_ports(SystemRoot(str(sysroot)), str(tmp_path / "none")) == (2022,)


def test_state_carries_the_session_and_ports(sysroot, proc):
    write(sysroot, "/etc/ssh/sshd_config", "Port 2222\n")
    fw = read(sysroot, proc, FakeRunner(answers()), environ={"SSH_CONNECTION": "10.77.0.2 5000 10.77.0.1 2222"})
    assert fw.ssh_ports == (2222,) and fw.ssh_session == SshSession("10.77.0.2", 5000, "10.77.0.1", 2222)


# -- the default runner ----------------------------------------------------------------------------
def test_default_runner_missing_program_and_timeout():
    assert fwmod.run(["dester-harden-no-such-program"], 1.0).code == 127
    slow = fwmod.run(["sleep", "5"], 0.1)
    assert slow.code == 124 and "did not answer" in slow.stderr
    assert fwmod.run(["sh", "-c", "echo $LANG"], 1.0).stdout.strip() == "C"
