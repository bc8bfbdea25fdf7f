"""The wire contract between gym servers and their clients, on top of MCP (shared by server and client).

MCP's current revision (2026-07-28) is stateless, so an episode is a server-minted *handle* that every
request names. The contract, stated once:

- **Start.** ``codegym/episodes/start`` with params ``{task?, difficulty?, seed?}`` creates an episode of
  the endpoint's gym and returns :class:`EpisodeInfo` (``episode`` is the handle). ``task`` is a task index
  (int) or id (str); without it, ``difficulty`` picks the first task of that difficulty; without either,
  task 0. ``seed`` defaults to the task's own seed.
- **Calls.** ``tools/call`` with ``_meta: {"codegym/episode": HANDLE}`` (:data:`EPISODE_META_KEY`). The
  listed tools are exactly the gym's own (``Observe``, its atomic tools, ``Done``), so a model sees
  nothing else. Every result has the observation as text content, ``isError`` for a bad call, and
  ``structuredContent`` = :class:`StepOutcome`. Bad calls (unknown tool, wrong arguments, a tool's own
  error, a call after the end) are results with ``isError: true``, never JSON-RPC errors.
- **Status / close.** ``codegym/episodes/status`` and ``codegym/episodes/close`` with
  ``{episode}`` return :class:`EpisodeStatus`. Closing is idempotent.
- **Oracle.** ``codegym/oracle`` with ``{episode}`` plays the gym's verified oracle on the episode's
  (task, seed) in the sandbox and returns its call list (:class:`OraclePlan`); the client replays the
  calls through ``tools/call`` on the episode, so the reward comes from the real episode.
- **Handle-less clients** (Claude Desktop, IDEs, the Inspector, any SDK's default client): a stdio server
  keeps one implicit episode on the task chosen at start-up. Over HTTP the episode is bound to the URL:
  ``/gyms/{gym}/mcp/{name}`` (:data:`EPISODE_NAME`) is one episode, created on first use, shared by
  whoever uses that URL, ended by ``Done``, the budget or the idle timeout (then ``StartTask``
  restarts it); a client that picks its own name never meets another's episode. On the bare
  ``/gyms/{gym}/mcp`` a client on the handshake revisions gets one implicit episode per
  ``Mcp-Session-Id`` (closed at once by the session's ``DELETE``); a 2026-07-28 client without a handle
  gets a ``no_episode`` error that names a fresh episode URL to use. Only where there is an implicit
  episode the server also lists the control tool ``StartTask(task?, difficulty?, seed?)``
  (:data:`START_TOOL`), marked with ``_meta: {"codegym/control": true}`` so programs can tell it from
  the gym's tools.

Wire names follow MCP's camelCase (``taskId``, ``taskIndex``, ``maxSteps``, ``taskText``); the pydantic
models below read and write both spellings and expose snake_case attributes.

Episode ends: ``Done``, the step budget, an idle timeout, ``close``, or server shutdown. A call on an
ended episode is an ``isError`` result with ``error: "episode_over"``; on an unknown handle,
``error: "unknown_episode"``. Errors of the custom methods are JSON-RPC errors with the codes below.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field

from .constants import DEFAULT_MAX_STEPS, DIFFICULTIES, Difficulty
from .outcome import StepOutcome

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DIFFICULTIES",
    "TOKEN_ENV",
    "Difficulty",
    "wire_schema",
    "openai_function_tools",
    "CONTROL_META_KEY",
    "EPISODE_META_KEY",
    "EPISODE_NAME",
    "METHOD_CLOSE",
    "METHOD_ORACLE",
    "METHOD_START",
    "METHOD_STATUS",
    "START_TOOL",
    "CloseRequest",
    "EpisodeInfo",
    "EpisodeParams",
    "EpisodeStatus",
    "ErrorCode",
    "OracleCall",
    "OraclePlan",
    "OracleRequest",
    "StartParams",
    "StartRequest",
    "StatusRequest",
    "StepOutcome",
]

#: The environment variable that holds a gym server's bearer token (server and clients).
TOKEN_ENV = "CODEGYM_TOKEN"
#: The request ``_meta`` key that carries an episode handle.
EPISODE_META_KEY = "codegym/episode"
#: Tool ``_meta`` key marking a session-control tool (not one of the gym's tools).
CONTROL_META_KEY = "codegym/control"
#: The control tool that starts or restarts the implicit episode of a handle-less client.
START_TOOL = "StartTask"
#: An episode name in an HTTP URL, ``/gyms/{gym}/mcp/{name}``: the implicit episode of every plain client
#: that connects to that URL (created on first use, ended by Done, the budget or the idle timeout).
EPISODE_NAME = re.compile(r"[A-Za-z0-9_.~-]{1,64}")

METHOD_START = "codegym/episodes/start"
METHOD_STATUS = "codegym/episodes/status"
METHOD_CLOSE = "codegym/episodes/close"
METHOD_ORACLE = "codegym/oracle"



class ErrorCode:
    """JSON-RPC error codes of the custom methods (besides the standard -32602 invalid params).

    They sit in JSON-RPC's implementation-defined band, clear of the MCP SDK's own -32000..-32022."""

    INVALID_PARAMS = types.INVALID_PARAMS  # unknown task, bad difficulty, missing handle
    UNKNOWN_EPISODE = -32050  # no such episode handle (never minted, or forgotten long ago)
    TOO_MANY_EPISODES = -32051  # the cap on open episodes is reached
    GYM_UNAVAILABLE = -32052  # the gym's code failed to load in the sandbox
    SHUTTING_DOWN = -32053  # the server is stopping
    WRONG_GYM = -32054  # the handle belongs to another gym's endpoint
    SANDBOX_ERROR = -32055  # the sandbox failed (e.g. the oracle broke a limit)


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# --- params ------------------------------------------------------------------------------------
class StartParams(types.RequestParams):
    """Params of ``codegym/episodes/start``."""

    task: int | str | None = Field(None, description="task index (int) or task id (str); default: task 0")
    difficulty: Difficulty | None = Field(None, description="pick the first task of this difficulty")
    seed: int | None = Field(None, description="episode seed; default: the task's own seed")


class EpisodeParams(types.RequestParams):
    """Params of the methods that act on one episode. ``episode`` falls back to ``_meta``'s handle."""

    episode: str | None = None


