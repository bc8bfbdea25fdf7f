"""JSON forms of the objects coding problems pass around (runs inside a sandbox worker).

Task configurations and answers are JSON; many solutions take or return node objects of classes they
(or their tests) define. The forms follow LeetCode's conventions, which people and models know:

- ``linked_list`` (a node with a value and ``next``): the list of values, ``[1, 2, 3]``; ``[]`` is no
  list (``None``). A list whose last node links back to node ``pos`` (0-based) is
  ``{"values": [3, 2, 0, -4], "pos": 1}``.
- ``binary_tree`` (``left``/``right``): level order with ``null`` for a missing child, trailing nulls
  left out: ``[3, 9, 20, null, null, 15, 7]``; ``[]`` is the empty tree.
- ``nary_tree`` (``children``): level order, each node's children as a group ended by ``null``, the root
  alone in the first group: ``[1, null, 3, 2, 4, null, 5, 6]``.
- ``graph`` (``neighbors``): the adjacency list of nodes valued 1..n, node ``k`` at index ``k - 1``;
  the argument is node 1: ``[[2, 4], [1, 3], [2, 4], [1, 3]]``; ``[]`` is no graph.

A node's value lives in its ``val``, ``value``, ``data`` or ``key`` attribute. :func:`describe` names
the form of a live value (for the trial run of a problem's tests); :func:`build` makes objects from a
form, :func:`plain` turns a value (objects included) back into JSON data. Bad data raises
:class:`FormError` naming what is wrong; object graphs over :data:`MAX_NODES` nodes, and cycles where
the form has none, are refused.
"""

import math
from collections import deque
from typing import Any

MAX_NODES = 10_000
VALUE_ATTRS = ("val", "value", "data", "key")
LINKS = {"binary_tree": ("left", "right"), "linked_list": ("next",), "nary_tree": ("children",),
         "graph": ("neighbors",)}


class FormError(ValueError):
    """A value that does not fit its JSON form (or an object graph that has none)."""


def node_shape(value: Any) -> tuple[str, str] | None:
    """(kind, value attribute) of a node object, or None when ``value`` is not one."""
    attrs = getattr(value, "__dict__", None)
    if not isinstance(attrs, dict) or isinstance(value, type):
        return None
    value_attr = next((a for a in VALUE_ATTRS if a in attrs), None)
    if value_attr is None:
        return None
    for kind, links in LINKS.items():
        if all(link in attrs for link in links):
            return kind, value_attr
    return None


def _array_like(value: Any) -> bool:
    """numpy scalars and arrays, pandas series: data with a ``tolist()`` that gives plain values."""
    return type(value).__module__.split(".")[0] in ("numpy", "pandas") and hasattr(value, "tolist")


def _foreign(value: Any, depth: int = 0) -> type | None:
    """The type of the first part of ``value`` that is not JSON data (None when all of it is)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if _array_like(value):
        return _foreign(value.tolist(), depth + 1)
    if depth > 50:
        return type(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return next((t for v in value if (t := _foreign(v, depth + 1)) is not None), None)
    if isinstance(value, dict):
        return next((t for k, v in value.items() if (t := _foreign(k, depth + 1) or _foreign(v, depth + 1))), None)
    return type(value)


def describe(value: Any) -> dict[str, str]:
    """The form of a live value: ``{"kind": "none" | "json" | <node kind> | "object", ...}``; node kinds
    also name their ``class``, ``module`` and ``value_attr``; ``object`` names the class of the first part
    that is not JSON data (``Interval`` for a list of intervals)."""
    if value is None:
        return {"kind": "none"}
    shape = node_shape(value)
    if shape is not None:
        return {"kind": shape[0], "value_attr": shape[1], "class": type(value).__name__,
                "module": type(value).__module__}
    foreign = _foreign(value)
    if foreign is None:
        return {"kind": "json"}
    return {"kind": "object", "class": foreign.__name__, "module": foreign.__module__}


# --- objects -> JSON ----------------------------------------------------------------------------
def to_json(value: Any, where: str = "answer") -> Any:
    """``value`` as plain JSON data (tuples become lists, sets sorted lists, numpy/pandas values their
    ``tolist()``), or TypeError naming the part that JSON cannot carry (an object, a NaN, a dict with
    tuple keys)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if _array_like(value):
        return to_json(value.tolist(), where)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot carry")
        return value
    if isinstance(value, (list, tuple)):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_json(v, f"{where} item") for v in value]
        try:
            return sorted(items)
        except TypeError:
            raise TypeError(f"{where} is a set of unorderable items") from None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"{where} has a key of type {type(key).__name__}, which JSON cannot carry")
            out[str(key) if not isinstance(key, str) else key] = to_json(item, f"{where}[{key!r}]")
        return out
    raise TypeError(f"{where} is of type {type(value).__name__}, which JSON cannot carry")


def _count(seen: dict[int, int], node: Any, what: str) -> None:
    if len(seen) >= MAX_NODES:
        raise FormError(f"{what} has more than {MAX_NODES} nodes")
    seen[id(node)] = len(seen)


