"""Every journal entry is validated before the engine acts on it.

The journal passed the trust checks (:mod:`checks.change.trust`), but it still decides
what root writes where, so its content is held to what the engine itself
writes: a known format and entry type, absolute normalised paths confined to
what that transaction may touch, plain blob and record names, modes within
0o7777. Anything else is :class:`BadJournal`, one line, exit 2: never a guess.

Paths are rebased when the installation was moved since (intent ``install``),
so an undo after ``mv ~/.desterlib /srv/desterlib`` works.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from checks.core.errors import InputError

if TYPE_CHECKING:
    from checks.change.handlers import Entry

FORMAT = 3
"""Intents of format 2 record ``install`` and ``named``; format 3 has typed entries (each with its own
``"format": 1``), the progress log and the tentative deadline. Older ones (no ``format``, 2) are still read."""
SYSTEM_FORMAT = 4
"""Format 3 plus ``system``: the system directories the transaction may change (:mod:`checks.change.system`).
Written only by transactions that change system files, so every other intent stays readable by the
releases that know format 3; one of those refuses a format-4 intent (unknown format) rather than guess."""

_BLOB = re.compile(r"[ab][0-9]{1,6}\Z")
_RECORDS = re.compile(r"tree[0-9]{1,6}\.bin\Z")
TXN_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{6}\Z")
_KINDS = {"fix", "undo"}


class BadJournal(InputError):
    """A journal entry the engine would not have written: refused before anything is done."""

    def __init__(self, txn_dir: str, why: str) -> None:
        super().__init__(f"transaction not acted on: {why} (dester-harden never writes that; "
                         "check who changed this journal)", txn_dir)


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _abs_norm(value: object, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise BadJournal(where, f"{what} {value!r} is not an absolute path")
    if os.path.normpath(value) != value or "//" in value:
        raise BadJournal(where, f"{what} {value!r} is not a normalised path")
    return value


def _mode(value: object, what: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise BadJournal(where, f"{what} {value!r} is not a mode")
    return value


def _name(value: object, pattern: re.Pattern[str], what: str, where: str, optional: bool = False) -> str | None:
    if optional and value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise BadJournal(where, f"{what} {value!r} is not a name dester-harden writes")
    return value


def _sha(value: object, where: str, optional: bool = True) -> str | None:
    if optional and value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise BadJournal(where, f"checksum {value!r} is malformed")
    return value


class Loader:
    """The checks a handler's ``load`` applies to one transaction's entries (:mod:`checks.change.handlers`)."""

    def __init__(self, where: str, root: str, old_root: str | None, named: set[str], undoes: str | None,
                 txn_root: str, system: tuple[str, ...] = ()) -> None:
        self.where = where
        self.system = system
        """The system directories the intent recorded (format 4; none before)."""
        self.root = root
        self.real = os.path.realpath(root)
        self.old_root = old_root
        self.named_paths = named
        self.undoes = undoes
        self.txn_root = txn_root

    def bad(self, why: str) -> BadJournal:
        return BadJournal(self.where, why)

    def rebase(self, path: str) -> str:
        old = self.old_root
        if old and old != self.root and inside(path, old):
            return self.root + path[len(old.rstrip("/")):] if path != old else self.root
        return path

    def path(self, value: object, what: str) -> str:
        """An absolute normalised path, as written."""
        return _abs_norm(value, what, self.where)

    def absolute(self, value: object, what: str) -> str:
        """An absolute normalised path, rebased onto where the installation is now."""
        return self.rebase(_abs_norm(value, what, self.where))

    def confined(self, value: object, what: str, system: bool = False) -> str:
        """A path inside the installation (not it, not its journal) or one the user named; with
        ``system``, a path strictly inside one of the system directories the intent recorded."""
        if system:
            path = self.path(value, what)
            if not any(inside(path, d) and path != d for d in self.system):
                raise self.bad(f"{what} {path} is marked as a system file but lies outside the system directories "
                               "this transaction recorded")
            if inside(path, self.root) or inside(path, self.real):
                raise self.bad(f"{what} {path} is marked as a system file but lies inside the installation")
            return path
        path = self.absolute(value, what)
        if inside(path, self.root) or inside(path, self.real) or path in self.named_paths:
            if path == self.root or inside(path, os.path.join(self.root, ".dester-harden")):
                raise self.bad(f"{what} {path} is the install directory or its journal")
            return path
        raise self.bad(f"{what} {path} is outside the installation and was not named by the user")

    def is_named(self, raw: dict[str, Any]) -> bool:
        """Reached by its own path (not confined to the install) only when the intent names it."""
        return bool(raw.get("named")) and self.rebase(str(raw.get("path"))) in self.named_paths

    def is_system(self, raw: dict[str, Any]) -> bool:
        """Marked as a system file (its path is then held to :meth:`confined` with ``system``)."""
        value = raw.get("system", False)
        if not isinstance(value, bool):
            raise self.bad(f"the system mark {value!r} is not true or false")
        return value

    def mode(self, value: object, what: str = "mode") -> int:
        return _mode(value, what, self.where)

    def blob(self, value: object) -> str | None:
        return _name(value, _BLOB, "blob", self.where, optional=True)

    def records(self, value: object) -> str:
        name = _name(value, _RECORDS, "records file", self.where)
        assert name is not None
        return name

    def sha(self, value: object) -> str | None:
        return _sha(value, self.where)

    def txn_id(self, value: object, what: str) -> str:
        name = _name(value, TXN_ID, what, self.where)
        assert name is not None
        return name

    def id_number(self, value: object, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32 - 1:
            raise self.bad(f"{what} {value!r} is not an id")
        return value

    def argv(self, value: object, what: str, optional: bool = False) -> tuple[str, ...] | None:
        if optional and value is None:
            return None
        if (not isinstance(value, list) or not value
                or not all(isinstance(a, str) and "\0" not in a for a in value)):
            raise self.bad(f"{what} is not a list of arguments")
        return tuple(value)

    def text(self, value: object, what: str) -> str:
        if not isinstance(value, str):
            raise self.bad(f"{what} is not text")
        return value


def checked_entries(intent: dict[str, Any], txn_id: str, txn_dir: str, install_root: str,
                    txn_root: str) -> list[Entry]:
    """The intent's entries, validated by their handlers, with paths rebased onto where the installation is now."""
    from checks.change.handlers import ENTRY_FORMAT, for_entry

    where = txn_dir
    if not isinstance(intent, dict) or intent.get("invalid"):
        raise BadJournal(where, "its intent.json is not a JSON object")
    fmt = intent.get("format", 1)
    if fmt not in (1, 2, FORMAT, SYSTEM_FORMAT) or isinstance(fmt, bool):
        raise BadJournal(where, f"unknown journal format {fmt!r}")
    if intent.get("kind", "fix") not in _KINDS:
        raise BadJournal(where, f"unknown transaction kind {intent.get('kind')!r}")
    undoes = intent.get("undoes")
    if undoes is not None:
        _name(undoes, TXN_ID, "the undone transaction", where)
    entries = intent.get("entries", [])
    if not isinstance(entries, list):
        raise BadJournal(where, "its entries are not a list")
    root = os.path.abspath(install_root)
    old_root = intent.get("install")
    if old_root is not None:
        old_root = _abs_norm(old_root, "the install directory", where)
    # Before format 2 the files a user named outside the install were not
    # recorded: such an old entry is refused (history still shows it).
    named_raw = intent.get("named", [] if fmt == 1 else None)
    if not isinstance(named_raw, list):
        raise BadJournal(where, "the files named by the user are not a list")
    named = {_abs_norm(p, "a named file", where) for p in named_raw}
    system_raw = intent.get("system") if fmt == SYSTEM_FORMAT else []  # older formats change no system file
    if not isinstance(system_raw, list) or (fmt == SYSTEM_FORMAT and not system_raw):
        raise BadJournal(where, "the system directories are not a list of directories")
    system = tuple(_abs_norm(p, "a system directory", where) for p in system_raw)
    if any(d == "/" or inside(root, d) or inside(d, root) for d in system):
        raise BadJournal(where, "a system directory overlaps the installation (or is /)")
    loader = Loader(where, root, old_root, named, undoes, txn_root, system)
    out = []
    for raw in entries:
        if not isinstance(raw, dict):
            raise BadJournal(where, "an entry is not a JSON object")
        efmt = raw.get("format", 1)  # entries of older releases carry no format
        if efmt != ENTRY_FORMAT or isinstance(efmt, bool):
            raise BadJournal(where, f"unknown entry format {efmt!r}")
        handler = for_entry(raw.get("type"))
        if handler is None:
            raise BadJournal(where, f"unknown entry type {raw.get('type')!r}")
        out.append(handler.load(raw, loader))
    return out


