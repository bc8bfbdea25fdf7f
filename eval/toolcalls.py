"""Tool calls out of a chat completion: native ``tool_calls``, or calls written as text.

OpenAI-compatible servers differ in how a model's tool calls come back. :func:`extract_calls` returns
the calls of one assistant message as :class:`ParsedCall` objects, trying in order:

1. **native** ``message.tool_calls`` (OpenAI, vLLM with a tool parser, llama.cpp with ``--jinja``);
2. **text** in ``message.content``, when there are no native calls:

   - Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (several allowed; a last
     block whose closing tag was cut off by a stop sequence is accepted too);
   - Llama 3.1 custom: ``<function=Name>{...}</function>``; ``<|python_tag|>{...}``;
   - Mistral: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``;
   - a fenced code block (```` ```json ````/```` ```tool_call ````) or the whole content being one JSON
     object (or list of objects) with ``name`` and ``arguments`` (or ``parameters``).

A call whose arguments are not a JSON object is still returned, with ``error`` saying why, so the
episode can report it to the model as an invalid call rather than silently dropping it. Reasoning
blocks (``<think>...</think>``) are ignored when looking for text calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ParsedCall", "extract_calls", "parse_arguments", "parse_text_calls"]

Source = Literal["native", "text"]


@dataclass
class ParsedCall:
    """One tool call as the model wrote it.

    Attributes:
        id: the native call id, or ``text-{n}`` for a text call (used to pair observations with calls).
        name: the tool name ("" when it could not be read).
        raw_arguments: the arguments exactly as written (JSON text, possibly malformed).
        arguments: the parsed arguments (a dict), or ``None`` when they are not a JSON object.
        source: ``"native"`` or ``"text"``.
        error: ``None`` for a well-formed call, else what is wrong with it (shown to the model).
    """

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None
    source: Source
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def well_formed(self) -> bool:
        return self.error is None and self.arguments is not None and bool(self.name)


def parse_arguments(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Arguments of a call as a dict, or ``(None, reason)``.

    Accepts a dict, JSON object text, an empty string (no arguments), and JSON text holding a JSON
    string that itself holds an object (double-encoded arguments, which some servers send).
    """
    if raw is None:
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        return None, f"arguments must be a JSON object, got {type(raw).__name__}"
    text = raw.strip()
    if not text:
        return {}, None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def _native(tool_calls: list[Any]) -> list[ParsedCall]:
    calls = []
    for n, tc in enumerate(tool_calls):
        fn = _get(tc, "function") or {}
        name = _get(fn, "name") or ""
        raw = _get(fn, "arguments")
        raw_text = raw if isinstance(raw, str) else json.dumps(raw) if raw is not None else ""
        arguments, error = parse_arguments(raw)
        if not name and error is None:
            error = "the call has no tool name"
        calls.append(ParsedCall(_get(tc, "id") or f"call-{n}", str(name), raw_text, arguments, "native", error))
    return calls


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL)
_FUNCTION_TAG = re.compile(r"<function=([A-Za-z0-9_.\-]+)>\s*(.*?)\s*(?:</function>|\Z)", re.DOTALL)
_PYTHON_TAG = re.compile(r"<\|python_tag\|>\s*(.*?)\s*(?:<\|eom_id\|>|<\|eot_id\|>|\Z)", re.DOTALL)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]\s*(.*)", re.DOTALL)
_FENCE = re.compile(r"```(?:json|tool_call|tool_code|tool)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')


def parse_text_calls(content: str | None) -> list[ParsedCall]:
    """Tool calls written as text in ``content`` (see the module docstring); ``[]`` when there are none."""
    if not content:
        return []
    text = _THINK.sub("", content)
    if "<think>" in text and "</think>" not in text:  # an unclosed reasoning block: nothing after it counts
        text = text.split("<think>", 1)[0]
    blobs: list[str] = []
    if "<tool_call>" in text:
        blobs = [m.group(1) for m in _HERMES.finditer(text)]
    elif (tags := _FUNCTION_TAG.findall(text)):
        out = []
        for n, (name, body) in enumerate(tags):
            arguments, error = parse_arguments(body)
            out.append(ParsedCall(f"text-{n}", name, body, arguments, "text", error))
        return out
    elif (m := _PYTHON_TAG.search(text)):
        blobs = [m.group(1)]
    elif (m := _MISTRAL.search(text)):
        blobs = [m.group(1)]
    else:
        fenced = [b for b in _FENCE.findall(text) if '"name"' in b]
        if fenced:
            blobs = fenced
        else:
            stripped = text.strip()
            if stripped.startswith(("{", "[")) and '"name"' in stripped:
                blobs = [stripped]
    calls: list[ParsedCall] = []
    for blob in blobs:
        calls.extend(_calls_from_blob(blob, len(calls)))
    return calls


def _calls_from_blob(blob: str, start: int) -> list[ParsedCall]:
    blob = blob.strip()
    try:
        value = json.loads(blob)
    except json.JSONDecodeError as exc:
        value = _first_json_value(blob)
        if value is None:
            name = m.group(1) if (m := _NAME.search(blob)) else ""
            return [ParsedCall(f"text-{start}", name, blob, None, "text",
                               f"the tool call is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")]
    items = value if isinstance(value, list) else [value]
    out = []
    for n, item in enumerate(items):
        cid = f"text-{start + n}"
        if not isinstance(item, dict):
            out.append(ParsedCall(cid, "", json.dumps(item), None, "text",
                                  'a tool call must be a JSON object {"name": ..., "arguments": {...}}'))
            continue
        if isinstance(item.get("function"), dict):  # {"type": "function", "function": {...}}
            item = item["function"]
        name = item.get("name")
        raw = item.get("arguments", item.get("parameters", {}))
        raw_text = raw if isinstance(raw, str) else json.dumps(raw)
        arguments, error = parse_arguments(raw)
        if not isinstance(name, str) or not name:
            name, error = "", error or 'the tool call has no "name"'
        out.append(ParsedCall(cid, name, raw_text, arguments, "text", error))
    return out


def _first_json_value(text: str) -> Any:
    """The first complete JSON value at the start of ``text`` (ignoring trailing junk), or None."""
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None
    return value


def extract_calls(message: Any) -> list[ParsedCall]:
    """The tool calls of an assistant message (an ``openai`` message object or a dict): native
    ``tool_calls`` when present, else calls parsed from the text content."""
    native = _get(message, "tool_calls") or []
    if native:
        return _native(list(native))
    return parse_text_calls(_get(message, "content"))
