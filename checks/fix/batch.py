"""Batched planning rounds: many targets from one discovery and one parse.

:meth:`checks.fix.planner.Planner.each` with ``batch=True`` applies a round's targets
from the last one in the file to the first. An edit changes text only from its
own position on, so the text before it, and the node positions of the targets
still to come, stay what the round's discovery and parse found. :class:`Batch`
remembers each file's text as the round found it, its one parse, and the first
offset the round has changed; it answers ``own_chain`` from that parse while
the node lies before the change, and raises :class:`Stale` when it does not
(the planner then ends the batch and discovers afresh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checks.core.yamlpos import Node, parse_yaml
from checks.fix import edit

if TYPE_CHECKING:  # pragma: no cover - the planner imports this module, not the other way round
    from checks.fix.planner import Planner


class Stale(Exception):
    """A batched target's nodes lie after text the batch already changed."""


def _first_difference(a: str, b: str) -> int:
    """The first index where ``a`` and ``b`` differ (slice comparisons run in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class Batch:
    """What one batched round knows: each file's text as the round found it, parsed
    once, and the first offset the round has changed in it."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.roots: dict[str, Node | None] = {}
        self.changed: dict[str, int] = {}

    def wrote(self, path: str, old: str, new: str) -> None:
        """Note that ``path`` went from ``old`` to ``new`` (the first write keeps the round's text)."""
        self.texts.setdefault(path, old)
        first = _first_difference(old, new)
        self.changed[path] = min(first, self.changed.get(path, first))

    def service(self, planner: Planner, path: str, display: str, name: str) -> tuple[Node | None] | None:
        """(the service's node in ``path``, or None), from the round's parse where that
        is still what the file says; None: parse the file afresh."""
        root = self._parse(planner, path, display)
        services = root.get("services") if root is not None and root.is_map() else None
        node = services.get(name) if services is not None and services.is_map() else None
        low = self.changed.get(path)
        if low is None:
            return (node,)
        return (node,) if node is not None and node.end < low else None

    def _parse(self, planner: Planner, path: str, display: str) -> Node | None:
        if path not in self.roots:
            text = self.texts.get(path)
            self.roots[path] = parse_yaml(text if text is not None else planner.read_text(path), display)
        return self.roots[path]

    def chain(self, planner: Planner, path: str, node: Node) -> list[Node] | None:
        """own_chain's answer from the round's parse, valid while the node and every
        ancestor below the top-level section end before the first changed offset."""
        low = self.changed.get(path)
        if low is not None and node.end >= low:
            raise Stale()
        root = self._parse(planner, path, node.file)
        chain = edit.find_chain(root, node) if root is not None else None
        # The root and its top-level section (services:) span the changed text; the
        # edits use them only to name the entry, never by position.
        if chain is not None and low is not None and any(n.end >= low for n in chain[2:]):
            raise Stale()
        return chain
