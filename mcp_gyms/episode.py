"""One episode of a gym, run in-process: the rules every call obeys.

This is the engine the sandbox worker runs; it is also handy for a gym author testing trusted code
locally. Rules, for every call, whoever makes it (agent or oracle):

- The step counter goes up by one for every call, bad calls included; the budget is the gym's
  ``max_steps`` (256 by default). When the budget is spent without ``Done`` the episode is
  *truncated* with reward 0; calls after the end get an ``episode_over`` error.
- A bad call — unknown tool, missing/extra/wrong-typed argument, a tool raising (``SystemExit``
  included), a result too large or not JSON-serialisable — returns an error observation that names
  the problem, and the gym's state is exactly what it was before the call (*trial then overwrite*:
  the state is snapshotted before the call and restored on any failure, including a new state that
  cannot be snapshotted). The gym receives its own copy of the task, so tools cannot alter the task
  the reference answer is computed from.
- ``Done(answer)`` ends the episode: reward 1 if ``check_answer(answer, reference_answer(task))``,
  else 0. No other call carries a reward. (In the sandbox the worker only records the answer and the
  host decides the reward, out of reach of gym code: see :mod:`mcp_gyms.sandbox`.)
"""

from __future__ import annotations

import array
import copy
import copyreg
import io
import json
import pickle
import random
from dataclasses import dataclass, field
from typing import Any

from .constants import ErrorKind
from .gym import DONE, OBSERVE, ArgumentError, Gym, GymSpec
from .outcome import StepOutcome

__all__ = ["LocalEpisode", "OracleResult"]

DEFAULT_MAX_OBSERVATION_CHARS = 16_384


@dataclass
class OracleResult:
    """The outcome of playing a task with the gym's oracle."""

    reward: float
    steps: int
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None


def _random_from(version: int, words: bytes, gauss_next: float | None) -> random.Random:
    """A ``random.Random`` in the state :func:`_reduce_random` saved."""
    rng = random.Random()
    rng.setstate((version, tuple(array.array("I", words)), gauss_next))
    return rng


def _reduce_random(rng: random.Random) -> Any:
    """Pickle a ``random.Random`` (every gym's ``self.rng``) as its 625 state words packed in bytes: the
    default form pickles them as 625 separate ints, which made it most of a snapshot's cost."""
    version, words, gauss_next = rng.getstate()
    try:
        packed = array.array("I", words).tobytes()
    except OverflowError:  # not the Mersenne Twister state this packing expects
        return rng.__reduce__()
    return _random_from, (version, packed, gauss_next)


#: How snapshots pickle: as pickle does, but ``random.Random`` itself (exactly) the fast way above.
_SNAPSHOT_REDUCERS = {**copyreg.dispatch_table, random.Random: _reduce_random}


