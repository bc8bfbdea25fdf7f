"""The prompts of each LLM stage, built from the text templates in ``synthesis/prompts/``.

Templates use ``{{name}}`` markers; :func:`render` fills every marker and refuses a template with a
marker left over or a value that names no marker, so a typo fails loudly rather than reaching the model.
:func:`prompts_digest` hashes every template: it is part of the pipeline's fingerprint, so changing a
prompt invalidates stored stage results (the LLM cache is keyed by the prompt text anyway).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from mcp_gyms.verify import MAX_ANSWER_CHARS, MAX_STEPS, MIN_STEPS, REFERENCE_LIMITS

from .calling import CallSpec, call_notes
from .extract import remove_solve
from .sources import Problem

__all__ = ["gym_messages", "inputs_messages", "prompts_digest", "render", "solve_messages"]

PROMPTS = Path(__file__).resolve().parent / "prompts"
_MARKER = re.compile(r"\{\{(\w+)\}\}")


@cache
def template(name: str) -> str:
    """The text of ``prompts/<name>``."""
    path = PROMPTS / name
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {path}")
    return path.read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """Fill the ``{{markers}}`` of template ``name`` with ``values`` (all of them, exactly once each)."""
    text = template(name)
    markers = set(_MARKER.findall(text))
    if missing := markers - values.keys():
        raise KeyError(f"prompt {name}: no value for {sorted(missing)}")
    if extra := values.keys() - markers:
        raise KeyError(f"prompt {name}: no marker for {sorted(extra)}")
    return _MARKER.sub(lambda m: values[m.group(1)], text)


@cache
def prompts_digest() -> str:
    """A hash of every template (stage results made with other prompts are stale)."""
    digest = hashlib.sha256()
    for path in sorted(PROMPTS.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _signature(problem: Problem) -> str:
    return f"{problem.entry_point}({', '.join(problem.parameters())})"


def _keys(problem: Problem) -> str:
    return ", ".join(f"`{name}`" for name in problem.parameters()) or "(none)"


def _notes(call: CallSpec | None, conversion: str | None = None) -> str:
    notes = call_notes(call, conversion) if call is not None else ""
    return f"\n\n{notes}" if notes else ""


def _limits(count: int, min_inputs: int) -> str:
    """The limits section, the one place the prompts state them (``prompts/limits.md``)."""
    return render("limits.md", max_answer_chars=str(MAX_ANSWER_CHARS), min_steps=str(MIN_STEPS),
                  max_steps=str(MAX_STEPS), time_s=f"{REFERENCE_LIMITS.time_s:g}",
                  memory_mb=str(REFERENCE_LIMITS.memory_mb), count=str(count),
                  per_level=str(max(1, count // 3)), min_inputs=str(min_inputs)).strip()


def _chat(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": template("system.md").strip()}, {"role": "user", "content": user.strip()}]


def gym_messages(problem: Problem, call: CallSpec | None = None, count: int = 15,
                 min_inputs: int = 10) -> list[dict[str, str]]:
    """Stage 1: the one-shot prompt asking for a gym (example problem and gym, then the requirements);
    ``call`` (from step 0's trial) adds what the prompt must say about objects and answers; ``count`` and
    ``min_inputs`` (inputs asked per sample, inputs that must survive) go into the limits."""
    return _chat(render(
        "gym.md",
        example_problem=template("example_problem.md").strip(),
        example_solution=template("example_solution.py").strip(),
        example_gym=template("example_gym.md").strip(),
        question=problem.question.strip(),
        solution=problem.solution.strip(),
        signature=_signature(problem),
        keys=_keys(problem),
        call_notes=_notes(call),
        limits=_limits(count, min_inputs),
        observations=template("observations.md").strip().replace("\n", "\n  "),
    ))


def inputs_messages(problem: Problem, gym_code: str, count: int, call: CallSpec | None = None,
                    conversion: str | None = None, min_inputs: int = 10) -> list[dict[str, str]]:
    """Stage 2: ask for ``count`` unit-test inputs, a third of each difficulty."""
    return _chat(render(
        "inputs.md",
        question=problem.question.strip(),
        solution=problem.solution.strip(),
        signature=_signature(problem),
        gym_code=gym_code.strip(),
        count=str(count),
        per_level=str(max(1, count // 3)),
        keys=_keys(problem),
        call_notes=_notes(call, conversion),
        limits=_limits(count, min_inputs),
    ))


def _tool_list(tools: list[dict[str, Any]]) -> str:
    lines = []
    for t in tools:
        props = t.get("input_schema", {}).get("properties", {})
        args = ", ".join(f"{name}: {json.dumps(schema.get('type', schema))}" for name, schema in props.items())
        lines.append(f"- `{t['name']}({args})`: " + " ".join(t.get("description", "").split()))
    return "\n".join(lines)


def solve_messages(task_text: str, tools: list[dict[str, Any]], gym_code: str, class_name: str) -> list[dict[str, str]]:
    """Stage 3: ask for a tool-only ``solve(call)`` (the gym's own solve is not shown)."""
    return _chat(render(
        "solve.md",
        task_text=task_text.strip(),
        tools=_tool_list(tools),
        gym_code=remove_solve(gym_code, class_name).strip(),
        observations=template("observations.md").strip().replace("\n", "\n   "),
        max_steps=str(MAX_STEPS),
    ))