def plain(value: Any, where: str = "answer") -> Any:
    """``value`` as JSON data, node objects in their JSON forms (:func:`to_json` for the rest)."""
    shape = node_shape(value)
    if shape is None:
        return to_json(value, where)
    kind, attr = shape
    seen: dict[int, int] = {}
    if kind == "linked_list":
        values, node = [], value
        while node is not None and id(node) not in seen:
            _count(seen, node, where)
            values.append(to_json(getattr(node, attr), where))
            node = node.next
        return values if node is None else {"values": values, "pos": seen[id(node)]}
    if kind == "binary_tree":
        out: list[Any] = []
        queue: deque[Any] = deque([value])
        while queue:
            node = queue.popleft()
            if node is None:
                out.append(None)
                continue
            if id(node) in seen:
                raise FormError(f"{where} is not a tree: a node is reached twice")
            _count(seen, node, where)
            out.append(to_json(getattr(node, attr), where))
            queue.extend((node.left, node.right))
        while out and out[-1] is None:
            out.pop()
        return out
    if kind == "nary_tree":
        out, queue = [to_json(getattr(value, attr), where), None], deque([value])
        _count(seen, value, where)
        while queue:
            for child in queue.popleft().children or []:
                if id(child) in seen:
                    raise FormError(f"{where} is not a tree: a node is reached twice")
                _count(seen, child, where)
                out.append(to_json(getattr(child, attr), where))
                queue.append(child)
            out.append(None)
        while out and out[-1] is None:
            out.pop()
        return out
    # graph: every node reachable from the given one, by value 1..n
    nodes, queue = {}, deque([value])
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        _count(seen, node, where)
        label = getattr(node, attr)
        if not isinstance(label, int) or isinstance(label, bool) or label in nodes:
            raise FormError(f"{where}: graph node values must be distinct integers 1..n (got {label!r})")
        nodes[label] = node
        queue.extend(node.neighbors or [])
    if sorted(nodes) != list(range(1, len(nodes) + 1)):
        raise FormError(f"{where}: graph node values must be 1..{len(nodes)}")
    return [[getattr(n, attr) for n in nodes[label].neighbors or []] for label in range(1, len(nodes) + 1)]


# --- JSON -> objects ----------------------------------------------------------------------------
def _node(cls: type, attr: str, value: Any, kind: str) -> Any:
    node = cls.__new__(cls)
    for args in ((value,), ()):
        try:
            cls.__init__(node, *args)
            break
        except TypeError:
            continue
    setattr(node, attr, value)
    for link in LINKS[kind]:
        setattr(node, link, [] if link in ("children", "neighbors") else None)
    return node


def _values(data: Any, where: str, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise FormError(f"{where}: {what} is written as a JSON list, got {type(data).__name__}")
    if len(data) > MAX_NODES:
        raise FormError(f"{where} has more than {MAX_NODES} entries")
    return data


def build(data: Any, form: dict[str, str], cls: type, where: str) -> Any:
    """The object that ``data`` (JSON in the form's kind) stands for, made of ``cls`` nodes."""
    kind, attr = form["kind"], form["value_attr"]
    if kind == "linked_list":
        pos = -1
        if isinstance(data, dict):
            if set(data) - {"values", "pos"} or "values" not in data:
                raise FormError(f'{where}: a linked list is a list of values or {{"values": [...], "pos": k}}')
            pos = data.get("pos", -1)
            data = data["values"]
        values = _values(data, where, "a linked list")
        if not isinstance(pos, int) or not -1 <= pos < max(len(values), 1) or (pos >= 0 and not values):
            raise FormError(f"{where}: pos {pos!r} is not -1 or a node index below {len(values)}")
        nodes = [_node(cls, attr, v, kind) for v in values]
        for a, b in zip(nodes, nodes[1:]):
            a.next = b
        if nodes and pos >= 0:
            nodes[-1].next = nodes[pos]
        return nodes[0] if nodes else None
    values = _values(data, where, f"a {kind.replace('_', ' ')}")
    if not values:
        return None
    if kind == "graph":
        nodes = [_node(cls, attr, k + 1, kind) for k in range(len(values))]
        for k, adjacent in enumerate(values):
            if not isinstance(adjacent, list) or not all(isinstance(j, int) and 1 <= j <= len(values) for j in adjacent):
                raise FormError(f"{where}[{k}]: neighbours are node numbers 1..{len(values)}")
            nodes[k].neighbors = [nodes[j - 1] for j in adjacent]
        return nodes[0]
    if values[0] is None:
        raise FormError(f"{where}: the root value is null")
    root = _node(cls, attr, values[0], kind)
    queue, i = deque([root]), 1
    if kind == "binary_tree":
        while queue and i < len(values):
            parent = queue.popleft()
            for side in ("left", "right"):
                if i < len(values) and values[i] is not None:
                    child = _node(cls, attr, values[i], kind)
                    setattr(parent, side, child)
                    queue.append(child)
                i += 1
        return root
    if len(values) > 1 and values[1] is not None:
        raise FormError(f"{where}: an n-ary tree starts [root, null, ...children of the root]")
    i = 2
    while queue and i < len(values):
        parent = queue.popleft()
        while i < len(values) and values[i] is not None:
            child = _node(cls, attr, values[i], kind)
            parent.children.append(child)
            queue.append(child)
            i += 1
        i += 1
    return root
