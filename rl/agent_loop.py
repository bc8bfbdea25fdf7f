"""The veRL agent loop that plays one gym episode over MCP per trajectory.

Registered as ``codegym_agent`` (:data:`rl.settings.AGENT_NAME`); load it in training with the agent-loop
YAML ``rl/configs/agent_loop.yaml`` (``actor_rollout_ref.rollout.agent.agent_loop_config_path``), whose
entry may carry any :class:`rl.settings.LoopSettings` field as a keyword argument.

Contract of :meth:`CodeGymAgentLoop.run` (one trajectory, one dataset row):

1. **Episode.** The row's ``tools_kwargs["codegym"]["create_kwargs"]`` names (gym, task, seed)
   (:class:`rl.settings.EpisodeSpec`). The loop lists the gym's tools and starts one episode on the gym
   server through :mod:`rl.gyms` (itself only :mod:`mcp_gyms.client`), over the worker's pooled connection.
2. **Prompt.** The row's messages rendered with the tokenizer's chat template *and the gym's tools* (as
   the server lists them), through veRL's Continuous Token builder; capped at ``rollout.prompt_length``.
3. **Turns.** ``server_manager.generate`` is called with one request id for the whole trajectory and
   ``max_tokens`` = what is left of ``rollout.response_length``. The model's tokens are appended as they
   came back (mask 1, log-probs kept). Tool calls are parsed with veRL's tool parser for
   ``rollout.multi_turn.format`` (Hermes by default) and run on the episode *in order* (a gym's state is
   sequential). Observations go back as tool messages whose tokens are appended with mask 0; earlier turns
   are never re-tokenised (only the new messages are rendered, by the builder's suffix diff).
4. **Bad calls.** An unknown tool or bad arguments is the gym's own error observation. A tool-call block
   the parser could not read is answered with an error observation by the loop (counted invalid), in the
   place the model wrote it among the turn's calls. Every call, bad ones included, counts toward
   ``max_tool_calls``.
5. **veRL's multi-turn settings** (``rollout.multi_turn``) take effect: ``max_assistant_turns`` and
   ``max_user_turns`` (tool-response turns) cap the turns (end ``turn_cap``; the last turn's calls still run,
   so a Done there counts, but their observations are not appended); ``max_parallel_calls`` caps
   the calls run per turn (the turn's further calls are answered with an error observation, counted invalid,
   and never reach the gym); ``max_tool_response_length`` / ``tool_response_truncate_side`` cut each
   observation (characters) before it is tokenised. Settings the loop cannot honour are refused at
   construction (:class:`SettingsError`): tools from ``tool_config_path`` / ``function_tool_path``
   (a gym's tools come from its server) and ``interaction_config_path``.
6. **End** (``extra_fields["codegym_ended"]``): ``done`` (Done was called), ``step_budget`` (the gym's
   budget ran out), ``tool_call_cap``, ``turn_cap``, ``response_length``, ``no_tool_call`` (the model
   answered in text), ``empty_generation`` (the engine returned no token), ``aborted`` (the engine aborted
   the request), or ``server_error`` (the server failed; the message is in ``codegym_error``). The response
   never ends with tool-response tokens: observations after the last model turn are not appended (and are
   cut if a later turn returns nothing), so veRL puts the reward on the last token the model generated.
   The response is never empty either (veRL's reward code indexes its last token): when the model
   generated nothing — the server failed before the first turn, or the engine returned no token — it is
   one end-of-sequence token with mask 0 (no loss, no log-prob).
7. **Reward.** ``reward_score`` is always set, and only the gym decides it: its verdict (its status on
   close, else the last call's reward), 1.0 for a correct Done, 0.0 otherwise. A trajectory the gym could
   not judge (``server_error``) scores 0.0 and counts 1 in ``reward_extra_info["codegym/server_errors"]``;
   it is never scored by another rule. Each agent-loop worker also logs them as they happen, with a
   running count (:class:`Tally`): veRL's V1 trainer shows ``reward_extra_info`` only for validation.
8. **Metrics.** ``metrics.generate_sequences`` / ``metrics.tool_calls`` are generation and environment
   seconds (veRL's own timing fields). Counters go to ``extra_fields`` (veRL merges them into the reward
   function's ``extra_info``): ``codegym_tool_calls``, ``codegym_invalid_calls``, ``codegym_tool_errors``,
   ``codegym_env_time_s``, ``codegym_generate_time_s``, ``codegym_steps``, ``codegym_reward``; and
   ``reward_extra_info`` with the same keys as the fallback's.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
from verl.tools.schemas import OpenAIFunctionToolSchema

from mcp_gyms.client import GymClientError, RemoteEpisode
from mcp_gyms.constants import ErrorKind
from mcp_gyms.protocol import StepOutcome, openai_function_tools

from .gyms import server_for
from .reward import reward_extra_info
from .settings import AGENT_NAME, EpisodeSpec, LoopSettings, SettingsError, cut_observation, plain

__all__ = ["CodeGymAgentLoop", "INVALID_KINDS", "TOOL_ERROR_KINDS", "TurnLimits"]

logger = logging.getLogger(__name__)

#: Error kinds (``StepOutcome.error``) that count as an invalid call by the model.
INVALID_KINDS = ErrorKind.INVALID_CALL | {"malformed_call"}
#: Error kinds that count as a tool error (the call was valid; the tool or its limits failed).
TOOL_ERROR_KINDS = ErrorKind.TOOL_FAILURE
#: Error kinds that mean the episode is gone on the server side: the trajectory ends as a server error.
SERVER_GONE_KINDS = ErrorKind.EPISODE_GONE


class Tally:
    """This worker process's count of trajectories and of those the gym could not judge, logged as it goes.

    veRL 0.9.1's V1 trainer logs ``reward_extra_info`` (so ``codegym/server_errors``) only for validation and
    in rollout dumps, not among the training metrics; so each unjudged trajectory logs a WARNING with the
    running count, and every ``every`` trajectories a line sums up (a WARNING once any was unjudged)."""

    def __init__(self, every: int = 1024) -> None:
        self.every = every
        self.trajectories = 0
        self.server_errors = 0

    def count(self, spec: EpisodeSpec, unjudged: bool, error: str | None) -> None:
        self.trajectories += 1
        if unjudged:
            self.server_errors += 1
            logger.warning("codegym: %s/%s could not be judged (scored 0; %d of %d trajectories in this worker "
                           "so far): %s", spec.gym, spec.task, self.server_errors, self.trajectories, error)
        if self.trajectories % self.every == 0:
            logger.log(logging.WARNING if self.server_errors else logging.INFO,
                       "codegym: %d trajectories in this worker so far, %d unjudged (server errors, scored 0)",
                       self.trajectories, self.server_errors)


#: The tally of this process (one veRL agent-loop worker).
TALLY = Tally()


@dataclass
class _Trajectory:
    """Mutable state of one run."""

    request_id: str
    messages: list[dict[str, Any]]
    runtime_ids: list[int] = field(default_factory=list)
    prompt_len: int = 0
    response_mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    assistant_turns: int = 0
    tool_turns: int = 0
    tool_calls: int = 0
    invalid_calls: int = 0
    tool_errors: int = 0
    steps: int = 0
    env_time: float = 0.0
    gen_time: float = 0.0
    num_preempted: int = -1
    reward: float | None = None
    ended: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _parser_tools(tools: list[dict[str, Any]]) -> list[OpenAIFunctionToolSchema]:
    """The same tools as veRL's parser schema objects, leaving out any whose JSON Schema veRL's model rejects
    (its property model wants a ``type`` on every parameter; only some parsers read these at all)."""
    out = []
    for tool in tools:
        try:
            out.append(OpenAIFunctionToolSchema.model_validate(tool))
        except ValueError:
            continue
    return out


def _readable(block: str) -> bool:
    """Whether a tool-call block is one the Hermes parser reads: a JSON object with name and arguments."""
    try:
        call = json.loads(block)
    except json.JSONDecodeError:
        return False
    return isinstance(call, dict) and "name" in call and "arguments" in call


@dataclass(frozen=True)
class TurnLimits:
    """veRL's ``rollout.multi_turn`` settings, as this loop applies them (see the module docstring).

    Raises:
        SettingsError: from :meth:`from_rollout`, for a setting the loop cannot honour or a bad value.
    """

    format: str = "hermes"
    max_assistant_turns: int | None = None
    max_user_turns: int | None = None
    max_parallel_calls: int = 1
    max_tool_response_length: int = 256
    truncate_side: str = "middle"

    @classmethod
    def from_rollout(cls, rollout: Any) -> TurnLimits:
        multi_turn = plain(rollout.get("multi_turn", None) or {})
        for key, why in (("tool_config_path", "a gym's tools come from its server"),
                         ("function_tool_path", "a gym's tools come from its server"),
                         ("interaction_config_path", "the gym is the only other party")):
            if multi_turn.get(key):
                raise SettingsError(f"actor_rollout_ref.rollout.multi_turn.{key} is set, but the codegym agent "
                                    f"loop does not use it ({why}); set it to null")
        limits = cls(
            format=multi_turn.get("format") or "hermes",
            max_assistant_turns=multi_turn.get("max_assistant_turns"),
            max_user_turns=multi_turn.get("max_user_turns"),
            max_parallel_calls=multi_turn.get("max_parallel_calls", 1),
            max_tool_response_length=multi_turn.get("max_tool_response_length", 256),
            truncate_side=multi_turn.get("tool_response_truncate_side", "middle"),
        )
        for key in ("max_assistant_turns", "max_user_turns", "max_parallel_calls", "max_tool_response_length"):
            value = getattr(limits, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SettingsError(f"actor_rollout_ref.rollout.multi_turn.{key} must be a positive integer"
                                    f"{' or null' if key.startswith('max_') and 'turns' in key else ''}, "
                                    f"got {value!r}")
        if limits.truncate_side not in ("left", "middle", "right"):
            raise SettingsError("actor_rollout_ref.rollout.multi_turn.tool_response_truncate_side must be left, "
                                f"middle or right, got {limits.truncate_side!r}")
        return limits

    def cut(self, text: str) -> str:
        """``text`` cut to ``max_tool_response_length`` characters on ``truncate_side``, as veRL's tool loop."""
        return cut_observation(text, self.max_tool_response_length, self.truncate_side)


