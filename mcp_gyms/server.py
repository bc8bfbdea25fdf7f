"""Serving gyms over MCP: one gym -> one MCP server; a whole bank on one HTTP port.

- :func:`build_gym_server` makes the low-level MCP ``Server`` of one gym. Its tools are exactly the gym's
  tools as the sandbox describes them (``Observe``, the atomic tools, ``Done``) with their JSON Schemas;
  every call runs in the :class:`~mcp_gyms.sandbox.SandboxPool` (arguments are validated strictly there
  before gym code runs). The task text is offered as the prompt ``task`` and as the resource
  ``codegym://{gym}/task``; ``codegym://{gym}/tasks`` lists the tasks (ids and difficulties, not their
  hidden configurations). The episode protocol (handles in ``_meta``, the custom methods, the implicit
  episode of handle-less clients) is stated in :mod:`mcp_gyms.protocol`.
- :func:`serve_stdio` runs one gym over stdio (Claude Desktop, ``fastmcp``, the Inspector) with one
  implicit episode on the task chosen at start-up and the ``StartTask`` tool to pick or restart a task.
- :class:`HttpService` serves every gym of a bank (or one) over streamable HTTP on one port:
  ``/gyms/{gym_id}/mcp`` per gym (made on first use) and ``/gyms/{gym_id}/mcp/{name}`` (the same server,
  with the implicit episode bound to the URL, for plain clients), ``GET /gyms``, ``GET /healthz`` (always
  open), ``GET /metrics`` (Prometheus text), ``/.well-known/*`` 404 (no OAuth), an optional bearer token
  (scheme name in any case), a request body limit answered as a JSON-RPC error, DNS-rebinding protection
  on loopback, and a graceful shutdown that lets in-flight calls finish and stops every sandbox worker.
- :func:`add_serve_arguments` / :func:`serve_command` are the ``codegym serve`` command.

Nothing a client sends makes the server answer 500 or hang: bad tool calls are ``isError`` results,
bad episode requests are JSON-RPC errors with the codes in :class:`mcp_gyms.protocol.ErrorCode`, and
unknown gym paths are 404 with a JSON body.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import mcp_types as types
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .bank import DIFFICULTIES, Bank
from .episode import StepResult
from .episodes import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_EPISODES,
    EpisodeError,
    EpisodeManager,
    LiveEpisode,
    LoadedGym,
    rejection,
    resolve_task,
)
from .protocol import (
    CONTROL_META_KEY,
    EPISODE_META_KEY,
    EPISODE_NAME,
    METHOD_CLOSE,
    METHOD_ORACLE,
    METHOD_START,
    METHOD_STATUS,
    START_TOOL,
    STEP_OUTPUT_SCHEMA,
    TOKEN_ENV,
    EpisodeInfo,
    EpisodeParams,
    EpisodeStatus,
    OracleCall,
    OraclePlan,
    StartParams,
    StepOutcome,
)
from .sandbox import SandboxLimits, SandboxPool

__all__ = [
    "HttpService",
    "StartupTask",
    "add_arguments",
    "add_serve_arguments",
    "build_gym_server",
    "main",
    "open_gym_server",
    "run",
    "serve_command",
    "serve_stdio",
]

#: How a server finds the implicit episode of a request that carries no handle: "process" (stdio: one per
#: process), "session" (HTTP: the episode named in the URL, ``/gyms/{gym}/mcp/{name}``, else one per
#: Mcp-Session-Id), None (handles only).
Handleless = Literal["process", "session"] | None

_PROCESS_KEY = "stdio"
_RAW_ARGUMENTS_KEY = "codegym.internal/raw-arguments"  # set only by the server's own middleware
_LOOPBACK_HOSTS = ("localhost",)
_COUNTED_HERE = frozenset({EpisodeError.NO_EPISODE, EpisodeError.UNKNOWN_EPISODE, EpisodeError.EPISODE_OVER,
                           EpisodeError.WRONG_GYM, EpisodeError.UNKNOWN_TASK})
#: The largest HTTP request body accepted by default (bytes).
DEFAULT_MAX_REQUEST_BODY = 4 * 1024 * 1024
_TASK_RESOURCE = "codegym://{gym}/task"
_TASKS_RESOURCE = "codegym://{gym}/tasks"


@dataclass(frozen=True)
class StartupTask:
    """The task a handle-less client's implicit episode starts on."""

    task: int | str | None = None
    difficulty: str | None = None
    seed: int | None = None


class _StartTaskArguments(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    task: int | str | None = None
    difficulty: Literal["easy", "medium", "hard"] | None = None
    seed: int | None = None


_START_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                 "description": "task index (0-based) or task id; default: restart the current task"},
        "difficulty": {"type": "string", "enum": list(DIFFICULTIES),
                       "description": "without task: go to the next task of this difficulty"},
        "seed": {"type": "integer", "description": "episode seed; default: the task's own seed"},
    },
    "additionalProperties": False,
}
_START_TOOL_DOC = (
    "Start (or restart) a task of this gym. This is a control of the session, not part of the task: it "
    "throws away the current episode. Without arguments it restarts the current task; `task` picks a task "
    "by index or id; `difficulty` alone moves to the next task of that difficulty. Returns the task text."
)


