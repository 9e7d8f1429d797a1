"""The host firewall's plans (issue 12): what the chosen profile wants, in ufw's, firewalld's or
nft's own form, the SSH lockout guard, the live sync that makes the running rules equal the
files, and confirm-or-revert.

A layer between the fixes and the audit: it reads the live state (:mod:`checks.live.fwmodel`)
and the installation, and the fixer (:mod:`checks.fix.firewall`) turns its output into a plan
of system-file edits and commands with their inverse. It never imports a face.

* :mod:`checks.firewall.wants`: the profile's rules as :class:`Want` (backend-free).
* :mod:`checks.firewall.guard`: FW-003, whether a rule set would cut the SSH session.
* :mod:`checks.firewall.ufw`: user.rules / after.rules / /etc/default/ufw contents, and ufw's sync;
  :mod:`checks.firewall.ufwrules` is user.rules' own format (parse, render).
* :mod:`checks.firewall.firewalld`: the zone XML (and StrictForwardPorts), firewalld's sync.
  (:mod:`checks.firewall.zonefile`: the zone XML itself; :mod:`checks.firewall.sysfiles`: reading system files.)
* :mod:`checks.firewall.nft`: dester-harden's own ``inet dester_harden`` table (Docker's nftables backend).
* :mod:`checks.firewall.sync`: ``python -m checks.firewall.sync``, the command a plan runs.
* :mod:`checks.firewall.confirm`: pending confirmations and the detached revert.
"""
