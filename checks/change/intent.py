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

from checks.core.errors import InputError
from checks.core.mediaroot import system_problem

FORMAT = 2
"""Intents of format 2 record ``install`` and ``named``; older ones (no ``format``) are still read."""

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


def _abs_norm(value, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise BadJournal(where, f"{what} {value!r} is not an absolute path")
    if os.path.normpath(value) != value or "//" in value:
        raise BadJournal(where, f"{what} {value!r} is not a normalised path")
    return value


def _mode(value, what: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise BadJournal(where, f"{what} {value!r} is not a mode")
    return value


def _name(value, pattern: re.Pattern, what: str, where: str, optional: bool = False):
    if optional and value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise BadJournal(where, f"{what} {value!r} is not a name dester-harden writes")
    return value


def _sha(value, where: str, optional: bool = True):
    if optional and value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise BadJournal(where, f"checksum {value!r} is malformed")
    return value


def checked_entries(intent: dict, txn_id: str, txn_dir: str, install_root: str, txn_root: str) -> list[dict]:
    """The intent's entries, validated, with paths rebased onto where the installation is now."""
    where = txn_dir
    if not isinstance(intent, dict) or intent.get("invalid"):
        raise BadJournal(where, "its intent.json is not a JSON object")
    fmt = intent.get("format", 1)
    if fmt not in (1, FORMAT):
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
    real = os.path.realpath(root)
    old_root = intent.get("install")
    if old_root is not None:
        old_root = _abs_norm(old_root, "the install directory", where)

    def rebase(path: str) -> str:
        if old_root and old_root != root and inside(path, old_root):
            return root + path[len(old_root.rstrip("/")):] if path != old_root else root
        return path

    # Before format 2 the files a user named outside the install were not
    # recorded: such an old entry is refused (history still shows it).
    named_raw = intent.get("named", [] if fmt == 1 else None)
    if not isinstance(named_raw, list):
        raise BadJournal(where, "the files named by the user are not a list")
    named = {_abs_norm(p, "a named file", where) for p in named_raw}

    def confined(path: str, what: str) -> str:
        path = rebase(_abs_norm(path, what, where))
        if inside(path, root) or inside(path, real) or path in named:
            if path == root or inside(path, os.path.join(root, ".dester-harden")):
                raise BadJournal(where, f"{what} {path} is the install directory or its journal")
            return path
        raise BadJournal(where, f"{what} {path} is outside the installation and was not named by the user")

    out = []
    for raw in entries:
        if not isinstance(raw, dict):
            raise BadJournal(where, "an entry is not a JSON object")
        e = dict(raw)
        kind = e.get("type")
        if kind in ("file", "mode"):
            # Reached by its own path (not confined to the install) only when the intent names it.
            e["named"] = bool(e.get("named")) and rebase(str(e.get("path"))) in named
        if kind == "file":
            e["path"] = confined(e.get("path"), "file")
            e["before"] = _name(e.get("before"), _BLOB, "blob", where, optional=True)
            e["after"] = _name(e.get("after"), _BLOB, "blob", where, optional=True)
            e["before_sha"] = _sha(e.get("before_sha"), where)
            e["after_sha"] = _sha(e.get("after_sha"), where)
            if (e["before"] is None) != (e["before_sha"] is None) or (e["after"] is None) != (e["after_sha"] is None):
                raise BadJournal(where, f"the entry of {e['path']} has a checksum without its blob")
            _mode(e.get("mode"), "mode", where)
            for key in ("uid", "gid"):
                v = e.get(key)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**32 - 1:
                    raise BadJournal(where, f"{key} {v!r} of {e['path']} is not an id")
        elif kind == "mode":
            e["path"] = confined(e.get("path"), "path")
            _mode(e.get("before"), "mode", where)
            _mode(e.get("after"), "mode", where)
        elif kind in ("tree", "tree-restore"):
            tree = rebase(_abs_norm(e.get("root"), "media root", where))
            why = system_problem(tree)  # the path alone: the media fix's own judgement of where it is
            if why:
                raise BadJournal(where, f"media root {tree}: {why}")
            e["root"] = tree
            e["records"] = _name(e.get("records"), _RECORDS, "records file", where)
            if kind == "tree-restore":
                src = e.get("source")
                _abs_norm(src, "records source", where)
                src_txn = os.path.basename(os.path.dirname(src))
                _name(src_txn, TXN_ID, "records source transaction", where)
                _name(os.path.basename(src), _RECORDS, "records source", where)
                if src_txn != undoes:
                    raise BadJournal(where, f"records source {src} is not of the undone transaction")
                # Where that journal is now (it moves with a moved installation).
                e["source"] = os.path.join(txn_root, src_txn, os.path.basename(src))
        else:
            raise BadJournal(where, f"unknown entry type {kind!r}")
        out.append(e)
    return out


def named_outside(paths, install_root: str) -> list[str]:
    """The paths (of a plan's files and modes) outside the installation: the ones the user named."""
    root, real = os.path.abspath(install_root), os.path.realpath(install_root)
    return sorted({p for p in paths if not inside(p, root) and not inside(p, real)})


def reapplies(txn, entries: list[dict], txns: list, entries_of) -> str | None:
    """Why undoing ``txn`` would write back a change a later forced undo already took back, or None.

    A changes X v0->v1, B v1->v2; a forced undo of A (U) puts v0 back. Undoing B
    now would write v1, A's change, again. Any live undo made after ``txn`` of a
    transaction older than ``txn`` that touched the same paths is such a U.
    ``txns`` are all transactions oldest first; ``entries_of`` validates one's entries.
    """
    mine = {e["path"] for e in entries if e["type"] in ("file", "mode")}
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
            theirs = {e["path"] for e in entries_of(later) if e["type"] in ("file", "mode")}
        except (InputError, ValueError):
            continue
        both = sorted(mine & theirs)
        if both:
            return (f"cannot undo {txn.id}: {both[0]} was put back to before {target} by the later undo {later.id}; "
                    f"undoing {txn.id} now would write {target}'s change back (undo {later.id} first, or edit the "
                    "file by hand)")
    return None
