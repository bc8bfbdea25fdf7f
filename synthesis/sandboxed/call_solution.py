"""Call a problem's reference solution on one input (runs inside a sandbox worker).

``main(solution, entry, config)`` executes the solution's source as a module named ``solution``, calls
``entry(**config)`` and returns ``{"value": answer}`` with the answer made JSON-safe: tuples become
lists, sets become sorted lists; anything JSON cannot carry (an object, a NaN, a dict with tuple keys)
raises ``TypeError`` naming it, so the host records why the input was dropped.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any


def to_json(value: Any, where: str = "answer") -> Any:
    """``value`` as plain JSON data, or TypeError naming the part that JSON cannot carry."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
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


def main(solution: str, entry: str, config: dict) -> dict:
    """Run ``entry(**config)`` from ``solution``; return ``{"value": <JSON-safe answer>}``."""
    module = types.ModuleType("solution")
    saved = sys.modules.get("solution")
    sys.modules["solution"] = module
    try:
        exec(compile(solution, "<solution>", "exec"), module.__dict__)
        fn = module.__dict__.get(entry)
        if not callable(fn):
            raise LookupError(f"the solution defines no function named {entry!r}")
        return {"value": to_json(fn(**config))}
    finally:
        if saved is None:
            sys.modules.pop("solution", None)
        else:
            sys.modules["solution"] = saved
