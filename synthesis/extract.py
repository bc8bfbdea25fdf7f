"""Reading LLM answers: gym drafts, unit-test inputs and ``solve`` candidates.

Everything here parses text (with :mod:`ast` and :mod:`json`); nothing executes the code. Each
extractor raises :class:`ExtractionError` whose message is the reason the candidate is dropped.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ExtractionError",
    "GymDraft",
    "InputDraft",
    "extract_conversion",
    "extract_gym",
    "extract_inputs",
    "extract_solve",
    "lint_solve",
    "remove_solve",
    "replace_solve",
]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_REQUIRED = {"setup": None, "observe": None, "reference_answer": "classmethod", "solve": "staticmethod"}
#: Modules a ``solve`` may import (parsing observations, bookkeeping).
SOLVE_IMPORTS = frozenset({"json", "math", "collections", "heapq", "itertools", "functools", "bisect", "re",
                           "string", "typing", "operator", "fractions", "decimal"})
#: Names a ``solve`` may not touch: they lead to the gym's state around the tool API.
_FORBIDDEN_NAMES = frozenset({"globals", "locals", "vars", "eval", "exec", "compile", "open", "__import__",
                              "getattr", "setattr", "delattr", "breakpoint", "gc", "inspect", "sys", "os",
                              "builtins", "importlib", "types", "traceback", "ctypes", "self", "cls"})


class ExtractionError(ValueError):
    """An answer that does not hold what was asked for; the message says what is wrong."""


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    return [(lang.lower(), body) for lang, body in _FENCE.findall(text)]


def _syntax(code: str, what: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise ExtractionError(f"{what} does not parse: line {exc.lineno}: {exc.msg}") from None


def _is_gym_class(node: ast.stmt) -> bool:
    return isinstance(node, ast.ClassDef) and any(
        (isinstance(b, ast.Name) and b.id == "Gym") or (isinstance(b, ast.Attribute) and b.attr == "Gym")
        for b in node.bases)


def _decorators(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for d in fn.decorator_list:
        if isinstance(d, ast.Name):
            names.add(d.id)
        elif isinstance(d, ast.Attribute):
            names.add(d.attr)
    return names


class GymDraft(BaseModel):
    """A gym as the LLM wrote it (after extraction; not yet loaded)."""

    model_config = ConfigDict(extra="forbid")

    title: str
    task_text: str
    code: str
    class_name: str
    conversion: str | None = None


def _gym_class(tree: ast.Module) -> ast.ClassDef:
    classes = [node for node in tree.body if _is_gym_class(node)]
    if not classes:
        raise ExtractionError("the code defines no class deriving from Gym")
    if len(classes) > 1:
        raise ExtractionError(f"the code defines {len(classes)} gym classes ({', '.join(c.name for c in classes)}); "
                              "expected one")
    return classes[0]  # type: ignore[return-value]


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _title_from(class_name: str) -> str:
    words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", class_name.removesuffix("Gym")) or [class_name]
    return " ".join(words).capitalize()


def extract_gym(text: str) -> GymDraft:
    """The title, task text and gym code of a stage-1 answer, checked for the contract's shape.

    Checks (by parsing only): one ``<task>`` text, one Python block that parses and defines exactly
    one ``Gym`` subclass with ``setup``, ``observe``, ``reference_answer`` (classmethod) and ``solve``
    (staticmethod, passing :func:`lint_solve`), and at least one ``@tool``. A module that forgot to
    import ``Gym``/``tool`` gets the import added."""
    task = re.search(r"<task>(.*?)</task>", text, re.DOTALL | re.IGNORECASE)
    if task is None or not task.group(1).strip():
        raise ExtractionError("the answer has no <task>...</task> text")
    blocks = [body for lang, body in code_blocks(text) if lang in ("python", "py", "python3", "")]
    candidates = [b for b in blocks if re.search(r"class\s+\w+\s*\(.*Gym.*\)\s*:", b)]
    if not candidates:
        raise ExtractionError("the answer has no ```python block defining a Gym subclass")
    code = max(candidates, key=len).strip() + "\n"
    tree = _syntax(code, "the gym code")
    cls = _gym_class(tree)
    methods = _methods(cls)
    for name, decorator in _REQUIRED.items():
        if name not in methods:
            raise ExtractionError(f"{cls.name} does not define {name}()")
        if decorator and decorator not in _decorators(methods[name]):
            raise ExtractionError(f"{cls.name}.{name} must be a @{decorator}")
    if not any("tool" in _decorators(m) for m in methods.values()):
        raise ExtractionError(f"{cls.name} has no @tool methods")
    lint_solve(methods["solve"], f"{cls.name}.solve")
    missing = {"Gym", "tool"} - _imported_names(tree)
    if missing:
        code = f"from mcp_gyms import {', '.join(sorted(missing))}\n" + code
    title = re.search(r"<title>(.*?)</title>", text, re.DOTALL | re.IGNORECASE)
    title_text = " ".join(title.group(1).split()) if title and title.group(1).strip() else _title_from(cls.name)
    return GymDraft(title=title_text[:120], task_text=task.group(1).strip(), code=code, class_name=cls.name)


def extract_conversion(text: str, entry: str) -> str:
    """The model-written conversion of a stage-1 answer: the ```python block (without a gym class) that
    defines ``to_arguments(config)`` (and optionally ``answer_to_json(value)``), for entry functions
    taking objects that have no standard JSON form. It runs in the sandbox, never here."""
    for lang, body in code_blocks(text):
        if lang not in ("python", "py", "python3", "") or re.search(r"class\s+\w+\s*\(.*Gym.*\)\s*:", body):
            continue
        tree = _syntax(body, "the conversion code")
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        if "to_arguments" in functions:
            if len(functions["to_arguments"].args.args) != 1:
                raise ExtractionError("to_arguments must take exactly one parameter (the task configuration)")
            return body.strip() + "\n"
    raise ExtractionError(f"the answer has no ```python block defining to_arguments(config), which {entry} "
                          "needs to receive its objects")