# --- one gym, one server -------------------------------------------------------------------------
async def _normalise_tool_call(ctx: ServerRequestContext[Any, Any], call_next: Any) -> Any:
    """Server middleware: let a tools/call with non-object arguments or a non-string name reach the
    handler (as a bad call that the sandbox reports), instead of failing params validation with a
    JSON-RPC error. Also strips the private key from what clients send."""
    if ctx.method != "tools/call":
        return await call_next(ctx)
    raw = ctx.params
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):  # the usual call: nothing to change
        arguments, meta = raw.get("arguments"), raw.get("_meta")
        if (arguments is None or isinstance(arguments, Mapping)) and (
                meta is None or (isinstance(meta, Mapping) and _RAW_ARGUMENTS_KEY not in meta)):
            return await call_next(ctx)
    params = dict(raw) if isinstance(raw, Mapping) else {}
    meta = params.get("_meta")
    meta = dict(meta) if isinstance(meta, Mapping) else ({} if meta is None else meta)
    changed = isinstance(meta, dict) and meta.pop(_RAW_ARGUMENTS_KEY, None) is not None
    name, arguments = params.get("name"), params.get("arguments")
    if not isinstance(name, str):
        params["name"] = "" if name is None else json.dumps(name)
        changed = True
    if arguments is not None and not isinstance(arguments, Mapping) and isinstance(meta, dict):
        meta[_RAW_ARGUMENTS_KEY] = json.dumps(arguments)
        params["arguments"] = {}
        changed = True
    if not changed and isinstance(raw, Mapping):
        return await call_next(ctx)
    if isinstance(meta, dict) and (meta or "_meta" in params):
        params["_meta"] = meta
    return await call_next(dataclasses.replace(ctx, params=params))


def _rpc_error(exc: EpisodeError) -> MCPError:
    return MCPError(code=exc.code, message=exc.message, data={"kind": exc.kind})


def _text(text: str) -> list[types.TextContent]:
    return [types.TextContent(text=text)]


def _step_result(result: StepResult, handle: str | None) -> types.CallToolResult:
    # StepOutcome's fields, built as a dict: this runs on every call, and the sandbox already checked
    # every field's type (see SandboxEpisode._checked)
    outcome = {"observation": result.observation, "reward": float(result.reward), "done": result.done,
               "terminated": result.terminated, "truncated": result.truncated, "steps": result.steps,
               "error": result.error}
    return types.CallToolResult(content=_text(result.observation), structured_content=outcome,
                                is_error=result.error is not None,
                                _meta={EPISODE_META_KEY: handle} if handle else None)


def _error_result(exc: EpisodeError, handle: str | None = None) -> types.CallToolResult:
    status = exc.status
    outcome = StepOutcome(observation=f"Error: {exc.message}", error=exc.kind,
                          reward=status.reward if status else 0.0, done=status.done if status else False,
                          terminated=status.terminated if status else False,
                          truncated=status.truncated if status else False, steps=status.steps if status else 0)
    return types.CallToolResult(content=_text(outcome.observation), structured_content=outcome.model_dump(),
                                is_error=True, _meta={EPISODE_META_KEY: handle} if handle else None)