def intent_system(intent: dict[str, Any]) -> tuple[str, ...]:
    """The system directories an intent (already validated by :func:`checked_entries`) recorded."""
    raw = intent.get("system") if intent.get("format") == SYSTEM_FORMAT else None
    return tuple(str(p) for p in raw) if isinstance(raw, list) else ()


def named_outside(paths: list[str], install_root: str) -> list[str]:
    """The paths (of a plan's files and modes) outside the installation: the ones the user named."""
    root, real = os.path.abspath(install_root), os.path.realpath(install_root)
    return sorted({p for p in paths if not inside(p, root) and not inside(p, real)})


def reapplies(txn: Any, entries: list[Entry], txns: list[Any], entries_of: Any) -> str | None:
    """Why undoing ``txn`` would write back a change a later forced undo already took back, or None.

    A changes X v0->v1, B v1->v2; a forced undo of A (U) puts v0 back. Undoing B
    now would write v1, A's change, again. Any live undo made after ``txn`` of a
    transaction older than ``txn`` that touched the same paths is such a U.
    ``txns`` are all transactions oldest first; ``entries_of`` validates one's entries.
    """
    mine = {p for e in entries for p in e.paths()}
    if not mine:
        return None
    order = {t.id: i for i, t in enumerate(txns)}
    me = order.get(txn.id, -1)
    for later in txns[me + 1:]:
        target = later.intent.get("undoes")
        if later.intent.get("kind") != "undo" or later.state != "applied" or later.undone_by:
            continue
        if target not in order or order[target] >= me:
            continue
        try:
            theirs = {p for e in entries_of(later) for p in e.paths()}
        except (InputError, ValueError):
            continue
        both = sorted(mine & theirs)
        if both:
            return (f"cannot undo {txn.id}: {both[0]} was put back to before {target} by the later undo {later.id}; "
                    f"undoing {txn.id} now would write {target}'s change back (undo {later.id} first, or edit the "
                    "file by hand)")
    return None
