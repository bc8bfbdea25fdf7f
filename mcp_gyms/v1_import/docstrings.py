"""Docstring ``Args:`` sections -> parameter types: how ``codegym import-v1`` reads an original env's
actions (the original format documents parameters only in docstrings, ``name (type): text``).

Runs at import time only, on the host (never in a sandbox worker): the generated gym file carries the
resulting annotations as plain Python source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ANY", "ArgDoc", "annotation_for", "parse_docstring_args"]


@dataclass(frozen=True)
class ArgDoc:
    """One entry of a docstring's ``Args:`` section: ``name (type_text): description``."""

    name: str
    type_text: str
    description: str
    optional: bool = False


_ARGS_HEADER = re.compile(r"^(\s*)(args|arguments|parameters|params)\s*:\s*$", re.IGNORECASE)
_ENTRY = re.compile(r"^\s*(?:[-*•]\s+)?\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(.*)$")


def parse_docstring_args(doc: str | None) -> list[ArgDoc]:
    """The entries of the first ``Args:`` (or ``Arguments:``/``Parameters:``) section of ``doc``.

    An entry is ``name (type): text`` or ``name: text`` (no type: ``type_text`` is ``""``); lines indented
    deeper than the entry continue its text. ``optional`` is set by a ``, optional`` type modifier. The
    section ends at the first non-blank line indented no deeper than its header.
    """
    lines = (doc or "").expandtabs(4).splitlines()
    entries: list[ArgDoc] = []
    start = None
    header_indent = 0
    for i, line in enumerate(lines):
        match = _ARGS_HEADER.match(line)
        if match:
            start, header_indent = i + 1, len(match.group(1))
            break
    if start is None:
        return entries
    entry_indent: int | None = None
    current: dict[str, Any] | None = None
    for line in lines[start:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= header_indent:
            break
        if entry_indent is None:
            entry_indent = indent
        if indent > entry_indent and current is not None:
            current["description"] += " " + line.strip()
            continue
        parsed = _parse_entry(line)
        if parsed is None:
            if current is not None:
                current["description"] += " " + line.strip()
            continue
        if current is not None:
            entries.append(ArgDoc(**current))
        current = parsed
    if current is not None:
        entries.append(ArgDoc(**current))
    return entries


def _parse_entry(line: str) -> dict[str, Any] | None:
    match = _ENTRY.match(line)
    if not match:
        return None
    name, rest = match.group(1), match.group(2)
    type_text = ""
    if rest.startswith("("):
        depth = 0
        for j, ch in enumerate(rest):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth == 0:
                type_text, rest = rest[1:j].strip(), rest[j + 1:].lstrip()
                break
        else:
            return None
    if not rest.startswith(":"):
        return None
    parts = _split_top(type_text, ",")
    optional = any(p.strip().lower() == "optional" for p in parts[1:])
    return {"name": name, "type_text": parts[0].strip() if parts else "", "description": rest[1:].strip(),
            "optional": optional}


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets."""
    parts, depth, current = [], 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if depth == 0 and text.startswith(sep, i):
            parts.append(current)
            current = ""
            i += len(sep)
            continue
        current += ch
        i += 1
    parts.append(current)
    return parts


#: The name the generated code imports ``typing.Any`` under (annotations refer to it).
ANY = "_Any"
_SCALARS = {
    "int": "int", "integer": "int", "long": "int", "ints": "int", "integers": "int",
    "float": "float", "double": "float", "number": "float", "real": "float",
    "str": "str", "string": "str", "char": "str",
    "bool": "bool", "boolean": "bool",
    "any": ANY, "object": ANY,
}
_SEQUENCES = {"list", "array", "sequence", "iterable", "set", "frozenset", "deque", "collection"}
_MAPPINGS = {"dict", "mapping", "defaultdict", "counter", "ordereddict"}


def annotation_for(type_text: str) -> str:
    """The Python annotation (source text) for a docstring type such as ``int``, ``list[int]``,
    ``List[str]``, ``dict``, ``Optional[int]``, ``int or str``, ``Tuple[int, int]``.

    JSON-shaped on purpose (values reach the env through JSON anyway): tuples without item types, sets
    and sequences become lists, mapping keys become ``str``. Anything not understood is ``_Any``
    (a permissive schema). ``_Any`` is how the generated code imports ``typing.Any``.
    """
    try:
        return _annotation(type_text.strip(), depth=0)
    except (ValueError, IndexError, RecursionError):
        return ANY


def _annotation(text: str, depth: int) -> str:
    if depth > 8 or not text:
        return ANY
    for sep in ("|", " or "):
        members = [m.strip() for m in _split_top(text, sep)]
        if len(members) > 1:
            return _union([_annotation(m, depth + 1) for m in members])
    spelled = re.fullmatch(r"(?:a\s+)?(list|array|sequence|set|tuple)\s+of\s+(.+?)s?", text, re.IGNORECASE)
    if spelled:  # "list of int", "array of strings"
        return f"list[{_annotation(spelled.group(2), depth + 1)}]"
    match = re.fullmatch(r"(?:typing\.|collections\.)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(.*)\])?", text, re.DOTALL)
    if not match:
        return ANY
    base, inner = match.group(1).lower(), match.group(2)
    args = [a.strip() for a in _split_top(inner, ",")] if inner is not None else []
    if base in ("none", "nonetype"):
        return "None"
    if base == "optional" and len(args) == 1:
        return _union([_annotation(args[0], depth + 1), "None"])
    if base == "union" and args:
        return _union([_annotation(a, depth + 1) for a in args])
    if base in _SCALARS:
        return _SCALARS[base]
    if base in _SEQUENCES:
        return f"list[{_annotation(args[0], depth + 1)}]" if len(args) == 1 else f"list[{ANY}]"
    if base == "tuple":
        if len(args) == 2 and args[1] == "...":
            return f"list[{_annotation(args[0], depth + 1)}]"
        if args and "..." not in args:
            return f"tuple[{', '.join(_annotation(a, depth + 1) for a in args)}]"
        return f"list[{ANY}]"
    if base in _MAPPINGS:
        return f"dict[str, {_annotation(args[1], depth + 1)}]" if len(args) == 2 else f"dict[str, {ANY}]"
    return ANY


def _union(members: list[str]) -> str:
    unique: list[str] = []
    for member in members:
        if member == ANY:
            return ANY
        if member not in unique:
            unique.append(member)
    if unique == ["None"]:
        return ANY
    return " | ".join(unique)
