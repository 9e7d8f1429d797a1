"""Surgical text edits located by YAML node positions.

Each function takes the file's text and nodes from a fresh parse of that same
text (never the merged model of several compose files: see :func:`find_chain`),
and returns new text in which only the lines it means to change differ:
comments, key order, quoting, indentation, anchors and line endings elsewhere
stay as they were. Flow collections (``[a, b]``, ``{k: v}``) are edited in
place. Anything it cannot edit safely (a node shared through an anchor, alias
or merge key; a block scalar; a one-line mapping with comments) raises
:class:`EditRefused` with what to do by hand.
"""

from __future__ import annotations

import json
import re

from checks.core.yamlpos import Node


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


def content_start(text: str, node: Node) -> int:
    """Where the node's own content starts: after an anchor (``&a``) or tag (``!reset``).

    A node's start mark includes those properties, and for a block collection
    they sit on its key's line, with the content on the next one.
    """
    pos = node.start
    if text[pos:pos + 1] not in ("&", "!"):
        return pos
    while pos < node.end:
        ch = text[pos]
        if ch in "&!":
            while pos < node.end and text[pos] not in " \t\r\n":
                pos += 1
        elif ch in " \t\r\n":
            pos += 1
        elif ch == "#":
            while pos < node.end and text[pos] not in "\r\n":
                pos += 1
        else:
            break
    return pos


def _children(node: Node) -> list[Node]:
    if isinstance(node.value, list):
        return list(node.value)
    if isinstance(node.value, dict):
        return list((node.keys or {}).values()) + list(node.value.values())
    return []


def own_children(node: Node) -> list[Node]:
    """Children written inside the node's own text (not merged in from an anchor elsewhere)."""
    return [c for c in _children(node) if node.start <= c.start and c.end <= node.end]


def _last_token_end(text: str, node: Node) -> int:
    """Where the node's last token ends in ``text``.

    A block collection's end mark lies where the next token starts, after any
    blank and comment lines; those belong to what follows. A block scalar ends
    with its last non-blank line: a line starting with ``#`` inside it is
    content, not a comment, so this walks the tree instead of the text.
    """
    if node.is_scalar():
        end = node.end
        if node.style in ("|", ">"):
            while end > node.start and text[end - 1] in " \t\r\n":
                end -= 1
        return end
    if _is_flow(text, node):
        return node.end
    inside = own_children(node)
    if not inside:
        return node.start
    last = max(inside, key=lambda c: (c.end, c.start))
    return _last_token_end(text, last)


def content_end(text: str, node: Node) -> int:
    """End of the node's last line that holds content, with any trailing comment, before the newline."""
    end = _last_token_end(text, node)
    stop = text.find("\n", end)
    stop = len(text) if stop < 0 else stop
    if stop > end and text[stop - 1] == "\r":
        stop -= 1
    return max(stop, end)


def _kind(node: Node) -> int:
    return 1 if node.is_map() else 2 if node.is_seq() else 0


def find_chain(root: Node, target: Node) -> list[Node] | None:
    """The path from ``root`` down to the node written at ``target``'s place (same span and kind).

    ``target`` may come from another parse of the same text, or from the merged
    model of several compose files (whose merged collections keep the
    positions of the first file's node): the answer is the node as this one
    file writes it, with its ancestors, so an edit never mixes files.
    """
    path = [root]
    node = root
    while not (node.start == target.start and node.end == target.end and _kind(node) == _kind(target)):
        keys = {id(k) for k in (node.keys or {}).values()}
        inner = next((c for c in own_children(node) if id(c) not in keys and c is not node
                      and c.start <= target.start and target.end <= c.end), None)
        if inner is None:
            return None
        node = inner
        path.append(node)
    return path


def ensure_editable(node: Node, what: str) -> None:
    if node.via_alias:
        raise EditRefused(
            f"{what} at {node.file}:{node.line} sits inside a YAML anchor, alias or merge key (<<); "
            "editing it there would change every service that uses the anchor: change the anchor if that is meant "
            "for all of them, or override the setting in this service")


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
    rendered = render_scalar(value, node.style)
    start = content_start(text, node)  # keep an anchor or tag
    pad = " " if start == node.end and (text[start - 1:start] in (":", "-") or start > node.start) else ""
    new = text[:start] + pad + rendered + text[node.end:]
    # Plain is fine in a block, but inside [...] or {...} these are indicators:
    # keep the plain style only if the text reads back as this value.
    if rendered == value and any(c in value for c in ",[]{}") and not _reads_back(new, start + len(pad), value):
        new = text[:start] + pad + json.dumps(value) + text[node.end:]
    return new


