"""The nftables backend: dester-harden's own ``inet dester_harden`` table, for Docker's nftables backend.

Docker's nftables firewall backend (Docker 29, ``"firewall-backend": "nftables"``) has no
DOCKER-USER chain, so the iptables recipe does nothing there, and Docker's own tables are Docker's
(it rewrites them). The forward path gets a table of its own instead, whose base chain hooks
``forward`` at priority ``filter - 1``: before Docker's, so its drop is final, while its accept
only lets the packet go on to Docker's chains. The chain

* returns for traffic from Docker's bridges (``iifname "docker0"``, ``"br-*"``: containers among
  themselves and their way out),
* accepts established and related connections,
* accepts the allowed sources to each forwarded (Docker-published) port, matched by conntrack's
  original destination port (``ct original proto-dst P``: after DNAT the packet's own port is the
  container's),
* and drops new connections to the other forwarded ports (``ct status dnat``: only connections a
  DNAT brought here, so traffic this host merely routes is left alone).

One rule per port and source: an anonymous set of ``ct original proto-dst`` values has no type in
nft 1.0.6 (it lists as ``0xbb9 [invalid type]``), so none is used.

Only the forward path is this table's: the host's own ports (SSH, default deny on INPUT) stay with
the host's firewall frontend, and the wants that are not forwarded are left out (a note says so).

**Persistent** as the file :data:`NFT_FILE` (``/etc/dester-harden.nft``), which starts with the
``table``/``delete table`` idiom so that ``nft -f`` of it is idempotent, and an ``include`` line in
``/etc/nftables.conf``, which Debian's nftables.service loads at boot. The file sits in /etc itself,
beside nftables.conf, and not in a directory of its own: the change engine creates and removes
files, not directories (ADR 0008), and the undo of one new file is its removal. The rendered file
is checked with ``nft -c -f`` (check mode, in a scratch network namespace when possible) before it
is planned.

:func:`sync` (``python -m checks.firewall.sync nft``) loads the file when nftables.conf includes it
and deletes the table when not (the undo's case), then checks that the loaded table has exactly the
file's rules.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from checks.core.sysroot import SystemRoot
from checks.firewall.firewalld import sync_argv
from checks.firewall.sysfiles import first_line, new_owner, read_system, run
from checks.firewall.wants import BackendPlan, Want
from checks.live.fwmodel import FirewallState, Runner

NFT_FILE = "/etc/dester-harden.nft"
NFT_CONF = "/etc/nftables.conf"
FAMILY, TABLE, CHAIN = "inet", "dester_harden", "forward"
PRIORITY = -1
"""``filter - 1``: nft shows the chain's ``prio`` as -1 (filter is 0)."""
CHECKS = ("NET-007", "FW-004")
BOOT_UNIT = "/etc/systemd/system/sysinit.target.wants/nftables.service"
MARK = "dester-harden"

_INCLUDE_RE = re.compile(r'^\s*include\s+"' + re.escape(NFT_FILE) + r'"\s*(#.*)?$', re.M)


class SyncError(Exception):
    """The live nft table could not be made equal to the file (one line, for the sync command)."""


def _l4(w: Want) -> str:
    return "tcp" if w.proto not in ("tcp", "udp") else w.proto


def _match_source(w: Want) -> str:
    parts = []
    if w.interface:
        parts.append(f'iifname "{w.interface}"')
    if w.source != "any":
        net = ipaddress.ip_network(w.source, strict=False)
        parts.append(f"{'ip6' if net.version == 6 else 'ip'} saddr {net}")
    elif w.v6 is True:
        parts.append("meta nfproto ipv6")
    elif w.v6 is False:
        parts.append("meta nfproto ipv4")
    return " ".join(parts)


def rule_lines(wants: Sequence[Want]) -> list[str]:
    """The chain's rules, in the form ``nft list`` prints them (so the live table can be compared by text)."""
    lines = ['iifname "docker0" return', 'iifname "br-*" return', "ct state established,related accept"]
    forwarded = [w for w in wants if w.forwarded and w.port is not None]
    drop: list[tuple[str, int]] = []
    for w in forwarded:
        assert w.port is not None
        hit = f"meta l4proto {_l4(w)} ct original proto-dst {w.port}"
        if w.action == "allow":
            src = _match_source(w)
            lines.append(f"{src} {hit} accept".strip())
        if (_l4(w), w.port) not in drop:
            drop.append((_l4(w), w.port))
    for proto, port in drop:
        # Only what a DNAT brought here (Docker's publishes): traffic this host merely routes is not ours.
        lines.append(f"ct state new ct status dnat meta l4proto {proto} ct original proto-dst {port} drop")
    return lines


