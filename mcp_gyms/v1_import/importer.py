"""The importer behind `codegym import-v1`: environments in the original CodeGym release format -> a verified bank.

::

    codegym import-v1 ENV_DIR [--instances FILE.jsonl] [--tasks FILE.jsonl] --out BANK

``ENV_DIR`` holds one file per environment named ``{code_id}__{ClassName}.py`` (the format is described
in :mod:`mcp_gyms.v1`); a single such file may be given instead of a folder. For each file:

1. **Static checks** (``ast`` only; the file never runs in this process): the name, the syntax, the class,
   its ``from_env_str``/``step``/``get_ref_answer``/``solve`` methods, a ``self.func_mapping`` dict
   literal that includes ``Observe`` and ``Done``, and a method with a docstring for every action.
2. **Adapter.** The gym file is the original source verbatim plus a generated ``Imported_<ClassName>``
   subclass of :class:`mcp_gyms.v1.V1Gym`: one typed ``@tool`` per action, parameters from the method
   signature, types and descriptions from the docstring's ``Args:`` (:func:`mcp_gyms.v1_import.docstrings.annotation_for`);
   the types shape the schema the agent sees, while validation accepts any JSON value, as the original
   did (``Lenient[...]``, :class:`mcp_gyms.v1.Lenient`).
3. **Tasks**, per environment: the rows of ``--instances`` (``ability`` =
   ``codegym_v1@{code_id}__{ClassName}@{json task}``; the task text is the prompt's user message;
   ``extra_info.solve_fc_round`` is the expected oracle step count) together with the rows of ``--tasks``
   (``{"env": "{code_id}__{ClassName}" or "ClassName", "task": {...}, "difficulty"?: ...}``); when neither
   has a row for the environment, the ``from_env_str("ClassName@{...}")`` examples of the file's
   ``__main__`` block, read statically (literals, f-strings over literal variables, ``json.dumps``).
   Identical tasks are kept once. Tasks without a difficulty are filed as ``medium``.
4. **Verification** in the sandbox with :func:`mcp_gyms.verify.verify_gym` (load, tools, reference
   answers, oracle reward 1 on every task, 10-256 oracle calls): exactly what ``codegym verify`` checks.

Only verified gyms are written to the bank (``kind="codegym-v1"``, provenance ``codegym-v1`` with the
code id as ``problem_id``), with the tasks that passed, their oracle step counts and reference answers.
A gym rejected now that an earlier import put in the same bank is dropped from its index. Every file
gets a line in ``BANK/import_report.md`` and ``BANK/import_report.json``: imported, rejected (with the
stage and each problem, by a stable code such as ``syntax_error`` or ``oracle_failed``) or skipped.

Exit status: 0 when at least one environment was imported and no file hit an internal error; 1 when
none was imported or the importer itself failed on a file (the report says which); 2 for unusable
input (no ENV_DIR, no ``.py`` files, an unreadable ``--instances``/``--tasks`` file).
"""

from __future__ import annotations

import argparse
import ast
import json
import keyword
import os
import re
import string
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_gyms.bank import (
    Bank,
    BankError,
    GymRecord,
    Provenance,
    TaskRecord,
    ToolRecord,
    slug,
)
from mcp_gyms.gym import DONE, OBSERVE
from mcp_gyms.protocol import Difficulty
from mcp_gyms.sandbox import GymCode, SandboxPool
from mcp_gyms.v1 import PRELOAD
from mcp_gyms.verify import REFERENCE_LIMITS, GymSource, GymVerdict, verify_gym

from .docstrings import ANY, ArgDoc, annotation_for, parse_docstring_args

_Row = TypeVar("_Row", bound=BaseModel)

__all__ = ["add_arguments", "run", "import_v1", "analyse_env", "render_gym_file", "ImportReport", "FileReport"]

ABILITY_PREFIX = "codegym_v1"
DEFAULT_MAX_STEPS = 256
REPORT_MD, REPORT_JSON = "import_report.md", "import_report.json"
_REQUIRED_METHODS = ("from_env_str", "step", "get_ref_answer", "solve")
#: names a tool method may not take: they are attributes of the adapter (mcp_gyms.v1.V1Gym / Gym).
_RESERVED = {"setup", "observe", "reference_answer", "check_answer", "solve", "rng", "env", "env_class",
             "env_name", "actions", "answer_type", "answer_doc", "max_steps", "done_parameter", "spec"}
_MAX_EXAMPLE_CHARS = 1_000_000
_MAX_LOOP = 200
_MAX_EXAMPLES = 1_000  # __main__ examples read from one file, at most


class ImportUsageError(ValueError):
    """Input the importer cannot work with at all (exit status 2); the message says what and where."""


# --- report (the JSON written next to the bank) -------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Model):
    """Why a file was not imported. ``code`` is stable (for programs); ``message`` is for people."""

    code: str
    message: str


Stage = Literal["name", "static", "tasks", "sandbox", "done"]


