"""Settings of one installation: the exposure profile and suppressions.

The file is ``settings.toml`` in the journal directory of the user running
dester-harden (:func:`checks.change.statedir.journal_dir`): the owner's own run
uses ``<install>/.dester-harden/settings.toml``, root on someone else's install
its own state directory, so an install's owner cannot suppress findings in
root's audit. It is read with the journal's trust rules (owned by the effective
uid, not writable by group or others, not a symbolic link, every directory
above closed to others); an untrusted file is not used, and the caller says so
in one warning line. See docs/adr/0004-settings-file.md.

Read with the standard library's ``tomllib``, imported only when the file
exists, so an audit without settings pays one ``stat``. Writing appends text
(:func:`add_suppression`) or replaces one line (:func:`save_profile`), so the
user's comments stay.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from checks.audit.catalog import BY_ID, PROFILES
from checks.audit.findings import FAIL, Evidence, Finding
from checks.core.errors import InputError
from checks.core.names import SETTINGS_FILE
from checks.proxy.model import PROTECTED, SERVERS, Choice

HEADER = '# dester-harden settings for this installation (see README "Settings")\n'
SCOPE_KINDS = ("service", "file", "path")
_TOP_KEYS = {"profile", "suppress", "front_door"}
_FRONT_DOOR_KEYS = {"domain", "server", "open"}
_SUPPRESS_KEYS = {"check", "scope", "reason", "until"}
# Patterns, not compiled here: an audit without a settings file never needs them (re caches them).
_TABLE = r"^\s*\[\[\s*suppress\s*\]\]"
_HEADER_LINE = r"^\s*\["
_PROFILE_LINE = r"""^\s*profile\s*=\s*(?:"[^"]*"|'[^']*')(?P<rest>.*)$"""


class SettingsError(InputError):
    """The settings file is malformed: one line naming the file and the line."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """One accepted finding: not counted in the score or the exit code while it is active."""

    check: str
    """The check ID it suppresses (``NET-003``)."""
    reason: str
    """Why the finding is accepted (required; shown wherever the finding is)."""
    scope: str | None = None
    """``service:NAME``, ``file:PATH`` (relative to the install) or ``path:PATH``; None: the whole check."""
    until: _dt.date | None = None
    """After this day the suppression no longer applies and the finding fails again, saying so."""
    line: int | None = None
    """The line of its ``[[suppress]]`` table in the file (for messages)."""

    def active(self, today: _dt.date) -> bool:
        """Not past its expiry date."""
        return self.until is None or today <= self.until

    def as_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "reason": self.reason, "scope": self.scope,
                "until": self.until.isoformat() if self.until else None}


@dataclass(slots=True, eq=False)  # eq=False: nothing compares them, and the audit imports this module
class Settings:
    """The effective settings of one installation for the user running dester-harden."""

    path: str | None = None
    """Where the file is (or would be); None when it could not even be located."""
    profile: str | None = None
    """The exposure profile every audit uses when ``--profile`` is not given (None: ``local``)."""
    suppressions: list[Suppression] = field(default_factory=list)
    """The ``[[suppress]]`` tables, in file order."""
    warnings: list[str] = field(default_factory=list)
    """Why the file was not used (untrusted), one line each; the defaults apply then."""
    loaded: bool = False
    """The file exists, was trusted and was read."""
    front_door: Choice | None = None
    """The ``[front_door]`` table: the proxy the TLS step set up (a re-audit and ``fix`` use the same)."""


@dataclass(slots=True, eq=False)
class Matched:
    """What the suppressions did to one audit's findings."""

    suppressed: dict[str, Suppression] = field(default_factory=dict)
    """check id -> the active suppression that covers its failure."""
    expired: dict[str, Suppression] = field(default_factory=dict)
    """check id -> an expired suppression that would have covered it (the finding fails)."""
    warnings: list[str] = field(default_factory=list)
    """Unknown ids and suppressions that match no failing finding."""


# -- where, and reading ------------------------------------------------------------

def settings_path(install_root: str) -> str:
    """``settings.toml`` in the journal directory for ``install_root`` (not created)."""
    from checks.change.statedir import journal_dir

    return os.path.join(journal_dir(os.path.abspath(os.path.expanduser(install_root))), SETTINGS_FILE)