def render(wants: Sequence[Want]) -> str:
    """The whole :data:`NFT_FILE`: ``nft -f`` of it replaces the table, whether it is loaded or not."""
    body = "\n".join(f"\t\t{line}" for line in rule_lines(wants))
    return (f"#!/usr/sbin/nft -f\n"
            f"# {MARK}: the forward path of Docker-published ports (NET-007), before Docker's own chains.\n"
            f"# Written by dester-harden; `dester-harden undo` takes it back. Loaded at boot through the\n"
            f"# include in {NFT_CONF}.\n"
            f"table {FAMILY} {TABLE}\n"
            f"delete table {FAMILY} {TABLE}\n"
            f"table {FAMILY} {TABLE} {{\n"
            f"\tchain {CHAIN} {{\n"
            f"\t\ttype filter hook forward priority filter - 1; policy accept;\n"
            f"{body}\n"
            f"\t}}\n"
            f"}}\n")


def include_line() -> str:
    return f'include "{NFT_FILE}"'


def has_include(conf: str) -> bool:
    """nftables.conf loads :data:`NFT_FILE` (an ``include`` line naming it, not commented out)."""
    return _INCLUDE_RE.search(conf) is not None


def with_include(conf: bytes) -> bytes:
    """nftables.conf with the include line at its end (unchanged when it has one)."""
    text = conf.decode("utf-8", "replace")
    if has_include(text):
        return conf
    sep = "" if text.endswith("\n") or not text else "\n"
    return (text + sep + f"\n# {MARK}: its own table for Docker-published ports (NET-007)\n"
            + include_line() + "\n").encode()


def _check_argv(path: str) -> list[str]:
    nft = shutil.which("nft") or "nft"
    if os.geteuid() == 0 and shutil.which("unshare"):
        # An empty network namespace: the check sees only this file, never the host's ruleset.
        return ["unshare", "--net", nft, "-c", "-f", path]
    return [nft, "-c", "-f", path]


def check_file(text: str, runner: Runner | None = None) -> str | None:
    """None when ``nft -c -f`` accepts ``text`` (check mode: nothing is loaded); else nft's first line."""
    with tempfile.TemporaryDirectory(prefix="dh-nft-") as tmp:
        path = os.path.join(tmp, "check.nft")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        res = (runner or run)(_check_argv(path), 10.0)
    if res.code == 0:
        return None
    if res.code == 127:
        return "nft is not installed: apt install nftables"
    return first_line(res.stderr + "\n" + res.stdout, f"nft -c exited with {res.code}")


def plan(wants: Sequence[Want], fw: FirewallState, sysroot: SystemRoot, inst: object = None, *,
         runner: Runner | None = None) -> BackendPlan:
    """The own table for ``wants`` (the forwarded ones), its file and the include (see the module docstring).

    ``inst`` is not needed (the wants carry the ports); ``runner`` runs ``nft -c`` (tests pass one).
    """
    out = BackendPlan("nft", [], [sysroot.path("/etc")], sync_argv("nft", sysroot))
    skipped = [w for w in wants if not w.forwarded]
    if skipped:
        out.notes.append(f"{len(skipped)} rule(s) for the host's own ports ({', '.join(w.text() for w in skipped)}) "
                         "are the host firewall's, not this table's: it governs only the forward path")
    if not any(w.forwarded and w.port is not None for w in wants):
        out.notes.append("no port is published by Docker on a non-loopback address: the table only returns and "
                         "accepts")
    text = render(wants)
    problem = check_file(text, runner)
    if problem is not None:
        out.refusals += [(c, f"the planned nft table does not pass `nft -c`: {problem}", "") for c in CHECKS]
        return out
    path, conf_path = sysroot.path(NFT_FILE), sysroot.path(NFT_CONF)
    try:
        before, conf = read_system(path), read_system(conf_path)
    except ValueError as exc:
        out.refusals += [(c, str(exc), "") for c in CHECKS]
        return out
    after = text.encode()
    if before != after:
        out.edits.append((path, before, after, 0o644 if before is None else None,
                          new_owner() if before is None else None))
    if conf is None:
        out.edits.append((conf_path, None, b"#!/usr/sbin/nft -f\n" + with_include(b""), 0o755, new_owner()))
        out.notes.append(f"{NFT_CONF} did not exist: it is created with just the include")
    elif with_include(conf) != conf:
        out.edits.append((conf_path, conf, with_include(conf), None, None))
    if not os.path.lexists(sysroot.path(BOOT_UNIT)):
        out.notes.append("nftables.service is not enabled, so nothing loads the table at boot: "
                         "systemctl enable nftables")
    out.commands += [f"nft -f {NFT_FILE}", f"echo '{include_line()}' >> {NFT_CONF}"]
    return out