def build_gym_server(manager: EpisodeManager, gym: LoadedGym, *, handleless: Handleless = None,
                     startup: StartupTask | None = None) -> Server[Any]:
    """The MCP server of one (loaded) gym, on a running :class:`EpisodeManager`.

    Args:
        manager: the episodes of this process (shared by every gym's server).
        gym: the gym, from ``await manager.gym(gym_id)``.
        handleless: where requests without a handle find their implicit episode (see :data:`Handleless`).
        startup: the task an implicit episode starts on (default: task 0).
    """
    startup = startup or StartupTask()
    implicit_lock = anyio.Lock()
    gym_tools = [
        types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"],
                   output_schema=STEP_OUTPUT_SCHEMA)
        for t in gym.tools
    ]
    start_tool = types.Tool(name=START_TOOL, title="Start or restart a task", description=_START_TOOL_DOC,
                            input_schema=_START_TOOL_SCHEMA, _meta={CONTROL_META_KEY: True})
    schemas = {t["name"]: t["input_schema"] for t in gym.tools}
    schemas.setdefault(START_TOOL, _START_TOOL_SCHEMA)
    task_uri, tasks_uri = _TASK_RESOURCE.format(gym=gym.id), _TASKS_RESOURCE.format(gym=gym.id)
    tool_names = ", ".join(t.name for t in gym_tools)

    def refused(exc: EpisodeError) -> EpisodeError:
        if exc.kind in _COUNTED_HERE:  # the manager counts its own refusals (cap, shutdown)
            manager.metrics.rejected[exc.kind] += 1
        return exc

    def implicit_key(ctx: ServerRequestContext[Any, Any]) -> str | None:
        if handleless == "process":
            return _PROCESS_KEY
        if handleless == "session" and isinstance(ctx.request, Request):
            name = ctx.request.path_params.get("episode")
            if name:
                return f"url:{name}"
            sid = ctx.request.headers.get("mcp-session-id")
            return f"session:{sid}" if sid else None
        return None

    def handle_of(meta: Mapping[str, Any] | None, explicit: str | None = None) -> str | None:
        handle = explicit if explicit is not None else (meta or {}).get(EPISODE_META_KEY)
        if handle is not None and not isinstance(handle, str):
            raise EpisodeError(EpisodeError.NO_EPISODE, f"_meta[{EPISODE_META_KEY!r}] must be a string handle")
        return handle

    def no_handle_message(ctx: ServerRequestContext[Any, Any]) -> str:
        if handleless == "session" and isinstance(ctx.request, Request):
            url = ctx.request.url
            mine = f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}/{secrets.token_urlsafe(9)}"
            return (f"this URL has no episode of its own. Connect your MCP client to {mine} instead (or to "
                    f"{url.path.rstrip('/')}/NAME with any name of your own: each name is one episode, created "
                    f"on first use; call {START_TOOL} there to pick a task). Programs: start an episode with "
                    f"the {METHOD_START!r} request and send its handle in _meta[{EPISODE_META_KEY!r}]")
        return (f"this request carries no episode handle. Start an episode with the {METHOD_START!r} request "
                f"and send its handle in _meta[{EPISODE_META_KEY!r}]"
                + ("" if handleless else "; or use `codegym serve GYM` over stdio, or `codegym serve --http` "
                   "and the URL /gyms/GYM/mcp/NAME, for an implicit episode"))

    async def episode_for(ctx: ServerRequestContext[Any, Any], meta: Mapping[str, Any] | None) -> LiveEpisode:
        handle = handle_of(meta)
        if handle is not None:
            return manager.get(handle, gym.id)
        key = implicit_key(ctx)
        if key is None:
            raise EpisodeError(EpisodeError.NO_EPISODE, no_handle_message(ctx))
        handle = manager.implicit(gym.id, key)
        if handle is None:
            async with implicit_lock:
                handle = manager.implicit(gym.id, key)
                if handle is None:
                    ep = await manager.start(gym.id, startup.task, startup.difficulty, startup.seed,
                                             implicit_key=key)
                    return ep
        try:
            return manager.get(handle, gym.id)
        except EpisodeError as exc:
            if exc.kind == EpisodeError.EPISODE_OVER:
                exc.message += f"; call {START_TOOL} to start again"
            raise

    async def start_task(ctx: ServerRequestContext[Any, Any], key: str,
                         arguments: Mapping[str, Any]) -> types.CallToolResult:
        try:
            args = _StartTaskArguments.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            return types.CallToolResult(content=_text(f"Error: invalid arguments for {START_TOOL}: {problems}"),
                                        is_error=True)
        current_handle = manager.implicit(gym.id, key)
        current: int | None = None
        seed = args.seed
        if current_handle is not None:
            with contextlib.suppress(EpisodeError):
                current = gym.resolve_task(manager.status(current_handle, gym.id).task_id)
        try:
            if args.task is not None:
                index = gym.resolve_task(args.task)
            elif args.difficulty is not None:
                same = [i for i, t in enumerate(gym.tasks) if t.difficulty == args.difficulty]
                if not same:
                    raise EpisodeError(EpisodeError.UNKNOWN_TASK, f"gym {gym.id!r} has no {args.difficulty!r} task")
                later = [i for i in same if current is not None and i > current]
                index = (later or same)[0]
            elif current is not None:
                index = current
            else:
                index = gym.resolve_task(startup.task, startup.difficulty)
                seed = startup.seed if seed is None else seed
            async with implicit_lock:
                ep = await manager.start(gym.id, index, None, seed, implicit_key=key)
        except EpisodeError as exc:
            return _error_result(refused(exc))
        info = ep.info()
        text = (f"Started task {info.task_id} ({info.difficulty}; task {info.task_index} of 0..{info.tasks - 1}; "
                f"seed {info.seed}). Budget: {info.max_steps} tool calls. Tools: {tool_names}.\n\n{info.task_text}")
        return types.CallToolResult(content=_text(text), structured_content=info.model_dump(mode="json", by_alias=True,
                                                                                 exclude={"result_type", "meta"}),
                                    _meta={EPISODE_META_KEY: ep.handle})

    # --- handlers ------------------------------------------------------------------------------
    async def list_tools(ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        if implicit_key(ctx) is not None:
            return types.ListToolsResult(tools=[*gym_tools, start_tool])
        return types.ListToolsResult(tools=gym_tools)

    async def call_tool(ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        meta = params.meta or {}
        raw = meta.get(_RAW_ARGUMENTS_KEY)
        arguments_json = raw if isinstance(raw, str) else json.dumps(params.arguments or {})
        handle: str | None = None
        try:
            if params.name == START_TOOL and handle_of(meta) is None and (key := implicit_key(ctx)) is not None:
                if isinstance(raw, str):
                    return types.CallToolResult(content=_text(f"Error: {START_TOOL} takes a JSON object of arguments"),
                                                is_error=True)
                return await start_task(ctx, key, params.arguments or {})
            ep = await episode_for(ctx, meta)
            handle = ep.handle
            result = await manager.call(ep, params.name, arguments_json)
        except EpisodeError as exc:
            return _error_result(refused(exc), handle)
        return _step_result(result, handle)

    async def list_prompts(ctx: ServerRequestContext[Any, Any],
                           params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(
            name="task", title=f"Task: {gym.record.title}",
            description=f"What the agent is asked to do in the gym {gym.id!r}: the task text, to start from.")])

    async def get_prompt(ctx: ServerRequestContext[Any, Any],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != "task":
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown prompt {params.name!r}; the prompt is 'task'")
        text = (f"{gym.record.task_text}\n\nUse the tools to explore (Observe shows a partial view of the hidden "
                f"state) and submit your answer with Done(answer). Every call counts toward a budget of "
                f"{gym.max_steps} calls.")
        return types.GetPromptResult(description=gym.record.title, messages=[
            types.PromptMessage(role="user", content=types.TextContent(text=text))])

    async def list_resources(ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[
            types.Resource(uri=task_uri, name="task", title=f"Task: {gym.record.title}", mime_type="text/plain",
                           description="The task text of this gym."),
            types.Resource(uri=tasks_uri, name="tasks", title="Tasks", mime_type="application/json",
                           description="The tasks of this gym (index, id, difficulty; not their hidden inputs)."),
        ])

    async def read_resource(ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == task_uri:
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="text/plain", text=gym.record.task_text)])
        if uri == tasks_uri:
            listing = [{"index": i, "id": t.id, "difficulty": t.difficulty, "oracle_steps": t.oracle_steps}
                       for i, t in enumerate(gym.tasks)]
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="application/json", text=json.dumps(listing, indent=1))])
        raise MCPError(code=types.INVALID_PARAMS, message=f"unknown resource {uri!r}; see resources/list")

    async def on_start(ctx: ServerRequestContext[Any, Any], params: StartParams) -> EpisodeInfo:
        try:
            ep = await manager.start(gym.id, params.task, params.difficulty, params.seed)
        except EpisodeError as exc:
            raise _rpc_error(refused(exc)) from None
        return ep.info()

    def episode_param(ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> str:
        handle = handle_of(params.meta, params.episode)
        if handle is None:
            raise EpisodeError(EpisodeError.NO_EPISODE, "name the episode: params.episode (or "
                               f"_meta[{EPISODE_META_KEY!r}])")
        return handle

    async def on_status(ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> EpisodeStatus:
        try:
            return manager.status(episode_param(ctx, params), gym.id)
        except EpisodeError as exc:
            raise _rpc_error(refused(exc)) from None

    async def on_close(ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> EpisodeStatus:
        try:
            return await manager.close(episode_param(ctx, params), gym.id)
        except EpisodeError as exc:
            raise _rpc_error(refused(exc)) from None

    async def on_oracle(ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> OraclePlan:
        try:
            ep = manager.get(episode_param(ctx, params), gym.id)
            played = await manager.oracle(ep)
        except EpisodeError as exc:
            raise _rpc_error(refused(exc)) from None
        return OraclePlan(episode=ep.handle, calls=[OracleCall(name=n, arguments=a) for n, a in played.calls],
                          reward=played.reward, steps=played.steps, error=played.error)

    instructions = (
        f"{gym.record.title}: {gym.record.task_text}\n\nTools: {tool_names}. Submit the answer with Done(answer); "
        f"the budget is {gym.max_steps} calls. Programs: start an episode with the {METHOD_START!r} request "
        f"and pass its handle in _meta[{EPISODE_META_KEY!r}] on every call."
    )
    server: Server[Any] = Server(
        f"codegym-{gym.id}", version=__version__, title=gym.record.title, instructions=instructions,
        on_list_tools=list_tools, on_call_tool=call_tool, on_list_prompts=list_prompts, on_get_prompt=get_prompt,
        on_list_resources=list_resources, on_read_resource=read_resource,
        get_tool_input_schema=schemas.get,
    )
    server.add_request_handler(METHOD_START, StartParams, on_start)
    server.add_request_handler(METHOD_STATUS, EpisodeParams, on_status)
    server.add_request_handler(METHOD_CLOSE, EpisodeParams, on_close)
    server.add_request_handler(METHOD_ORACLE, EpisodeParams, on_oracle)
    server.middleware.insert(0, _normalise_tool_call)
    return server


@contextlib.asynccontextmanager
async def open_gym_server(bank: Bank, gym_id: str, *, workers: int | None = 1, limits: SandboxLimits | None = None,
                          handleless: Handleless = "process", startup: StartupTask | None = None,
                          max_episodes: int = DEFAULT_MAX_EPISODES, idle_timeout: float | None = None,
                          allow_unverified: bool = False) -> AsyncIterator[Server[Any]]:
    """A ready in-process server of one gym (with its own sandbox pool), for ``mcp_gyms.client.connect``."""
    async with SandboxPool(workers, limits) as pool, \
            EpisodeManager(bank, pool, gyms=[gym_id], max_episodes=max_episodes, idle_timeout=idle_timeout,
                           allow_unverified=allow_unverified) as manager:
        gym = await manager.gym(gym_id)
        if startup is not None:
            gym.resolve_task(startup.task, startup.difficulty)
        yield build_gym_server(manager, gym, handleless=handleless, startup=startup)


# --- stdio -------------------------------------------------------------------------------------------
#: At end of stdin, how long the server waits for the calls in flight to answer before it exits (s).
_EOF_GRACE_S = 120.0


class _AnsweredWriter:
    """The stdio write stream; every response or error sent takes its request id off ``pending``."""

    def __init__(self, inner: Any, pending: set[Any]) -> None:
        self.inner = inner
        self.pending = pending

    async def send(self, item: SessionMessage) -> None:
        await self.inner.send(item)
        if isinstance(item.message, (types.JSONRPCResponse, types.JSONRPCError)):
            self.pending.discard(item.message.id)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _AnsweredWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _AnsweringReader:
    """The stdio read stream, but a line that is not JSON-RPC gets a JSON-RPC error reply (id null:
    -32700 for bad JSON, -32600 for a bad message) instead of being dropped without a word; and end of
    input waits (up to :data:`_EOF_GRACE_S`) until every request read so far has been answered, so
    ``printf REQUEST | codegym serve GYM`` gets its answer."""

    def __init__(self, inner: Any, write_stream: Any) -> None:
        self.inner = inner
        self.pending: set[Any] = set()
        self.write_stream = _AnsweredWriter(write_stream, self.pending)

    @property
    def last_context(self) -> Any:
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            try:
                item = await self.inner.receive()
            except anyio.EndOfStream:
                with anyio.move_on_after(_EOF_GRACE_S):
                    while self.pending:
                        await anyio.sleep(0.01)
                raise
            if isinstance(item, SessionMessage):
                message = item.message
                if isinstance(message, types.JSONRPCRequest):
                    self.pending.add(message.id)
                elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
                    self.pending.discard((message.params or {}).get("requestId"))
                return item
            if not isinstance(item, Exception):
                return item
            bad_json = isinstance(item, ValidationError) and any(
                e.get("type") == "json_invalid" for e in item.errors(include_url=False))
            error = types.ErrorData(code=types.PARSE_ERROR if bad_json else types.INVALID_REQUEST,
                                    message="Parse error: not JSON" if bad_json else
                                    "Invalid request: not a JSON-RPC 2.0 message")
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self.write_stream.send(SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=None, error=error)))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __aiter__(self) -> _AnsweringReader:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


async def serve_stdio(bank: Bank, gym_id: str, *, startup: StartupTask | None = None, workers: int | None = 1,
                      limits: SandboxLimits | None = None, idle_timeout: float | None = None,
                      max_episodes: int = DEFAULT_MAX_EPISODES, allow_unverified: bool = False) -> None:
    """Serve one gym over stdio until stdin closes (then return) or SIGTERM/SIGINT/SIGHUP.

    On a signal the episodes are closed and every sandbox worker stopped, then the process exits at
    once (status 0): the thread blocked reading stdin cannot be interrupted, so it is not waited for."""
    async with SandboxPool(workers, limits) as pool, \
            EpisodeManager(bank, pool, gyms=[gym_id], max_episodes=max_episodes, idle_timeout=idle_timeout,
                           allow_unverified=allow_unverified) as manager:
        gym = await manager.gym(gym_id)
        if startup is not None:
            gym.resolve_task(startup.task, startup.difficulty)
        server = build_gym_server(manager, gym, handleless="process", startup=startup)
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                    async for _ in signals:
                        with anyio.CancelScope(shield=True):
                            await manager.shutdown()
                            await pool.aclose()
                        sys.stderr.flush()
                        os._exit(0)

            async def serve() -> None:
                async with stdio_server() as (read_stream, write_stream):
                    reader = _AnsweringReader(read_stream, write_stream)
                    await server.run(reader, reader.write_stream, server.create_initialization_options())
                tg.cancel_scope.cancel()

            tg.start_soon(on_signal)
            tg.start_soon(serve)


# --- HTTP --------------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _json_error(status: int, message: str, code: int = types.INVALID_REQUEST) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status)


def _limit_body(app: ASGIApp, limit: int) -> ASGIApp:
    """``app`` behind a cap on the request body: a bigger body gets 413 with a JSON-RPC error naming the
    limit (before the MCP SDK's own check, which answers in plain text)."""

    def too_big() -> JSONResponse:
        return _json_error(413, f"request body too large: the limit is {limit} bytes ({limit / 2**20:g} MiB); "
                                "send smaller arguments (`codegym serve --max-request-body BYTES` raises it)")

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await too_big()(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await too_big()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await app(scope, replay, send)

    return limited


class BearerAuth:
    """Pure-ASGI middleware: every HTTP request but ``GET /healthz`` and ``/.well-known/*`` (which answer
    404: there is no OAuth here) needs ``Authorization: Bearer TOKEN`` (the scheme name in any case)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz" and not scope["path"].startswith("/.well-known/"):
            if not self._authorized(scope):
                response = JSONResponse({"error": "unauthorized: send Authorization: Bearer <token>"}, 401,
                                        headers={"WWW-Authenticate": 'Bearer realm="codegym"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _GymEndpoints:
    """The ASGI endpoint ``/gyms/{gym_id}/mcp``: one MCP server and session manager per gym, on first use."""

    def __init__(self, service: HttpService) -> None:
        self.service = service
        self.managers: dict[str, StreamableHTTPSessionManager] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def _hold(self, mgr: StreamableHTTPSessionManager, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with mgr.run():
            task_status.started()
            await anyio.sleep_forever()

    async def endpoint(self, gym_id: str) -> StreamableHTTPSessionManager:
        mgr = self.managers.get(gym_id)
        if mgr is not None:
            return mgr
        manager = self.service.manager
        if manager is None or self._tg is None:
            raise EpisodeError(EpisodeError.SHUTTING_DOWN, "the server is not running")
        async with self._locks.setdefault(gym_id, anyio.Lock()):
            if gym_id in self.managers:
                return self.managers[gym_id]
            gym = await manager.gym(gym_id)
            server = build_gym_server(manager, gym, handleless="session", startup=self.service.startup)
            mgr = StreamableHTTPSessionManager(
                app=server, stateless=False, json_response=True, security_settings=self.service.security,
                session_idle_timeout=self.service.session_idle_timeout, max_sessions=self.service.max_sessions,
                max_request_body_size=self.service.max_request_body,
            )
            await self._tg.start(self._hold, mgr)
            self.managers[gym_id] = mgr
            return mgr

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gym_id = scope["path_params"]["gym_id"]
        name = scope["path_params"].get("episode")
        manager = self.service.manager
        if manager is None or not manager.serves(gym_id):
            if manager is not None:
                manager.metrics.rejected[EpisodeError.UNKNOWN_GYM] += 1
            await _json_error(404, f"no gym {gym_id!r} on this server; GET /gyms lists them")(scope, receive, send)
            return
        if name is not None and not EPISODE_NAME.fullmatch(name):
            await _json_error(404, f"bad episode name {name!r} in /gyms/{gym_id}/mcp/NAME: use 1 to 64 letters, "
                                   "digits, '-', '_', '.' or '~'")(scope, receive, send)
            return
        try:
            mgr = await self.endpoint(gym_id)
        except EpisodeError as exc:
            status = 503 if exc.kind in (EpisodeError.GYM_UNAVAILABLE, EpisodeError.SHUTTING_DOWN) else 404
            await _json_error(status, exc.message, exc.code)(scope, receive, send)
            return
        await _limit_body(mgr.handle_request, self.service.max_request_body)(scope, receive, send)
        sid = Headers(scope=scope).get("mcp-session-id")
        if scope["method"] == "DELETE" and sid:  # the session ended: so does its implicit episode, at once
            handle = manager.implicit(gym_id, f"session:{sid}")
            if handle is not None:
                with contextlib.suppress(EpisodeError):
                    await manager.close(handle, gym_id)


class HttpService:
    """Every gym of a bank (or the listed ones) on one streamable-HTTP port. ``app()`` is the ASGI app.

    The app's lifespan owns the sandbox pool and the :class:`EpisodeManager` (``self.manager`` while it
    runs), so a SIGTERM to uvicorn still shuts the sandbox down: in-flight calls finish (up to
    ``shutdown_grace`` s), episodes close, workers stop.
    """

    def __init__(self, bank: Bank, *, gyms: list[str] | None = None, workers: int | None = None,
                 limits: SandboxLimits | None = None, max_episodes: int = DEFAULT_MAX_EPISODES,
                 idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S, token: str | None = None,
                 host: str = "127.0.0.1", startup: StartupTask | None = None, shutdown_grace: float = 10.0,
                 max_sessions: int = 10_000, max_request_body: int = DEFAULT_MAX_REQUEST_BODY,
                 allow_unverified: bool = False) -> None:
        self.bank = bank
        self.allow_unverified = allow_unverified
        self.gyms = gyms
        self.workers = workers
        self.limits = limits
        self.max_episodes = max_episodes
        self.idle_timeout = idle_timeout
        self.token = token
        self.host = host
        self.startup = startup
        self.shutdown_grace = shutdown_grace
        self.max_sessions = max_sessions
        self.max_request_body = max_request_body
        self.session_idle_timeout = idle_timeout or DEFAULT_IDLE_TIMEOUT_S
        self.manager: EpisodeManager | None = None
        self.pool: SandboxPool | None = None
        self.on_ready: Callable[[], None] | None = None  # called once the app is ready to serve
        if _is_loopback(host):
            self.security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        else:
            self.security = TransportSecuritySettings(enable_dns_rebinding_protection=False)

    def app(self) -> ASGIApp:
        """A fresh ASGI app (build one per server start: its lifespan can run once)."""
        endpoints = _GymEndpoints(self)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with SandboxPool(self.workers, self.limits) as pool:
                manager = EpisodeManager(self.bank, pool, gyms=self.gyms, max_episodes=self.max_episodes,
                                         idle_timeout=self.idle_timeout, shutdown_grace=self.shutdown_grace,
                                         allow_unverified=self.allow_unverified)
                async with manager, endpoints.running():
                    self.pool, self.manager = pool, manager
                    if self.on_ready is not None:
                        self.on_ready()
                    try:
                        yield
                    finally:
                        await manager.shutdown()  # in-flight calls finish before the endpoints stop
                        self.manager = None

        async def healthz(request: Request) -> Response:
            manager = self.manager
            if manager is None:
                return JSONResponse({"status": "stopped"}, 503)
            health = manager.health()
            return JSONResponse(health, 200 if health["status"] == "ok" else 503)

        async def metrics(request: Request) -> Response:
            manager = self.manager
            if manager is None:
                return PlainTextResponse("# server stopped\n", 503)
            return PlainTextResponse(manager.metrics_text(), media_type="text/plain; version=0.0.4")

        async def gyms(request: Request) -> Response:
            manager = self.manager
            if manager is None:
                return JSONResponse({"status": "stopped"}, 503)
            rows = []
            for gym_id in manager.gym_ids:
                s = self.bank.summary(gym_id)
                rows.append({"id": gym_id, "title": s.title, "tasks": s.tasks, "tools": s.tools,
                             "endpoint": f"/gyms/{gym_id}/mcp", "episode_endpoint": f"/gyms/{gym_id}/mcp/{{name}}"})
            return JSONResponse({"gyms": rows})

        async def well_known(request: Request) -> Response:
            return _json_error(404, "this server does not use OAuth: if it needs a token, send "
                                    "'Authorization: Bearer TOKEN' (the token given to `codegym serve --token`)")

        app = Starlette(routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/gyms", gyms, methods=["GET"]),
            Route("/gyms/{gym_id}/mcp", endpoints, methods=["GET", "POST", "DELETE"]),
            Route("/gyms/{gym_id}/mcp/{episode}", endpoints, methods=["GET", "POST", "DELETE"]),
            Route("/.well-known/{rest:path}", well_known),
        ], lifespan=lifespan)
        return BearerAuth(app, self.token) if self.token else app


#: Seconds the server keeps an idle keep-alive connection. Longer than clients keep theirs (httpx: 5 s),
#: so a client never sends a request on a connection the server is closing at that moment (which
#: would fail a tool call that can't be retried: it may have run).
KEEP_ALIVE_S = 75


def uvicorn_config(service: HttpService, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn settings every HTTP gym server uses (``codegym serve --http``, eval's local server)."""
    return uvicorn.Config(service.app(), log_level=log_level, timeout_graceful_shutdown=5, lifespan="on", ws="none",
                          timeout_keep_alive=KEEP_ALIVE_S)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for a gym server (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says TCP; without it every HTTP response waits ~40 ms for Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)  # connections made before uvicorn is up wait in the backlog instead of being refused
    sock.set_inheritable(True)
    return sock


def serve_http(service: HttpService, port: int, *, log_level: str = "warning") -> None:
    """Run ``service`` under uvicorn until SIGINT/SIGTERM (graceful: see :class:`HttpService`)."""

    sock = bind_socket(service.host, port)
    host, bound = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    count = len(service.gyms) if service.gyms is not None else len(service.bank)
    service.on_ready = lambda: print(
        f"codegym: serving {count} gym(s) on http://{shown}:{bound}/gyms/{{gym_id}}/mcp "
        f"(plain MCP clients: .../mcp/{{episode_name}}; health: /healthz, metrics: /metrics)"
        f"{' with a bearer token' if service.token else ''}",
        file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn_config(service, log_level)).run(sockets=[sock])


# --- the `codegym serve` command ---------------------------------------------------------------------
def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``codegym serve`` to ``parser``."""
    parser.add_argument("gym", nargs="?", help="gym id: serve it over stdio (or, with --http, serve only it)")
    parser.add_argument("--bank", default=None, help="bank folder (default: the bundled bank)")
    parser.add_argument("--task", default=None, help="task index or task id of the implicit episode (default: 0)")
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default=None,
                        help="start on the first task of this difficulty (when --task is not given)")
    parser.add_argument("--seed", type=int, default=None, help="episode seed (default: the task's own)")
    parser.add_argument("--http", action="store_true", help="serve over streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000; 0 picks a free one)")
    parser.add_argument("--token", default=None,
                        help=f"require 'Authorization: Bearer TOKEN' on HTTP (default: ${TOKEN_ENV}, if set)")
    parser.add_argument("--workers", type=int, default=None,
                        help="sandbox worker processes (default: 1 for stdio, the CPU count for HTTP)")
    parser.add_argument("--max-episodes", type=int, default=DEFAULT_MAX_EPISODES,
                        help=f"cap on open episodes (default: {DEFAULT_MAX_EPISODES})")
    parser.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                        help=f"close episodes idle this long (default: {DEFAULT_IDLE_TIMEOUT_S:g} for HTTP, "
                             "never for stdio)")
    parser.add_argument("--time-limit", type=float, default=3.0, metavar="SECONDS",
                        help="wall-time limit of one tool call in the sandbox (default: 3)")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="also serve gyms that failed `codegym verify` (refused by default)")
    parser.add_argument("--max-request-body", type=int, default=DEFAULT_MAX_REQUEST_BODY, metavar="BYTES",
                        help=f"largest HTTP request body accepted (default: {DEFAULT_MAX_REQUEST_BODY}, 4 MiB); "
                             "a bigger one gets HTTP 413 with a JSON-RPC error naming the limit")


def _announce_unverified(bank: Bank, gyms: list[str] | None, allowed: bool) -> None:
    """Say at start which served gyms failed verification (refused unless ``allowed``) or never had it."""
    rejected, unchecked = [], []
    for gym_id in gyms if gyms is not None else bank.gym_ids:
        if bank.summary(gym_id).verified:
            continue
        (rejected if rejection(bank.gym(gym_id)) else unchecked).append(gym_id)
    if rejected:
        what = "serving anyway (--allow-unverified)" if allowed else "refusing (--allow-unverified serves them)"
        print(f"codegym: {len(rejected)} gym(s) failed verification, {what}: {', '.join(rejected[:20])}",
              file=sys.stderr, flush=True)
    if unchecked:
        print(f"codegym: {len(unchecked)} gym(s) were never verified (`codegym verify` checks them): "
              f"{', '.join(unchecked[:20])}", file=sys.stderr, flush=True)


def _task_arg(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def serve_command(args: argparse.Namespace) -> int:
    """Run ``codegym serve``: stdio when a GYM is given without --http, else HTTP. Returns the exit code."""
    bank = Bank.open(args.bank)
    startup = StartupTask(_task_arg(args.task), args.difficulty, args.seed)
    limits = SandboxLimits(time_s=args.time_limit)
    if args.gym is not None and args.gym not in bank:
        print(f"codegym serve: no gym {args.gym!r} in {bank.root} (see `codegym list`)", file=sys.stderr)
        return 2
    if args.gym is not None and (startup.task is not None or startup.difficulty is not None):
        try:  # fail before any sandbox starts
            resolve_task(args.gym, bank.tasks(args.gym), startup.task, startup.difficulty)
        except EpisodeError as exc:
            print(f"codegym serve: {exc.message}", file=sys.stderr)
            return 2
    rejected = rejection(bank.gym(args.gym)) if args.gym is not None else None
    if rejected and not args.allow_unverified:
        print(f"codegym serve: gym {args.gym!r} {rejected}; serve it anyway with --allow-unverified", file=sys.stderr)
        return 2
    _announce_unverified(bank, [args.gym] if args.gym else None, args.allow_unverified)
    if not args.http:
        if args.gym is None:
            print("codegym serve: name a GYM to serve over stdio, or add --http to serve the whole bank",
                  file=sys.stderr)
            return 2
        try:
            anyio.run(lambda: serve_stdio(bank, args.gym, startup=startup, workers=args.workers or 1, limits=limits,
                                          idle_timeout=args.idle_timeout, max_episodes=args.max_episodes,
                                          allow_unverified=args.allow_unverified))
        except EpisodeError as exc:
            print(f"codegym serve: {exc.message}", file=sys.stderr)
            return 2
        return 0
    if args.max_request_body <= 0:
        print("codegym serve: --max-request-body must be a positive number of bytes", file=sys.stderr)
        return 2
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not _is_loopback(args.host) and not token:
        bar = "!" * 78
        print(f"{bar}\nWARNING: serving on {args.host} WITHOUT a bearer token: anyone who can reach this port can "
              f"run episodes.\nPass --token (or set ${TOKEN_ENV}) unless this network is trusted.\n{bar}",
              file=sys.stderr, flush=True)
    service = HttpService(bank, gyms=[args.gym] if args.gym else None, workers=args.workers, limits=limits,
                          max_episodes=args.max_episodes,
                          idle_timeout=args.idle_timeout if args.idle_timeout is not None else DEFAULT_IDLE_TIMEOUT_S,
                          token=token, host=args.host, startup=startup, max_request_body=args.max_request_body,
                          allow_unverified=args.allow_unverified)
    try:
        serve_http(service, args.port)
    except OSError as exc:
        print(f"codegym serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


#: The names `mcp_gyms.cli` looks up on a lazily imported command module.
add_arguments = add_serve_arguments
run = serve_command


def main(argv: list[str] | None = None) -> int:
    """``python -m mcp_gyms.server ...``: the same as ``codegym serve ...``."""
    from .bank import BankError

    parser = argparse.ArgumentParser(prog="python -m mcp_gyms.server", description="serve gyms over MCP")
    add_serve_arguments(parser)
    try:
        return serve_command(parser.parse_args(argv))
    except BankError as exc:
        print(f"codegym serve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
