"""Rendering a report as text (80 columns), JSON or SARIF 2.1.0.

Every renderer's output passes through the report's masker once more before it
leaves, so a secret that slipped into a reason or a path is still masked. Text
from input is shown with its control characters escaped (checks.core.textio.shown);
JSON and SARIF keep the data, with what a terminal acts on written as escapes.
"""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

from checks import __version__
from checks.audit.catalog import CATALOG, SEVERITY_RANK
from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED, Finding
from checks.audit.run import Report
from checks.core.textio import json_safe, shown
from checks.install.model import LAYOUT_NAMES

WIDTH = 80
TOOL_URI = "https://github.com/dester-harden/dester-harden"

_COLORS = {"critical": "1;31", "high": "31", "medium": "33", "low": "36", "info": "2", "pass": "32", "dim": "2",
           "bold": "1"}


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, style: str) -> str:
        if not self.color or style not in _COLORS:
            return text
        return f"\x1b[{_COLORS[style]}m{text}\x1b[0m"


def _wrap(text: str, indent: int, first: str = "", hang: int | None = None) -> list[str]:
    # Every line of the text report is built here: escape before wrapping, so
    # an ESC or a \r from a service name or a file never reaches the terminal.
    text = shown(text)
    pad = " " * indent
    rest = " " * hang if hang is not None else pad + " " * len(first)
    return textwrap.wrap(text, WIDTH, initial_indent=pad + first, subsequent_indent=rest,
                         break_long_words=True, break_on_hyphens=False) or [pad + first]


def _order(f: Finding) -> tuple[int, str]:
    return (-SEVERITY_RANK[f.severity], f.id)


def render_text(report: Report, color: bool = False) -> str:
    st = _Style(color)
    inst = report.installation
    out: list[str] = []
    out += _wrap(f"dester-harden {__version__}: audit of {inst.root}", 0)
    summary = f"{LAYOUT_NAMES.get(inst.layout, inst.layout)}; profile {report.profile}"
    out += _wrap(summary, 0)
    names = ", ".join(s.name for s in inst.services) or "none"
    out += _wrap(f"Services: {names}", 0)
    files = [s.display for s in inst.compose_files] + [e.display for e in inst.env_files if e.exists]
    out += _wrap("Files: " + ", ".join(files), 0)
    for note in inst.notes:
        out += _wrap("Note: " + report.masker.text(note), 0)
    out.append("")

    failed = sorted((f for f in report.findings if f.status == FAIL and f.id not in report.suppressed), key=_order)
    for f in failed:
        sev = f.severity.upper()
        head = f"{sev:<8}  {f.id:<7}  "
        first_lines = _wrap(f.check.title, 0, head)
        out.append(st(first_lines[0][:8], f.severity) + first_lines[0][8:])
        out += first_lines[1:]
        for ev in f.evidence[:8]:
            loc = ev.file or ""
            if ev.line:
                loc += f":{ev.line}"
            svc = f" [{ev.service}]" if ev.service else ""
            body = ev.text.strip()
            line = f"{loc}{svc}  {body}".strip() if loc else body
            out += _wrap(line, 10, "", 12)
            if ev.note:
                out += _wrap(ev.note, 12, "")
        if len(f.evidence) > 8:
            out += _wrap(f"... and {len(f.evidence) - 8} more (--format json lists all)", 10)
        if f.reason:
            out += _wrap(f.reason, 10)
        gone = report.expired.get(f.id)
        if gone is not None and gone.until is not None:
            out += _wrap(f"suppression expired on {gone.until.isoformat()} (it said: {gone.reason})", 10)
        out += _wrap(f.check.why, 10, "Why: ")
        out += _wrap(f.check.fix, 10, "Fix: ")
        out.append("")

    errors = sorted((f for f in report.findings if f.status == ERROR), key=_order)
    for f in errors:
        out += _wrap(f"{f.id}: {f.reason or 'error'}", 0, "ERROR     ")
    if errors:
        out.append("")

    suppressed = sorted((f for f in report.findings if f.id in report.suppressed), key=_order)
    if suppressed:
        out.append(st("Suppressed (not counted in the score or the exit code):", "dim"))
        for f in suppressed:
            out += _suppressed_lines(f, report)
        out.append("")

    skipped = [f for f in report.findings if f.status == SKIPPED]
    if skipped:
        out.append(st("Skipped (not counted in the score):", "dim"))
        for f in skipped:
            out += _wrap(f"{f.id:<8} {f.reason or ''}", 2, "", 11)
        out.append("")
    passed = [f.id for f in report.findings if f.status == PASS]
    if passed:
        out += _wrap("Passed: " + " ".join(passed), 0)
    counts: dict[str, int] = {}
    for f in failed:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    detail = ", ".join(f"{n} {sev}" for sev, n in sorted(counts.items(), key=lambda kv: -SEVERITY_RANK[kv[0]]))
    line = (f"{len(failed)} failed" + (f" ({detail})" if detail else "")
            + f", {len(passed)} passed, {len(skipped)} skipped")
    if suppressed:
        line += f", {len(suppressed)} suppressed"
    if errors:
        line += f", {len(errors)} errors"
    out += _wrap(line, 0)
    score_style = "pass" if report.score >= 90 else ("medium" if report.score >= 50 else "critical")
    out.append(st(f"Score: {report.score}/100", score_style) + "  (dester-harden explain --score)")
    return _mask_lines("\n".join(out) + "\n", report)


def _suppressed_lines(f: Finding, report: Report) -> list[str]:
    sup = report.suppressed[f.id]
    out = _wrap(f"{f.id:<8} {f.severity:<8} {f.check.title}", 2, "", 11)
    where = f" [{sup.scope}]" if sup.scope else ""
    until = f" (until {sup.until.isoformat()})" if sup.until else ""
    out += _wrap(f"reason: {sup.reason}{until}{where}", 11)
    return out


