"""Environments in the original CodeGym release format ("v1"), run as native gyms.

The CodeGym authors released their environments as one Python file each, named
``{code_id}__{ClassName}.py``, holding a ``gymnasium.Env`` subclass with this contract:

- ``ClassName.from_env_str("ClassName@{...}")`` parses the part after ``@`` (with ``ast.literal_eval``)
  and calls ``reset(options)``, which sets the hidden input and clears ``_reward``, ``_done`` and
  ``step_count``;
- ``self.func_mapping`` maps PascalCase action names (``Observe`` and ``Done`` always among them) to
  integer codes; each action is a method of the same name whose docstring has ``Args:``, ``Returns:``
  and ``Example Output:`` sections (arguments written ``name (type): text``);
- ``step(action)`` takes the JSON text ``{"name": ..., "parameters": {...}}`` and returns
  ``(True, message)``; a failed action is a message starting with ``Error:`` (never an exception);
- ``Done(answer)`` compares with ``get_ref_answer()`` and ends its message with ``reward=1``/``reward=0``;
- ``solve()`` is the oracle: it plays through ``self.step(...)`` only and returns ``Done``'s message.

``codegym import-v1`` (:mod:`mcp_gyms.v1_import`) turns such a file into a native gym file: the original
source verbatim, followed by a generated subclass of :class:`V1Gym` with one typed ``@tool`` per action.
This module is the runtime half of that adapter (it runs inside the sandbox worker, next to the env).
The rules it implements:

- **Construction.** An episode's env is ``ClassName.from_env_str("ClassName@" + payload)`` where the
  payload is the task as JSON when that text is also a Python literal, else as a Python literal (so
  ``true``/``null`` never reach ``ast.literal_eval``).
- **Tools.** Every action but ``Observe``/``Done`` is a tool whose parameters come from the docstring's
  ``Args:`` section (read at import time by :mod:`mcp_gyms.v1_import.docstrings`). The agent sees the documented
  types in the JSON Schema, but every parameter (``Done``'s answer too) is annotated :class:`Lenient`:
  it accepts every JSON value Python's ``json.loads`` reads, as the original did (its ``step`` parsed
  the action with ``json.loads`` and passed the values on unchecked) — ``Infinity`` for a parameter
  documented ``int`` (a running minimum that starts at infinity) must reach the env, or its own
  ``solve()`` fails where it earned reward 1 in the original. A call forwards to the env's own ``step(json.dumps({"name": ...,
  "parameters": {...}}))``, so the env's messages reach the agent as designed. A message starting with
  ``Error:`` is raised as :class:`EnvError`: the episode reports it as a ``tool_error`` observation
  (``Error: <Tool> failed: EnvError: <the env's text>; the state is unchanged``) and rolls the env back
  to its state before the call (the runtime's *trial then overwrite*; the original env may have half-
  applied the action). ``Observe`` forwards the same way.
- **Done.** The runtime's Done semantics are kept: :meth:`V1Gym.reference_answer` is a fresh env's
  ``get_ref_answer()`` (made JSON-shaped: tuples and numpy values become lists and numbers), and an
  answer earns reward 1 when it equals the reference after a JSON round trip *or* when the env's own
  ``Done`` accepts it (so tolerances or order-insensitive comparisons written in ``Done`` still hold).
  The env's ``Done`` message itself is not shown: the runtime answers ``Answer correct. reward=1``.
- **Oracle.** The generated ``solve(call)`` runs the env's own ``solve()`` on an *oracle view*: an env
  object with no state whose ``step`` is redirected to ``call(name, **parameters)``. Every ``self.step``
  is therefore a counted call through the normal episode path, and a ``solve()`` that reads the hidden
  state directly (not a tool-only solution) fails with an error naming the attribute it read.
- **Snapshots.** The runtime snapshots a gym with ``pickle``; the gym file calls
  :func:`register_namespace` at its end so the env's classes can be found by pickle (gym code is
  executed in a namespace that is not a module).

Known limits: an env that draws randomness outside ``reset`` breaks replay determinism; an env whose
messages are not text gets them shown as JSON (and a ``solve()`` that relies on non-text results of
``self.step`` fails verification).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import TypeAdapter
from pydantic_core import core_schema

from .gym import DONE, OBSERVE, Call, Gym, normalise_answer

__all__ = [
    "ERROR_PREFIX",
    "EnvError",
    "Lenient",
    "PRELOAD",
    "V1Gym",
    "env_payload",
    "make_env",
    "register_namespace",
    "run_v1_oracle",
    "worker_preload",
]

#: What a sandbox worker imports before its lockdown to load an original-format gym: the env subclasses
#: ``gymnasium.Env`` (the ``v1`` extra), and gymnasium cannot be imported once the worker is locked down.
PRELOAD: tuple[str, ...] = ("gymnasium",)


def worker_preload(kinds: Iterable[str]) -> tuple[str, ...]:
    """The ``preload`` a :class:`~mcp_gyms.sandbox.SandboxPool` needs for gyms of these kinds:
    :data:`PRELOAD` when a ``codegym-v1`` gym is among them, else nothing (native gyms need no more)."""
    return PRELOAD if "codegym-v1" in set(kinds) else ()


#: Messages of the env's ``step`` that start with this are failed actions.
ERROR_PREFIX = "Error:"


class Lenient:
    """``Lenient[T]``: an annotation whose JSON Schema is ``T``'s (what the agent is shown) and whose
    validation accepts any JSON value (what the original env accepted), e.g. ``Lenient[int]``.

    A class, not ``Annotated[...]``, so it survives ``typing.get_type_hints`` (which drops extras)."""

    json_schema: ClassVar[dict[str, Any]] = {}

    def __class_getitem__(cls, annotation: Any) -> type[Lenient]:
        schema = TypeAdapter(annotation).json_schema()
        return type(f"Lenient[{getattr(annotation, '__name__', annotation)}]", (cls,), {"json_schema": schema})

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.any_schema()

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return dict(cls.json_schema)


class EnvError(Exception):
    """The env's own ``step`` answered with an ``Error:`` message; ``str(exc)`` is the text after it."""