def read_text(path: str) -> str | None:
    """The file's text if it exists and is trusted; raises UntrustedJournal (an InputError) if not."""
    from checks.change.trust import UntrustedJournal, check_ancestors, problem, read_checked

    parent = os.path.dirname(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    check_ancestors(parent)
    why = problem(st, want_dir=False)
    if why:  # said here in the settings' own words; read_checked repeats the check on the descriptor
        raise UntrustedJournal(path, why)
    raw = read_checked(path)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError("is not UTF-8 text", path) from None


def load_settings(install_root: str) -> Settings:
    """The settings for ``install_root``: defaults when there is no file or it is not trusted.

    Raises :class:`SettingsError` for a malformed file (the caller exits 2).
    """
    from checks.change.trust import UntrustedJournal

    try:
        path = settings_path(install_root)
    except UntrustedJournal as exc:
        return Settings(None, warnings=[f"settings not used: {exc}"])
    except OSError:
        return Settings(None)  # no install directory: the audit says so in its own line
    try:
        text = read_text(path)
    except UntrustedJournal as exc:
        why = str(exc).split("; that journal is not used")[0]
        return Settings(path, warnings=[f"settings not used: {why}; the defaults apply"])
    except OSError as exc:
        return Settings(path, warnings=[f"settings not used: {path}: {exc.strerror}; the defaults apply"])
    if text is None:
        return Settings(path)
    settings = parse(text, path)
    settings.loaded = True
    return settings


def parse(text: str, path: str) -> Settings:
    """Typed settings from the file's text; SettingsError naming ``path`` and the line."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends "(at line L, column C)": keep it, it names the place.
        raise SettingsError(f"not valid TOML: {exc}", path) from None
    lines = text.splitlines()
    tables = [i + 1 for i, line in enumerate(lines) if re.match(_TABLE, line)]
    first_table = next((i + 1 for i, line in enumerate(lines) if re.match(_HEADER_LINE, line)), len(lines) + 1)

    def top_line(key: str) -> int | None:
        return _key_line(lines, key, 1, first_table)

    for key in data:
        if key not in _TOP_KEYS:
            raise SettingsError(f"unknown setting {key!r} (known: profile, [front_door], [[suppress]])", path,
                                top_line(key))
    profile = data.get("profile")
    if profile is not None and profile not in PROFILES:
        raise SettingsError(f"profile must be one of {', '.join(PROFILES)}", path, top_line("profile"))
    raw = data.get("suppress", [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise SettingsError("suppress must be written as [[suppress]] tables", path, top_line("suppress"))
    out = []
    for n, table in enumerate(raw):
        start = tables[n] if n < len(tables) else None
        end = tables[n + 1] if n + 1 < len(tables) else len(lines) + 1
        out.append(_suppression(table, path, start, end, lines))
    settings = Settings(path, profile, out)
    if "front_door" in data:
        settings.front_door = _front_door(data["front_door"], path, lines)
    return settings


def _front_door(table: object, path: str, lines: list[str]) -> Choice:
    start = next((i + 1 for i, ln in enumerate(lines) if re.match(r"^\s*\[\s*front_door\s*\]", ln)), None)

    def where(key: str) -> int | None:
        return (_key_line(lines, key, start, len(lines) + 1) if start else None) or start

    if not isinstance(table, dict):
        raise SettingsError("front_door must be a [front_door] table", path, start)
    for key in table:
        if key not in _FRONT_DOOR_KEYS:
            raise SettingsError(f"unknown key {key!r} in [front_door] (known: domain, server, open)", path, where(key))
    domain, server, opened = table.get("domain"), table.get("server"), table.get("open", [])
    if not isinstance(domain, str) or not domain:
        raise SettingsError("[front_door] needs domain = \"NAME\"", path, where("domain"))
    from checks.proxy.generate import validate_domain

    try:
        domain = validate_domain(domain)
    except InputError as exc:
        raise SettingsError(exc.message, path, where("domain")) from None
    if server not in SERVERS:
        raise SettingsError(f"[front_door] server must be one of {', '.join(SERVERS)}", path, where("server"))
    if not isinstance(opened, list) or not all(isinstance(k, str) and k in PROTECTED for k in opened):
        raise SettingsError(f"[front_door] open must be a list of {', '.join(PROTECTED)}", path, where("open"))
    return Choice(domain, str(server), frozenset(opened))


def _key_line(lines: list[str], key: str, start: int, end: int) -> int | None:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start - 1, min(end - 1, len(lines))):
        if pattern.match(lines[i]):
            return i + 1
    return None


def _suppression(table: dict[str, object], path: str, start: int | None, end: int, lines: list[str]) -> Suppression:
    def where(key: str | None = None) -> int | None:
        if key is None or start is None:
            return start
        return _key_line(lines, key, start, end) or start

    for key in table:
        if key not in _SUPPRESS_KEYS:
            raise SettingsError(f"unknown key {key!r} in [[suppress]] (known: check, scope, reason, until)",
                                path, where(key))
    check = table.get("check")
    if not isinstance(check, str) or not check.strip():
        raise SettingsError("[[suppress]] needs check = \"ID\"", path, where("check"))
    reason = table.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise SettingsError("[[suppress]] needs a reason = \"...\" (why the finding is accepted)", path,
                            where("reason"))
    scope = table.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise SettingsError("scope must be a string", path, where("scope"))
        why = scope_problem(scope)
        if why:
            raise SettingsError(why, path, where("scope"))
    until = table.get("until")
    if until is not None:
        if isinstance(until, str):
            try:
                until = parse_date(until)
            except ValueError as exc:
                raise SettingsError(str(exc), path, where("until")) from None
        elif isinstance(until, _dt.datetime) or not isinstance(until, _dt.date):
            raise SettingsError("until must be a date (YYYY-MM-DD)", path, where("until"))
    return Suppression(check.strip().upper(), reason.strip(), scope, until, start)


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` is not ``service:NAME``, ``file:PATH`` or ``path:PATH``, or None."""
    kind, sep, value = scope.partition(":")
    if not sep or kind not in SCOPE_KINDS or not value.strip():
        return f"scope must be service:NAME, file:PATH or path:PATH, not {scope!r}"
    return None


def parse_date(text: str) -> _dt.date:
    """An ISO date (YYYY-MM-DD); ValueError with a one-line message."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError
        return _dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"until must be a date as YYYY-MM-DD, not {text!r}") from None


def resolve_profile(given: str | None, settings: Settings) -> tuple[str, str]:
    """(profile, where it came from): ``--profile``, else the settings file, else ``local``."""
    if given:
        return given, "--profile"
    if settings.profile:
        return settings.profile, f"settings file {settings.path}"
    return "local", "default"


# -- matching ------------------------------------------------------------------------

def covers(sup: Suppression, finding: Finding, root: str) -> bool:
    """Does ``sup`` cover ``finding``: same check, and (with a scope) all of its evidence in the scope."""
    if sup.check != finding.id:
        return False
    if sup.scope is None:
        return True
    # A scoped suppression needs evidence to judge: a failure that names nothing is not covered.
    # For file and path scopes a summary line without a file (FS-005's counts) neither adds nor blocks.
    judged = finding.evidence if sup.scope.startswith("service:") else [e for e in finding.evidence if e.file]
    return bool(judged) and all(_in_scope(sup.scope, ev, root) for ev in judged)


def _in_scope(scope: str, ev: Evidence, root: str) -> bool:
    kind, _, value = scope.partition(":")
    if kind == "service":
        return ev.service == value
    if not ev.file:
        return False
    where = _abs(ev.file, root)
    want = _abs(value, root)
    if kind == "file":
        return where == want
    return where == want or where.startswith(want.rstrip("/") + "/")


def _abs(path: str, root: str) -> str:
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(root, path))


def match(findings: Iterable[Finding], suppressions: list[Suppression], root: str,
          today: _dt.date | None = None) -> Matched:
    """Which failing findings the suppressions cover; warnings for unknown ids and unused ones."""
    today = today or _dt.date.today()
    out = Matched()
    findings = list(findings)
    ran = {f.id for f in findings}
    failing = [f for f in findings if f.status == FAIL]
    for sup in suppressions:
        at = f" (line {sup.line})" if sup.line else ""
        if sup.check not in BY_ID:
            out.warnings.append(f"suppression of unknown check {sup.check}{at} is ignored "
                                "(dester-harden explain lists them)")
            continue
        if sup.check not in ran:
            continue  # not run this time (--only, --skip, another profile): nothing to judge
        hits = [f for f in failing if covers(sup, f, root)]
        if not hits:
            out.warnings.append(f"suppression of {sup.check}" + (f" ({sup.scope})" if sup.scope else "") +
                                f"{at} matches no failing finding")
            continue
        for f in hits:
            if sup.active(today):
                out.suppressed.setdefault(f.id, sup)
                out.expired.pop(f.id, None)
            elif f.id not in out.suppressed:
                out.expired.setdefault(f.id, sup)
    return out


# -- writing ---------------------------------------------------------------------------

def _toml_string(text: str) -> str:
    """A TOML basic string (quotes, backslashes and control characters escaped)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _writable_path(install_root: str) -> str:
    from checks.change.statedir import journal_dir

    journal = journal_dir(os.path.abspath(os.path.expanduser(install_root)), create=True)  # 0700, checked
    return os.path.join(journal, SETTINGS_FILE)


def _write(path: str, text: str) -> None:
    from checks.core.atomic import write_private

    parse(text, path)  # never write a file the next audit would refuse
    write_private(path, text.encode("utf-8"))


def add_suppression(install_root: str, check: str, reason: str, scope: str | None = None,
                    until: str | _dt.date | None = None) -> Suppression:
    """Append one ``[[suppress]]`` table (creating the file 0600 with its header); the user's text stays.

    Raises :class:`InputError` for an unknown id, an empty reason, a bad scope or date,
    or a settings file that is malformed or not trusted.
    """
    cid = check.strip().upper()
    if cid not in BY_ID:
        raise InputError(f"unknown check id {check!r} (dester-harden explain lists them)")
    if not reason or not reason.strip():
        raise InputError("a suppression needs a reason (--reason TEXT): why the finding is accepted")
    if scope is not None:
        why = scope_problem(scope)
        if why:
            raise InputError(why)
    day = parse_date(until) if isinstance(until, str) else until
    path = _writable_path(install_root)
    text = read_text(path)
    if text is None:
        text = HEADER
    else:
        parse(text, path)
        if not text.endswith("\n"):
            text += "\n"
    table = ["", "[[suppress]]", f"check = {_toml_string(cid)}"]
    if scope:
        table.append(f"scope = {_toml_string(scope)}")
    table.append(f"reason = {_toml_string(' '.join(reason.split()))}")
    if day:
        table.append(f"until = {_toml_string(day.isoformat())}")
    _write(path, text + "\n".join(table) + "\n")
    return Suppression(cid, " ".join(reason.split()), scope, day)


def save_profile(install_root: str, profile: str) -> None:
    """Record ``profile`` as the installation's profile (replacing the ``profile =`` line, comments kept)."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}")
    path = _writable_path(install_root)
    text = read_text(path)
    line = f"profile = {_toml_string(profile)}"
    if text is None:
        _write(path, HEADER + line + "\n")
        return
    current = parse(text, path)
    if current.profile == profile:
        return
    lines = text.splitlines()
    first_table = next((i for i, ln in enumerate(lines) if re.match(_HEADER_LINE, ln)), len(lines))
    for i in range(first_table):
        m = re.match(_PROFILE_LINE, lines[i])
        if m:
            lines[i] = line + m.group("rest")  # the comment after the value stays
            break
    else:
        # After the leading comments, before the first table: a top-level key must precede tables.
        at = 0
        while at < first_table and lines[at].lstrip().startswith("#"):
            at += 1
        lines.insert(at, line)
    _write(path, "\n".join(lines) + "\n")


def save_front_door(install_root: str, choice: Choice) -> None:
    """Record ``choice`` as the installation's ``[front_door]`` (the table replaced, everything else kept)."""
    path = _writable_path(install_root)
    text = read_text(path) or HEADER
    table = ("[front_door]\n"
             f"domain = {_toml_string(choice.domain)}\n"
             f"server = {_toml_string(choice.server)}\n"
             f"open = [{', '.join(_toml_string(k) for k in sorted(choice.open_paths))}]\n")
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(r"^\s*\[\s*front_door\s*\]", ln)), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if re.match(_HEADER_LINE, lines[i])), len(lines))
        lines[start:end] = [table + ("\n" if end < len(lines) else "")]
        new = "".join(lines)
    else:
        first = next((i for i, ln in enumerate(lines) if re.match(_HEADER_LINE, ln)), len(lines))
        body = "".join(lines[:first])
        if body and not body.endswith("\n"):
            body += "\n"
        rest = "\n" + "".join(lines[first:]) if first < len(lines) else ""
        new = body + ("\n" if body.strip() else "") + table + rest
    _write(path, new)


__all__ = ["Settings", "Suppression", "Matched", "SettingsError", "load_settings", "parse", "match", "covers",
           "add_suppression", "save_profile", "save_front_door", "resolve_profile", "settings_path", "SETTINGS_FILE"]
