"""YAML with source positions.

PyYAML's composer gives a node graph whose nodes carry marks (line, column,
index). We turn it into :class:`Node` trees of plain Python values, each node
remembering where it came from, so checks can cite ``file:line`` and the change
engine can edit by position.

Scalars are resolved the way Docker Compose does (YAML 1.2 core schema): ``yes``,
``on`` and ``22:22`` stay strings; only ``true``/``false``, ``null``/``~`` and
numbers are typed. Merge keys (``<<``) are applied, and every node that reaches
a mapping through an alias or a merge key is flagged, because an edit there would
also change the anchor's other users.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from checks.core.errors import InputError

_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
try:  # libyaml is an order of magnitude faster and gives the same marks
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader

#: An alias bomb expands a few hundred bytes into billions of nodes. Real compose
#: files expand anchors a handful of times; this bound stops a bomb early.
MAX_EXPANDED_NODES = 200_000

_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$|^0o[0-7]+$|^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(
    r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

MERGE_TAG = "tag:yaml.org,2002:merge"
#: Application tags Compose gives a meaning to; any other tag changes a value in
#: a way we cannot know (``!vault abc`` is not the password ``abc``).
KNOWN_APP_TAGS = {"!reset", "!override"}
#: Standard tags a plain scalar can resolve to without being written (``!!str`` too).
_CORE_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "timestamp", "merge", "value",
                                                   "map", "seq")}
_SHOWN_TAG = re.compile(r"^!{1,2}[A-Za-z0-9_.\-/:]{1,40}$")
#: Real compose files nest a dozen levels; this bound stops a deep file with a
#: line number well before Python's recursion limit would.
MAX_NESTING = 100


class Node:
    """A YAML value with its position.

    ``value`` is a ``dict[str, Node]`` for a mapping, a ``list[Node]`` for a
    sequence, or a plain scalar (``str``, ``int``, ``float``, ``bool``, ``None``).
    Lines and columns are 1-based; ``start``/``end`` are character offsets.
    """

    __slots__ = ("value", "file", "line", "col", "end_line", "end_col", "start", "end", "tag", "style", "via_alias",
                 "keys")

    def __init__(self, value: Any, file: str, start_mark: Any, end_mark: Any, tag: str | None = None,
                 style: str | None = None, via_alias: bool = False) -> None:
        self.value = value
        self.file = file
        self.line: int = start_mark.line + 1
        self.col: int = start_mark.column + 1
        self.end_line: int = end_mark.line + 1
        self.end_col: int = end_mark.column + 1
        self.start: int = start_mark.index
        self.end: int = end_mark.index
        #: An explicit application tag such as Compose's ``!reset``/``!override``.
        self.tag = tag
        #: The scalar style: None for plain, ``'"'``, ``"'"``, ``"|"`` or ``">"``.
        self.style = style
        #: True when this node is an anchor with aliases, is reached through an
        #: alias or a merge key, or lies inside one: editing it edits them all.
        self.via_alias = via_alias
        #: For mappings: the key nodes, by key.
        self.keys: dict[str, Node] | None = None

    # -- convenience accessors used by discovery and checks --
    def get(self, key: str) -> Node | None:
        if isinstance(self.value, dict):
            return self.value.get(key)
        return None

    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def is_scalar(self) -> bool:
        return not isinstance(self.value, (dict, list))

    def items(self) -> Iterator[tuple[str, Node]]:
        if isinstance(self.value, dict):
            yield from self.value.items()

    def plain(self) -> Any:
        """The value with positions stripped (for tests and debugging)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Node({self.plain()!r} @{self.file}:{self.line}:{self.col})"


def _resolve_plain(text: str) -> Any:
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.match(text):
        try:
            return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
        except ValueError:  # pragma: no cover
            return text
    if _FLOAT.match(text):
        try:
            spelled = text.replace("inf", "Infinity").replace("Inf", "Infinity").replace("INF", "Infinity")
            return float(spelled.replace(".Infinity", "Infinity").replace(".nan", "nan").replace(".NaN", "nan")
                         .replace(".NAN", "nan"))
        except ValueError:
            return text
    return text


def _app_tag(tag: str | None) -> str | None:
    if tag and tag.startswith("!") and not tag.startswith("!!"):
        return tag
    return None


def _check_tag(node: yaml.Node, file: str) -> None:
    """Refuse a tag whose meaning we do not know: the value it gives is not the one written."""
    tag = node.tag
    if not tag or tag in KNOWN_APP_TAGS or tag in _CORE_TAGS:
        return
    written = "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag
    shown = f" {written}" if _SHOWN_TAG.match(written) else ""
    raise InputError(f"unsupported YAML tag{shown} (Compose knows only !reset and !override); "
                     "write the value itself", file, node.start_mark.line + 1)