def _reads_back(text: str, start: int, value: str) -> bool:
    from checks.core.errors import InputError
    from checks.core.yamlpos import parse_yaml

    try:
        root = parse_yaml(text, "check")
    except InputError:
        return False
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if node.is_scalar():
            if node.start == start:
                return bool(node.value == value)
            continue
        stack.extend(_children(node))
    return False


_COMMENT = re.compile(r"(?:^|(?<=\s))#", re.M)


def replace_bool(text: str, node: Node, value: bool) -> str:
    """Write a YAML boolean (``true``/``false``, unquoted) where the scalar ``node`` is."""
    ensure_editable(node, "the value")
    if not node.is_scalar() or node.style in ("|", ">"):
        raise EditRefused(f"expected a single value at line {node.line}")
    token = "true" if value else "false"
    start = content_start(text, node)
    if start == node.end and (text[start - 1:start] in (":", "-") or start > node.start):
        token = " " + token
    return text[:start] + token + text[node.end:]


def _is_flow(text: str, node: Node) -> bool:
    start = content_start(text, node)
    return text[start:start + 1] in ("{", "[")


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
        return _delete_flow_entry(text, mapping, knode, value)
    start = line_start(text, knode.start)
    if text[start:knode.start].strip() not in ("", "-"):
        raise EditRefused(f"line {knode.line} holds more than '{key}'; edit it by hand")
    if text[start:knode.start].strip() == "-":
        raise EditRefused(f"'{key}' starts a list item at line {knode.line}; edit it by hand")
    last = value if value.end > knode.end else knode
    end = line_end(text, content_end(text, last))
    return text[:start] + text[end:]


def empty_value(text: str, mapping: Node, key: str, empty: str = "{}") -> str:
    """Replace the block value of ``key`` (all its lines, comments inside it too) by ``{}``."""
    assert mapping.keys is not None
    knode = mapping.keys[key]
    value = mapping.value[key]
    ensure_editable(value, f"'{key}'")
    colon = text.find(":", knode.end)
    if colon < 0 or text[knode.end:colon].strip():
        raise EditRefused(f"cannot read '{key}' at line {knode.line}; edit it by hand")
    end = content_end(text, value)
    eol = line_end(text, colon)
    if value.start >= eol:
        # A block below the key: keep the key's line (and its comment), drop the block's lines.
        stop = text.find("\n", colon)
        cut = stop - 1 if stop > 0 and text[stop - 1] == "\r" else stop
        comment = text[colon + 1:cut]
        return text[:colon + 1] + " " + empty + comment + text[cut:eol] + text[line_end(text, end):]
    return text[:colon + 1] + " " + empty + text[end:]


def has_merge_key(text: str, mapping: Node) -> bool:
    return re.search(r"^[ \t-]*<<\s*:", text[mapping.start:mapping.end], re.M) is not None or \
        text[mapping.start:mapping.start + 2] == "<<"


def _delete_flow_entry(text: str, mapping: Node, knode: Node, value: Node) -> str:
    """``{a: 1, b: 2}`` -> ``{a: 1}``: one entry out of a flow mapping, separators kept tidy."""
    close = text.rfind("}", mapping.start, mapping.end)
    if close < 0 or _COMMENT.search(text, mapping.start, close):
        raise EditRefused(f"the mapping {{...}} at line {mapping.line} spans comments or cannot be read; "
                          "edit it by hand")
    keys = sorted((k for k in (mapping.keys or {}).values() if mapping.start <= k.start < close), key=lambda k: k.start)
    idx = next((i for i, k in enumerate(keys) if k is knode), None)
    if idx is None:
        raise EditRefused(f"cannot find '{knode.value}' in the mapping at line {mapping.line}; edit it by hand")
    end = max(value.end, knode.end)
    if idx < len(keys) - 1:
        return text[:knode.start] + text[keys[idx + 1].start:]
    if idx > 0:
        prev = keys[idx - 1]
        prev_end = max(prev.end, mapping.value[str(prev.value)].end) if str(prev.value) in mapping.value else prev.end
        return text[:prev_end] + text[end:]
    return text[:knode.start] + text[end:]


