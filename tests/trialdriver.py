"""A stand-in for ``dester-harden fix`` on a firewall plan, for the confirm-or-revert tests.

``python -m tests.trialdriver INSTALL SYSROOT SECONDS [--yes]``: builds the shape every firewall
plan has (a system file under ``SYSROOT/etc/ufw``, the boot hook, the reload pair whose "sync"
copies the file to ``SYSROOT/live``, standing in for the running rules), applies it on trial
through :func:`checks.assistant.usecases.apply` exactly as the CLI does, then waits at the CLI's
own countdown (:func:`tui.changes._kept`). It prints ``GO`` before the apply and ``ON TRIAL <pid>``
once the change is applied; ``--kill-mid`` kills its own process group mid-transaction.
The firewall fixer's plans are another branch's; this one needs no firewall at all.
"""

from __future__ import annotations

import os
import sys

from checks.assistant import usecases
from checks.change.plan import Command, FileEdit, Plan
from checks.core.sysroot import SystemRoot
from checks.firewall.confirm import boot_hook_changes, boot_hook_dirs

BEFORE, AFTER = b"# rules before\n", b"# rules after: deny 5432\n"


def sync_argv(sysroot: str) -> tuple[str, ...]:
    """The stand-in for ``python -m checks.firewall.sync``: the live rules become the file's."""
    src, dst = os.path.join(sysroot, "etc/ufw/user.rules"), os.path.join(sysroot, "live")
    return (sys.executable, "-c", f"import shutil; shutil.copyfile({src!r}, {dst!r})")


#: ``--kill-mid``: a command between the file and the sync that SIGKILLs the driver's whole process group,
#: so the kill lands exactly mid-transaction (the file changed, the live rules not yet).
KILL_GROUP = (sys.executable, "-c", "import os; os.killpg(os.getpgid(os.getppid()), 9)")


def build(install: str, sysroot: str, seconds: float, kill_mid: bool = False) -> Plan:
    rules = os.path.join(sysroot, "etc/ufw/user.rules")
    hook = boot_hook_changes(SystemRoot(sysroot), install)
    sync = sync_argv(sysroot)
    return Plan(checks=["FW-001"],
                changes=[Command(("true",), sync, "re-sync the live rules on rollback", host=True),
                         FileEdit(rules, BEFORE, AFTER), *hook,
                         *([Command(KILL_GROUP, ("true",), "die here")] if kill_mid else []),
                         Command(sync, ("true",), "load the rules", host=True)],
                system=[os.path.join(sysroot, "etc/ufw"), *boot_hook_dirs(hook)], revert_after=seconds)


def main(argv: list[str]) -> int:
    from tui.changes import _kept

    install, sysroot, seconds = argv[0], argv[1], float(argv[2])
    print("GO", flush=True)  # imports done: what follows is the apply (the crash test kills within it)
    plan = build(install, sysroot, seconds, "--kill-mid" in argv)
    done = usecases.apply(install, plan, command="fix", profile="local", host_root=sysroot)
    assert done.trial is not None
    print(f"ON TRIAL {os.getpid()}", flush=True)
    kept = _kept(install, done.trial, "--yes" in argv)
    print("KEPT" if kept else "NOT KEPT", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
