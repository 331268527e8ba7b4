"""Reading YAML that a user, a merge or a model repo controls (gpux.models.yml, gpux.lock, model cards), within limits.

A few hundred bytes of YAML aliases expand to billions of nodes, and deep nesting overflows the parser's
recursion: both are refused while the document is composed, before anything walks it. Undecodable bytes
and duplicate keys (which PyYAML silently drops) are refused too. Each refusal is one line naming the file
and where.
"""

from __future__ import annotations

from typing import Any

import yaml

from gpuxbuild.errors import ManifestError, quote

MAX_DEPTH = 64  # nesting levels; gpux.lock and gpux.models.yml need 7
MAX_NODES = 1_000_000  # nodes of the document with every alias expanded; a 500-model lock has ~400,000


class DuplicateKey(Exception):
    """A mapping names `key` twice (at 1-based `line`)."""

    def __init__(self, key, line: int):
        super().__init__(key, line)
        self.key, self.line = key, line


class _Limit(Exception):
    def __init__(self, mark, reason: str):
        super().__init__(reason)
        self.mark, self.reason = mark, reason


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds nesting and alias expansion while composing, and refuses duplicate keys."""

    def __init__(self, stream, max_depth: int, max_nodes: int):
        super().__init__(stream)
        self._depth, self._max_depth, self._max_nodes = 0, max_depth, max_nodes
        self._sizes: dict[int, int] = {}  # id(node) -> its node count with aliases expanded

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > self._max_depth:
            raise _Limit(self.peek_event().start_mark, f"nested deeper than {self._max_depth} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:  # not an alias of a node composed before
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = []
            # An alias of a node still being composed (a recursive anchor) counts as one.
            size = 1 + sum(self._sizes.get(id(c), 1) for c in children)
            self._sizes[id(node)] = size
            if size > self._max_nodes:
                # types-PyYAML lets compose_node return None, but PyYAML composes a node for every event.
                mark = node.start_mark  # type: ignore[union-attr]
                raise _Limit(mark, f"its aliases expand to over {self._max_nodes:,} nodes (a YAML alias bomb?)")
        return node

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(
    data: bytes, name: str, *, max_bytes: int, hint: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> tuple[Any, yaml.Node | None]:
    """(value, root node) of the YAML document `data`, the bytes of the file `name`.

    Raises ManifestError (with `hint`) for a file over `max_bytes`, bytes that are not UTF-8, nesting deeper
    than `max_depth` or over `max_nodes` nodes with aliases expanded; lets yaml.YAMLError and DuplicateKey
    through for the caller to place.
    """
    if len(data) > max_bytes:
        raise ManifestError(f"{name}: {len(data):,} bytes, over the limit of {max_bytes:,}", hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{name}: not UTF-8 text: byte {quote(data[exc.start : exc.start + 1])} at offset {exc.start}", hint
        ) from None
    loader = _Loader(text, max_depth, max_nodes)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except _Limit as exc:
        raise ManifestError(f"{name}:{exc.mark.line + 1}: {exc.reason}", hint) from None
    finally:
        loader.dispose()