# --- solve candidates ---------------------------------------------------------------------------
def lint_solve(fn: ast.FunctionDef | ast.AsyncFunctionDef, what: str = "solve") -> None:
    """Refuse a ``solve`` that could reach the gym's state around the tool API.

    A heuristic, not a sandbox: no dunder attributes (``call.__closure__``), no introspection names
    (``gc``, ``inspect``, ``sys``, ``getattr``, ``globals``, ...), imports only from
    :data:`SOLVE_IMPORTS`, and exactly one parameter (``call``)."""
    if isinstance(fn, ast.AsyncFunctionDef):
        raise ExtractionError(f"{what} must be a plain function, not async")
    params = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]
    if len(params) != 1 or fn.args.vararg or fn.args.kwarg:
        raise ExtractionError(f"{what} must take exactly one parameter (call), not ({', '.join(params)})")
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            raise ExtractionError(f"{what} uses the attribute {node.attr} (solve may only use call)")
        if isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            raise ExtractionError(f"{what} uses {node.id} (solve may only use call)")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] not in SOLVE_IMPORTS:
                    raise ExtractionError(f"{what} imports {module} (allowed: {', '.join(sorted(SOLVE_IMPORTS))})")
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            raise ExtractionError(f"{what} declares global or nonlocal names")


def extract_solve(text: str) -> str:
    """The source of the ``def solve(call)`` function in an answer, linted; decorators are dropped and
    the answer's module-level imports are moved into the function (they are checked by the lint too)."""
    for lang, body in reversed(code_blocks(text) or [("", text)]):
        if lang not in ("python", "py", "python3", ""):
            continue
        try:
            tree = ast.parse(body)
        except SyntaxError:
            continue
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "solve":
                node.body = [*imports, *node.body]  # the answer's own imports travel with the function
                lint_solve(node)
                node.decorator_list = []
                return ast.unparse(node) + "\n"
    raise ExtractionError("the answer has no parseable `def solve(call):` function")


def _class_span(code: str, class_name: str) -> tuple[ast.ClassDef, list[str]]:
    tree = _syntax(code, "the gym code")
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return node, code.splitlines(keepends=True)
    raise ExtractionError(f"the code defines no class {class_name}")


def _method_block(solve_source: str, indent: str) -> list[str]:
    block = [f"{indent}@staticmethod\n"]
    for line in solve_source.rstrip("\n").splitlines():
        block.append((indent + line if line.strip() else "") + "\n")
    return block


def replace_solve(code: str, class_name: str, solve_source: str) -> str:
    """``code`` with ``class_name.solve`` replaced by ``solve_source`` (a plain ``def solve(call)``),
    made a ``@staticmethod``. Appended to the class body when the class has no ``solve``."""
    cls, lines = _class_span(code, class_name)
    block = _method_block(solve_source, " " * cls.body[0].col_offset)
    method = _methods(cls).get("solve")
    if method is None:
        assert cls.end_lineno is not None
        out = lines[:cls.end_lineno] + ["\n"] + block + lines[cls.end_lineno:]
    else:
        start = min([method.lineno] + [d.lineno for d in method.decorator_list]) - 1
        assert method.end_lineno is not None
        out = lines[:start] + block + lines[method.end_lineno:]
    result = "".join(out)
    _syntax(result, "the gym code with the new solve")
    return result


def remove_solve(code: str, class_name: str) -> str:
    """``code`` without ``class_name.solve`` (what the solve prompt shows, so candidates are fresh)."""
    cls, lines = _class_span(code, class_name)
    method = _methods(cls).get("solve")
    if method is None:
        return code
    start = min([method.lineno] + [d.lineno for d in method.decorator_list]) - 1
    assert method.end_lineno is not None
    return "".join(lines[:start] + lines[method.end_lineno:]).rstrip() + "\n"


# --- unit-test inputs ---------------------------------------------------------------------------
class InputDraft(BaseModel):
    """One generated unit-test input."""

    model_config = ConfigDict(extra="forbid")

    difficulty: Literal["easy", "medium", "hard"]
    input: dict[str, Any]


def extract_inputs(text: str) -> tuple[list[InputDraft], list[str]]:
    """The inputs of a stage-2 answer, and a reason for every item that was not a valid input.

    Raises :class:`ExtractionError` when the answer holds no JSON list at all."""
    data: Any = None
    for lang, body in code_blocks(text):
        if lang in ("json", ""):
            try:
                data = json.loads(body)
                break
            except json.JSONDecodeError:
                continue
    if data is None:
        start, end = text.find("["), text.rfind("]")
        if start >= 0 and end > start:
            try:
                data = json.loads(text[start:end + 1])
            except json.JSONDecodeError as exc:
                raise ExtractionError(f"the answer's JSON does not parse: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        data = data["inputs"]
    if not isinstance(data, list):
        raise ExtractionError("the answer has no JSON list of inputs")
    inputs, problems = [], []
    for number, item in enumerate(data):
        try:
            inputs.append(InputDraft.model_validate(item))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            problems.append(f"item {number}: {'.'.join(map(str, err['loc'])) or 'item'}: {err['msg']}")
    return inputs, problems