def _suppression(report: Report, check_id: str, expired: bool = False) -> dict[str, str | None] | None:
    sup = (report.expired if expired else report.suppressed).get(check_id)
    if sup is None:
        return None
    return {"reason": sup.reason, "until": sup.until.isoformat() if sup.until else None, "scope": sup.scope}


def _finding_dict(f: Finding, report: Report) -> dict[str, Any]:
    out = f.as_dict()
    sup = _suppression(report, f.id)
    if sup is not None:
        out["suppressed"] = sup
    gone = _suppression(report, f.id, expired=True)
    if gone is not None:
        out["suppression_expired"] = gone
    return out


def _mask_lines(text: str, report: Report) -> str:
    return "\n".join(report.masker.text(line) for line in text.split("\n"))


def as_dict(report: Report) -> dict[str, Any]:
    inst = report.installation
    return {
        "version": 1,
        "tool": {"name": "dester-harden", "version": __version__},
        "profile": report.profile,
        "score": report.score,
        "install": {
            "dir": inst.root,
            "layout": inst.layout,
            "services": [s.name for s in inst.services],
            "compose_files": [s.display for s in inst.compose_files],
            "env_files": [e.display for e in inst.env_files if e.exists],
            "notes": list(inst.notes),
        },
        "findings": [_finding_dict(f, report) for f in report.findings],
        "warnings": list(report.warnings),
    }


def render_json(report: Report) -> str:
    text = json.dumps(as_dict(report), indent=2, ensure_ascii=False)
    return json_safe(_mask_lines(text, report)) + "\n"


def _uri(path: str) -> str:
    """A file path as the path part of a URI (percent-encoded, ``/`` kept)."""
    from urllib.parse import quote

    return quote(path, safe="/")


_SECURITY_SEVERITY = {"critical": "9.5", "high": "7.5", "medium": "5.0", "low": "3.0", "info": "0.0"}
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


def render_sarif(report: Report) -> str:
    inst = report.installation
    rules = []
    index = {}
    for i, chk in enumerate(CATALOG):
        index[chk.id] = i
        sev = chk.severity_for(report.profile)
        rules.append({
            "id": chk.id,
            "name": "".join(w.capitalize() for w in chk.title.replace("/", " ").replace("-", " ").split()
                            if w.isalnum()),
            "shortDescription": {"text": chk.title},
            "fullDescription": {"text": chk.why},
            "help": {"text": f"{chk.why}\n\nFix: {chk.fix}", "markdown": f"{chk.why}\n\n**Fix.** {chk.fix}"},
            "defaultConfiguration": {"level": _LEVEL[sev]},
            "properties": {"severity": sev, "fixable": chk.fixable, "live": chk.live,
                           "security-severity": _SECURITY_SEVERITY[sev]},
        })
    results = []
    notifications = []
    for f in report.findings:
        if f.status == FAIL:
            locations = []
            for ev in f.evidence:
                if not ev.file:
                    continue
                # SARIF uris are RFC 3986 references: paths with spaces or '%' must be
                # percent-encoded ("TV Shows" -> "TV%20Shows").
                uri = _uri(ev.file)
                loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": uri}}}
                if not os.path.isabs(ev.file):
                    loc["physicalLocation"]["artifactLocation"]["uriBaseId"] = "INSTALLDIR"
                else:
                    loc["physicalLocation"]["artifactLocation"]["uri"] = "file://" + uri
                if ev.line:
                    loc["physicalLocation"]["region"] = {"startLine": ev.line, "snippet": {"text": ev.text}}
                if ev.note:
                    loc["message"] = {"text": ev.note}
                locations.append(loc)
            message = f.check.title
            notes = [e.note for e in f.evidence if e.note]
            if notes:
                message += ": " + "; ".join(dict.fromkeys(notes))
            elif f.reason:
                message += ": " + f.reason
            props: dict[str, str] = {"severity": f.severity}
            result: dict[str, Any] = {
                "ruleId": f.id,
                "ruleIndex": index[f.id],
                "kind": "fail",
                "level": _LEVEL[f.severity],
                "message": {"text": message},
                "properties": props,
            }
            if locations:
                result["locations"] = locations
            sup = report.suppressed.get(f.id)
            if sup is not None:
                # SARIF 2.1.0 §3.34: accepted outside the code scanned (the settings file).
                result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": sup.reason,
                                           "properties": {"until": sup.until.isoformat() if sup.until else None,
                                                          "scope": sup.scope}}]
            gone = report.expired.get(f.id)
            if gone is not None and gone.until is not None:
                props["suppressionExpired"] = gone.until.isoformat()
            results.append(result)
        elif f.status in (SKIPPED, ERROR):
            notifications.append({
                "descriptor": {"id": f.id},
                "level": "error" if f.status == ERROR else "note",
                "message": {"text": f"{f.id} {f.status}: {f.reason or ''}".strip()},
            })
    for w in report.warnings:
        notifications.append({"level": "warning", "message": {"text": w}})
    root_uri = "file://" + _uri(inst.root.rstrip("/")) + "/"
    doc = {
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "dester-harden", "version": __version__, "semanticVersion": __version__,
                                "informationUri": TOOL_URI, "rules": rules}},
            "originalUriBaseIds": {"INSTALLDIR": {"uri": root_uri}},
            "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
            "results": results,
            "properties": {"profile": report.profile, "score": report.score, "layout": inst.layout},
        }],
    }
    return json_safe(_mask_lines(json.dumps(doc, indent=2, ensure_ascii=False), report)) + "\n"
