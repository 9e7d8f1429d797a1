"""``dester-harden reaudit``: what drifted since the last hardening, for cron.

Exit 0 when nothing regressed (or fails somewhere new) at or above
``--fail-on``, 1 when something did, 2 without a baseline (nothing was ever
applied here) or for bad input.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys

from checks.assistant import usecases
from checks.core.textio import json_safe, shown, shown_line
from checks.install.discovery import default_install_dir
from tui.output import mask_for_stdout

EXIT_OK, EXIT_DRIFTED, EXIT_USAGE = 0, 1, 2

#: Drift kind -> (heading in text, key in JSON).
SECTIONS = (
    ("regressions", "Regressed (passed at the last hardening, fails now)", "regressed"),
    ("new", "New (fails where it did not before)", "new"),
    ("fixed", "Fixed since", "fixed"),
    ("unchecked", "Not checked now (could not be checked; not counted as passing)", "unchecked"),
    ("still", "Still failing", "still"),
)


def reaudit(args) -> int:
    from checks.core.errors import InputError

    root = usecases.install_root(args.dir or default_install_dir())
    if not os.path.isdir(root):
        raise InputError("install directory not found (use --dir or set DESTERLIB_DIR)", args.dir or root)
    done = usecases.recover(root)
    for m in done.messages:
        print(f"dester-harden: {shown_line(m)}", file=sys.stderr)
    if done.warning:
        print(f"dester-harden: warning: {shown_line(done.warning)}", file=sys.stderr)
    result = usecases.reaudit(root, profile=args.profile, files=args.file, host_root=args.host_root,
                              mask=mask_for_stdout(args.format))
    worse = result.worse(args.fail_on)
    text = _json(result, args.fail_on, worse) if args.format == "json" else _text(result, args.fail_on, worse)
    sys.stdout.write("\n".join(result.report.masker.text(line) for line in text.split("\n")))
    sys.stdout.flush()
    if result.report.installation.unfollowed:
        print(f"dester-harden: error: {shown_line(result.report.masker.text(result.report.installation.unfollowed[0]))}"
              " (checks that would pass are reported as error)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_DRIFTED if worse else EXIT_OK


def _when(saved_at: float) -> str:
    return _dt.datetime.fromtimestamp(saved_at).strftime("%Y-%m-%d %H:%M")


def _text(result: usecases.Reaudit, fail_on: str, worse: list[str]) -> str:
    base, report, d = result.baseline, result.report, result.drift
    out = [shown(f"Re-audit of {report.installation.root} ({report.profile} profile): score {report.score}/100, "
                 f"{base.score}/100 at the last hardening ({_when(base.saved_at)})."),
           f"{len(d.regressions)} regressed, {len(d.new)} new, {len(d.fixed)} fixed, "
           f"{len(d.unchecked)} not checked now, {len(d.still)} still failing."]
    for attr, heading, _ in SECTIONS:
        items = getattr(d, attr)
        if not items:
            continue
        out += ["", heading + ":"]
        for item in items:
            f = item.finding
            out.append(shown(f"  {f.severity:<8} {f.id:<8} {f.check.title}"))
            if attr in ("regressions", "new"):
                for e in f.evidence[:3]:
                    where = f"{e.file or ''}{':' + str(e.line) if e.line else ''}"
                    out.append(shown(f"           {where} {e.note or e.text}".rstrip()))
            elif attr == "unchecked" and f.reason:
                out.append(shown(f"           {f.reason}"))
    out.append("")
    if worse:
        out.append(f"Worse since the last hardening at or above {fail_on}: {', '.join(worse)} "
                   "(dester-harden fix, or the assistant, fixes them).")
    elif not d.changed:
        out.append("Nothing drifted since the last hardening.")
    else:
        out.append(f"Nothing regressed at or above {fail_on} since the last hardening.")
    return "\n".join(out) + "\n"


def _json(result: usecases.Reaudit, fail_on: str, worse: list[str]) -> str:
    base, report, d = result.baseline, result.report, result.drift
    data: dict[str, object] = {
        "version": 1,
        "dir": report.installation.root,
        "profile": report.profile,
        "score": report.score,
        "baseline": {"saved_at": _dt.datetime.fromtimestamp(base.saved_at, _dt.UTC).isoformat(),
                     "profile": base.profile, "score": base.score, "txn": base.txn},
        "fail_on": fail_on,
        "worse": worse,
    }
    for attr, _, key in SECTIONS:
        data[key] = [item.finding.as_dict() for item in getattr(d, attr)]
    return json_safe(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"
