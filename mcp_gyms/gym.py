"""The gym contract: what a gym is, stated once.

A *gym* turns one coding problem into a partially observable, multi-turn tool-use environment
(a POMDP, after the CodeGym paper). A gym is a subclass of :class:`Gym`:

- **Hidden state.** ``setup(task)`` initialises the state from a *task configuration*: a JSON object
  that is one unit-test input of the original problem. ``self.rng`` is a ``random.Random`` seeded with
  the episode's seed; a gym that needs randomness must use it (and nothing else), so that an episode
  is a deterministic function of ``(task, seed, calls)``. The sandbox relies on that to rebuild an
  episode after its worker process was replaced.
- **Tools.** Methods marked with :func:`tool` are the gym's atomic functions. Their parameters must
  carry type hints: the JSON Schema shown to the agent comes from the hints, and arguments are
  validated against it (strictly: ``"3"`` is not an int) before the method runs. The description
  shown to the agent is the docstring without its examples and without its ``Args:`` section, whose
  text for each parameter goes into that parameter's ``description`` in the schema instead; the full
  docstring is kept for verification. A tool returns a ``str`` (the observation) or a JSON-serialisable value (shown as
  JSON text). Tool names are the method names; the paper's convention is PascalCase.
- **Basic actions.** Every gym also has ``Observe()``, which returns :meth:`observe` — a *partial*
  view of the state (it must not hand over the whole hidden input unless the problem has nothing
  else to explore) — and ``Done(answer)``, which ends the episode with reward 1 if
  :meth:`check_answer` accepts the answer, else 0. There is no intermediate reward.
- **Reference answer.** :meth:`reference_answer` is the original solution's logic applied to the
  task configuration. It is a pure function of the task, so it cannot be disturbed by tool calls.
- **Oracle.** :meth:`solve` is a tool-only solution: it receives a ``call(name, **arguments) -> str``
  function that goes through exactly the path an agent's calls take (validation, step counting,
  trial then overwrite), and it sees nothing but the observations. It must end with a ``Done`` call.
  Verification keeps a gym only if its oracle earns reward 1 on every task.

Class-level lists, dicts, sets and bytearrays (``MOVES = [...]`` in the class body) are copied into
each instance before ``setup``: a tool that changes ``self.MOVES`` changes its own episode's copy, which
is rolled back with the rest of the state, and other episodes never see it. Assigning to the class
itself (``type(self).X = ...``) is outside the contract.

The episode rules (step budget, error observations, trial then overwrite) are enforced by
:class:`mcp_gyms.episode.LocalEpisode`, not by gyms; a gym only describes behaviour.
"""

from __future__ import annotations

import copy
import inspect
import json
import random
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .constants import DEFAULT_MAX_STEPS

__all__ = ["Gym", "tool", "ToolSpec", "GymSpec", "Call", "strip_examples", "split_args", "normalise_answer"]

_TOOL_MARK = "__codegym_tool__"
_SPEC_ATTR = "__codegym_spec__"  # a gym class's checked GymSpec, cached on the class itself
_CONTAINERS_ATTR = "__codegym_containers__"
OBSERVE = "Observe"
DONE = "Done"

#: The oracle's view of an episode: ``call("ToolName", arg=value, ...)`` returns the observation text.
Call = Callable[..., str]