class _Converter:
    def __init__(self, file: str, shared: set[int]) -> None:
        self.file = file
        self.count = 0
        self.path: set[int] = set()
        #: ids of YAML nodes reachable more than once (an anchor with aliases).
        self.shared = shared
        self.depth = 0

    def convert(self, node: yaml.Node, via_alias: bool) -> Node:
        self.count += 1
        if self.count > MAX_EXPANDED_NODES:
            raise InputError(
                f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes (an alias bomb?)",
                self.file, node.start_mark.line + 1)
        key = id(node)
        if key in self.path:
            raise InputError("YAML alias refers to itself (recursive anchor)", self.file, node.start_mark.line + 1)
        # Both the anchor and its aliases are shared: editing either changes the other.
        via_alias = via_alias or key in self.shared
        _check_tag(node, self.file)
        tag = _app_tag(node.tag)
        if isinstance(node, yaml.ScalarNode):
            style = node.style or None  # libyaml reports plain style as ''
            value = _resolve_plain(node.value) if style is None else node.value
            return Node(value, self.file, node.start_mark, node.end_mark, tag, style, via_alias)
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise InputError(f"YAML nesting is too deep (more than {MAX_NESTING} levels)", self.file,
                             node.start_mark.line + 1)
        self.path.add(key)
        try:
            if isinstance(node, yaml.SequenceNode):
                items = [self.convert(child, via_alias) for child in node.value]
                return Node(items, self.file, node.start_mark, node.end_mark, tag, None, via_alias)
            assert isinstance(node, yaml.MappingNode)  # the only other kind a compose file composes to
            return self._mapping(node, via_alias, tag)
        finally:
            self.path.discard(key)
            self.depth -= 1

    def _mapping(self, node: yaml.MappingNode, via_alias: bool, tag: str | None) -> Node:
        result: dict[str, Node] = {}
        keys: dict[str, Node] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == MERGE_TAG and not key_node.style:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise InputError("merge key '<<' must point at a mapping", self.file, src.start_mark.line + 1)
                    merged.append(self.convert(src, True))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError("mapping keys must be plain scalars", self.file, key_node.start_mark.line + 1)
            _check_tag(key_node, self.file)
            key = key_node.value
            if key in result:
                shown = f" '{key}'" if _SAFE_KEY.match(key) else ""
                raise InputError(f"duplicate key{shown} (first at line {keys[key].line})", self.file,
                                 key_node.start_mark.line + 1)
            keys[key] = Node(key, self.file, key_node.start_mark, key_node.end_mark, _app_tag(key_node.tag),
                             key_node.style or None, via_alias)
            result[key] = self.convert(value_node, via_alias)
        # Explicit keys win over merged ones; earlier merge sources win over later ones.
        for src in merged:
            assert src.keys is not None
            for key, value in src.value.items():
                if key not in result:
                    result[key] = value
                    keys[key] = src.keys[key]
        out = Node(result, self.file, node.start_mark, node.end_mark, tag, None, via_alias)
        out.keys = keys
        return out


def _shared_nodes(root: yaml.Node) -> set[int]:
    """ids of nodes reachable along more than one edge (anchors that have aliases)."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append(k)
                stack.append(v)
    return shared


def _tab_near(text: str, line: int, column: int) -> bool:
    lines = text.split("\n", line + 1)
    if line >= len(lines):
        return False
    row = lines[line]
    return "\t" in row[: column + 1] or (row[column:column + 1] == "\t")


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _unquote_content(problem: str) -> str:
    """Drop file content that PyYAML's pure-Python parser quotes in its messages.

    ``found undefined alias 'Zq8...'`` could be a password written unquoted after
    a ``*``; libyaml never quotes it. Single characters ('\\t', ',') and token
    names ('<block end>') carry no secret and help, so they stay.
    """
    def keep(m: re.Match[str]) -> str:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        return m.group(0) if len(inner) <= 2 or (inner.startswith("<") and inner.endswith(">")) else "..."

    return _QUOTED.sub(keep, problem)


def parse_yaml(text: str, file: str) -> Node | None:
    """Parse one YAML document into a :class:`Node` tree (None for an empty file)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = _unquote_content((exc.problem or exc.context or "invalid YAML").strip())
        if mark is not None and _tab_near(text, mark.line, mark.column):
            problem = "tab character where YAML allows only spaces (indent with spaces)"
        elif "expected a single document" in problem or "another document" in problem:
            problem = "more than one YAML document in the file"
        raise InputError(f"YAML syntax error: {problem}", file, line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {type(exc).__name__}", file) from None
    except RecursionError:
        raise InputError(f"YAML nesting is too deep (more than {MAX_NESTING} levels)", file,
                         _too_deep_line(text)) from None
    if root is None:
        return None
    try:
        return _Converter(file, _shared_nodes(root)).convert(root, False)
    except RecursionError:  # pragma: no cover - MAX_NESTING stops it first
        raise InputError("YAML nesting is too deep", file, _too_deep_line(text)) from None


def _too_deep_line(text: str) -> int | None:
    """The line where nesting first goes past MAX_NESTING (the event parser does not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    return event.start_mark.line + 1 if event.start_mark is not None else 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except (yaml.YAMLError, RecursionError):
        return None
    return None