def key_indent(text: str, mapping: Node) -> str:
    """The indentation of the mapping's keys (where its first key, or ``<<``, is written)."""
    first = content_start(text, mapping)
    ls = line_start(text, first)
    before = text[ls:first]
    if before.strip() in ("", "-") and "\t" not in before:
        return " " * len(before)
    raise EditRefused(f"cannot tell the indentation at line {mapping.line}")


def insert_lines(text: str, mapping: Node, lines: list[str]) -> str:
    """Append ``lines`` (already relative to the mapping's indentation) at the end of a block mapping."""
    ensure_editable(mapping, "the section")
    if mapping.is_map() and _is_flow(text, mapping) and len(lines) == 1:
        return _insert_flow(text, mapping, lines[0])
    if not mapping.is_map() or _is_flow(text, mapping) or not mapping.keys:
        raise EditRefused(f"the mapping at line {mapping.line} is not a block mapping; edit it by hand")
    nl = newline_of(text)
    indent = key_indent(text, mapping)
    at = content_end(text, mapping)
    block = "".join(nl + indent + line for line in lines)
    return text[:at] + block + text[at:]


def _insert_flow(text: str, mapping: Node, line: str) -> str:
    """``{a: 1}`` -> ``{a: 1, key: value}``: one ``key: value`` into a flow mapping.

    A plain value with flow indicators (``${VAR}`` has braces) is double-quoted there.
    """
    close = text.rfind("}", mapping.start, mapping.end)
    if close < 0 or _COMMENT.search(text, mapping.start, close):
        raise EditRefused(f"the mapping {{...}} at line {mapping.line} spans comments or cannot be read; "
                          "edit it by hand")
    key, sep_, value = line.partition(": ")
    if not sep_ or "#" in value:
        raise EditRefused(f"the mapping {{...}} at line {mapping.line} is written on one line; "
                          f"add '{key}' to it by hand")
    if value[:1] not in ("'", '"') and any(c in value for c in ",[]{}"):
        line = f"{key}: {json.dumps(value)}"
    head = text[:close].rstrip()
    sep = "" if head.endswith(("{", ",")) else ","
    return head + sep + " " + line + (" " if text[close - 1:close] == " " else "") + text[close:]


def append_item(text: str, seq: Node, item: str) -> str:
    """Append ``item`` (a rendered scalar) to a sequence."""
    ensure_editable(seq, "the list")
    if _is_flow(text, seq):
        close = text.rfind("]", seq.start, seq.end)
        if close < 0 or _COMMENT.search(text, seq.start, close):
            raise EditRefused(f"the list [...] at line {seq.line} spans comments or cannot be read; edit it by hand")
        inner = text[content_start(text, seq) + 1:close].strip()
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


def _own_values(mapping: Node) -> list[Node]:
    keys = {id(k) for k in (mapping.keys or {}).values()}
    return sorted((c for c in own_children(mapping) if id(c) not in keys), key=lambda c: c.start)


def _dash_column(text: str, seq: Node) -> int | None:
    if _is_flow(text, seq) or not seq.value:
        return None
    first = seq.value[0]
    prefix = text[line_start(text, first.start):first.start]
    if prefix.strip() != "-" or "\t" in prefix:
        return None
    return prefix.index("-")


def child_indent(text: str, mapping: Node) -> str:
    """Indentation one level deeper than the mapping's keys, as the file does it.

    Measured on the mapping's own nested mappings, else its nested lists, else
    on how far the mapping itself is indented from the line that holds it.
    """
    base = len(key_indent(text, mapping))
    values = _own_values(mapping)
    for value in values:
        if value.is_map() and value.keys and not _is_flow(text, value) and value.start != mapping.start:
            inner = len(key_indent(text, value))
            if inner > base:
                return " " * (inner - base)
    for value in values:
        if value.is_seq():
            col = _dash_column(text, value)
            if col is not None and col > base:
                return " " * (col - base)
    pos = line_start(text, mapping.start)
    while pos > 0:
        pos = line_start(text, pos - 1)
        line = text[pos:line_end(text, pos)].rstrip("\r\n")
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if indent < base:
            return " " * (base - indent)
    return "  "


def seq_indent(text: str, mapping: Node) -> str:
    """Where the file puts a list's dash under its key in this mapping ("" or deeper)."""
    base = len(key_indent(text, mapping))
    for value in _own_values(mapping):
        if value.is_seq():
            col = _dash_column(text, value)
            if col is not None and col >= base:
                return " " * (col - base)
    return child_indent(text, mapping)
