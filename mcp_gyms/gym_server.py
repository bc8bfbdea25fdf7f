"""One gym as one MCP server: :class:`GymServer`, whose methods are the MCP handlers.

Its tools are exactly the gym's tools as the sandbox describes them (``Observe``, the atomic tools,
``Done``) with their JSON Schemas; every call runs in the :class:`~mcp_gyms.sandbox.SandboxPool` (arguments
are validated strictly there before gym code runs). The task text is offered as the prompt ``task`` and as
the resource ``codegym://{gym}/task``; ``codegym://{gym}/tasks`` lists the tasks (ids and difficulties, not
their hidden configurations). The episode protocol (handles in ``_meta``, the custom methods, the implicit
episode of handle-less clients) is stated in :mod:`mcp_gyms.protocol`.

Nothing a client sends makes the server fail: bad tool calls are ``isError`` results, bad episode requests
are JSON-RPC errors with the codes in :class:`mcp_gyms.protocol.ErrorCode`. The transports that carry it
are in :mod:`mcp_gyms.stdio` and :mod:`mcp_gyms.http_service`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from . import __version__
from .bank import Bank
from .episode_manager import DEFAULT_MAX_EPISODES, EpisodeError, EpisodeManager, LoadedGym, ServedEpisode
from .protocol import (
    CONTROL_META_KEY,
    EPISODE_META_KEY,
    METHOD_CLOSE,
    METHOD_ORACLE,
    METHOD_START,
    METHOD_STATUS,
    START_TOOL,
    STEP_OUTPUT_SCHEMA,
    Difficulty,
    EpisodeInfo,
    EpisodeParams,
    EpisodeStatus,
    OracleCall,
    OraclePlan,
    StartParams,
    StepOutcome,
    wire_schema,
)
from .sandbox import SandboxLimits, SandboxPool
from .v1 import worker_preload

__all__ = ["GymServer", "Handleless", "StartupTask", "open_gym_server", "running_gym"]

#: How a server finds the implicit episode of a request that carries no handle: "process" (stdio: one per
#: process), "session" (HTTP: the episode named in the URL, ``/gyms/{gym}/mcp/{name}``, else one per
#: Mcp-Session-Id), None (handles only).
Handleless = Literal["process", "session"] | None

_PROCESS_KEY = "stdio"
_RAW_ARGUMENTS_KEY = "codegym.internal/raw-arguments"  # set only by the server's own middleware
_COUNTED_HERE = frozenset({EpisodeError.NO_EPISODE, EpisodeError.UNKNOWN_EPISODE, EpisodeError.EPISODE_OVER,
                           EpisodeError.WRONG_GYM, EpisodeError.UNKNOWN_TASK})
_TASK_RESOURCE = "codegym://{gym}/task"
_TASKS_RESOURCE = "codegym://{gym}/tasks"


@dataclass(frozen=True)
class StartupTask:
    """The task a handle-less client's implicit episode starts on."""

    task: int | str | None = None
    difficulty: str | None = None
    seed: int | None = None