# --- results -----------------------------------------------------------------------------------
class EpisodeInfo(types.Result):
    """Result of ``codegym/episodes/start`` (and of the ``StartTask`` tool, as structured content)."""

    result_type: Literal["complete"] = "complete"
    episode: str
    gym: str
    task_id: str
    task_index: int
    task_count: int = Field(alias="tasks", description="number of tasks of the gym")
    difficulty: Difficulty
    seed: int
    max_steps: int
    task_text: str


class EpisodeStatus(types.Result):
    """Result of ``codegym/episodes/status`` and ``codegym/episodes/close``."""

    result_type: Literal["complete"] = "complete"
    episode: str
    gym: str
    task_id: str
    steps: int
    reward: float
    done: bool
    terminated: bool
    truncated: bool
    open: bool = Field(description="false once the episode ended or was closed")
    ended: str | None = Field(None, description="why it ended: done, truncated, closed, idle, shutdown")


class OracleCall(_Wire):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class OraclePlan(types.Result):
    """Result of ``codegym/oracle``: the oracle's calls on the episode's (task, seed)."""

    result_type: Literal["complete"] = "complete"
    episode: str
    calls: list[OracleCall]
    reward: float = Field(description="the reward the oracle earned when the server played it")
    steps: int
    error: str | None = None


def wire_schema(model: type[BaseModel], mode: Literal["validation", "serialization"] = "serialization",
                ) -> dict[str, Any]:
    """The JSON Schema of a wire model as MCP tools carry it: generated from the model (so it cannot drift
    from it), camelCase names, no titles and no model docstring (the tool describes itself). In
    ``serialization`` mode every field is required,
    because the server always sends every field."""
    schema = model.model_json_schema(by_alias=True, mode=mode)

    def untitled(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
        if isinstance(node, list):
            return [untitled(v) for v in node]
        return node

    schema = untitled(schema)
    schema.pop("description", None)
    if mode == "serialization":
        schema["required"] = list(schema.get("properties", {}))
    return schema


#: ``outputSchema`` of the gym tools (what ``structuredContent`` holds).
STEP_OUTPUT_SCHEMA: dict[str, Any] = wire_schema(StepOutcome)


# --- requests (what the client sends) ----------------------------------------------------------
class StartRequest(types.Request[StartParams, Literal["codegym/episodes/start"]]):
    method: Literal["codegym/episodes/start"] = METHOD_START
    params: StartParams


class StatusRequest(types.Request[EpisodeParams, Literal["codegym/episodes/status"]]):
    method: Literal["codegym/episodes/status"] = METHOD_STATUS
    params: EpisodeParams


class CloseRequest(types.Request[EpisodeParams, Literal["codegym/episodes/close"]]):
    method: Literal["codegym/episodes/close"] = METHOD_CLOSE
    params: EpisodeParams


class OracleRequest(types.Request[EpisodeParams, Literal["codegym/oracle"]]):
    method: Literal["codegym/oracle"] = METHOD_ORACLE
    params: EpisodeParams


def openai_function_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool listings (``name``, ``description``, ``input_schema``) in OpenAI's function-calling format,
    the shape chat APIs and chat templates take."""
    return [{"type": "function", "function": {"name": t["name"], "description": t.get("description") or "",
                                              "parameters": t.get("input_schema") or {"type": "object",
                                                                                      "properties": {}}}}
            for t in tools]
