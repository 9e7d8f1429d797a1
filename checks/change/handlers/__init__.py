"""One handler per change kind, in a registry: the engine, the history and the preview dispatch through it.

A change kind is a plan dataclass (:mod:`checks.change.plan`), a journal entry
dataclass (its JSON ``type``, written with ``"format": 1``) and a
:class:`Handler` that knows how to

* ``prepare`` a change into an entry (and the blobs to journal with it), refusing a stale plan;
* ``load`` an entry from the journal, validated (:class:`checks.change.intent.Loader`);
* ``apply`` it, ``rollback`` it (safe to run again after a kill midway), and say
  which plan changes ``undo`` it;
* ``describe`` a plan's changes of its kind (the preview's lines) and an entry for the history.

A new kind is one new handler passed to :func:`register`, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.confined import Confined
    from checks.change.executor import ActionLog, Executor
    from checks.change.intent import Loader
    from checks.change.journal import Redactor, Txn
    from checks.change.stack import Reporter, Stack
    from checks.core.secrets import Masker

ENTRY_FORMAT = 1
"""The format of every entry written now; entries without one (older releases) are read as format 1."""


class StaleError(EngineError):
    """A file (or a mode) changed between the preview and the apply."""


@dataclass
class UndoConflict:
    """A file edited by hand since the transaction: what undo would overwrite."""

    path: str
    expected: bytes | None
    current: bytes | None


@dataclass(frozen=True, slots=True)
class Entry:
    """A journal entry: what one change did, enough to roll it back and to undo it."""

    TYPE: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The entry as written to ``intent.json``: its fields, its ``type`` and ``format``."""
        out: dict[str, Any] = {"format": ENTRY_FORMAT, "type": self.TYPE}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def paths(self) -> tuple[str, ...]:
        """Files and modes it changes (for the history and the later-undo check)."""
        return ()

    def media(self) -> tuple[str, ...]:
        """Media roots it changes."""
        return ()


@dataclass
class Prepared:
    """``prepare``'s answer: the entry, and blobs (name -> bytes, secrets still in) to journal."""

    entry: Entry
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Context:
    """What a handler may use: nothing else reaches the disk or runs a program."""

    root: str
    """The installation's directory."""
    fs: Confined
    executor: Executor
    txn: Txn | None = None
    redactor: Redactor | None = None
    named: frozenset[str] = frozenset()
    """Files the user named outside the installation."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Named secrets (:attr:`checks.change.plan.Plan.named_secrets`) for commands."""
    log: ActionLog | None = None
    notices: list[str] = field(default_factory=list)
    tree_changed: int = 0
    tree_skipped: list[str] = field(default_factory=list)
    tree_mounts: list[str] = field(default_factory=list)
    stack: Stack | None = None
    """Recreates services of the running stack (:class:`checks.change.plan.Recreate`); None: no Docker here."""
    report: Reporter | None = None
    """Where long steps say how far they are (the faces show it)."""
    progress: str = "done"
    """During a rollback: how far the entry got, "done", "started" (killed or failed midway) or "failed"."""


class Handler(Protocol):
    """The operations of one change kind (see the module docstring)."""

    entry_type: str
    changes: tuple[type, ...]

    def prepare(self, change: Any, index: int, ctx: Context) -> Prepared: ...
    def load(self, raw: dict[str, Any], loader: Loader) -> Entry: ...
    def apply(self, entry: Any, ctx: Context) -> None: ...
    def rollback(self, entry: Any, ctx: Context) -> list[str]: ...
    def undo(self, entry: Any, ctx: Context) -> tuple[list[Any], list[UndoConflict]]: ...
    def headline(self, changes: Sequence[Any]) -> str | None: ...
    def describe(self, changes: Sequence[Any], root: str, masker: Masker | None) -> list[str]: ...
    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]: ...


_BY_ENTRY: dict[str, Handler] = {}
_BY_CHANGE: dict[type, Handler] = {}
_ORDER: list[Handler] = []
_LOADED: list[bool] = []


def register(handler: Handler) -> Handler:
    """Add ``handler`` (the preview shows kinds in registration order)."""
    if handler.entry_type in _BY_ENTRY:
        raise ValueError(f"a handler for {handler.entry_type!r} entries is registered already")
    _BY_ENTRY[handler.entry_type] = handler
    for cls in handler.changes:
        _BY_CHANGE[cls] = handler
    _ORDER.append(handler)
    return handler


def unregister(handler: Handler) -> None:
    """Take ``handler`` out again (tests that register a kind of their own)."""
    _BY_ENTRY.pop(handler.entry_type, None)
    for cls in handler.changes:
        _BY_CHANGE.pop(cls, None)
    if handler in _ORDER:
        _ORDER.remove(handler)


def _builtin() -> None:
    if not _LOADED:
        _LOADED.append(True)
        from checks.change.handlers import command, files, link, recreate, tree

        builtin: tuple[Handler, ...] = (files.FILES, files.MODES, link.LINKS, tree.TREE, tree.RESTORE,
                                        command.COMMANDS, recreate.RECREATES)
        for i, h in enumerate(builtin):
            register(h)
            _ORDER.insert(i, _ORDER.pop())  # before any a test registered first


def for_change(change: object) -> Handler:
    """The handler of a plan change."""
    _builtin()
    for cls in type(change).__mro__:
        if cls in _BY_CHANGE:
            return _BY_CHANGE[cls]
    raise EngineError(f"unsupported change {type(change).__name__}")


def for_entry(entry_type: object) -> Handler | None:
    """The handler of a journal entry's ``type``, or None for a type no handler writes."""
    _builtin()
    return _BY_ENTRY.get(entry_type) if isinstance(entry_type, str) else None


def handlers() -> Iterator[Handler]:
    """Every registered handler, in registration order."""
    _builtin()
    return iter(list(_ORDER))