# --- the runtime adapter ------------------------------------------------------------------------
class V1Gym(Gym):
    """Base class of generated adapters. A subclass sets the class attributes below, declares one
    ``@tool`` per action (each calling :meth:`_act`) and a ``solve`` staticmethod calling
    :func:`run_v1_oracle`; everything else is here.

    Class attributes:
        env_class: the original ``gymnasium.Env`` subclass.
        env_name: its class name (the prefix of ``from_env_str``'s argument).
        actions: the keys of the env's ``func_mapping`` (``Observe`` and ``Done`` included), as found
            statically at import; :meth:`setup` checks that the live env agrees.
    """

    env_class: ClassVar[type]
    env_name: ClassVar[str]
    actions: ClassVar[tuple[str, ...]] = ()

    def setup(self, task: dict[str, Any]) -> None:
        """Build the env with ``from_env_str`` and check its ``func_mapping`` against the tools."""
        self.env = make_env(type(self).env_class, type(self).env_name, task)
        mapping = getattr(self.env, "func_mapping", None)
        if not isinstance(mapping, Mapping):
            raise TypeError(f"{self.env_name}: the env has no func_mapping dict after construction")
        if set(mapping) != set(self.actions):
            extra = sorted(set(mapping) - set(self.actions))
            missing = sorted(set(self.actions) - set(mapping))
            raise TypeError(
                f"{self.env_name}: func_mapping at run time differs from the imported tools "
                f"(not imported: {extra or 'none'}; no longer present: {missing or 'none'})"
            )

    def observe(self) -> str:
        """The env's own ``Observe`` action, through its ``step``."""
        return self._act(OBSERVE, {})

    def _act(self, name: str, parameters: dict[str, Any]) -> Any:
        """Forward one action to the env's ``step``; return its message, raise :class:`EnvError` on
        an ``Error:`` message. A non-text message is returned as-is (the runtime shows it as JSON)."""
        outcome = self.env.step(json.dumps({"name": name, "parameters": parameters}))
        message = outcome[1] if isinstance(outcome, tuple) and len(outcome) >= 2 else outcome
        if isinstance(message, str) and message.lstrip().startswith(ERROR_PREFIX):
            raise EnvError(message.lstrip()[len(ERROR_PREFIX):].strip() or message.strip())
        return message

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> Any:
        """A fresh env's ``get_ref_answer()``, made JSON-shaped (see :func:`_jsonable`)."""
        return _jsonable(make_env(cls.env_class, cls.env_name, task).get_ref_answer())

    @classmethod
    def check_answer(cls, answer: Any, reference: Any) -> bool:
        """Equal after a JSON round trip, or accepted by the env's own ``Done`` run on an oracle view
        that knows only the reference answer (a ``Done`` that reads other state counts as a no)."""
        try:
            if normalise_answer(answer) == normalise_answer(reference):
                return True
        except (TypeError, ValueError):
            pass
        view = _oracle_view(cls.env_class)
        view.get_ref_answer = lambda: reference  # type: ignore[attr-defined]
        try:
            message = view.Done(answer)
        except Exception:
            return False
        reward = view.__dict__.get("_reward")
        if reward is not None and not isinstance(reward, str):
            try:
                return float(reward) == 1.0
            except (TypeError, ValueError):
                pass
        return isinstance(message, str) and bool(_REWARD_ONE.search(message))


