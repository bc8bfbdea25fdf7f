"""Call a problem's reference solution on one input (runs inside a sandbox worker; needs ``objects``).

``main(solution, entry, config, spec, tests)`` executes the solution's source as a module named
``solution``, builds the arguments from ``config`` (JSON; parameters named in ``spec["params"]`` become
node objects of the class the solution or its ``tests`` define, see ``objects``), calls
``entry(**arguments)`` and returns ``{"value": answer}``, where the answer depends on ``spec["answer"]``:

- ``return`` — what the function returns, as JSON data (node objects in their JSON forms, ``None``
  where an object is expected as ``[]``);
- ``stdout`` — what it prints, as a string without the final newline(s);
- ``argument`` — the argument named ``spec["argument"]`` after the call (it was changed in place).

A model-written ``conversion`` (for objects with no standard form) defines ``to_arguments(config)``,
which returns the keyword arguments, and optionally ``answer_to_json(value)`` for the result.

Anything JSON cannot carry raises ``TypeError`` naming it, so the host records why the input was dropped.
"""

import ast
import io
import sys
import types

from objects import build, plain  # inlined: synthesis.execution.program() pastes objects.py here

_MAX_PRINTED = 100_000


class _Capped(io.StringIO):
    """Standard output that refuses to grow past ``_MAX_PRINTED`` characters."""

    def write(self, text: str) -> int:
        if self.tell() + len(text) > _MAX_PRINTED:
            raise OverflowError(f"the solution prints more than {_MAX_PRINTED} characters")
        return super().write(text)


def find_class(name: str, module: types.ModuleType, tests: str) -> type:
    """The class ``name`` from the solution module, or else defined at the top level of the tests."""
    found = module.__dict__.get(name)
    if isinstance(found, type):
        return found
    try:
        tree = ast.parse(tests or "")
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            namespace = dict(module.__dict__)
            exec(compile(ast.Module(body=[node], type_ignores=[]), "<tests>", "exec"), namespace)
            return namespace[name]
    raise LookupError(f"neither the solution nor its tests define a class named {name!r}")


def _answer(value: object, node: bool, where: str) -> object:
    """``value`` as JSON; where a node object is expected, ``None`` (no list, no tree) is ``[]``."""
    return [] if node and value is None else plain(value, where)


def _conversion(code: str) -> dict:
    namespace = {"__name__": "conversion"}
    exec(compile(code, "<conversion>", "exec"), namespace)
    return namespace


def main(solution: str, entry: str, config: dict, spec: dict | None = None, tests: str = "",
         conversion: str = "") -> dict:
    """Run ``entry`` from ``solution`` on ``config``; return ``{"value": <JSON answer>}``. A model-written
    ``conversion`` (``to_arguments(config)``, optionally ``answer_to_json(value)``) replaces the forms."""
    spec = spec or {}
    module = types.ModuleType("solution")
    saved = sys.modules.get("solution")
    sys.modules["solution"] = module
    try:
        exec(compile(solution, "<solution>", "exec"), module.__dict__)
        fn = module.__dict__.get(entry)
        if not callable(fn):
            raise LookupError(f"the solution defines no function named {entry!r}")
        convert = _conversion(conversion) if conversion else {}
        if "to_arguments" in convert:
            try:
                arguments = convert["to_arguments"](dict(config))
            except Exception as exc:
                raise ValueError(f"the conversion's to_arguments failed: {type(exc).__name__}: {exc}") from None
            if not isinstance(arguments, dict):
                raise TypeError(f"to_arguments returned {type(arguments).__name__}, not a dict of keyword arguments")
        else:  # the standard forms (a conversion, when there is one, builds every argument itself)
            arguments = dict(config)
            for name, form in (spec.get("params") or {}).items():
                if name in arguments:
                    cls = find_class(form["class"], module, tests)
                    arguments[name] = build(arguments[name], form, cls, name)
        printed = _Capped()
        stdout, sys.stdout = sys.stdout, printed
        try:
            result = fn(**arguments)
        finally:
            sys.stdout = stdout
        if "answer_to_json" in convert:
            try:
                result = convert["answer_to_json"](result)
            except Exception as exc:
                raise ValueError(f"the conversion's answer_to_json failed: {type(exc).__name__}: {exc}") from None
        mode = spec.get("answer", "return")
        if mode == "stdout":
            return {"value": printed.getvalue().rstrip("\n")}
        if mode == "argument":
            name = spec["argument"]
            node = name in (spec.get("params") or {})
            return {"value": _answer(arguments.get(name), node, f"{name} after the call")}
        return {"value": _answer(result, bool(spec.get("returns")), "answer")}
    finally:
        if saved is None:
            sys.modules.pop("solution", None)
        else:
            sys.modules["solution"] = saved
