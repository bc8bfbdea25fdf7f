"""Policies that play episodes: ``oracle``, ``openai`` (any OpenAI-compatible model) and ``random``.

A policy plays one episode through an :class:`~eval.driver.EpisodeDriver` and returns when the
episode is over (the server ended it) or when it stops on its own (setting ``driver.stop_reason``).
Failures it cannot get past are exceptions: :class:`~eval.chat.ModelFailure` (the episode ends with
that reason) and :class:`~eval.chat.FatalModelError` (the run stops).

- :class:`OraclePolicy` asks the server for the gym's verified oracle plan on the episode's own (task,
  seed) (``codegym/oracle``) and replays it call by call through ``tools/call``, so the reward comes
  from the real episode. It must score 100 % on a verified bank.
- :class:`OpenAIPolicy` is the paper's setting: system prompt = the tool docs (descriptions are the
  docstrings without examples), user prompt = the task text; the gym's tools are passed as function
  tools; native ``tool_calls`` are used and text tool calls are parsed from the content.
- :class:`RandomPolicy` makes random calls whose arguments satisfy the tools' schemas, then a random
  ``Done``: a floor to compare against.
"""

from __future__ import annotations

import json
import random
import zlib
from abc import ABC, abstractmethod
from typing import Any

from mcp_gyms.constants import DEFAULT_MAX_STEPS
from mcp_gyms.protocol import openai_function_tools

from .chat import ChatModel, ModelFailure
from .driver import EpisodeDriver
from .toolcalls import extract_calls

__all__ = ["OpenAIPolicy", "OraclePolicy", "Policy", "RandomPolicy", "render_system_prompt", "random_value"]

DONE = "Done"


class Policy(ABC):
    """Plays episodes. ``name`` and ``model`` go into every record."""

    name: str = "policy"
    model: str | None = None

    @abstractmethod
    async def play(self, ep: EpisodeDriver) -> None:
        """Play ``ep`` until the server ends it, or set ``ep.stop_reason`` and return."""

    async def aclose(self) -> None:
        """Release what the policy holds (HTTP pools). Nothing by default."""
        return None


# --- oracle ----------------------------------------------------------------------------------------
class OracleError(RuntimeError):
    """The server could not produce an oracle plan for an episode."""


class OraclePolicy(Policy):
    """Replays the gym's verified oracle plan (from the server) through real tool calls."""

    name = "oracle"

    async def play(self, ep: EpisodeDriver) -> None:
        plan = await ep.session.oracle_plan()
        if plan.error:
            raise OracleError(f"the oracle failed on the server: {plan.error}")
        for n, call in enumerate(plan.calls):
            if ep.over:
                break
            ep.turns = n + 1
            await ep.call(call.name, dict(call.arguments), turn=n, call_id=f"oracle-{n}", source="policy")
        if not ep.over:
            ep.stop_reason = "max_turns"