class _StartTaskArguments(BaseModel):
    """The arguments of the ``StartTask`` control tool (its input schema is generated from this model)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    task: int | str | None = Field(None, description="task index (0-based) or task id; default: restart the "
                                                     "current task")
    difficulty: Difficulty | None = Field(None, description="without task: go to the next task of this difficulty")
    seed: int | None = Field(None, description="episode seed; default: the task's own seed")


_START_TOOL_SCHEMA: dict[str, Any] = wire_schema(_StartTaskArguments, mode="validation")
_START_TOOL_DOC = (
    "Start (or restart) a task of this gym. This is a control of the session, not part of the task: it "
    "throws away the current episode. Without arguments it restarts the current task; `task` picks a task "
    "by index or id; `difficulty` alone moves to the next task of that difficulty. Returns the task text."
)



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


def _step_wire(result: StepOutcome, handle: str | None) -> dict[str, Any]:
    """The ``CallToolResult`` of a step, in wire form (what both the SDK path and the HTTP hot path send)."""
    # StepOutcome's fields, built as a dict: this runs on every call, and the sandbox already checked
    # every field's type (see SandboxEpisode._checked)
    outcome = {"observation": result.observation, "reward": float(result.reward), "done": result.done,
               "terminated": result.terminated, "truncated": result.truncated, "steps": result.steps,
               "error": result.error}
    wire: dict[str, Any] = {"content": [{"type": "text", "text": result.observation}], "structuredContent": outcome,
                            "isError": result.error is not None}
    if handle:
        wire["_meta"] = {EPISODE_META_KEY: handle}
    return wire


def _error_wire(exc: EpisodeError, handle: str | None = None) -> dict[str, Any]:
    status = exc.status
    outcome = StepOutcome(observation=f"Error: {exc.message}", error=exc.kind,
                          reward=status.reward if status else 0.0, done=status.done if status else False,
                          terminated=status.terminated if status else False,
                          truncated=status.truncated if status else False, steps=status.steps if status else 0)
    return _step_wire(outcome, handle)


class GymServer:
    """The MCP server of one (loaded) gym, on a running :class:`EpisodeManager`. Each MCP handler is a
    method; :attr:`mcp` is the low-level SDK ``Server`` that a transport runs.

    Args:
        manager: the episodes of this process (shared by every gym's server).
        gym: the gym, from ``await manager.gym(gym_id)``.
        handleless: where requests without a handle find their implicit episode (see :data:`Handleless`).
        startup: the task an implicit episode starts on (default: task 0).
    """

    def __init__(self, manager: EpisodeManager, gym: LoadedGym, *, handleless: Handleless = None,
                 startup: StartupTask | None = None) -> None:
        self.manager = manager
        self.gym = gym
        self.handleless = handleless
        self.startup = startup or StartupTask()
        self._implicit_lock = anyio.Lock()
        self.gym_tools = [
            types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"],
                       output_schema=STEP_OUTPUT_SCHEMA)
            for t in gym.tools
        ]
        self.start_tool = types.Tool(name=START_TOOL, title="Start or restart a task", description=_START_TOOL_DOC,
                                     input_schema=_START_TOOL_SCHEMA, _meta={CONTROL_META_KEY: True})
        self._schemas = {t["name"]: t["input_schema"] for t in gym.tools}
        self._schemas.setdefault(START_TOOL, _START_TOOL_SCHEMA)
        self.task_uri, self.tasks_uri = _TASK_RESOURCE.format(gym=gym.id), _TASKS_RESOURCE.format(gym=gym.id)
        self._tool_names = ", ".join(t.name for t in self.gym_tools)
        self.mcp = self._mcp_server()

    def _mcp_server(self) -> Server[Any]:
        gym = self.gym
        instructions = (
            f"{gym.record.title}: {gym.record.task_text}\n\nTools: {self._tool_names}. Submit the answer with "
            f"Done(answer); the budget is {gym.max_steps} calls. Programs: start an episode with the "
            f"{METHOD_START!r} request and pass its handle in _meta[{EPISODE_META_KEY!r}] on every call."
        )
        server: Server[Any] = Server(
            f"codegym-{gym.id}", version=__version__, title=gym.record.title, instructions=instructions,
            on_list_tools=self.list_tools, on_call_tool=self.call_tool, on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt, on_list_resources=self.list_resources,
            on_read_resource=self.read_resource, get_tool_input_schema=self._schemas.get,
        )
        server.add_request_handler(METHOD_START, StartParams, self.on_start)
        server.add_request_handler(METHOD_STATUS, EpisodeParams, self.on_status)
        server.add_request_handler(METHOD_CLOSE, EpisodeParams, self.on_close)
        server.add_request_handler(METHOD_ORACLE, EpisodeParams, self.on_oracle)
        server.middleware.insert(0, _normalise_tool_call)
        return server

    # --- episodes --------------------------------------------------------------------------------
    def _refused(self, exc: EpisodeError) -> EpisodeError:
        if exc.kind in _COUNTED_HERE:  # the manager counts its own refusals (cap, shutdown)
            self.manager.metrics.rejected[exc.kind] += 1
        return exc

    def _implicit_key(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        if self.handleless == "process":
            return _PROCESS_KEY
        if self.handleless == "session" and isinstance(ctx.request, Request):
            name = ctx.request.path_params.get("episode")
            if name:
                return f"url:{name}"
            sid = ctx.request.headers.get("mcp-session-id")
            return f"session:{sid}" if sid else None
        return None

    @staticmethod
    def _handle_of(meta: Mapping[str, Any] | None, explicit: str | None = None) -> str | None:
        handle = explicit if explicit is not None else (meta or {}).get(EPISODE_META_KEY)
        if handle is not None and not isinstance(handle, str):
            raise EpisodeError(EpisodeError.NO_EPISODE, f"_meta[{EPISODE_META_KEY!r}] must be a string handle")
        return handle

    def _no_handle_message(self, ctx: ServerRequestContext[Any, Any]) -> str:
        if self.handleless == "session" and isinstance(ctx.request, Request):
            url = ctx.request.url
            mine = f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}/{secrets.token_urlsafe(9)}"
            return (f"this URL has no episode of its own. Connect your MCP client to {mine} instead (or to "
                    f"{url.path.rstrip('/')}/NAME with any name of your own: each name is one episode, created "
                    f"on first use; call {START_TOOL} there to pick a task). Programs: start an episode with "
                    f"the {METHOD_START!r} request and send its handle in _meta[{EPISODE_META_KEY!r}]")
        return (f"this request carries no episode handle. Start an episode with the {METHOD_START!r} request "
                f"and send its handle in _meta[{EPISODE_META_KEY!r}]"
                + ("" if self.handleless else "; or use `codegym serve GYM` over stdio, or `codegym serve --http` "
                   "and the URL /gyms/GYM/mcp/NAME, for an implicit episode"))

    async def _episode_for(self, ctx: ServerRequestContext[Any, Any], meta: Mapping[str, Any] | None) -> ServedEpisode:
        manager, gym, startup = self.manager, self.gym, self.startup
        handle = self._handle_of(meta)
        if handle is not None:
            return manager.get(handle, gym.id)
        key = self._implicit_key(ctx)
        if key is None:
            raise EpisodeError(EpisodeError.NO_EPISODE, self._no_handle_message(ctx))
        handle = manager.implicit(gym.id, key)
        if handle is None:
            async with self._implicit_lock:
                handle = manager.implicit(gym.id, key)
                if handle is None:
                    return await manager.start(gym.id, startup.task, startup.difficulty, startup.seed,
                                               implicit_key=key)
        try:
            return manager.get(handle, gym.id)
        except EpisodeError as exc:
            if exc.kind == EpisodeError.EPISODE_OVER:
                exc.message += f"; call {START_TOOL} to start again"
            raise

    def _episode_param(self, params: EpisodeParams) -> str:
        handle = self._handle_of(params.meta, params.episode)
        if handle is None:
            raise EpisodeError(EpisodeError.NO_EPISODE, "name the episode: params.episode (or "
                               f"_meta[{EPISODE_META_KEY!r}])")
        return handle

    async def _start_task(self, key: str, arguments: Mapping[str, Any]) -> types.CallToolResult:
        """The ``StartTask`` control tool: start or restart the implicit episode ``key``."""
        manager, gym, startup = self.manager, self.gym, self.startup
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
            async with self._implicit_lock:
                ep = await manager.start(gym.id, index, None, seed, implicit_key=key)
        except EpisodeError as exc:
            return types.CallToolResult.model_validate(_error_wire(self._refused(exc)))
        info = ep.info()
        text = (f"Started task {info.task_id} ({info.difficulty}; task {info.task_index} of 0..{info.task_count - 1}; "
                f"seed {info.seed}). Budget: {info.max_steps} tool calls. Tools: {self._tool_names}.\n\n"
                f"{info.task_text}")
        return types.CallToolResult(content=_text(text), structured_content=info.model_dump(mode="json", by_alias=True,
                                                                                 exclude={"result_type", "meta"}),
                                    _meta={EPISODE_META_KEY: ep.handle})

    # --- MCP handlers ----------------------------------------------------------------------------
    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        if self._implicit_key(ctx) is not None:
            return types.ListToolsResult(tools=[*self.gym_tools, self.start_tool])
        return types.ListToolsResult(tools=self.gym_tools)

    async def call_tool(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        meta = params.meta or {}
        raw = meta.get(_RAW_ARGUMENTS_KEY)
        arguments_json = raw if isinstance(raw, str) else json.dumps(params.arguments or {})
        try:
            if (params.name == START_TOOL and self._handle_of(meta) is None
                    and (key := self._implicit_key(ctx)) is not None):
                if isinstance(raw, str):
                    return types.CallToolResult(content=_text(f"Error: {START_TOOL} takes a JSON object of arguments"),
                                                is_error=True)
                return await self._start_task(key, params.arguments or {})
            ep = await self._episode_for(ctx, meta)
        except EpisodeError as exc:
            return types.CallToolResult.model_validate(_error_wire(self._refused(exc)))
        return types.CallToolResult.model_validate(await self._call(ep, params.name, arguments_json))

    async def call_with_handle(self, handle: str, name: str, arguments_json: str) -> dict[str, Any]:
        """``tools/call`` of ``name`` on the episode ``handle`` (arguments as JSON text), as the wire
        ``CallToolResult`` that :meth:`call_tool` gives the SDK for the same request (the HTTP hot path's entry)."""
        try:
            ep = self.manager.get(handle, self.gym.id)
        except EpisodeError as exc:
            return _error_wire(self._refused(exc))
        return await self._call(ep, name, arguments_json)

    async def _call(self, ep: ServedEpisode, name: str, arguments_json: str) -> dict[str, Any]:
        try:
            result = await self.manager.call(ep, name, arguments_json)
        except EpisodeError as exc:
            return _error_wire(self._refused(exc), ep.handle)
        return _step_wire(result, ep.handle)

    async def list_prompts(self, ctx: ServerRequestContext[Any, Any],
                           params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        gym = self.gym
        return types.ListPromptsResult(prompts=[types.Prompt(
            name="task", title=f"Task: {gym.record.title}",
            description=f"What the agent is asked to do in the gym {gym.id!r}: the task text, to start from.")])

    async def get_prompt(self, ctx: ServerRequestContext[Any, Any],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        gym = self.gym
        if params.name != "task":
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown prompt {params.name!r}; the prompt is 'task'")
        text = (f"{gym.record.task_text}\n\nUse the tools to explore (Observe shows a partial view of the hidden "
                f"state) and submit your answer with Done(answer). Every call counts toward a budget of "
                f"{gym.max_steps} calls.")
        return types.GetPromptResult(description=gym.record.title, messages=[
            types.PromptMessage(role="user", content=types.TextContent(text=text))])

    async def list_resources(self, ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        title = self.gym.record.title
        return types.ListResourcesResult(resources=[
            types.Resource(uri=self.task_uri, name="task", title=f"Task: {title}", mime_type="text/plain",
                           description="The task text of this gym."),
            types.Resource(uri=self.tasks_uri, name="tasks", title="Tasks", mime_type="application/json",
                           description="The tasks of this gym (index, id, difficulty; not their hidden inputs)."),
        ])

    async def read_resource(self, ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == self.task_uri:
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="text/plain", text=self.gym.record.task_text)])
        if uri == self.tasks_uri:
            listing = [{"index": i, "id": t.id, "difficulty": t.difficulty, "oracle_steps": t.oracle_steps}
                       for i, t in enumerate(self.gym.tasks)]
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="application/json", text=json.dumps(listing, indent=1))])
        raise MCPError(code=types.INVALID_PARAMS, message=f"unknown resource {uri!r}; see resources/list")

    async def on_start(self, ctx: ServerRequestContext[Any, Any], params: StartParams) -> EpisodeInfo:
        """``codegym/episodes/start``."""
        return await self.start_episode(params)

    async def start_episode(self, params: StartParams) -> EpisodeInfo:
        """Start an episode; an :class:`MCPError` when refused (also the HTTP hot path's entry)."""
        try:
            ep = await self.manager.start(self.gym.id, params.task, params.difficulty, params.seed)
        except EpisodeError as exc:
            raise _rpc_error(self._refused(exc)) from None
        return ep.info()

    async def on_status(self, ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> EpisodeStatus:
        """``codegym/episodes/status``."""
        try:
            return self.manager.status(self._episode_param(params), self.gym.id)
        except EpisodeError as exc:
            raise _rpc_error(self._refused(exc)) from None

    async def on_close(self, ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> EpisodeStatus:
        """``codegym/episodes/close``."""
        try:
            return await self.manager.close(self._episode_param(params), self.gym.id)
        except EpisodeError as exc:
            raise _rpc_error(self._refused(exc)) from None

    async def on_oracle(self, ctx: ServerRequestContext[Any, Any], params: EpisodeParams) -> OraclePlan:
        """``codegym/oracle``."""
        try:
            ep = self.manager.get(self._episode_param(params), self.gym.id)
            played = await self.manager.oracle(ep)
        except EpisodeError as exc:
            raise _rpc_error(self._refused(exc)) from None
        return OraclePlan(episode=ep.handle, calls=[OracleCall(name=n, arguments=a) for n, a in played.calls],
                          reward=played.reward, steps=played.steps, error=played.error)


@contextlib.asynccontextmanager
async def running_gym(bank: Bank, gym_id: str, *, workers: int | None = 1, limits: SandboxLimits | None = None,
                      handleless: Handleless = "process", startup: StartupTask | None = None,
                      max_episodes: int = DEFAULT_MAX_EPISODES, idle_timeout: float | None = None,
                      allow_unverified: bool = False) -> AsyncIterator[GymServer]:
    """One gym's :class:`GymServer` with a sandbox pool and an episode manager of its own, until the block ends."""
    async with SandboxPool(workers, limits, preload=worker_preload(bank.kinds([gym_id]))) as pool, \
            EpisodeManager(bank, pool, gyms=[gym_id], max_episodes=max_episodes, idle_timeout=idle_timeout,
                           allow_unverified=allow_unverified) as manager:
        gym = await manager.gym(gym_id)
        if startup is not None:
            gym.resolve_task(startup.task, startup.difficulty)
        yield GymServer(manager, gym, handleless=handleless, startup=startup)


@contextlib.asynccontextmanager
async def open_gym_server(bank: Bank, gym_id: str, **options: Any) -> AsyncIterator[Server[Any]]:
    """A ready in-process server of one gym (options as :func:`running_gym`), for ``mcp_gyms.client.connect``."""
    async with running_gym(bank, gym_id, **options) as gym_server:
        yield gym_server.mcp