def tool(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a gym method as a tool. Its name, type hints and docstring define the tool."""
    setattr(fn, _TOOL_MARK, True)
    return fn


class Gym:
    """Base class of every gym. Subclasses fill in behaviour; see the module docstring for the contract.

    Class attributes a subclass may set:
        answer_type: the type of ``Done``'s ``answer`` argument (its JSON Schema is shown to the agent).
        answer_doc: one line describing the answer, appended to ``Done``'s description.
        max_steps: the step budget of an episode (tool calls, bad calls included).
    """

    answer_type: ClassVar[Any] = Any
    answer_doc: ClassVar[str] = ""
    max_steps: ClassVar[int] = DEFAULT_MAX_STEPS

    def __init__(self, task: dict[str, Any], seed: int = 0) -> None:
        self.rng = random.Random(seed)
        for name, value in _class_containers(type(self)):
            setattr(self, name, copy.deepcopy(value))  # the episode's own copy (see the module docstring)
        self.setup(task)

    # --- to implement -------------------------------------------------------------------------
    def setup(self, task: dict[str, Any]) -> None:
        """Initialise the hidden state from one task configuration (a unit-test input)."""
        raise NotImplementedError

    def observe(self) -> str:
        """Return a partial, textual view of the current state (the ``Observe`` tool)."""
        raise NotImplementedError

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> Any:
        """Return the original solution's answer for ``task`` (JSON-serialisable)."""
        raise NotImplementedError

    @staticmethod
    def solve(call: Call) -> None:
        """Play the task through ``call`` only, ending with ``call("Done", answer=...)``."""
        raise NotImplementedError

    # --- may override -------------------------------------------------------------------------
    @classmethod
    def check_answer(cls, answer: Any, reference: Any) -> bool:
        """Whether a submitted answer earns reward 1. Default: equal after a JSON round trip."""
        return normalise_answer(answer) == normalise_answer(reference)


def normalise_answer(value: Any) -> Any:
    """The value as JSON would carry it (tuples become lists, dict keys become strings)."""
    return json.loads(json.dumps(value))


_SECTION = re.compile(r"^\s*(examples?|example output|example usage)\s*:?\s*$", re.IGNORECASE)


def strip_examples(doc: str | None) -> str:
    """The agent-facing part of a docstring: everything before its examples.

    Drops ``Example:``/``Examples:``/``Example Output:`` sections (up to the next unindented
    section header such as ``Returns:``) and doctest lines (``>>>`` and the output after them).
    """
    text = textwrap.dedent(inspect.cleandoc(doc or "")).strip("\n")
    kept: list[str] = []
    skipping_section = False
    skipping_doctest = False
    for line in text.splitlines():
        stripped = line.strip()
        if _SECTION.match(line):
            skipping_section = True
            continue
        if skipping_section:
            is_new_header = bool(re.match(r"^[A-Z][A-Za-z ]*:\s*$", line)) and not line.startswith(" ")
            if not is_new_header:
                continue
            skipping_section = False
        if stripped.startswith(">>>"):
            skipping_doctest = True
            continue
        if skipping_doctest:
            if stripped:
                continue
            skipping_doctest = False
        kept.append(line)
    return "\n".join(kept).strip()


_ARGS_HEADER = re.compile(r"^(args|arguments|parameters)\s*:\s*$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def split_args(description: str) -> tuple[str, dict[str, str]]:
    """Take the ``Args:`` section (Google style) out of a tool description.

    Returns the description without that section and each documented parameter's text
    (``name (type): text`` or ``name: text``, continuation lines joined with spaces). A description
    without an ``Args:`` section comes back unchanged, with no parameters."""
    lines = description.splitlines()
    start = next((i for i, line in enumerate(lines) if _ARGS_HEADER.match(line)), None)
    if start is None:
        return description, {}
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][:1].isspace()):
        end += 1
    params: dict[str, str] = {}
    current: str | None = None
    base_indent: int | None = None
    for line in lines[start + 1:end]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line.strip())
        if match and (base_indent is None or indent <= base_indent):
            base_indent = indent
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    rest = "\n".join(lines[:start] + lines[end:])
    return re.sub(r"\n{3,}", "\n\n", rest).strip(), params


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the agent sees it, plus what the runtime needs to call it."""

    name: str
    description: str  # docstring without examples
    docstring: str  # the full docstring, examples included (for verification)
    input_schema: dict[str, Any]
    arguments: type[BaseModel]  # strict validator of the arguments

    def public(self) -> dict[str, Any]:
        """JSON-ready view: name, description, input schema."""
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    def validate(self, arguments_json: str) -> dict[str, Any]:
        """Validate JSON arguments; raise :class:`ArgumentError` naming every problem."""
        try:
            model = self.arguments.model_validate_json(arguments_json)
        except ValidationError as exc:
            raise ArgumentError(self.name, exc) from None
        return {name: getattr(model, name) for name in type(model).model_fields}


class ArgumentError(ValueError):
    """Arguments that do not match a tool's schema. The message names each problem."""

    def __init__(self, tool_name: str, exc: ValidationError) -> None:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "missing":
                problems.append(f"missing required argument '{where}'")
            elif err["type"] == "extra_forbidden":
                problems.append(f"unexpected argument '{where}'")
            elif not where:
                problems.append(f"arguments must be a JSON object ({err['msg']})")
            else:
                got = json.dumps(err.get("input"), default=repr)
                if len(got) > 60:
                    got = got[:57] + "..."
                problems.append(f"argument '{where}': {err['msg'].lower()} (got {got})")
        super().__init__(f"invalid arguments for {tool_name}: " + "; ".join(problems))


_STRICT = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=False)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's auto-generated titles; keep everything that constrains values."""
    schema = dict(schema)
    schema.pop("title", None)
    props = {}
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        if prop.get("title") == name.replace("_", " ").title():
            prop.pop("title")
        props[name] = prop
    schema["properties"] = props
    return schema