# --- sync ----------------------------------------------------------------------------------------

def _rules_of(doc: dict[str, Any]) -> tuple[list[Any], dict[str, Any] | None]:
    """The rules' expressions (handles dropped) and the chain's attributes, from ``nft -j list table``."""
    rules, chain = [], None
    for item in doc.get("nftables", []):
        if "chain" in item and item["chain"].get("name") == CHAIN:
            c = dict(item["chain"])
            c.pop("handle", None)
            chain = c
        elif "rule" in item and item["rule"].get("chain") == CHAIN:
            rules.append(item["rule"].get("expr"))
    return rules, chain


def _listed(runner: Runner, argv: list[str]) -> tuple[list[Any], dict[str, Any] | None] | str:
    res = runner(argv, 10.0)
    if res.code != 0:
        return first_line(res.stderr + res.stdout, f"exit {res.code}")
    try:
        return _rules_of(json.loads(res.stdout))
    except (ValueError, AttributeError):
        return "nft -j printed no JSON"


def sync(sysroot: SystemRoot, runner: Runner) -> None:
    """Load the table (or delete it when nftables.conf no longer includes it), then verify it; SyncError else."""
    path, conf_path = sysroot.path(NFT_FILE), sysroot.path(NFT_CONF)
    try:
        conf, data = read_system(conf_path), read_system(path)
    except ValueError as exc:
        raise SyncError(str(exc)) from None
    if conf is None or data is None or not has_include(conf.decode("utf-8", "replace")):
        res = runner(["nft", "delete", "table", FAMILY, TABLE], 10.0)
        if res.code != 0 and "No such file or directory" not in res.stderr:
            raise SyncError("nft delete table failed: " + first_line(res.stderr + res.stdout, f"exit {res.code}"))
        left = runner(["nft", "list", "table", FAMILY, TABLE], 10.0)
        if left.code == 0:
            raise SyncError(f"the table {FAMILY} {TABLE} is still loaded after deleting it")
        return
    res = runner(["nft", "-f", path], 10.0)
    if res.code != 0:
        raise SyncError(f"nft -f {path} failed: " + first_line(res.stderr + res.stdout, f"exit {res.code}"))
    live = _listed(runner, ["nft", "-j", "list", "table", FAMILY, TABLE])
    if isinstance(live, str):
        raise SyncError(f"the table {FAMILY} {TABLE} could not be listed after loading it: {live}")
    if shutil.which("unshare") and os.geteuid() == 0:
        # What the file says, as nft itself reads it: loaded into an empty network namespace.
        expected = _listed(runner, ["unshare", "--net", "sh", "-c",
                                    'nft -f "$1" && nft -j list table inet dester_harden', "sh", path])
        if isinstance(expected, str):
            raise SyncError(f"{path} could not be read back for the comparison: {expected}")
        if live != expected:
            raise SyncError(f"the loaded table {FAMILY} {TABLE} differs from {path} "
                            f"({len(live[0])} rules loaded, {len(expected[0])} in the file)")
        return
    text = runner(["nft", "list", "chain", FAMILY, TABLE, CHAIN], 10.0)
    body = [ln.strip() for ln in text.stdout.splitlines()]
    filed = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines()]
    start = next((i for i, ln in enumerate(filed) if ln.startswith("type filter hook")), None)
    if start is None:
        raise SyncError(f"{path} has no forward base chain")
    rules = [ln for ln in filed[start + 1:] if ln and ln != "}"]
    got = [ln for ln in body[body.index(filed[start]) + 1:] if ln and ln != "}"] if filed[start] in body else None
    if got != rules:
        raise SyncError(f"the loaded table {FAMILY} {TABLE} differs from {path}")


__all__ = ["NFT_FILE", "NFT_CONF", "SyncError", "plan", "sync", "render", "rule_lines", "check_file",
           "has_include", "with_include", "include_line"]
