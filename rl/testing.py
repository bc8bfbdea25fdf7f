"""Test doubles for running the agent loop without a GPU or a download: a tokenizer and a scripted "model".

- :func:`build_tokenizer` makes a Qwen-style chat tokenizer from scratch with the ``tokenizers`` library:
  byte-level, no merges (every byte is one token, so any text round-trips exactly), ChatML special tokens
  (``<|im_start|>``, ``<|im_end|>`` = EOS, ``<|endoftext|>`` = pad) and the Hermes tool-call markers as
  ordinary added tokens (as in Qwen, so ``skip_special_tokens`` keeps them). Its chat template renders
  tools and tool calls the way Qwen2.5's does.
- :func:`write_model_dir` saves that tokenizer plus a tiny ``qwen2`` ``config.json`` into a folder, which is
  all veRL's ``HFModelConfig`` needs to build the tokenizer and model config (no weights are read).
- :class:`ScriptedServerManager` stands in for veRL's ``LLMServerClient``: ``generate`` answers each turn
  from a script (text, a :class:`Generation`, or a function of the turn and the prompt text), ends the text
  with ``<|im_end|>`` as a model stops at EOS, and cuts it at ``sampling_params["max_tokens"]`` as vLLM
  does. It records every request so tests can check request ids, prompts and budgets.
- :class:`ScriptedLLMServer` answers behind veRL's *server* interface (what a vLLM replica's Ray actor
  offers ``LLMServerClient`` through veRL's load balancer), choosing each answer by what the prompt holds.

Nothing here is used by training; it lives in the package so the tests and a person at a REPL share it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["QWEN_STYLE_CHAT_TEMPLATE", "GenerateCall", "Generation", "ScriptedLLMServer", "ScriptedServerManager",
           "Turn", "build_tokenizer", "hermes_call", "write_model_dir"]

QWEN_STYLE_CHAT_TEMPLATE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""".strip()

_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_TOOL_MARKERS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")


def build_tokenizer() -> Any:
    """A byte-level Qwen-style ``PreTrainedTokenizerFast`` with a tool-calling chat template (no download)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in _TOOL_MARKERS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        chat_template=QWEN_STYLE_CHAT_TEMPLATE, model_max_length=1 << 20)
    return tokenizer


def write_model_dir(path: str | Path) -> Path:
    """Save :func:`build_tokenizer`'s tokenizer and a tiny ``qwen2`` config into ``path`` (made if missing)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(path))
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": len(tokenizer),
        # head_dim 64, so vLLM's attention backends accept it if someone saves random weights for a GPU smoke run
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 65536, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"), "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def hermes_call(name: str, arguments: Any = None) -> str:
    """One Hermes tool call as a model writes it."""
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments if arguments is not None else {}})}\n</tool_call>'


@dataclass(frozen=True)
class Generation:
    """A scripted engine answer other than a plain completion: ``eos=False`` leaves the end-of-sequence token
    off (an empty generation is ``Generation("", eos=False)``); ``stop_reason="aborted"`` is what vLLM says
    when it aborted the request (e.g. for a weight update)."""

    text: str
    stop_reason: str = "completed"
    eos: bool = True


#: A scripted turn: the text to "generate", a :class:`Generation`, or a function ``(turn, prompt_text) -> either``.
Turn = str | Generation | Callable[[int, str], "str | Generation"]


def _answer(tokenizer: Any, entry: Turn, turn: int, prompt_ids: list[int],
            sampling_params: dict[str, Any]) -> tuple[list[int], str]:
    """Token ids and stop reason of one scripted turn, cut at ``max_tokens`` as vLLM does."""
    answer = entry(turn, tokenizer.decode(prompt_ids)) if callable(entry) else entry
    generation = answer if isinstance(answer, Generation) else Generation(answer)
    ids = tokenizer.encode(generation.text, add_special_tokens=False)
    if generation.eos:
        ids.append(tokenizer.eos_token_id)
    max_tokens = sampling_params.get("max_tokens")
    if max_tokens is not None:
        if max_tokens < 1:
            raise AssertionError(f"max_tokens must be >= 1, got {max_tokens}")
        ids = ids[:max_tokens]
    return ids, generation.stop_reason


@dataclass
class GenerateCall:
    """One request the scripted manager received."""

    request_id: str
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    token_ids: list[int]


