"""The firewall situation in words (checks/firewall/situation.py), from fixed live states."""

from __future__ import annotations

from checks.firewall.situation import governs, situation_lines
from checks.live.fwmodel import FirewallState, SshSession
from checks.live.model import Binding, Container, EngineInfo, LiveState


def _live(fw: FirewallState | None, *bindings: Binding) -> LiveState:
    db = Container("c1", "demo-postgres-1", "postgres", "running", None, 0, "", "postgres:15", "sha256:1", None,
                   bindings=tuple(bindings))
    return LiveState(project="demo", engine=EngineInfo("20.10.24", "1.41", "unix:///var/run/docker.sock"),
                     containers=(db,), firewall=fw)


ALL = Binding("", 5432, 5432)
LOOP = Binding("127.0.0.1", 5432, 5432)


def test_ufw_active_but_docker_publishes_past_it():
    fw = FirewallState("ufw", True, "0.36.2", ufw_installed=True, default_incoming="deny", iptables="nft",
                       docker_user=("-N DOCKER-USER", "-A DOCKER-USER -j RETURN"), lan_networks=("10.0.0.0/24",))
    lines = situation_lines(fw, _live(fw, ALL))
    assert lines[0] == "ufw 0.36.2 active (deny incoming); iptables-nft, Docker Engine 20.10.24 (iptables backend)"
    assert lines[1] == ("but 5432 (PostgreSQL) is reachable from the LAN through Docker: "
                        "no DOCKER-USER rule for it")
    assert lines[-1] == "LAN networks: 10.0.0.0/24; IPv6 on"


def test_a_conntrack_drop_in_docker_user_governs_the_port():
    rule = "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j DROP"
    fw = FirewallState("ufw", True, docker_user=("-N DOCKER-USER", rule))
    assert governs(fw, 5432) and not governs(fw, 6379)
    assert situation_lines(fw, _live(fw, ALL))[1] == ("5432 (PostgreSQL) is published off loopback, and the "
                                                      "forward path governs it")
    both = _live(fw, ALL, Binding("0.0.0.0", 6379, 6379))
    assert situation_lines(fw, both)[1:3] == [
        "but 6379 (Redis) is reachable from the LAN through Docker: no DOCKER-USER rule for it",
        "5432 (PostgreSQL) is published off loopback, and the forward path governs it"]
    # an ACCEPT naming the port is not a rule that closes it
    assert not governs(FirewallState("ufw", True, docker_user=(rule.replace("DROP", "ACCEPT"),)), 5432)


def test_no_firewall_and_an_open_publish():
    fw = FirewallState("none", False, ufw_installed=True)
    lines = situation_lines(fw, _live(fw, ALL))
    assert lines[0].startswith("no host firewall is active (ufw installed, not enabled)")
    assert lines[1] == "5432 (PostgreSQL) is published off loopback: open to the network"


def test_loopback_publishes_are_not_named_and_firewalld_before_2_3_is_explained():
    fw = FirewallState("firewalld", True, "1.3.3", zone="public", strict_forward_ports=None)
    assert len(situation_lines(fw, _live(fw, LOOP))) == 2
    line = situation_lines(fw, _live(fw, ALL))[1]
    assert line.endswith("firewalld before 2.3.0 has no StrictForwardPorts")
    assert governs(FirewallState("firewalld", True, strict_forward_ports=True), 5432)


def test_nftables_backend_needs_the_own_table():
    fw = FirewallState("ufw", True, docker_backend="nftables")
    assert not governs(fw, 5432)
    fw.own_table = True
    assert governs(fw, 5432)


def test_the_ssh_session_the_mix_and_what_could_not_be_read():
    fw = FirewallState("ufw", True, mixed_backends=True, ssh_session=SshSession("10.0.0.9", 50000, "10.0.0.1", 22),
                       errors=("ip6tables: permission denied",), ipv6=False, tailscale=True)
    lines = situation_lines(fw, None)
    assert any(line.startswith("iptables-legacy and iptables-nft both hold rules") for line in lines)
    assert "SSH session from 10.0.0.9 to port 22: allowed first in every plan" in lines
    assert "LAN networks: none found; IPv6 off; tailscale0 present" in lines
    assert lines[-1] == "not read: ip6tables: permission denied"
    assert situation_lines(None, None, "reading the firewall needs root") == [
        "the firewall could not be read: reading the firewall needs root"]