_REWARD_ONE = re.compile(r"reward\s*=\s*1(?:\.0*)?\s*\W*$")


def env_payload(task: Mapping[str, Any]) -> str:
    """The text after ``ClassName@`` for ``task``: JSON when it reads back the same as a Python literal
    (so envs parsing with ``json.loads`` or ``ast.literal_eval`` both work), else a Python literal, else
    (a task holding ``Infinity`` or ``NaN``, which no literal spells) JSON again."""
    text = json.dumps(task)
    try:
        if ast.literal_eval(text) == task:
            return text
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    literal = repr(dict(task))
    try:
        ast.literal_eval(literal)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text  # no Python literal holds it (infinity, NaN): JSON text, which json.loads reads
    return literal


def make_env(env_class: type, env_name: str, task: Mapping[str, Any]) -> Any:
    """``env_class.from_env_str(f"{env_name}@{payload}")``; raises ``ValueError`` when it gives nothing."""
    env = env_class.from_env_str(f"{env_name}@{env_payload(task)}")
    if env is None:
        raise ValueError(f"{env_name}.from_env_str returned None (it did not accept the '{env_name}@' prefix)")
    return env


def _jsonable(value: Any) -> Any:
    """Tuples -> lists, sets -> sorted lists, numpy scalars/arrays -> numbers/lists, recursively."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int, float, bool)) or k is None else str(k)): _jsonable(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _jsonable(value.tolist())
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


# --- the oracle ---------------------------------------------------------------------------------
_VIEWS: dict[type, type] = {}


def _oracle_view(env_class: type) -> Any:
    """An env object without state: methods work, reading any instance attribute not set on the view
    raises an ``AttributeError`` that says the oracle looked at hidden state."""
    view_class = _VIEWS.get(env_class)
    if view_class is None:
        def __getattr__(self: Any, attr: str) -> Any:
            if attr.startswith("__") and attr.endswith("__"):
                raise AttributeError(attr)
            raise AttributeError(
                f"{env_class.__name__}.solve() read self.{attr} directly; an oracle must play through "
                f"self.step(...) only"
            )

        view_class = type(f"{env_class.__name__}OracleView", (env_class,),
                          {"__getattr__": __getattr__, "__module__": env_class.__module__})
        _VIEWS[env_class] = view_class
    return object.__new__(view_class)


def run_v1_oracle(env_class: type, call: Call, done_parameter: str = "answer") -> Any:
    """Run ``env_class.solve()`` on an oracle view whose ``step(action)`` is ``(True, call(name,
    **parameters))``; return what ``solve()`` returns. A malformed action raises ``ValueError``.

    ``done_parameter`` is the name of the env's ``Done`` parameter; the runtime's ``Done`` takes
    ``answer``, so a ``Done`` call passing ``done_parameter`` is renamed on the way."""
    view = _oracle_view(env_class)

    def step(action: str | Mapping[str, Any]) -> tuple[bool, str]:
        request = json.loads(action) if isinstance(action, (str, bytes)) else action
        if not isinstance(request, Mapping) or not isinstance(request.get("name"), str):
            raise ValueError(f"solve() made a malformed step call: {action!r:.200}")
        parameters = request.get("parameters", request.get("arguments", {})) or {}
        if not isinstance(parameters, Mapping):
            raise ValueError(f"solve() passed parameters that are not an object: {parameters!r:.200}")
        if request["name"] == DONE and done_parameter != "answer" and set(parameters) == {done_parameter}:
            parameters = {"answer": parameters[done_parameter]}
        return True, call(request["name"], **parameters)

    view.step = step
    return view.solve()


def register_namespace(namespace: dict[str, Any]) -> None:
    """Make the gym file's classes findable by ``pickle`` (the runtime snapshots state with it).

    Gym code runs in a plain namespace named ``namespace["__name__"]``; this registers a module of that
    name holding the same objects. Call it once, at the end of the gym file."""
    name = namespace.get("__name__")
    if not isinstance(name, str) or name == "__main__":
        return
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__dict__", None) is namespace:
        return  # the file was imported as a real module: pickle finds its classes already
    module = types.ModuleType(name)  # replaces an earlier registration: the latest load wins
    module.__dict__.update(namespace)
    sys.modules[name] = module