@register(AGENT_NAME)
class CodeGymAgentLoop(AgentLoopBase):
    """One gym episode over MCP per trajectory; see the module docstring for the full contract.

    Keyword arguments besides veRL's (``trainer_config``, ``server_manager``, ``tokenizer``, ``processor``,
    ``dataset_cls``, ``data_config``, ``hf_model_type``, ``tools``) are :class:`LoopSettings` fields, as the
    agent-loop YAML entry gives them; ``name`` (the YAML entry's name) is accepted and ignored, and veRL's
    own ``tools`` are ignored too — a gym's tools come from its server.

    Raises:
        SettingsError: at construction, for unknown or bad settings.
    """

    def __init__(self, *args: Any, tools: Any = None, name: str | None = None, **kwargs: Any) -> None:
        base_keys = {"trainer_config", "server_manager", "tokenizer", "processor", "dataset_cls", "data_config",
                     "hf_model_type"}
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k not in base_keys}
        super().__init__(*args, **kwargs)
        self.settings = LoopSettings.resolve(self.config, settings)
        self.turns = TurnLimits.from_rollout(self.rollout_config)
        self.parser_name = self.settings.tool_parser or self.turns.format
        try:
            self.tool_parser = ToolParser.get_tool_parser(self.parser_name, self.tokenizer)
        except ValueError as exc:
            raise SettingsError(f"{exc}; known parsers: {sorted(ToolParser._registry)}") from None
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)
        start_token = getattr(self.tool_parser, "tool_call_start_token", None)
        end_token = getattr(self.tool_parser, "tool_call_end_token", None)
        self._block = (re.compile(re.escape(start_token) + r"(.*?)" + re.escape(end_token), re.DOTALL)
                       if isinstance(start_token, str) and isinstance(end_token, str) else None)

    # --- the loop ------------------------------------------------------------------------------------
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        """Play one episode; see the module docstring. Never raises for gym, server or engine trouble."""
        spec = EpisodeSpec.from_row(kwargs)
        t = _Trajectory(request_id=uuid4().hex, messages=[dict(m) for m in kwargs["raw_prompt"]])
        if sampling_params.get("logprobs"):  # every row of the batch then needs log-probs, even one never generated
            t.logprobs = []
        episode: RemoteEpisode | None = None
        tools: list[dict[str, Any]] = []
        started = time.perf_counter()
        try:
            server = await server_for(self.settings)
            tools = openai_function_tools(await server.tools(spec.gym))
            episode = await server.start(spec)
        except GymClientError as exc:
            t.ended, t.error = "server_error", str(exc)
        finally:
            t.env_time += time.perf_counter() - started

        t.runtime_ids = await self.ct_build_initial_tokens(t.messages, tools=tools or None)
        t.prompt_len = len(t.runtime_ids)
        if t.ended is None and episode is not None:
            try:
                await self._play(t, episode, tools, sampling_params)
            finally:
                await self._close(t, episode)
        unjudged = t.ended == "server_error"
        if unjudged:
            t.reward = 0.0
        TALLY.count(spec, unjudged, t.error)
        return self._output(t, spec)

    async def _play(self, t: _Trajectory, episode: RemoteEpisode, tools: list[dict[str, Any]],
                    sampling_params: dict[str, Any]) -> None:
        parser_tools = _parser_tools(tools)
        stop_ids = list(getattr(self.tool_parser, "stop_token_ids", []) or [])
        while True:
            budget = self.response_length - len(t.response_mask)
            if budget <= 0:
                t.ended = "response_length"
                return
            params = {**sampling_params, "max_tokens": budget}
            if stop_ids:
                params["stop_token_ids"] = sorted(set(params.get("stop_token_ids") or []) | set(stop_ids))
            began = time.perf_counter()
            output = await self.server_manager.generate(request_id=t.request_id, prompt_ids=t.runtime_ids,
                                                        sampling_params=params)
            t.gen_time += time.perf_counter() - began
            if output.num_preempted is not None:
                t.num_preempted = max(t.num_preempted, 0) + output.num_preempted
            # veRL's policy-version bookkeeping (fully async training): first and latest version seen
            if output.extra_fields.get("min_global_steps") is not None:
                t.extra.setdefault("min_global_steps", output.extra_fields["min_global_steps"])
            if output.extra_fields.get("max_global_steps") is not None:
                t.extra["max_global_steps"] = output.extra_fields["max_global_steps"]
            token_ids = list(output.token_ids)[:budget]
            if not token_ids:
                t.ended = "aborted" if output.stop_reason == "aborted" else "empty_generation"
                return
            t.assistant_turns += 1
            assistant_logprobs = list(output.log_probs)[:budget] if output.log_probs is not None else None
            if assistant_logprobs is not None and t.logprobs is None:
                t.logprobs = [0.0] * len(t.response_mask)
            merge, t.response_mask, logprobs = await self.ct_merge_assistant_token(
                t.runtime_ids, token_ids, t.response_mask, t.logprobs,
                assistant_logprobs=assistant_logprobs if t.logprobs is not None else None)
            t.runtime_ids = merge.token_ids
            if logprobs is not None:
                t.logprobs = logprobs
            if output.stop_reason == "aborted":  # a cut-off turn: its tool calls may be cut too
                t.ended = "aborted"
                return
            if len(t.response_mask) >= self.response_length:
                t.ended = "response_length"
                return

            content, calls = await self.tool_parser.extract_tool_calls(token_ids, parser_tools)
            ordered = await self._in_written_order(token_ids, calls)
            if not ordered:
                t.ended = "no_tool_call"
                return
            t.messages.append(self._assistant_message(content, calls))  # its tokens are already in place
            previous = list(t.messages)
            replies: list[dict[str, Any]] = []
            for index, call in enumerate(ordered):
                if t.tool_calls >= self.settings.max_tool_calls:
                    t.ended = "tool_call_cap"
                    return
                if index >= self.turns.max_parallel_calls:
                    replies.append(self._refusal(t, "not run: at most "
                                                 f"{self.turns.max_parallel_calls} tool call(s) per turn"))
                elif call is None:
                    replies.append(self._refusal(t, "a tool call could not be read. Write each call as "
                                                 f"{getattr(self.tool_parser, 'tool_call_start_token', '')}"
                                                 '{"name": "ToolName", "arguments": {...}}'
                                                 f"{getattr(self.tool_parser, 'tool_call_end_token', '')} "
                                                 "with valid JSON."))
                else:
                    reply = await self._call(t, episode, call)
                    if t.ended is not None:
                        return
                    replies.append(reply)
            if t.tool_calls >= self.settings.max_tool_calls:
                t.ended = "tool_call_cap"
                return
            # the turn's calls ran (a Done counts); their observations would open a turn past a cap
            if ((self.turns.max_assistant_turns is not None and t.assistant_turns >= self.turns.max_assistant_turns)
                    or (self.turns.max_user_turns is not None and t.tool_turns >= self.turns.max_user_turns)):
                t.ended = "turn_cap"
                return
            t.messages.extend(replies)
            merge, mask, logprobs = await self.ct_merge_context_msg(previous, t.messages, t.runtime_ids,
                                                                     t.response_mask, t.logprobs, tools=tools)
            if len(mask) >= self.response_length:
                t.ended = "response_length"  # the observations do not fit: end on the model's last token
                return
            t.runtime_ids, t.response_mask = merge.token_ids, mask
            if logprobs is not None:
                t.logprobs = logprobs
            t.tool_turns += 1

    def _refusal(self, t: _Trajectory, why: str) -> dict[str, Any]:
        """The loop's own error observation for a call that never reaches the gym (counted invalid)."""
        t.tool_calls += 1
        t.invalid_calls += 1
        return {"role": "tool", "name": "invalid_tool_call", "content": f"Error: {why}"}

    async def _call(self, t: _Trajectory, episode: RemoteEpisode, call: FunctionCall) -> dict[str, Any]:
        """Run one parsed call on the episode; returns the tool message. Sets ``t.ended`` when it must stop."""
        t.tool_calls += 1
        try:
            arguments: Any = json.loads(call.arguments) if call.arguments else {}
        except json.JSONDecodeError:
            arguments = call.arguments  # the server reports non-JSON arguments as a bad call
        if not isinstance(arguments, dict):  # the client sends JSON objects only: a bad call, judged here
            shown = arguments if isinstance(arguments, str) else type(arguments).__name__
            arguments = None
            result = StepOutcome(observation=f"Error: invalid arguments for {call.name}: arguments must be a JSON "
                                             f"object (got {str(shown)[:60]})", error=ErrorKind.INVALID_ARGUMENTS,
                                 steps=t.steps)
        began = time.perf_counter()
        try:
            if arguments is not None:
                result = await episode.call(call.name, arguments)
        except GymClientError as exc:
            t.ended, t.error = "server_error", str(exc)
            return {}
        finally:
            t.env_time += time.perf_counter() - began
        t.steps = max(t.steps, result.steps)
        if result.error in SERVER_GONE_KINDS:
            t.ended, t.error = "server_error", f"{result.error}: {result.observation}"
            return {}
        if result.error in INVALID_KINDS:
            t.invalid_calls += 1
        elif result.error is not None:
            t.tool_errors += 1
        if result.done:
            t.reward = result.reward
            t.ended = "done" if result.terminated else "step_budget"
        message = {"role": "tool", "name": call.name, "content": self.turns.cut(result.observation)}
        if call.tool_call_id is not None:
            message["tool_call_id"] = call.tool_call_id
        return message

    async def _close(self, t: _Trajectory, episode: RemoteEpisode) -> None:
        began = time.perf_counter()
        try:
            status = await episode.close()
        except GymClientError as exc:
            logger.warning("closing episode %s failed: %s", getattr(episode, "handle", "?"), exc)
            status = None
        finally:
            t.env_time += time.perf_counter() - began
        if t.ended == "server_error":
            return
        if status is not None:
            t.reward = float(status.reward)
            t.steps = max(t.steps, status.steps)
        elif t.reward is None:
            t.reward = 0.0

    async def _in_written_order(self, token_ids: list[int], calls: list[FunctionCall]) -> list[FunctionCall | None]:
        """The turn's tool calls in the order the model wrote them, ``None`` for a block the parser could not
        read. Blocks are found with the parser's markers; a block is readable when it is a JSON object with
        ``name`` and ``arguments`` (the Hermes parser's rule). A parser without markers, or one that read the
        blocks differently, gives its calls as parsed."""
        if self._block is None:
            return list(calls)
        text = await self.loop.run_in_executor(None, self.tokenizer.decode, token_ids)
        blocks = self._block.findall(text)
        readable = [_readable(block) for block in blocks]
        if sum(readable) != len(calls):
            return [*calls, *([None] * max(0, len(blocks) - len(calls)))]
        parsed = iter(calls)
        return [next(parsed) if ok else None for ok in readable]

    @staticmethod
    def _assistant_message(content: str, calls: list[FunctionCall]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content or ""}
        if calls:
            tool_calls = []
            for call in calls:
                try:
                    arguments: Any = json.loads(call.arguments)
                except json.JSONDecodeError:
                    arguments = call.arguments
                entry: dict[str, Any] = {"type": "function", "function": {"name": call.name, "arguments": arguments}}
                if call.tool_call_id is not None:
                    entry["id"] = call.tool_call_id
                tool_calls.append(entry)
            message["tool_calls"] = tool_calls
        return message

    def _output(self, t: _Trajectory, spec: EpisodeSpec) -> AgentLoopOutput:
        response_ids = t.runtime_ids[t.prompt_len:][: self.response_length]
        mask = t.response_mask[: self.response_length]
        logprobs = t.logprobs[: self.response_length] if t.logprobs is not None else None
        if len(response_ids) != len(mask):  # a builder bug would silently misalign loss and tokens
            raise RuntimeError(f"response tokens ({len(response_ids)}) and mask ({len(mask)}) disagree")
        # end on the model's last token: cut observations a later (empty or failed) turn left dangling
        last = max((i for i, m in enumerate(mask) if m == 1), default=-1)
        response_ids, mask = response_ids[: last + 1], mask[: last + 1]
        logprobs = logprobs[: last + 1] if logprobs is not None else None
        if not response_ids:  # the model generated nothing: one EOS with mask 0 (veRL indexes the last token)
            eos = self.tokenizer.eos_token_id
            response_ids, mask = [eos if eos is not None else self.tokenizer.pad_token_id], [0]
            logprobs = [0.0] if logprobs is not None else None
        reward = t.reward if t.reward is not None else 0.0
        counters = {
            "codegym_gym": spec.gym,
            "codegym_task": str(spec.task),
            "codegym_ended": t.ended or "response_length",
            "codegym_error": t.error,
            "codegym_reward": reward,
            "codegym_tool_calls": t.tool_calls,
            "codegym_invalid_calls": t.invalid_calls,
            "codegym_tool_errors": t.tool_errors,
            "codegym_steps": t.steps,
            "codegym_env_time_s": round(t.env_time, 6),
            "codegym_generate_time_s": round(t.gen_time, 6),
        }
        extra = {**t.extra, **counters, "turn_scores": [], "tool_rewards": []}
        # Always present, with the same keys on every row: veRL's batch code reads the first row's keys from all.
        extra["reward_extra_info"] = reward_extra_info(
            reward, "server_error" if t.ended == "server_error" else "gym", counters)
        return AgentLoopOutput(
            prompt_ids=t.runtime_ids[: t.prompt_len],
            response_ids=response_ids,
            response_mask=mask,
            response_logprobs=logprobs,
            reward_score=reward,
            num_turns=1 + t.assistant_turns + t.tool_turns,
            metrics=AgentLoopMetrics(generate_sequences=t.gen_time, tool_calls=t.env_time,
                                     num_preempted=t.num_preempted),
            extra_fields=extra,
        )
