"""Edits of a service placed in one compose file's own parse, shared by the fixers of every area."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from checks.core.yamlpos import Node
from checks.fix import edit
from checks.fix.edit import EditRefused
from checks.install.model import Installation, Service

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner


def bound(fn: Callable[..., None], p: Planner, *args: Any) -> Callable[[Installation], None]:
    """A target's edit: ``fn(p, inst, *args)`` on the installation the planner hands it, ``args`` bound now."""
    def apply(inst: Installation) -> None:
        fn(p, inst, *args)
    return apply


def key_of(mapping: Node, value: Node) -> str:
    for k, v in mapping.value.items():
        if v is value:
            return str(k)
    raise EditRefused(f"cannot find the key of line {value.line}")


def remove_entry(p: Planner, inst: Installation, node: Node, what: str) -> None:
    """Remove a list item or a mapping entry (given its value) from the file that writes it.

    The last entry takes its key along (``ports:`` with nothing under it would be null).
    """
    chain = p.own_chain(inst, node)
    if len(chain) < 3:
        raise EditRefused(f"{what} at {node.file}:{node.line} is not inside a service")
    item, parent, grand = chain[-1], chain[-2], chain[-3]
    edit.ensure_editable(item, what)
    path = p.path_of(inst, node.file)
    text = p.read_text(path)
    if parent.is_seq() or parent.is_map():
        if len(parent.value) == 1 and grand.is_map():
            # The last entry takes its key along; a mapping left with nothing becomes {}, not null.
            new = delete_key(text, chain[:-1], key_of(grand, parent))
        elif parent.is_seq():
            new = edit.delete_item(text, parent, item)
        else:
            new = delete_key(text, chain, key_of(parent, item))
    else:  # pragma: no cover - a scalar has no entries
        raise EditRefused(f"{what} at {node.file}:{node.line} is not in a list or mapping")
    p.write_text(path, new)


def delete_key(text: str, chain: list[Node], key: str) -> str:
    """Delete ``key`` from the mapping ``chain[-2]`` (``chain`` ends with the key's value).

    When that is the mapping's only entry (and no ``<<`` merges into it), the
    mapping becomes ``{}`` in its own parent instead of an empty (null) value,
    which Compose refuses for a service.
    """
    mapping = chain[-2]
    if len(mapping.value) == 1 and len(chain) >= 3 and chain[-3].is_map() and not edit.has_merge_key(text, mapping):
        outer = chain[-3]
        return edit.empty_value(text, outer, key_of(outer, mapping))
    return edit.delete_key(text, mapping, key)


def delete_service_key(p: Planner, inst: Installation, name: str, key: str) -> None:
    """Remove ``key`` from the service in the first compose file that sets it."""
    for own in p.own_services(inst, name):
        if key in own.value:
            path = p.path_of(inst, own.file)
            p.write_text(path, delete_key(p.read_text(path), p.own_chain(inst, own.value[key]), key))
            return
    svc = inst.service(name)
    node = svc.opt(key) if svc is not None else None
    if node is not None:
        # Set by the service it extends (another name, maybe another file): removed where written.
        chain = p.own_chain(inst, node)
        if len(chain) >= 2 and chain[-2].is_map() and chain[-2].value.get(key) is chain[-1]:
            path = p.path_of(inst, node.file)
            p.write_text(path, delete_key(p.read_text(path), chain, key))
            return
    raise EditRefused(f"'{key}' of service {name} could not be found to remove")


def insert_service(p: Planner, inst: Installation, svc: Service, lines: Callable[[str, Node], list[str]]) -> None:
    """Add keys at the end of the service, in the first compose file that defines it.

    ``lines(text, node)`` builds them with the file's own indentation.
    """
    own = p.own_service(inst, svc)
    path = p.path_of(inst, own.file)
    text = p.read_text(path)
    p.write_text(path, edit.insert_lines(text, own, lines(text, own)))