def _spec_from_function(name: str, fn: Callable[..., Any], doc: str | None) -> ToolSpec:
    signature = inspect.signature(fn)
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for pname, param in list(signature.parameters.items())[1:]:  # skip self
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args/**kwargs are not allowed")
        if pname not in hints:
            raise TypeError(f"tool {name}: parameter '{pname}' has no type hint")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (hints[pname], default)
    model = create_model(f"{name}Arguments", __config__=_STRICT, **fields)
    description, documented = split_args(strip_examples(doc))
    schema = _clean_schema(model.model_json_schema())
    for pname, text in documented.items():
        if pname in schema["properties"] and text:
            schema["properties"][pname] = {"description": text, **schema["properties"][pname]}
    return ToolSpec(
        name=name,
        description=description,
        docstring=inspect.cleandoc(doc or ""),
        input_schema=schema,
        arguments=model,
    )


_OBSERVE_DOC = "Observe the current state of the environment (a partial view).\n\nReturns:\n    str: what can be seen now."
_DONE_DOC = (
    "Submit the final answer and end the episode. Reward is 1 if the answer is correct, else 0.\n\n"
    "Args:\n    answer: the final answer to the task."
)


@dataclass(frozen=True)
class GymSpec:
    """The tools of a gym class, in the order the agent sees them: Observe, the gym's tools, Done."""

    gym_class: type[Gym]
    tools: dict[str, ToolSpec]


    @classmethod
    def of(cls, gym_class: type[Gym]) -> GymSpec:
        """Introspect (once) and check a gym class. Raises ``TypeError`` naming a contract violation."""
        cached = vars(gym_class).get(_SPEC_ATTR) if isinstance(gym_class, type) else None
        if isinstance(cached, GymSpec):
            return cached
        if not (isinstance(gym_class, type) and issubclass(gym_class, Gym)):
            raise TypeError(f"{gym_class!r} is not a subclass of mcp_gyms.Gym")
        for method in ("setup", "observe", "reference_answer", "solve"):
            if getattr(gym_class, method) is getattr(Gym, method):
                raise TypeError(f"{gym_class.__name__} does not implement {method}()")
        if not isinstance(inspect.getattr_static(gym_class, "solve"), staticmethod):
            raise TypeError(f"{gym_class.__name__}.solve must be a @staticmethod taking only `call`")

        tools: dict[str, ToolSpec] = {OBSERVE: _spec_from_function(OBSERVE, _observe_signature, _OBSERVE_DOC)}
        seen: set[str] = set()
        for klass in reversed(gym_class.__mro__):
            for attr, value in vars(klass).items():
                if callable(value) and getattr(value, _TOOL_MARK, False):
                    if attr in (OBSERVE, DONE):
                        raise TypeError(f"{gym_class.__name__}: '{attr}' is a basic action and cannot be a tool")
                    if not (value.__doc__ or "").strip():
                        raise TypeError(f"{gym_class.__name__}.{attr}: every tool needs a docstring")
                    seen.add(attr)
        for attr in _definition_order(gym_class, seen):
            fn = getattr(gym_class, attr)
            tools[attr] = _spec_from_function(attr, fn, fn.__doc__)

        def done_signature(self, answer):  # type: ignore[no-untyped-def]
            """Placeholder whose hints define Done's schema."""

        done_signature.__annotations__["answer"] = gym_class.answer_type
        done_doc = _DONE_DOC + (f" {gym_class.answer_doc}" if gym_class.answer_doc else "")
        tools[DONE] = _spec_from_function(DONE, done_signature, done_doc)
        spec = cls(gym_class=gym_class, tools=tools)
        setattr(gym_class, _SPEC_ATTR, spec)  # on the class, so it goes when the class goes (no global cache)
        return spec

    def public_tools(self) -> list[dict[str, Any]]:
        """Every tool's name, description and input schema, in display order."""
        return [t.public() for t in self.tools.values()]


def _class_containers(gym_class: type) -> tuple[tuple[str, Any], ...]:
    """The mutable containers a gym class (or a base of it below :class:`Gym`) defines at class level."""
    cached = vars(gym_class).get(_CONTAINERS_ATTR)
    if isinstance(cached, tuple):
        return cached
    found: dict[str, Any] = {}
    for klass in gym_class.__mro__:
        if klass is Gym:
            break
        for name, value in vars(klass).items():
            if name not in found and not name.startswith("__"):
                found[name] = value
    containers = tuple((n, v) for n, v in found.items() if isinstance(v, (list, dict, set, bytearray)))
    setattr(gym_class, _CONTAINERS_ATTR, containers)
    return containers


def _observe_signature(self: Any) -> None:
    """Placeholder: Observe takes no arguments."""


def _definition_order(gym_class: type, names: set[str]) -> list[str]:
    order: list[str] = []
    for klass in reversed(gym_class.__mro__):
        for attr in vars(klass):
            if attr in names and attr not in order:
                order.append(attr)
    return order