class FileReport(_Model):
    """The outcome for one file of ENV_DIR."""

    file: str
    status: Literal["imported", "rejected", "skipped"]
    stage: Stage = Field(description="the last stage reached: name, static, tasks, sandbox, done")
    gym_id: str | None = None
    code_id: str | None = None
    class_name: str | None = None
    problems: list[Problem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    task_sources: dict[str, int] = Field(default_factory=dict, description="instances / tasks / main -> count")
    tasks_total: int = 0
    tasks_kept: int = 0
    dropped_tasks: dict[str, str] = Field(default_factory=dict)
    checks: dict[str, str] = Field(default_factory=dict, description="mcp_gyms.verify checks, when run")


class ImportReport(_Model):
    """The whole import: inputs, totals, input-row problems and one :class:`FileReport` per file."""

    env_dir: str
    instances: str | None = None
    tasks_file: str | None = None
    bank: str
    finished_at: str
    seconds: float
    imported: int
    rejected: int
    skipped: int
    internal_errors: int
    tasks_imported: int
    row_problems: list[str] = Field(default_factory=list, description="unusable --instances/--tasks rows")
    unmatched_rows: dict[str, int] = Field(default_factory=dict, description="env -> rows naming no file")
    files: list[FileReport]

    def exit_code(self) -> int:
        """0: at least one imported and no internal error; 1 otherwise."""
        return 0 if self.imported and not self.internal_errors else 1


# --- input rows -----------------------------------------------------------------------------------
class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Any = None


class InstanceRow(BaseModel):
    """One training instance of the original release (only the fields the import uses)."""

    model_config = ConfigDict(extra="allow")
    ability: str
    prompt: Any = Field(None, description="chat messages (a list, or its JSON text); read leniently")
    extra_info: dict[str, Any] | None = None
    plugin_call_max_round: int | None = None


class TaskRow(_Model):
    """One row of ``--tasks``."""

    env: str = Field(min_length=1, description="'{code_id}__{ClassName}' or 'ClassName'")
    task: dict[str, Any]
    difficulty: Difficulty | None = None


@dataclass
class PlannedTask:
    """A task configuration on its way into the bank."""

    config: dict[str, Any]
    source: Literal["instances", "tasks", "main"]
    origin: str
    difficulty: Difficulty = "medium"
    text: str | None = None
    expected_steps: int | None = None
    max_round: int | None = None


@dataclass
class RowIndex:
    """Rows of --instances / --tasks grouped by the env they name, plus the rows that were unusable."""

    by_env: dict[str, list[PlannedTask]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, env: str, task: PlannedTask) -> None:
        self.by_env.setdefault(env, []).append(task)


def _jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ImportUsageError(f"{path}: cannot read: {exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, exc


def _parse_task(text: str) -> dict[str, Any]:
    """A task configuration written as JSON (or, failing that, a Python literal); must be an object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise ValueError(f"the task is neither JSON nor a Python literal ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ValueError(f"the task must be a JSON object, not {type(value).__name__}")
    return json.loads(json.dumps(value))


def _user_message(prompt: Any) -> str | None:
    """The first non-empty user message of a chat prompt (a list of messages or its JSON text)."""
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError:
            return None
    if not isinstance(prompt, list):
        return None
    for raw in prompt:
        try:
            message = _Message.model_validate(raw)
        except ValidationError:
            continue
        if message.role == "user" and isinstance(message.content, str) and message.content.strip():
            return message.content.strip()
    return None


def _valid_rows(path: Path, model: type[_Row], rows: RowIndex, what: str,
                hint: str = "") -> Iterator[tuple[str, _Row]]:
    """``(where, row)`` for each line of a JSONL file that is valid JSON and a valid ``model``; the others go
    to ``rows.problems`` (``what``: the kind of row, for the message; ``hint``: what was expected)."""
    for number, raw in _jsonl(path):
        where = f"{path.name}:{number}"
        if isinstance(raw, Exception):
            rows.problems.append(f"{where}: not valid JSON ({raw})")
            continue
        try:
            yield where, model.model_validate(raw)
        except ValidationError as exc:
            rows.problems.append(f"{where}: not {what} ({_pydantic_problem(exc)}){hint}")


def read_instances(path: Path, rows: RowIndex) -> None:
    """Add the rows of an instances JSONL file to ``rows`` (unusable rows go to ``rows.problems``)."""
    for where, row in _valid_rows(path, InstanceRow, rows, "an instance row"):
        parts = row.ability.split("@", 2)
        if len(parts) != 3 or parts[0] != ABILITY_PREFIX or "__" not in parts[1]:
            rows.problems.append(f"{where}: ability {row.ability[:80]!r} is not "
                                 f"'{ABILITY_PREFIX}@{{code_id}}__{{ClassName}}@{{json task}}'")
            continue
        try:
            config = _parse_task(parts[2])
        except ValueError as exc:
            rows.problems.append(f"{where}: {exc}")
            continue
        extra = row.extra_info or {}
        steps = extra.get("solve_fc_round")
        max_round = row.plugin_call_max_round if row.plugin_call_max_round is not None else extra.get(
            "plugin_call_max_round")
        difficulty = extra.get("difficulty") if extra.get("difficulty") in ("easy", "medium", "hard") else "medium"
        rows.add(parts[1], PlannedTask(
            config=config, source="instances", origin=where, difficulty=difficulty,
            text=_user_message(row.prompt),
            expected_steps=steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
            max_round=max_round if isinstance(max_round, int) and max_round >= 1 else None,
        ))


def read_task_rows(path: Path, rows: RowIndex) -> None:
    """Add the rows of a ``--tasks`` JSONL file to ``rows`` (unusable rows go to ``rows.problems``)."""
    for where, row in _valid_rows(path, TaskRow, rows, "a task row",
                                  '; expected {"env": "{code_id}__{ClassName}", "task": {...}}'):
        rows.add(row.env, PlannedTask(config=json.loads(json.dumps(row.task)), source="tasks", origin=where,
                                      difficulty=row.difficulty or "medium"))


def _pydantic_problem(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()[:3])


# --- static analysis --------------------------------------------------------------------------------
@dataclass
class Param:
    """One tool parameter: name, annotation source, default (Python source of a literal) and text."""

    name: str
    annotation: str
    default: str | None = None
    description: str = ""


@dataclass
class Action:
    """One action of the env (not Observe/Done), as a tool of the adapter."""

    name: str
    docstring: str
    params: list[Param]


@dataclass
class EnvAnalysis:
    """What the static checks learnt about one env file."""

    file_name: str
    code_id: str
    class_name: str
    source: str
    all_actions: list[str]
    actions: list[Action]
    answer_annotation: str
    answer_doc: str
    done_parameter: str
    class_doc: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gym_id(self) -> str:
        stem = f"{self.code_id}__{self.class_name}"
        return stem if stem == slug(stem) else slug(stem)

    @property
    def adapter_name(self) -> str:
        return f"Imported_{self.class_name}"


def split_file_name(name: str) -> tuple[str, str] | None:
    """``("code_id", "ClassName")`` for ``{code_id}__{ClassName}.py``, else ``None``."""
    if not name.endswith(".py"):
        return None
    code_id, sep, class_name = name[:-3].rpartition("__")
    if not sep or not code_id or not class_name.isidentifier() or keyword.iskeyword(class_name):
        return None
    return code_id, class_name


def analyse_env(path: Path, warnings: list[str]) -> tuple[EnvAnalysis | None, list[Problem]]:
    """Check one env file statically. Returns the analysis (``None`` when a problem was found) and the
    problems; appends non-fatal observations to ``warnings``."""
    names = split_file_name(path.name)
    if names is None:
        return None, [Problem(code="bad_file_name",
                              message=f"{path.name} is not named {{code_id}}__{{ClassName}}.py")]
    code_id, class_name = names
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(code="unreadable", message=f"cannot read {path.name}: {exc}")]
    try:
        tree = ast.parse(source, filename=path.name)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        return None, [Problem(code="syntax_error", message=f"syntax error at {where}: {exc.msg}")]
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    cls = classes.get(class_name)
    if cls is None:
        found = ", ".join(sorted(classes)) or "none"
        return None, [Problem(code="missing_class",
                              message=f"no top-level class {class_name} (classes found: {found})")]

    problems: list[Problem] = []
    methods = _methods(cls, classes)
    missing = [m for m in _REQUIRED_METHODS if m not in methods]
    if missing:
        problems.append(Problem(code="missing_method", message=f"{class_name} lacks {', '.join(missing)}()"))

    mapping, mapping_problem = _func_mapping(cls, classes)
    if mapping_problem:
        problems.append(Problem(code="no_func_mapping", message=mapping_problem))
        return None, problems
    basic_missing = [a for a in (OBSERVE, DONE) if a not in mapping]
    if basic_missing:
        problems.append(Problem(code="missing_observe_done",
                                message=f"func_mapping has no {' or '.join(basic_missing)} "
                                        f"(actions: {', '.join(mapping) or 'none'})"))

    bad_names = [a for a in mapping if not a.isidentifier() or keyword.iskeyword(a) or a in _RESERVED]
    if bad_names:
        problems.append(Problem(code="bad_action_name",
                                message=f"action names that cannot be tools: {', '.join(map(repr, bad_names))}"))
    no_method = [a for a in mapping if a not in methods and a not in bad_names]
    if no_method:
        problems.append(Problem(code="action_without_method",
                                message=f"actions without a method of the same name: {', '.join(no_method)}"))
    undocumented = [a for a in mapping if a in methods and not (ast.get_docstring(methods[a]) or "").strip()]
    if undocumented:
        problems.append(Problem(code="undocumented_action",
                                message=f"actions without a docstring: {', '.join(undocumented)}"))
    if problems:
        return None, problems

    observe_params = _required_names(methods[OBSERVE])
    if observe_params:
        return None, [Problem(code="bad_observe", message=(
            f"Observe requires parameters ({', '.join(observe_params)}); the basic action Observe takes none"))]
    actions = [_action(name, methods[name], warnings) for name in mapping if name not in (OBSERVE, DONE)]
    done = methods[DONE]
    done_params = _positional_names(done)
    if not done_params:
        return None, [Problem(code="bad_done", message="Done takes no answer parameter")]
    done_parameter = done_params[0]
    if done_parameter != "answer":
        warnings.append(f"Done's parameter is {done_parameter!r}; agents submit it as 'answer'")
    answer_entry = {a.name: a for a in parse_docstring_args(ast.get_docstring(done))}.get(done_parameter)
    answer_annotation = _annotation_of(done, done_parameter, answer_entry.type_text if answer_entry else "")
    analysis = EnvAnalysis(
        file_name=path.name, code_id=code_id, class_name=class_name, source=source,
        all_actions=list(mapping), actions=actions, answer_annotation=answer_annotation,
        answer_doc=_answer_doc(answer_entry), done_parameter=done_parameter,
        class_doc=(ast.get_docstring(cls) or "").strip(),
    )
    analysis.examples = main_examples(tree, class_name, warnings)
    return analysis, []


def _answer_doc(entry: ArgDoc | None) -> str:
    """One line for the runtime's Done description, from the env's ``Done`` docstring entry."""
    if entry is None or not (entry.description or entry.type_text):
        return ""
    kind = f" ({entry.type_text})" if entry.type_text else ""
    return f"The answer{kind}: {entry.description}".rstrip(": ")


def _methods(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], depth: int = 0) -> dict[str, ast.FunctionDef]:
    """The class's methods, including those inherited from classes of the same file."""
    found: dict[str, ast.FunctionDef] = {}
    if depth < 10:
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in classes and base.id != cls.name:
                found.update(_methods(classes[base.id], classes, depth + 1))
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node  # type: ignore[assignment]
    return found


def _is_self_mapping(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "func_mapping" and isinstance(node.value, ast.Name)
            and node.value.id == "self")


def _func_mapping(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> tuple[list[str], str | None]:
    """The action names of ``self.func_mapping`` (dict literal, ``dict(...)``, item assignments and
    ``update({...})`` calls, in source order), or a problem saying why they cannot be read."""
    keys: list[str] = []
    assigned = False
    scopes = [cls] + [classes[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in classes]

    def add(key_nodes: list[ast.expr | None]) -> str | None:
        for key in key_nodes:
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return "func_mapping has a key that is not a string literal"
            if key.value not in keys:
                keys.append(key.value)
        return None

    def from_value(value: ast.expr) -> str | None:
        if isinstance(value, ast.Dict):
            return add(list(value.keys))
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict" \
                and not value.args:
            return add([ast.Constant(k.arg) if k.arg else None for k in value.keywords])
        return "func_mapping is not built from a dict literal, so its actions cannot be read without running it"

    for scope in scopes:
        for node in ast.walk(scope):
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            for target in targets:
                if _is_self_mapping(target) and value is not None:
                    assigned = True
                    if problem := from_value(value):
                        return [], problem
                elif isinstance(target, ast.Subscript) and _is_self_mapping(target.value):
                    if problem := add([target.slice]):  # type: ignore[list-item]
                        return [], problem
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                    and _is_self_mapping(node.func.value)):
                if node.args and (problem := from_value(node.args[0])):
                    return [], problem
                if problem := add([ast.Constant(k.arg) if k.arg else None for k in node.keywords]):
                    return [], problem
    if not assigned:
        return [], "no self.func_mapping = {...} assignment in the class"
    return keys, None


def _positional_names(fn: ast.FunctionDef) -> list[str]:
    args = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    return (args if is_static else args[1:]) + [a.arg for a in fn.args.kwonlyargs]


def _required_names(fn: ast.FunctionDef) -> list[str]:
    """Parameters (after ``self``) that have no default."""
    names = _positional_names(fn)
    positional = len(names) - len(fn.args.kwonlyargs)
    with_default = set(names[positional - len(fn.args.defaults):positional]) if fn.args.defaults else set()
    with_default |= {a.arg for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None}
    return [n for n in names if n not in with_default]


def _annotation_of(fn: ast.FunctionDef, name: str, doc_type: str) -> str:
    """The docstring's type when it has one, else the signature's annotation, else ``_Any``."""
    if doc_type:
        return annotation_for(doc_type)
    for arg in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
        if arg.arg == name and arg.annotation is not None:
            return annotation_for(ast.unparse(arg.annotation))
    return ANY


def _action(name: str, fn: ast.FunctionDef, warnings: list[str]) -> Action:
    doc = ast.get_docstring(fn) or ""
    entries = {a.name: a for a in parse_docstring_args(doc)}
    params: list[Param] = []
    positional = [*fn.args.posonlyargs, *fn.args.args]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    positional = positional if is_static else positional[1:]
    defaults: dict[str, ast.expr] = dict(zip([a.arg for a in positional][::-1], fn.args.defaults[::-1]))
    defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
    for arg in [*positional, *fn.args.kwonlyargs]:
        entry = entries.get(arg.arg)
        if entry is None:
            warnings.append(f"{name}: parameter '{arg.arg}' is not in the docstring's Args")
        annotation = _annotation_of(fn, arg.arg, entry.type_text if entry else "")
        default = None
        if arg.arg in defaults:
            try:
                value = ast.literal_eval(defaults[arg.arg])
                default = repr(value)
                if value is None and annotation != ANY and "None" not in annotation.split(" | "):
                    annotation = f"{annotation} | None"
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                warnings.append(f"{name}: the default of '{arg.arg}' is not a literal; the parameter is required")
        params.append(Param(arg.arg, annotation, default, entry.description if entry else ""))
    taken = {p.name for p in params}
    for extra in (e for e in entries.values() if e.name not in taken):
        if fn.args.kwarg is not None or fn.args.vararg is not None:
            params.append(Param(extra.name, annotation_for(extra.type_text), None, extra.description))
        else:
            warnings.append(f"{name}: the docstring documents '{extra.name}', which the method does not take")
    return Action(name=name, docstring=doc, params=params)


# --- __main__ examples, read without running anything ----------------------------------------------
class _NotStatic(Exception):
    pass


def main_examples(tree: ast.Module, class_name: str, warnings: list[str]) -> list[dict[str, Any]]:
    """Task configurations of the ``from_env_str("ClassName@{...}")`` calls in the ``__main__`` block,
    evaluated statically: string literals, f-strings, ``+``, ``json.dumps``/``str``/``repr``/``.format``
    over literals and variables assigned literals earlier in the block (``for`` loops over literal
    lists are unrolled). Calls that need anything else are counted in a warning, never run."""
    blocks = [node.body for node in tree.body if isinstance(node, ast.If) and _is_main_test(node.test)]
    found: list[dict[str, Any]] = []
    skipped: list[str] = []
    for block in blocks:
        _walk_block(block, {}, class_name, found, skipped, depth=0)
    if skipped:
        warnings.append(f"{len(skipped)} __main__ example(s) could not be read statically ({'; '.join(skipped[:3])})")
    if len(found) >= _MAX_EXAMPLES:
        warnings.append(f"only the first {_MAX_EXAMPLES} __main__ examples were read")
    return found


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _walk_block(stmts: list[ast.stmt], env: dict[str, Any], class_name: str, found: list[dict[str, Any]],
                skipped: list[str], depth: int) -> None:
    for stmt in stmts:
        if len(found) >= _MAX_EXAMPLES:
            return
        if isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name) and depth < 3:
            try:
                items = list(_eval(stmt.iter, env))[:_MAX_LOOP]
            except (_NotStatic, TypeError):
                items = None
            if items is not None:
                for item in items:
                    _walk_block(stmt.body, {**env, stmt.target.id: item}, class_name, found, skipped, depth + 1)
                continue
        for node in ast.walk(stmt):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "from_env_str" and len(node.args) == 1):
                if len(found) >= _MAX_EXAMPLES:
                    return
                try:
                    text = _eval(node.args[0], env)
                    found.append(_example_config(text, class_name))
                except (_NotStatic, ValueError) as exc:
                    skipped.append(f"line {node.lineno}: {exc}" if str(exc) else f"line {node.lineno}")
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    try:
                        env[target.id] = _eval(stmt.value, env)
                    except (_NotStatic, TypeError, ValueError):
                        env.pop(target.id, None)


def _example_config(text: Any, class_name: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ValueError("the argument is not a string")
    prefix, at, payload = text.partition("@")
    if not at or prefix != class_name:
        raise ValueError(f"the string does not start with '{class_name}@'")
    return _parse_task(payload)


_DUMPS_KEYWORDS = {"indent", "ensure_ascii", "separators", "sort_keys"}


def _eval(node: ast.expr, env: dict[str, Any]) -> Any:
    """One expression's value; every intermediate value is bounded, so a crafted file cannot make the
    host allocate much (each step at most doubles a bounded value, and huge format widths are refused)."""
    value = _eval_node(node, env)
    if _size(value, _MAX_EXAMPLE_CHARS) > _MAX_EXAMPLE_CHARS:
        raise _NotStatic("the value is too large")
    return value


def _size(value: Any, limit: int) -> int:
    """About how many characters ``value`` prints as (strings by length, containers item by item);
    stops counting once past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        total = len(value)
        for item in value:
            total += _size(item, limit)
            if total > limit:
                break
        return total
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return value.bit_length() // 3
    return 1


def _check_spec(spec: str) -> str:
    """A format spec without a huge width or precision (``{x:>999999999}`` would allocate a GB)."""
    if re.search(r"\d{5,}", spec) or "{" in spec:
        raise _NotStatic(f"format spec {spec[:20]!r} is not read statically")
    return spec


def _eval_node(node: ast.expr, env: dict[str, Any]) -> Any:  # noqa: C901 - one case per node type
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _NotStatic(f"'{node.id}' is not a literal")
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
                continue
            assert isinstance(part, ast.FormattedValue)
            value = _eval(part.value, env)
            if part.conversion == ord("r"):
                value = repr(value)
            elif part.conversion == ord("s"):
                value = str(value)
            elif part.conversion == ord("a"):
                value = ascii(value)
            spec = _eval(part.format_spec, env) if part.format_spec is not None else ""
            parts.append(format(value, _check_spec(str(spec))))
        return "".join(parts)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_eval(e, env) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotStatic("dict unpacking")
        return {_eval(k, env): _eval(v, env) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, env)
        if not isinstance(value, (int, float)):
            raise _NotStatic("unary sign on a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if type(left) is not type(right) or not isinstance(left, (str, list, tuple, int, float)):
            raise _NotStatic("'+' on values of different kinds")
        return left + right
    if isinstance(node, ast.Call):
        return _eval_call(node, env)
    raise _NotStatic(f"{type(node).__name__} expressions are not read statically")


def _eval_call(node: ast.Call, env: dict[str, Any]) -> Any:
    func = node.func
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        raise _NotStatic("argument unpacking")
    args = [_eval(a, env) for a in node.args]
    kwargs = {k.arg: _eval(k.value, env) for k in node.keywords if k.arg}
    if isinstance(func, ast.Attribute) and func.attr == "dumps" and isinstance(func.value, ast.Name) \
            and func.value.id == "json" and len(args) == 1 and set(kwargs) <= _DUMPS_KEYWORDS:
        indent = kwargs.get("indent")
        if not (indent is None or (isinstance(indent, int) and 0 <= indent <= 16)):
            raise _NotStatic("json.dumps with an unusual indent")
        return json.dumps(args[0], **kwargs)
    if isinstance(func, ast.Name) and func.id in ("str", "repr") and len(args) == 1 and not kwargs:
        return str(args[0]) if func.id == "str" else repr(args[0])
    if isinstance(func, ast.Attribute) and func.attr == "format":
        template = _eval(func.value, env)
        if isinstance(template, str):
            try:
                fields = list(string.Formatter().parse(template))
            except ValueError as exc:
                raise _NotStatic(f"str.format failed: {exc}") from None
            for _, _, spec, _ in fields:
                _check_spec(spec or "")
        if isinstance(template, str) and all(isinstance(a, (str, int, float, bool, list, dict, tuple, type(None)))
                                             for a in [*args, *kwargs.values()]):
            try:
                return template.format(*args, **kwargs)
            except (IndexError, KeyError, ValueError) as exc:
                raise _NotStatic(f"str.format failed: {exc}") from None
    raise _NotStatic("a call other than json.dumps/str/repr/str.format")


# --- the generated gym file ------------------------------------------------------------------------
def _doc_literal(doc: str, indent: str) -> str:
    """``doc`` as a docstring literal at ``indent``: triple-quoted when that is exact, else ``repr``."""
    lines = doc.splitlines() or [""]
    if '"""' in doc or "\\" in doc or (len(lines) == 1 and doc.endswith('"')):
        return indent + repr(doc)
    body = [lines[0]] + [(indent + line) if line.strip() else "" for line in lines[1:]]
    return indent + '"""' + "\n".join(body) + ("\n" + indent if len(lines) > 1 else "") + '"""'


def _lenient(annotation: str) -> str:
    """The generated annotation: the documented type for the schema, any JSON value accepted
    (:class:`mcp_gyms.v1.Lenient`: the original accepted whatever ``json.loads`` read)."""
    return annotation if annotation == ANY else f"_Lenient[{annotation}]"


def render_gym_file(analysis: EnvAnalysis, max_steps: int = DEFAULT_MAX_STEPS) -> str:
    """The native gym file: the original source verbatim, then the generated adapter class."""
    a = analysis
    out = [a.source.rstrip("\n"), "", "",
           "# " + "-" * 100,
           f"# Generated by `codegym import-v1` from {a.file_name}. Above: the original environment, verbatim.",
           "# Below: its adapter to the native gym contract (see mcp_gyms/v1.py). Do not edit by hand.",
           "from typing import Any as _Any  # noqa: E402",
           "",
           "from mcp_gyms import tool as _tool  # noqa: E402",
           "from mcp_gyms.v1 import Lenient as _Lenient  # noqa: E402",
           "from mcp_gyms.v1 import V1Gym as _V1Gym  # noqa: E402",
           "from mcp_gyms.v1 import register_namespace as _register_namespace  # noqa: E402",
           "from mcp_gyms.v1 import run_v1_oracle as _run_v1_oracle  # noqa: E402",
           "",
           "",
           f"class {a.adapter_name}(_V1Gym):",
           f'    """{a.class_name} ({a.code_id}), an environment in the original CodeGym format."""',
           "",
           f"    env_class = {a.class_name}",
           f"    env_name = {a.class_name!r}",
           f"    actions = {tuple(a.all_actions)!r}",
           f"    answer_type = {_lenient(a.answer_annotation)}",
           f"    answer_doc = {a.answer_doc!r}",
           f"    max_steps = {max_steps}",
           ]
    for action in a.actions:
        params = ", ".join(f"{p.name}: {_lenient(p.annotation)}" + (f" = {p.default}" if p.default is not None else "")
                           for p in action.params)
        forwarded = ", ".join(f"{p.name!r}: {p.name}" for p in action.params)
        out += ["",
                "    @_tool",
                f"    def {action.name}(self{', *, ' + params if params else ''}) -> _Any:",
                _doc_literal(action.docstring, " " * 8),
                f"        return self._act({action.name!r}, {{{forwarded}}})"]
    out += ["",
            "    @staticmethod",
            "    def solve(call):",
            '        """The environment\'s own solve(): each of its self.step calls is one call through `call`."""',
            f"        _run_v1_oracle({a.class_name}, call, done_parameter={a.done_parameter!r})",
            "",
            "",
            "_register_namespace(globals())",
            ""]
    return "\n".join(out)


def _task_text(analysis: EnvAnalysis, tasks: list[PlannedTask], warnings: list[str]) -> str:
    texts = Counter(t.text for t in tasks if t.text)
    if texts:
        if len(texts) > 1:
            warnings.append(f"the instances carry {len(texts)} different user prompts; the gym's task text "
                            "is the most common one")
        return texts.most_common(1)[0][0]
    intro = analysis.class_doc or f"A hidden task of the {analysis.class_name} environment."
    return (f"{intro}\n\nExplore the task with the tools ({', '.join(analysis.all_actions)}), then submit your "
            "answer with Done.")


# --- the import ----------------------------------------------------------------------------------------
@dataclass
class ImportOptions:
    """What :func:`import_v1` needs (the CLI's arguments, typed)."""

    env_dir: Path
    out: Path
    instances: Path | None = None
    tasks_file: Path | None = None
    workers: int | None = None
    max_tasks: int | None = None
    quiet: bool = False


def _env_files(env_dir: Path) -> list[Path]:
    if env_dir.is_file():
        return [env_dir]
    if not env_dir.is_dir():
        raise ImportUsageError(f"{env_dir}: no such folder (ENV_DIR must hold {{code_id}}__{{ClassName}}.py files)")
    files = sorted(p for p in env_dir.iterdir() if p.suffix == ".py" and p.is_file())
    if not files:
        raise ImportUsageError(f"{env_dir}: no .py files (expected {{code_id}}__{{ClassName}}.py files)")
    return files


def _rows_for(rows: RowIndex, analysis: EnvAnalysis, claimed: set[str]) -> list[PlannedTask]:
    stem = f"{analysis.code_id}__{analysis.class_name}"
    found = []
    for key in (stem, analysis.class_name):
        if key in rows.by_env and key not in claimed:
            claimed.add(key)
            found += rows.by_env[key]
    return found


def _plan_tasks(analysis: EnvAnalysis, rows: RowIndex, claimed: set[str], report: FileReport,
                max_tasks: int | None) -> list[PlannedTask]:
    planned = _rows_for(rows, analysis, claimed)
    if not planned:
        planned = [PlannedTask(config=c, source="main", origin=f"__main__ example {i + 1}")
                   for i, c in enumerate(analysis.examples)]
    unique: dict[str, PlannedTask] = {}
    for task in planned:
        unique.setdefault(json.dumps(task.config, sort_keys=True), task)
    if len(unique) < len(planned):
        report.warnings.append(f"{len(planned) - len(unique)} duplicate task(s) kept once")
    tasks = list(unique.values())
    if max_tasks is not None and len(tasks) > max_tasks:
        report.warnings.append(f"{len(tasks) - max_tasks} task(s) beyond --max-tasks {max_tasks} left out")
        tasks = tasks[:max_tasks]
    report.task_sources = dict(Counter(t.source for t in tasks))
    return tasks


def _task_records(tasks: list[PlannedTask]) -> list[TaskRecord]:
    short = {"instances": "inst", "tasks": "task", "main": "main"}
    counters: Counter[str] = Counter()
    records = []
    for task in tasks:
        records.append(TaskRecord(id=f"{short[task.source]}-{counters[task.source]}", difficulty=task.difficulty,
                                  config=task.config))
        counters[task.source] += 1
    return records


_CHECK_CODES = {"load": "load_failed", "tools": "bad_tools", "tasks": "no_tasks", "reference": "reference_failed",
                "oracle": "oracle_failed", "steps": "no_task_in_step_range"}


#: how mcp_gyms.verify words a task's failure, per check (to quote the first one in the problem)
_REASON_PREFIXES = {"reference": ("reference answer",), "oracle": ("oracle failed", "oracle earned")}


async def _import_one(path: Path, rows: RowIndex, claimed: set[str], bank: Bank, pool: SandboxPool,
                      reference_pool: SandboxPool, options: ImportOptions) -> FileReport:
    report = FileReport(file=path.name, status="rejected", stage="name")
    analysis, problems = analyse_env(path, report.warnings)
    names = split_file_name(path.name)
    if names is None:
        report.status, report.problems = "skipped", problems
        return report
    report.code_id, report.class_name = names
    report.stage = "static"
    if analysis is None:
        report.problems = problems
        return report
    report.gym_id = analysis.gym_id
    report.tools = [OBSERVE, *(a.name for a in analysis.actions), DONE]

    report.stage = "tasks"
    planned = _plan_tasks(analysis, rows, claimed, report, options.max_tasks)
    if not planned:
        report.problems.append(Problem(code="no_tasks", message=(
            "no tasks: no --instances or --tasks rows name this environment, and its __main__ block has no "
            "from_env_str example that can be read statically")))
        return report
    rounds = [t.max_round for t in planned if t.max_round]
    max_steps = max(rounds) if rounds else DEFAULT_MAX_STEPS
    code = render_gym_file(analysis, max_steps)
    tasks = _task_records(planned)
    record = GymRecord(
        id=analysis.gym_id, title=f"{analysis.class_name} ({analysis.code_id})", class_name=analysis.adapter_name,
        task_text=_task_text(analysis, planned, report.warnings), kind="codegym-v1", max_steps=max_steps,
        provenance=Provenance(source="codegym-v1", problem_id=analysis.code_id,
                              notes=f"imported from {path.name} by codegym import-v1"),
    )

    report.stage = "sandbox"
    verdict: GymVerdict = await verify_gym(GymSource(record, code, tasks, str(path)), pool, reference_pool)
    report.checks = dict(verdict.checks)
    report.tasks_total = len(verdict.tasks)
    report.tasks_kept = sum(t.kept for t in verdict.tasks)
    report.dropped_tasks = {t.task_id: t.reason for t in verdict.tasks if not t.kept}
    if verdict.tools:
        report.tools = [t["name"] for t in verdict.tools]
    expected = {r.id: p.expected_steps for r, p in zip(tasks, planned)}
    for tv in verdict.tasks:
        want = expected.get(tv.task_id)
        if want is not None and tv.oracle_steps is not None and want != tv.oracle_steps:
            report.warnings.append(f"task {tv.task_id}: the oracle made {tv.oracle_steps} calls; the instance's "
                                   f"solve_fc_round says {want}")
    if not verdict.verified:
        failed = {name: why for name, why in verdict.checks.items() if why != "ok"}
        if "reference" in failed or "oracle" in failed:
            failed.pop("steps", None)  # a consequence, not a cause
        for name, why in failed.items():
            prefixes = _REASON_PREFIXES.get(name, ())
            reasons = [r for r in report.dropped_tasks.values() if prefixes and r.startswith(prefixes)]
            detail = f" (first: {reasons[0]})" if reasons else ""
            report.problems.append(Problem(code=_CHECK_CODES.get(name, name), message=f"{name}: {why}{detail}"))
        if analysis.gym_id in bank:
            bank.remove_gym(analysis.gym_id)
            report.warnings.append("removed from the bank's index (an earlier import had put it there)")
        return report

    steps = {t.task_id: t.oracle_steps for t in verdict.tasks}
    kept = []
    gym = GymCode(code, analysis.adapter_name)
    for task in tasks:
        if task.id in {t.task_id for t in verdict.tasks if t.kept}:
            answer = await reference_pool.reference_answer(gym, task.config)
            kept.append(task.model_copy(update={"oracle_steps": steps[task.id], "answer": answer}))
    record = record.model_copy(update={"tools": [ToolRecord(**t) for t in verdict.tools],
                                       "verification": verdict.report()})
    bank.put_gym(record, code, kept)
    report.status, report.stage = "imported", "done"
    return report


def _print_progress(done: int, total: int, report: FileReport) -> None:
    label = {"imported": "IMPORTED", "rejected": "REJECTED", "skipped": "SKIPPED"}[report.status]
    head = f"[{done}/{total}] {label:8}  {report.file}"
    if report.status == "imported":
        print(f"{head}  tools {len(report.tools)}  tasks {report.tasks_kept}/{report.tasks_total}", flush=True)
    else:
        print(head, flush=True)
        for problem in report.problems:
            print(f"          - {problem.code}: {problem.message}", flush=True)


async def import_v1(options: ImportOptions) -> ImportReport:
    """Import every env file of ``options.env_dir`` into the bank ``options.out``; write and return the
    report. Raises :class:`ImportUsageError` for unusable input (nothing is written then)."""
    started = time.monotonic()
    files = _env_files(options.env_dir)
    rows = RowIndex()
    if options.instances is not None:
        read_instances(options.instances, rows)
    if options.tasks_file is not None:
        read_task_rows(options.tasks_file, rows)
    try:
        bank = Bank.open(options.out) if (options.out / "bank.json").is_file() else Bank.create(options.out)
    except (BankError, OSError) as exc:
        raise ImportUsageError(f"{options.out}: cannot open or create the bank: {exc}") from exc
    if not options.quiet:
        for problem in rows.problems:
            print(f"warning: {problem}", flush=True)

    claimed: set[str] = set()
    reports: dict[str, FileReport] = {}
    internal_errors = 0
    workers = options.workers or min(8, os.cpu_count() or 1)
    limiter = anyio.Semaphore(max(1, workers))
    async with SandboxPool(workers, preload=PRELOAD) as pool, \
            SandboxPool(workers, REFERENCE_LIMITS, preload=PRELOAD) as reference_pool:

        async def one(path: Path) -> None:
            nonlocal internal_errors
            async with limiter:
                try:
                    report = await _import_one(path, rows, claimed, bank, pool, reference_pool, options)
                except Exception as exc:  # the importer's own failure: record it, go on
                    internal_errors += 1
                    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    report = FileReport(file=path.name, status="rejected", stage="sandbox", problems=[
                        Problem(code="internal_error", message=f"the importer failed on this file: {last}")])
            reports[path.name] = report
            if not options.quiet:
                _print_progress(len(reports), len(files), report)

        with bank.batch():  # one index write at the end, not one per gym
            async with anyio.create_task_group() as tg:
                for path in files:
                    tg.start_soon(one, path)

    ordered = [reports[p.name] for p in files]
    unmatched = {env: len(tasks) for env, tasks in rows.by_env.items() if env not in claimed}
    report = ImportReport(
        env_dir=str(options.env_dir), instances=str(options.instances) if options.instances else None,
        tasks_file=str(options.tasks_file) if options.tasks_file else None, bank=str(options.out),
        finished_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        seconds=round(time.monotonic() - started, 2),
        imported=sum(r.status == "imported" for r in ordered), rejected=sum(r.status == "rejected" for r in ordered),
        skipped=sum(r.status == "skipped" for r in ordered), internal_errors=internal_errors,
        tasks_imported=sum(r.tasks_kept for r in ordered if r.status == "imported"),
        row_problems=rows.problems, unmatched_rows=unmatched, files=ordered,
    )
    write_report(report, options.out)
    return report


def write_report(report: ImportReport, folder: Path) -> None:
    """Write ``import_report.json`` and ``import_report.md`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_JSON).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (folder / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ImportReport) -> str:
    """The report for people: totals, one table row per file, then the details of every problem."""
    lines = [
        "# CodeGym v1 import report", "",
        f"- environments: `{report.env_dir}`",
        f"- instances: `{report.instances}`" if report.instances else "- instances: none",
        f"- tasks file: `{report.tasks_file}`" if report.tasks_file else "- tasks file: none",
        f"- bank: `{report.bank}`",
        f"- finished: {report.finished_at} ({report.seconds:.1f} s)", "",
        f"**{report.imported} imported**, {report.rejected} rejected, {report.skipped} skipped "
        f"({report.tasks_imported} tasks imported"
        + (f"; {report.internal_errors} internal errors" if report.internal_errors else "") + ").", "",
        "| file | status | stage | tools | tasks kept | problems |",
        "|---|---|---|---|---|---|",
    ]
    for f in report.files:
        problems = "; ".join(f"`{p.code}`: {p.message}" for p in f.problems) or "-"
        tasks = f"{f.tasks_kept}/{f.tasks_total}" if f.tasks_total else "-"
        lines.append(f"| {_cell(f.file)} | {f.status} | {f.stage} | {len(f.tools) or '-'} | {tasks} | "
                     f"{_cell(problems)} |")
    noted = [f for f in report.files if f.warnings or f.dropped_tasks]
    if noted:
        lines += ["", "## Notes per file"]
        for f in noted:
            lines += ["", f"### {f.file}", ""]
            lines += [f"- warning: {w}" for w in f.warnings]
            lines += [f"- task `{task}` dropped: {why}" for task, why in f.dropped_tasks.items()]
    if report.row_problems or report.unmatched_rows:
        lines += ["", "## Input rows", ""]
        lines += [f"- {p}" for p in report.row_problems]
        lines += [f"- {n} row(s) name `{env}`, which is not a file of the environment folder"
                  for env, n in report.unmatched_rows.items()]
    return "\n".join(lines) + "\n"


# --- the command ---------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``codegym import-v1``."""
    parser.add_argument("env_dir", metavar="ENV_DIR",
                        help="folder of {code_id}__{ClassName}.py environment files (or one such file)")
    parser.add_argument("--instances", metavar="FILE.jsonl",
                        help="training instances of the original release (ability codegym_v1@...@{task})")
    parser.add_argument("--tasks", metavar="FILE.jsonl",
                        help='extra task rows: {"env": "{code_id}__{ClassName}", "task": {...}, "difficulty"?: ...}')
    parser.add_argument("--out", metavar="BANK", required=True, help="bank folder to write (created if missing)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox worker processes (default: CPUs, at most 8)")
    parser.add_argument("--max-tasks", type=int, default=None, metavar="N", help="at most N tasks per environment")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")


def run(args: argparse.Namespace) -> int:
    """Run ``codegym import-v1``; the exit status follows the module docstring's rule."""
    if args.workers is not None and args.workers < 1:
        return _usage("--workers must be at least 1")
    if args.max_tasks is not None and args.max_tasks < 1:
        return _usage("--max-tasks must be at least 1")
    options = ImportOptions(
        env_dir=Path(args.env_dir), out=Path(args.out),
        instances=Path(args.instances) if args.instances else None,
        tasks_file=Path(args.tasks) if args.tasks else None,
        workers=args.workers, max_tasks=args.max_tasks, quiet=args.quiet,
    )
    try:
        report = anyio.run(import_v1, options)
    except ImportUsageError as exc:
        return _usage(str(exc))
    rejected = Counter(p.code for f in report.files if f.status != "imported" for p in f.problems[:1])
    why = ", ".join(f"{code} {n}" for code, n in rejected.most_common())
    print(f"\nimported {report.imported}/{len(report.files)} environments ({report.tasks_imported} tasks) into "
          f"{options.out} in {report.seconds:.1f} s" + (f"; not imported: {why}" if why else "")
          + f"\nreport: {options.out / REPORT_MD}", flush=True)
    return report.exit_code()


def _usage(message: str) -> int:
    print(f"codegym import-v1: error: {message}", file=sys.stderr)
    return 2
