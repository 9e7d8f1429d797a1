"""Surgical text edits located by YAML node positions.

Each function takes the file's text and nodes from a fresh parse of that same
text, and returns new text in which only the lines it means to change differ:
comments, key order, quoting and indentation elsewhere stay as they were.
Anything it cannot edit safely (a flow collection, a node shared through an
anchor or alias) raises :class:`EditRefused` with what to do by hand.
"""

from __future__ import annotations

import json
import re

from .yamlpos import Node

class EditRefused(Exception):
    """This edit would be unsafe; the message says why."""


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def line_end(text: str, index: int) -> int:
    """Index just past the line's newline (or the end of the text)."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def content_end(text: str, node: Node) -> int:
    """End of the node's last line that holds content, with any trailing comment, before the newline.

    PyYAML ends a block collection where the next token starts, after any blank
    or comment lines; those belong to what follows, not to this node.
    """
    end = node.end
    while end > node.start and text[end - 1] in "\r\n":
        end -= 1
    while True:
        ls = line_start(text, end)
        line = text[ls:end].strip()
        if ls <= node.start or (line and not line.startswith("#")):
            break
        end = ls - 1
        while end > node.start and text[end - 1] in "\r\n":
            end -= 1
    stop = text.find("\n", end)
    stop = len(text) if stop < 0 else stop
    if stop > end and text[stop - 1] == "\r":
        stop -= 1
    return max(stop, end)


def ensure_editable(node: Node, what: str) -> None:
    if node.via_alias:
        raise EditRefused(f"{what} sits inside a YAML anchor, alias or merge key (line {node.line}); editing it would change every place that uses the anchor")


_NOT_STRINGS = re.compile(
    r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N"
    r"|[-+]?(?:0|[1-9][0-9_]*)(?::[0-5]?[0-9])*|0[0-7_]+|0x[0-9a-fA-F_]+|0o[0-7]+|0b[01_]+"
    r"|[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def plain_ok(value: str) -> bool:
    """Whether ``value`` can be written unquoted and still read back as this exact string."""
    if not value or value != value.strip() or any(c in value for c in "\n\r\t"):
        return False
    if value[0] in "-?:,[]{}#&*!|>'\"%@`":
        return False
    if ": " in value or " #" in value or value.endswith(":"):
        return False
    # Neither YAML 1.1 (PyYAML) nor 1.2 (Compose) may read it as a bool, null or number.
    return not _NOT_STRINGS.match(value)


def render_scalar(value: str, style: str | None) -> str:
    """``value`` as a YAML scalar, keeping the original quoting where possible."""
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and plain_ok(value):
        return value
    return json.dumps(value)


def replace_scalar(text: str, node: Node, value: str) -> str:
    """Replace a scalar node's text with ``value`` in the node's own style."""
    ensure_editable(node, "the value")
    if not node.is_scalar():
        raise EditRefused(f"expected a single value at line {node.line}")
    if node.style in ("|", ">"):
        raise EditRefused(f"the value at line {node.line} is a block scalar; edit it by hand")
    return text[:node.start] + render_scalar(value, node.style) + text[node.end:]


def _is_flow(text: str, node: Node) -> bool:
    return text[node.start:node.start + 1] in ("{", "[")


def delete_item(text: str, seq: Node, item: Node) -> str:
    """Remove one item of a block sequence (its whole lines)."""
    ensure_editable(item, "the list item")
    if _is_flow(text, seq):
        return _delete_flow_item(text, seq, item)
    start = line_start(text, item.start)
    prefix = text[start:item.start].strip()
    if prefix not in ("-", ""):
        raise EditRefused(f"line {item.line} holds more than this list item; edit it by hand")
    end = line_end(text, content_end(text, item))
    return text[:start] + text[end:]


def _delete_flow_item(text: str, seq: Node, item: Node) -> str:
    items = seq.value
    idx = next(i for i, n in enumerate(items) if n is item)
    if len(items) == 1:
        return text[:item.start] + text[item.end:]
    if idx < len(items) - 1:
        return text[:item.start] + text[items[idx + 1].start:]
    prev = items[idx - 1]
    return text[:prev.end] + text[item.end:]


def delete_key(text: str, mapping: Node, key: str) -> str:
    """Remove ``key: value`` (all its lines) from a block mapping."""
    assert mapping.keys is not None
    knode = mapping.keys[key]
    value = mapping.value[key]
    ensure_editable(value, f"'{key}'")
    if _is_flow(text, mapping):
        raise EditRefused(f"'{key}' is inside a flow mapping {{...}} at line {mapping.line}; edit it by hand")
    start = line_start(text, knode.start)
    if text[start:knode.start].strip() not in ("", "-"):
        raise EditRefused(f"line {knode.line} holds more than '{key}'; edit it by hand")
    if text[start:knode.start].strip() == "-":
        raise EditRefused(f"'{key}' starts a list item at line {knode.line}; edit it by hand")
    last = value if value.end > knode.end else knode
    end = line_end(text, content_end(text, last))
    return text[:start] + text[end:]


def key_indent(text: str, mapping: Node) -> str:
    """The indentation of the mapping's keys."""
    assert mapping.keys
    first = next(iter(mapping.keys.values()))
    ls = line_start(text, first.start)
    before = text[ls:first.start]
    if before.strip() in ("", "-"):
        return " " * len(before)
    raise EditRefused(f"cannot tell the indentation at line {first.line}")


def insert_lines(text: str, mapping: Node, lines: list[str]) -> str:
    """Append ``lines`` (already relative to the mapping's indentation) at the end of a block mapping."""
    ensure_editable(mapping, "the section")
    if _is_flow(text, mapping) or not mapping.keys:
        raise EditRefused(f"the mapping at line {mapping.line} is not a block mapping; edit it by hand")
    nl = newline_of(text)
    indent = key_indent(text, mapping)
    last_key = list(mapping.keys)[-1]
    last = mapping.value[last_key]
    anchor = last if last.end >= mapping.keys[last_key].end else mapping.keys[last_key]
    at = content_end(text, anchor)
    block = "".join(nl + indent + line for line in lines)
    return text[:at] + block + text[at:]


def append_item(text: str, seq: Node, item: str) -> str:
    """Append ``item`` (a rendered scalar) to a sequence."""
    ensure_editable(seq, "the list")
    if _is_flow(text, seq):
        close = text.rfind("]", seq.start, seq.end)
        inner = text[seq.start + 1:close].strip()
        sep = ", " if inner else ""
        return text[:close].rstrip() + sep + item + text[close:]
    if not seq.value:
        raise EditRefused(f"empty list at line {seq.line}; edit it by hand")
    first = seq.value[0]
    ls = line_start(text, first.start)
    dash = text[ls:first.start]
    if dash.strip() != "-":
        raise EditRefused(f"cannot tell the list's indentation at line {first.line}")
    at = content_end(text, seq.value[-1])
    return text[:at] + newline_of(text) + dash + item + text[at:]


def service_field_indent(text: str, service: Node) -> str:
    return key_indent(text, service)


def child_indent(text: str, mapping: Node) -> str:
    """Indentation one level deeper than the mapping's keys (as the file does it)."""
    base = key_indent(text, mapping)
    step = 2
    for value in mapping.value.values():
        if value.is_map() and value.keys and not _is_flow(text, value):
            inner = key_indent(text, value)
            if len(inner) > len(base):
                step = len(inner) - len(base)
                break
    return " " * step