# --- random ----------------------------------------------------------------------------------------
def random_value(schema: dict[str, Any], rng: random.Random, root: dict[str, Any] | None = None,
                 depth: int = 0) -> Any:
    """A random value that satisfies a (simple) JSON Schema: types, enums, const, ranges, arrays,
    objects, anyOf/oneOf and local ``$ref``s. Integers stay small (-1..20 unless the schema bounds them)."""
    root = root if root is not None else schema
    if "$ref" in schema and isinstance(schema["$ref"], str) and schema["$ref"].startswith("#/"):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return random_value(target, rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return random_value(rng.choice(schema[key]), rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice(kind) if kind else None
    if kind == "integer":
        lo = int(schema.get("minimum", -1))
        hi = int(schema.get("maximum", max(lo, 20)))
        return rng.randint(lo, max(lo, hi))
    if kind == "number":
        lo = float(schema.get("minimum", -1.0))
        hi = float(schema.get("maximum", max(lo, 20.0)))
        return round(rng.uniform(lo, hi), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "string":
        return rng.choice(["", "a", "0", "1", "yes", "no", "abc", "()", "x y"])
    if kind == "array":
        if depth > 4:
            return []
        items = schema.get("items", {})
        lo = int(schema.get("minItems", 0))
        hi = int(schema.get("maxItems", max(lo, 4)))
        return [random_value(items if isinstance(items, dict) else {}, rng, root, depth + 1)
                for _ in range(rng.randint(lo, max(lo, hi)))]
    if kind == "object" or "properties" in schema:
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        if depth > 4:
            return {}
        return {k: random_value(v, rng, root, depth + 1) for k, v in props.items()
                if k in required or rng.random() < 0.5}
    return rng.choice([0, 1, "a", True, None])


class RandomPolicy(Policy):
    """Random schema-valid calls (never ``Done``) for a random number of steps, then a random ``Done``.

    Args:
        max_calls: the most calls before ``Done`` (capped by the step budget and ``max_turns``).
        seed: the base seed; each episode's generator is seeded from (seed, gym, task, sample), so a
            run is reproducible.
    """

    name = "random"

    def __init__(self, max_calls: int = 32, seed: int = 0, max_turns: int = DEFAULT_MAX_STEPS) -> None:
        self.max_calls = max_calls
        self.seed = seed
        self.max_turns = max_turns

    async def play(self, ep: EpisodeDriver) -> None:
        rng = random.Random(zlib.crc32(f"{self.seed}/{ep.gym.id}/{ep.task.id}/{ep.sample}".encode()))
        tools = [t for t in ep.tools if t["name"] != DONE]
        done = next((t for t in ep.tools if t["name"] == DONE), None)
        budget = min(self.max_calls, ep.max_steps - 1, self.max_turns - 1)
        n_calls = rng.randint(0, max(0, budget)) if tools else 0
        turn = 0
        for turn in range(n_calls):
            if ep.over:
                return
            tool = rng.choice(tools)
            ep.turns = turn + 1
            await ep.call(tool["name"], random_value(tool.get("input_schema") or {}, rng), turn=turn)
        if ep.over:
            return
        if done is None or ep.turns >= self.max_turns:
            ep.stop_reason = "max_turns"
            return
        ep.turns += 1
        await ep.call(DONE, random_value(done.get("input_schema") or {}, rng), turn=ep.turns - 1)


# --- openai ----------------------------------------------------------------------------------------
_TEXT_FORMAT_NOTE = (
    "\n\nTo call a tool, write the call as JSON inside tags, one call per block:\n"
    '<tool_call>{"name": "ToolName", "arguments": {"arg": value}}</tool_call>\n'
    "You may write several blocks in one reply. The results come back inside <tool_response> tags."
)


def render_system_prompt(tools: list[dict[str, Any]], max_steps: int, *, text_format: bool = False) -> str:
    """The system prompt: how to play, then every tool's name, description (the docstring without its
    examples, as the server lists it) and JSON Schema of its arguments."""
    lines = [
        "You are solving a task inside an environment whose state is hidden. You can only learn about it and "
        "act on it by calling the tools below; Observe() shows a partial view of the current state. "
        f"Every call counts toward a budget of {max_steps} calls. When you know the answer, call "
        "Done(answer): it ends the episode, and only a correct answer earns the reward.",
        "",
        "# Tools",
    ]
    for t in tools:
        schema = t.get("input_schema") or {"type": "object", "properties": {}}
        params = ", ".join(schema.get("properties", {}))
        lines += ["", f"## {t['name']}({params})", (t.get("description") or "").strip(),
                  f"Arguments (JSON Schema): {json.dumps(schema, separators=(',', ':'))}"]
    prompt = "\n".join(lines)
    return prompt + (_TEXT_FORMAT_NOTE if text_format else "")


class OpenAIPolicy(Policy):
    """A chat model behind an OpenAI-compatible endpoint, playing through tool calls.

    Args:
        chat: the model client (retries, error verdicts).
        max_turns: the most model replies per episode.
        tool_format: ``"native"`` passes the tools as function tools (text calls are still parsed when the
            server returns them as text); ``"text"`` passes no tools and asks for ``<tool_call>`` blocks
            in the system prompt (for servers without tool-call support).
    """

    name = "openai"

    def __init__(self, chat: ChatModel, *, max_turns: int = DEFAULT_MAX_STEPS, tool_format: str = "native") -> None:
        if tool_format not in ("native", "text"):
            raise ValueError(f"tool_format must be 'native' or 'text', not {tool_format!r}")
        self.chat = chat
        self.model = chat.model
        self.max_turns = max_turns
        self.tool_format = tool_format

    async def aclose(self) -> None:
        await self.chat.aclose()

    async def play(self, ep: EpisodeDriver) -> None:
        tools = list(ep.tools)
        text_only = self.tool_format == "text"
        ep.messages = [
            {"role": "system", "content": render_system_prompt(tools, ep.max_steps, text_format=text_only)},
            {"role": "user", "content": ep.task_text},
        ]
        fn_tools = None if text_only else openai_function_tools(tools)
        for turn in range(self.max_turns):
            try:
                reply = await self.chat.complete(ep.messages, fn_tools)
            except ModelFailure as exc:
                ep.retries += exc.retries
                raise
            ep.turns = turn + 1
            ep.retries += reply.retries
            ep.prompt_tokens += reply.prompt_tokens
            ep.completion_tokens += reply.completion_tokens
            message = reply.message
            content = getattr(message, "content", None)
            calls = extract_calls(message)
            native = bool(calls) and calls[0].source == "native"
            assistant: dict[str, Any] = {"role": "assistant", "content": content}
            if native:
                assistant["tool_calls"] = [{"id": c.id, "type": "function",
                                            "function": {"name": c.name, "arguments": c.raw_arguments}}
                                           for c in calls]
            reasoning = getattr(message, "reasoning_content", None)
            if isinstance(reasoning, str) and reasoning:
                assistant["reasoning_content"] = reasoning
            ep.messages.append(assistant)
            if not calls:
                max_tokens = self.chat.sampling.get("max_tokens")
                if reply.finish_reason == "length":
                    if max_tokens is None or reply.completion_tokens < max_tokens:
                        # cut short by the context window, not by the reply limit we set
                        raise ModelFailure("context_overflow", "the reply was cut at the end of the context "
                                           "window (finish_reason=length) without a tool call")
                    ep.stop_note = f"the reply hit max_tokens ({max_tokens}) without a tool call"
                ep.stop_reason = "no_tool_call"
                return
            responses: list[str] = []
            for call in calls:
                if ep.over:
                    break
                if call.well_formed:
                    assert call.arguments is not None
                    rec = await ep.call(call.name, call.arguments, turn=turn, call_id=call.id, source=call.source,
                                        raw_arguments=call.raw_arguments)
                else:
                    rec = ep.reject(call.name, call.raw_arguments, call.error or "malformed tool call",
                                    turn=turn, call_id=call.id, source=call.source)
                if native:
                    ep.messages.append({"role": "tool", "tool_call_id": call.id, "content": rec.observation})
                else:
                    responses.append(f"<tool_response>\n{rec.observation}\n</tool_response>")
            if responses:
                ep.messages.append({"role": "user", "content": "\n".join(responses)})
            if ep.over:
                return
        ep.stop_reason = "max_turns"