class LocalEpisode:
    """A gym instance plus the bookkeeping of one episode. Not thread-safe; one call at a time."""

    def __init__(
        self,
        gym_class: type[Gym],
        task: dict[str, Any],
        seed: int = 0,
        *,
        max_steps: int | None = None,
        max_observation_chars: int = DEFAULT_MAX_OBSERVATION_CHARS,
    ) -> None:
        self.spec = GymSpec.of(gym_class)
        self.task = task
        self.gym = gym_class(copy.deepcopy(task), seed)  # the gym's copy: its tools cannot alter the task
        self.max_steps = max_steps or gym_class.max_steps
        self.max_observation_chars = max_observation_chars
        self.steps = 0
        self.reward = 0.0
        self.terminated = False
        self.truncated = False
        # the committed state, pickled: fails now, not mid-episode, if the state cannot be snapshotted
        self._committed = self._snapshot()

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    # --- calls -------------------------------------------------------------------------------
    def call(self, name: str, arguments: str | dict[str, Any] | None = None) -> StepOutcome:
        """Make one call. ``arguments`` is a JSON object, as text or as a dict."""
        if self.done:
            why = "Done was called" if self.terminated else f"the step budget of {self.max_steps} calls is spent"
            return self._error(ErrorKind.EPISODE_OVER, f"the episode is over ({why}); start a new one")
        self.steps += 1
        result = self._call(name, arguments)
        if not self.terminated and self.steps >= self.max_steps:
            self.truncated = True
            result.truncated = result.done = True
            result.observation += f"\n[episode truncated: step budget of {self.max_steps} calls spent, reward 0]"
        return result

    def _call(self, name: str, arguments: str | dict[str, Any] | None) -> StepOutcome:
        spec = self.spec.tools.get(name)
        if spec is None:
            known = ", ".join(self.spec.tools)
            return self._error(ErrorKind.UNKNOWN_TOOL, f"unknown tool '{name}'. Available tools: {known}")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments)
            except (TypeError, ValueError) as exc:
                return self._error(ErrorKind.INVALID_ARGUMENTS, f"arguments are not JSON-serialisable: {exc}")
        try:
            kwargs = spec.validate(arguments)
        except ArgumentError as exc:
            return self._error(ErrorKind.INVALID_ARGUMENTS, str(exc))

        if name == DONE:
            return self._done(kwargs["answer"])

        # The snapshot taken after the last call that changed the state is the state now: only calls
        # of this episode run its gym's methods, and a call that failed was rolled back to it.
        snapshot = self._committed
        try:
            value = self.gym.observe() if name == OBSERVE else getattr(self.gym, name)(**kwargs)
            # str.__str__ makes a plain str of a str subclass (whose __len__ could lie)
            observation = str.__str__(value) if isinstance(value, str) else json.dumps(value)
            after = self._snapshot()  # the new state must be one that can be saved, or the call is refused
        except MemoryError:
            self._restore(snapshot)
            return self._error(ErrorKind.MEMORY_LIMIT, f"{name} ran out of memory; the state is unchanged")
        except BaseException as exc:  # a tool's own error, SystemExit, KeyboardInterrupt, unsavable state...
            self._restore(snapshot)
            return self._error(ErrorKind.TOOL_ERROR, f"{name} failed: {_describe(exc)}; the state is unchanged")
        if len(observation) > self.max_observation_chars:
            self._restore(snapshot)
            return self._error(
                ErrorKind.OUTPUT_TOO_LARGE,
                f"{name} returned {len(observation):,} characters, over the limit of "
                f"{self.max_observation_chars:,}; the state is unchanged",
            )
        self._committed = after
        return StepOutcome.of(observation, 0.0, False, False, self.steps)

    def _done(self, answer: Any) -> StepOutcome:
        gym_class = self.spec.gym_class
        try:
            correct = bool(gym_class.check_answer(answer, gym_class.reference_answer(self.task)))
        except BaseException as exc:  # noqa: BLE001 - gym code may raise anything
            return self._error(ErrorKind.TOOL_ERROR, f"Done could not check the answer: {_describe(exc)}")
        self.terminated = True
        self.reward = 1.0 if correct else 0.0
        verdict = "correct" if correct else "incorrect"
        return StepOutcome.of(f"Answer {verdict}. reward={int(self.reward)}", self.reward, True, False, self.steps)

    def _error(self, kind: str, message: str) -> StepOutcome:
        return StepOutcome.of(f"Error: {message}", 0.0, self.terminated, self.truncated, self.steps, error=kind)

    def _snapshot(self) -> bytes:
        try:
            out = io.BytesIO()
            pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
            pickler.dispatch_table = _SNAPSHOT_REDUCERS
            pickler.dump(self.gym.__dict__)
            return out.getvalue()
        except MemoryError:
            raise  # the memory limit, not a state that cannot be pickled: the sandbox reports it as such
        except Exception as exc:
            raise TypeError(f"the state of {type(self.gym).__name__} cannot be snapshotted: "
                            f"{str(exc) or type(exc).__name__}") from exc

    def _restore(self, snapshot: bytes) -> None:
        self.gym.__dict__.clear()
        self.gym.__dict__.update(pickle.loads(snapshot))

    # --- Gymnasium-style view ----------------------------------------------------------------
    def step(self, action: str | dict[str, Any]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Gymnasium-style step. ``action`` is ``{"name": ..., "arguments": {...}}`` (or its JSON text;
        ``"parameters"`` is accepted for ``"arguments"``, as in the original CodeGym format).

        Returns ``(observation, reward, terminated, truncated, info)``; ``info`` holds ``steps`` and
        ``error`` (``None`` for a good call).
        """
        name, arguments = parse_action(action)
        if name is None:
            result = self._error(ErrorKind.INVALID_ARGUMENTS, arguments)
        else:
            result = self.call(name, arguments)
        return result.observation, result.reward, result.terminated, result.truncated, {
            "steps": result.steps,
            "error": result.error,
        }

    # --- oracle ------------------------------------------------------------------------------
    def run_oracle(self) -> OracleResult:
        """Play this episode with the gym's oracle (through :meth:`call`, like an agent)."""
        calls: list[tuple[str, dict[str, Any]]] = []

        def call(name: str, /, **arguments: Any) -> str:  # positional-only: a tool may have a `name` parameter
            calls.append((name, arguments))
            return self.call(name, arguments).observation

        try:
            self.spec.gym_class.solve(call)
        except (Exception, SystemExit) as exc:
            return OracleResult(self.reward, self.steps, calls, f"the oracle raised {_describe(exc)}")
        error = None if self.terminated else "the oracle ended without calling Done"
        return OracleResult(self.reward, self.steps, calls, error)


def parse_action(action: str | dict[str, Any]) -> tuple[str | None, Any]:
    """Split an action into (name, arguments); on a malformed action, (None, the reason)."""
    if isinstance(action, str):
        try:
            action = json.loads(action)
        except json.JSONDecodeError as exc:
            return None, f"the action is not valid JSON: {exc}"
    if not isinstance(action, dict) or not isinstance(action.get("name"), str):
        return None, 'an action must be a JSON object {"name": "...", "arguments": {...}}'
    return action["name"], action.get("arguments", action.get("parameters", {}))


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."
