"""YAML read safely, with the line and column of every value and key.

The one reader of the files a person writes (stories, character files): a syntax
error, a duplicate key, a document nested too deep or one whose aliases expand to
too many values (a "YAML bomb") is a :class:`~comicgen.errors.LocatedError` naming
the place.
"""

from __future__ import annotations

from typing import Any

import yaml

from comicgen.errors import LocatedError

MAX_NODES = 200_000  # YAML nodes after alias expansion; more is a "YAML bomb"
MAX_DEPTH = 64

Marks = dict[tuple, tuple[int, int]]  # path in the data → (line, column), 1-based


def parse_yaml(text: str, shown: str) -> tuple[Any, Marks, Marks]:
    """Parse YAML safely; return (data, value marks, key marks).

    An empty document gives ``(None, {}, {})``. The marks map a path in the data
    (``("pages", 0, "panels", 1)``) to the (line, column) of its value, and of its key.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, {}
        _check_size(node, shown)
        marks: dict[tuple, tuple[int, int]] = {}
        key_marks: dict[tuple, tuple[int, int]] = {}
        _collect_marks(loader, node, (), marks, key_marks, shown)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "YAML syntax error"
        raise LocatedError(
            f"YAML syntax error: {problem}",
            file=shown,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint="check the indentation and quote text that contains ':' or '#'",
        ) from None
    except yaml.YAMLError as exc:
        raise LocatedError(f"YAML error: {exc}", file=shown) from None
    finally:
        loader.dispose()
    return data, marks, key_marks


def _check_size(root: yaml.Node, shown: str) -> None:
    """Refuse documents whose aliases expand to too many nodes (a 'YAML bomb')."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done or not children:
            total = 1 + sum(sizes.get(id(c), 0) for c in children)
            sizes[id(node)] = total
            if total > MAX_NODES:
                raise LocatedError(
                    f"the YAML expands to more than {MAX_NODES:,} values through aliases "
                    "(a 'YAML bomb'); refusing it",
                    file=shown,
                    line=node.start_mark.line + 1,
                    column=node.start_mark.column + 1,
                    hint="write the story without deeply nested '*alias' references",
                )
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _collect_marks(loader, node, path, marks, key_marks, shown, depth=0):
    if depth > MAX_DEPTH:
        raise LocatedError(
            f"the YAML is nested more than {MAX_DEPTH} levels deep",
            file=shown,
            line=node.start_mark.line + 1,
        )
    if path in marks:  # an alias seen before: keep the first place
        return
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _collect_marks(loader, child, (*path, i), marks, key_marks, shown, depth + 1)
    elif isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node, deep=True)
            if key == "<<":
                continue  # merge key: its fields are checked where they land
            if key in seen:
                raise LocatedError(
                    f"duplicate key '{key}'",
                    file=shown,
                    line=key_node.start_mark.line + 1,
                    column=key_node.start_mark.column + 1,
                    field=format_loc((*path, key)),
                    hint="each key may appear once in a mapping; remove one of them",
                )
            seen.add(key)
            key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _collect_marks(loader, value_node, (*path, key), marks, key_marks, shown, depth + 1)


def place(marks: Marks, loc: tuple) -> tuple[int | None, int | None]:
    """The place of ``loc``, or of the nearest enclosing value that has one."""
    loc = tuple(loc)
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return marks.get((), (None, None))


def format_loc(loc: tuple) -> str:
    """``("pages", 0, "panels", 1)`` → ``pages[0].panels[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