class ScriptedServerManager:
    """A stand-in for veRL's ``LLMServerClient`` that answers from a script. See the module docstring.

    (A plain class on purpose: veRL hands it to ``hydra.utils.instantiate``, which would turn a dataclass
    into a config node.)

    Args:
        tokenizer: encodes the scripted text.
        script: one entry per turn of a trajectory (turns are counted per request id).
        default: the text for turns past the end of the script (None: raise, so a test notices).
        log_probs: also return a log-prob per token (-0.5); None: when the request asks (``logprobs``), as vLLM.
        delay_s: seconds each generate call takes (to compare env time with generation time).
    """

    def __init__(self, tokenizer: Any, script: Sequence[Turn] = (), default: Turn | None = None, *,
                 log_probs: bool | None = None, delay_s: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.script = list(script)
        self.default = default
        self.log_probs = log_probs
        self.delay_s = delay_s
        self.calls: list[GenerateCall] = []
        self._turns: dict[str, int] = {}

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **kwargs: Any) -> Any:
        import asyncio

        from verl.workers.rollout.replica import TokenOutput

        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        turn = self._turns.get(request_id, 0)
        self._turns[request_id] = turn + 1
        entry = self.script[turn] if turn < len(self.script) else self.default
        if entry is None:
            raise AssertionError(f"the script has no turn {turn} (request {request_id})")
        ids, stop_reason = _answer(self.tokenizer, entry, turn, list(prompt_ids), sampling_params)
        self.calls.append(GenerateCall(request_id, list(prompt_ids), dict(sampling_params), ids))
        want = self.log_probs if self.log_probs is not None else bool(sampling_params.get("logprobs"))
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids) if want else None,
                           stop_reason=stop_reason, num_preempted=0)


class ScriptedLLMServer:
    """The body of a scripted LLM server actor (``ray.remote(ScriptedLLMServer)``) with the ``generate``
    signature of veRL's vLLM server actor, for veRL's own ``LLMServerClient`` and load balancer.

    veRL gives every turn a fresh request id, so the answer is chosen by the prompt (which holds the whole
    trajectory so far): the first rule whose text the prompt contains.

    Args:
        rules: ``(text, answer)`` pairs, tried in order; ``""`` matches every prompt.
        log_probs: also return a log-prob per token (-0.5); None: when the request asks (``logprobs``), as vLLM.
    """

    def __init__(self, rules: Sequence[tuple[str, str | Generation]], *, log_probs: bool | None = None) -> None:
        self.tokenizer = build_tokenizer()
        self.rules = list(rules)
        self.log_probs = log_probs
        self.requests = 0

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: Any = None, video_data: Any = None, **kwargs: Any) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        self.requests += 1
        prompt_text = self.tokenizer.decode(prompt_ids)
        answer = next((a for text, a in self.rules if text in prompt_text), None)
        if answer is None:
            raise AssertionError(f"no rule matches the prompt ending {prompt_text[-200:]!r}")
        ids, stop_reason = _answer(self.tokenizer, answer, 0, list(prompt_ids), sampling_params)
        want = self.log_probs if self.log_probs is not None else bool(sampling_params.get("logprobs"))
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids) if want else None,
                           stop_reason=stop_reason, num_preempted=0)

    def request_count(self) -> int:
        return self.requests


PROBE_GYM_CODE = '''
import time

from mcp_gyms import Gym, tool


class ProbeGym(Gym):
    """A gym for tests of the training loop: a hidden value, a slow tool, an echo."""

    answer_type = int

    def setup(self, task):
        self.value = task["value"]
        self.reads = 0

    def observe(self):
        return f"reads so far: {self.reads}"

    @classmethod
    def reference_answer(cls, task):
        return task["value"]

    @staticmethod
    def solve(call):
        call("Done", answer=int(call("Read")))

    @tool
    def Read(self) -> int:
        """Read the hidden value."""
        self.reads += 1
        return self.value

    @tool
    def Sleep(self, seconds: float) -> str:
        """Sleep for some seconds, then say so."""
        time.sleep(seconds)
        return "slept"

    @tool
    def Echo(self, text: str) -> str:
        """Return the text unchanged."""
        return text
'''


def make_test_bank(root: str | Path) -> Any:
    """A bank at ``root`` with the bundled ``coin_vault`` gym and the ``probe`` test gym (values 7, 11, 42)."""
    from mcp_gyms.bank import Bank, GymRecord, Provenance, TaskRecord

    bank = Bank.create(root, name="rl-tests")
    source = Bank.open()
    bank.put_gym(source.gym("coin_vault"), source.code("coin_vault"), source.tasks("coin_vault"))
    record = GymRecord(id="probe", title="Probe", class_name="ProbeGym", max_steps=64,
                       task_text="Find the hidden value with Read and submit it with Done.",
                       provenance=Provenance(source="rl-tests"))
    tasks = [TaskRecord(id=f"t{i}", difficulty="easy", config={"value": v}, answer=v, oracle_steps=2)
             for i, v in enumerate((7, 11, 42))]
    bank.put_gym(record, PROBE_GYM_CODE, tasks)
    return bank
