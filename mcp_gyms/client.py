"""The one MCP client helper that the evaluator and the RL loop share.

Usage::

    async with connect("http://127.0.0.1:8000/gyms/mountain_peak/mcp", token=...) as gym:
        tools = await gym.list_tools()                    # the gym's own tools (what a model sees)
        async with await gym.start(task="hard-1", seed=0) as ep:
            out = await ep.call("Observe")                # StepOutcome: observation, reward, done, steps, error
            ...
            final = await ep.play_oracle()                # or: replay the verified oracle on this episode

Contract:

- **Targets.** :func:`connect` takes an in-process low-level ``mcp.server.Server`` (e.g. from
  :func:`mcp_gyms.gym_server.open_gym_server`), :class:`mcp.StdioServerParameters` or a command list (a
  stdio server subprocess), or an ``http(s)://`` URL of one gym's endpoint (optional bearer ``token``).
- **Episodes** follow :mod:`mcp_gyms.protocol`: :meth:`GymConnection.start` sends
  ``codegym/episodes/start`` and every call carries the handle in ``_meta["codegym/episode"]``. Against
  an MCP server that does not know the method, ``start`` falls back to a handle-less episode (the
  server's own state), so the evaluator also runs on any MCP server.
- **Retries.** Idempotent requests (``list_tools``, ``start``, ``status``, ``close``, the oracle plan)
  are retried with exponential back-off on connection errors, reconnecting first if the connection
  itself died. A retried ``start`` whose first reply was lost leaves one unused episode on the server
  until its idle timeout.
- **Tool calls are never sent twice**: a call that surely never left this machine (no connection could
  be made) is sent again like an idempotent request; a connection failure or timeout once it may have
  been sent raises :class:`CallInterrupted` (the call may or may not have run; ``RemoteEpisode.status()`` tells
  what the server has). A bad call is not an exception: it is a :class:`StepOutcome` with ``error`` set.
- **Isolation.** Over HTTP every request is its own POST; when one POST's exchange fails (a reset link,
  a read timeout), only that request fails: the other requests in flight on the connection get their
  real results (the SDK's transport alone would fail them all; see :class:`_IsolatedPosts`).
- **Errors.** Everything this client raises is a :class:`GymClientError`, whose ``retryable`` says
  whether trying again later may help. Server-side refusals of the episode methods (unknown task,
  unknown episode, too many episodes, shutting down) raise :class:`EpisodeRequestError` with the
  JSON-RPC ``code`` and the ``kind``.

:class:`GymPool` pools connections to many gyms on one or more servers of one bank (one connection per
(server, gym); new episodes spread over the servers, least loaded first): the client ``eval`` and ``rl``
use.

One :class:`GymConnection` may be shared by many concurrent episodes (it multiplexes requests). At
most ``max_in_flight`` requests (default :data:`MAX_IN_FLIGHT`) are out at once, one per HTTP
connection; the others wait their turn here, in order, before they are sent — so a tool call's
``call_timeout`` counts from when it is sent. The HTTP pool scans its queue and probes every idle
connection on each request, so thousands of waiting episodes, or hundreds of idle connections, would
cost client CPU on every call; a server answers as fast with 64 requests in flight as with more.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .background import Held, hold
from .protocol import (
    CONTROL_META_KEY,
    EPISODE_META_KEY,
    CloseRequest,
    EpisodeInfo,
    EpisodeParams,
    EpisodeStatus,
    ErrorCode,
    OraclePlan,
    OracleRequest,
    StartParams,
    StartRequest,
    StatusRequest,
    StepOutcome,
)

__all__ = [
    "CallInterrupted",
    "ConnectionLost",
    "RemoteEpisode",
    "EpisodeRequestError",
    "GymClientError",
    "GymConnection",
    "GymPool",
    "StepOutcome",
    "TaskListing",
    "ToolInfo",
    "connect",
]

Target = Server[Any] | StdioServerParameters | str | Sequence[str]
#: Default of the requests a connection has out at once (and of the HTTP connections it keeps open).
MAX_IN_FLIGHT = 64
_R = TypeVar("_R", bound=BaseModel)
_T = TypeVar("_T")


class GymClientError(Exception):
    """Base class of every error this client (and the gym pools of ``eval`` and ``rl``) raises.

    ``retryable`` says whether the same request may succeed if made again later (the server could not be
    reached, or was busy); false for a request that cannot succeed (an unknown gym or task) and for a
    tool call whose outcome is unknown (sending it again might run it twice)."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConnectionLost(GymClientError):
    """The server could not be reached (after the retries an idempotent request gets)."""

    retryable = True


class CallInterrupted(ConnectionLost):
    """A tool call whose outcome is unknown: the connection failed or timed out after it was sent.
    It is never retried; ask ``RemoteEpisode.status()`` what the server has."""

    retryable = False


#: Refusals that may pass on a later try: the server is full, stopping, or could not load the gym just now.
_BUSY_CODES = frozenset({ErrorCode.TOO_MANY_EPISODES, ErrorCode.SHUTTING_DOWN, ErrorCode.GYM_UNAVAILABLE})


class EpisodeRequestError(GymClientError):
    """The server refused an episode request (JSON-RPC error ``code``; ``kind`` names the reason)."""

    def __init__(self, code: int, message: str, kind: str | None = None) -> None:
        super().__init__(message, retryable=code in _BUSY_CODES)
        self.code = code
        self.message = message
        self.kind = kind


class ToolInfo(BaseModel):
    """A tool as the server lists it (what a model is shown)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)

    def openai(self) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.input_schema}}


class TaskListing(BaseModel):
    """One row of a gym's ``codegym://{gym}/tasks`` resource (the hidden configuration is not listed)."""

    index: int
    id: str
    difficulty: str
    oracle_steps: int | None = None


#: ``error.data`` key of the JSON-RPC error that stands for one request's failed HTTP exchange.
_LINK_KEY = "codegym/link"
#: The request never left this machine (no connection could be made): safe to send again, even a tool call.
UNSENT = "unsent"
#: The exchange broke after the request may have reached the server: its outcome is unknown.
LOST = "lost"
_UNSENT_ERRORS = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


class _IsolatedPosts(httpx2.AsyncBaseTransport):
    """The HTTP transport under the SDK's streamable HTTP client, failing one POST at a time.

    The SDK sends every request as its own POST, in a task of the connection's task group: an exception
    from one POST (a connection reset, a read timeout) ends that group and so fails every request in
    flight on the MCP connection. Here a POST whose HTTP exchange fails is answered instead by a
    JSON-RPC error for that request alone (``error.data[_LINK_KEY]`` says whether it was :data:`UNSENT`
    or :data:`LOST`); a JSON body is read here in full so a cut mid-body is caught too. Other requests
    (the GET stream, DELETE) pass through unchanged; the SDK already handles their failures.

    Only once ``armed`` (after the connect-time negotiation): the SDK reads any JSON-RPC error to its
    ``server/discover`` probe as "a legacy server" and falls back to the handshake, while a network error
    fails the connect, which is then retried as a whole."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner
        self.armed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not self.armed:
            return await self._inner.handle_async_request(request)
        try:
            response = await self._inner.handle_async_request(request)
            if not response.headers.get("content-type", "").lower().startswith("application/json"):
                return response  # an SSE stream: the SDK resolves a broken one for its own request only
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
            return httpx2.Response(response.status_code, headers=response.headers, content=body,
                                   extensions=response.extensions, request=request)
        except httpx2.TransportError as exc:
            how = UNSENT if isinstance(exc, _UNSENT_ERRORS) else LOST
            error = {"code": types.CONNECTION_CLOSED, "message": f"HTTP exchange failed: {type(exc).__name__}: {exc}",
                     "data": {_LINK_KEY: how}}
            return httpx2.Response(503, json={"jsonrpc": "2.0", "id": None, "error": error}, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _link_failure(exc: BaseException) -> str | None:
    """:data:`UNSENT` or :data:`LOST` when ``exc`` is one request's failed HTTP exchange, else None."""
    rpc = exc if isinstance(exc, MCPError) else _single_rpc_error(exc)
    data = rpc.data if rpc is not None else None
    return data.get(_LINK_KEY) if isinstance(data, dict) else None


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, MCPError):
        return exc.code in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT)
    if isinstance(exc, (OSError, httpx2.TransportError, anyio.ClosedResourceError, anyio.BrokenResourceError,
                        anyio.EndOfStream, TimeoutError)):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_connection_error(e) for e in exc.exceptions)
    return False


def _single_rpc_error(exc: BaseException) -> MCPError | None:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, MCPError) else None


def _describe(exc: BaseException) -> str:
    rpc = exc if isinstance(exc, MCPError) else _single_rpc_error(exc)
    return rpc.message if rpc is not None else repr(exc)


def _kind(exc: MCPError) -> str | None:
    data = getattr(exc, "data", None)
    return data.get("kind") if isinstance(data, dict) else None


class GymConnection:
    """A connection to one gym's MCP server. Make it with :func:`connect`.

    It holds a task group (the live MCP client runs in a background task of it, so a transport crash
    fails the requests in flight instead of cancelling their callers): enter and exit it from the same
    task, and keep it for as long as its episodes run."""

    def __init__(self, target: Target, *, token: str | None = None, headers: Mapping[str, str] | None = None,
                 mode: str = "auto", retries: int = 3, backoff: float = 0.25, call_timeout: float | None = 300.0,
                 request_timeout: float = 60.0, env: Mapping[str, str] | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.target = target
        self.max_in_flight = max_in_flight
        self.token = token
        self.headers = dict(headers or {})
        self.mode = mode
        self.retries = retries
        self.backoff = backoff
        self.call_timeout = call_timeout
        self.request_timeout = request_timeout
        self.env = env
        self._tg: TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._link: Held[Client] | None = None
        self._lock = anyio.Lock()
        self._tools: list[ToolInfo] | None = None
        self._closed = False
        self._in_flight: anyio.CapacityLimiter | None = None

    # --- connection -----------------------------------------------------------------------------
    async def __aenter__(self) -> GymConnection:
        self._in_flight = anyio.CapacityLimiter(self.max_in_flight)
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        try:
            await self._retrying(lambda client: anyio.lowlevel.checkpoint(), "connect")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (a legacy HTTP session is ended with DELETE). Idempotent."""
        self._closed = True
        if self._link is not None:
            self._link.stop()
        if self._tg is not None:
            self._tg.cancel_scope.deadline = anyio.current_time() + 5  # a stuck transport cannot hang us
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def _open_client(self) -> AsyncIterator[Client]:
        """A live MCP ``Client`` for the target (its HTTP client, if any, closed with it)."""
        target = self.target
        async with contextlib.AsyncExitStack() as stack:
            transport: Any
            isolated: _IsolatedPosts | None = None
            if isinstance(target, (Server, StdioServerParameters)):
                transport = target
            elif isinstance(target, str):
                if not target.startswith(("http://", "https://")):
                    raise ValueError(f"not an http(s) URL: {target!r}")
                headers = dict(self.headers)
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                # a read timeout above ours: ours ends only that call; the transport's fails only that POST
                read = max(self.call_timeout or 0.0, self.request_timeout) + 30.0
                limits = httpx2.Limits(max_connections=self.max_in_flight,
                                       max_keepalive_connections=self.max_in_flight)
                isolated = _IsolatedPosts(httpx2.AsyncHTTPTransport(limits=limits))
                http = await stack.enter_async_context(httpx2.AsyncClient(
                    headers=headers, timeout=httpx2.Timeout(30.0, read=read), transport=isolated))
                transport = streamable_http_client(target, http_client=http)
            else:
                command = list(target)
                transport = StdioServerParameters(command=command[0], args=command[1:],
                                                  env=dict(self.env) if self.env else None)
            client = await stack.enter_async_context(Client(transport, mode=self.mode))
            if isolated is not None:
                isolated.armed = True  # connected: from now on a failed POST fails its own request only
            yield client

    async def _current(self) -> Held[Client]:
        if self._closed or self._tg is None:
            raise ConnectionLost("the connection is closed")
        link = self._link
        if link is not None and not link.dead:
            return link
        async with self._lock:
            if self._link is not None and not self._link.dead:
                return self._link
            if self._link is not None:
                self._link.stop()
            self._link = None
            with anyio.fail_after(self.request_timeout):
                self._link = await hold(self._tg, self._open_client)
            return self._link

    def _slot(self) -> anyio.CapacityLimiter | contextlib.nullcontext[None]:
        """A turn to have a request out (at most ``max_in_flight`` at once)."""
        return self._in_flight if self._in_flight is not None else contextlib.nullcontext()

    @staticmethod
    def _drop(link: Held[Client], exc: BaseException) -> None:
        """Drop the live client after a connection error, unless it was one request's own failed exchange
        (then the client is fine and the other requests in flight on it go on)."""
        if _link_failure(exc) is None:
            link.dead = True
            link.stop()

    async def _retrying(self, fn: Any, what: str) -> Any:
        """Run ``fn(client)``; on a connection error reconnect and retry (idempotent requests only)."""
        delay = self.backoff
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await anyio.sleep(delay)
                delay *= 2
            link: Held[Client] | None = None
            try:
                link = await self._current()
                async with self._slot():
                    with anyio.fail_after(self.request_timeout):
                        return await fn(link.value)
            except MCPError as exc:
                if not _is_connection_error(exc):
                    raise EpisodeRequestError(exc.code, exc.message, _kind(exc)) from None
                last = exc
            except ConnectionLost:
                raise
            except BaseException as exc:
                if not _is_connection_error(exc):
                    rpc = _single_rpc_error(exc)
                    if rpc is not None:  # e.g. an HTTP 401 while connecting
                        raise EpisodeRequestError(rpc.code, rpc.message, _kind(rpc)) from exc
                    raise
                last = exc
            if link is not None:
                self._drop(link, last)
        raise ConnectionLost(f"{what}: the server did not answer after {self.retries + 1} tries: {last!r}") from last

    async def _send(self, request: Any, result_type: type[_R], what: str) -> _R:
        return await self._retrying(lambda c: c.session.send_request(request, result_type), what)

    # --- the gym --------------------------------------------------------------------------------
    async def list_tools(self, *, include_controls: bool = False) -> list[ToolInfo]:
        """The server's tools. Session controls (``StartTask``) are left out unless asked for."""

        async def fetch(client: Client) -> list[types.Tool]:
            tools: list[types.Tool] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    return tools

        listed = await self._retrying(fetch, "tools/list")
        out = [ToolInfo(name=t.name, description=t.description or "", input_schema=dict(t.input_schema))
               for t in listed if include_controls or not (t.meta or {}).get(CONTROL_META_KEY)]
        if not include_controls:
            self._tools = out
        return out

    async def read_resource(self, uri: str) -> str:
        """The text of a resource (e.g. ``codegym://{gym}/task``). Retried on connection errors."""
        result = await self._retrying(lambda client: client.read_resource(uri), "resources/read")
        return "\n".join(c.text for c in result.contents if isinstance(c, types.TextResourceContents))

    async def tasks(self) -> list[TaskListing]:
        """The gym's tasks (index, id, difficulty, oracle steps), from its ``tasks`` resource."""
        listed = await self._retrying(lambda client: client.list_resources(), "resources/list")
        uri = next((str(r.uri) for r in listed.resources if r.name == "tasks"), None)
        if uri is None:
            raise GymClientError("the server offers no 'tasks' resource (not a codegym server?)")
        try:
            return [TaskListing.model_validate(row) for row in json.loads(await self.read_resource(uri))]
        except (ValueError, ValidationError) as exc:
            raise GymClientError(f"{uri}: unexpected content: {exc}") from None

    async def task_prompt(self) -> str:
        """The text of the gym's ``task`` prompt (the task text, with how to answer)."""
        result = await self._retrying(lambda client: client.get_prompt("task"), "prompts/get")
        return "\n".join(m.content.text for m in result.messages if isinstance(m.content, types.TextContent))

    async def start(self, task: int | str | None = None, difficulty: str | None = None,
                    seed: int | None = None) -> RemoteEpisode:
        """Start an episode (see :class:`mcp_gyms.protocol.StartParams`). Retried on connection errors."""
        request = StartRequest(params=StartParams(task=task, difficulty=difficulty, seed=seed))  # type: ignore[arg-type]
        try:
            info = await self._send(request, EpisodeInfo, "start")
        except EpisodeRequestError as exc:
            if exc.code == types.METHOD_NOT_FOUND:  # a plain MCP server: its own, implicit episode
                return RemoteEpisode(self, None)
            raise
        return RemoteEpisode(self, info)

    def attach(self, handle: str) -> RemoteEpisode:
        """An :class:`RemoteEpisode` object for an existing handle (e.g. one started by another process)."""
        return RemoteEpisode(self, None, handle=handle)

    async def _call_tool(self, name: str, arguments: Mapping[str, Any] | None, handle: str | None) -> StepOutcome:
        meta = {EPISODE_META_KEY: handle} if handle else None
        # straight to the session: the SDK's Client.call_tool would re-validate structuredContent against the
        # tool's outputSchema with jsonschema (~0.15 ms a call); outcome_of validates the same fields with
        # pydantic, and gym tools need no input-required rounds
        request = types.CallToolRequest(params=types.CallToolRequestParams(
            name=name, arguments=dict(arguments or {}), _meta=meta))  # type: ignore[arg-type]
        delay = self.backoff
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await anyio.sleep(delay)
                delay *= 2
            link = await self._current()
            try:
                async with self._slot():  # waiting for a turn is not part of the call's timeout: it is not out yet
                    with anyio.fail_after(self.call_timeout) if self.call_timeout else contextlib.nullcontext():
                        result = await link.value.session.send_request(request, types.CallToolResult)
                return outcome_of(result)
            except TimeoutError:  # our own call_timeout: only this call gave up; the connection stays up for others
                raise CallInterrupted(f"{name}: no result within {self.call_timeout:g} s; it may or may not have "
                                      "run (the episode may have advanced)") from None
            except BaseException as exc:
                if not _is_connection_error(exc):
                    rpc = _single_rpc_error(exc)
                    if rpc is None:
                        raise
                    # a JSON-RPC error for a tool call: report it like a bad call
                    return StepOutcome(observation=f"Error: {rpc.message}", error="rpc_error")
                self._drop(link, exc)
                if _link_failure(exc) == UNSENT:
                    last = exc
                    continue  # it never left this machine: sending it again cannot run it twice
                raise CallInterrupted(f"{name}: the connection failed or timed out while the call was out; it "
                                      f"may or may not have run ({_describe(exc)})") from None
        raise ConnectionLost(f"{name}: the server could not be reached after {self.retries + 1} tries; the call "
                             f"never reached it ({_describe(last) if last else ''})") from None


def outcome_of(result: types.CallToolResult) -> StepOutcome:
    """A tool result as a :class:`StepOutcome` (from ``structuredContent``, else from the text content)."""
    structured = result.structured_content
    if isinstance(structured, dict):
        try:
            return StepOutcome.model_validate(structured)
        except ValidationError:
            pass
    text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
    return StepOutcome(observation=text, error="error" if result.is_error else None)


class RemoteEpisode:
    """One episode on a :class:`GymConnection`. ``async with`` closes it on exit.

    Attributes:
        info: what ``start`` returned (None for a handle-less episode on a plain MCP server).
        handle: the episode handle (None when handle-less).
        last: the outcome of the latest call (None before the first).
    """

    def __init__(self, connection: GymConnection, info: EpisodeInfo | None, *, handle: str | None = None) -> None:
        self.connection = connection
        self.info = info
        self.handle = info.episode if info is not None else handle
        self.last: StepOutcome | None = None
        self.calls = 0
        self._on_close: Callable[[], None] | None = None  # a pool's count of its open episodes

    async def __aenter__(self) -> RemoteEpisode:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(GymClientError), anyio.CancelScope(shield=True):
            await self.close()

    @property
    def steps(self) -> int:
        return self.last.steps if self.last else 0

    @property
    def reward(self) -> float:
        return self.last.reward if self.last else 0.0

    @property
    def done(self) -> bool:
        return bool(self.last and self.last.done)

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None, /, **kwargs: Any) -> StepOutcome:
        """Call a tool on this episode; never retried. Arguments as a mapping or as keywords."""
        merged = {**(arguments or {}), **kwargs}
        outcome = await self.connection._call_tool(name, merged, self.handle)
        self.calls += 1
        self.last = outcome
        return outcome

    def _params(self) -> EpisodeParams:
        if self.handle is None:
            raise GymClientError("this episode has no handle (a plain MCP server)")
        return EpisodeParams(episode=self.handle)  # type: ignore[call-arg]

    async def status(self) -> EpisodeStatus:
        """What the server has for this episode: steps, reward, done, whether it is still open."""
        return await self.connection._send(StatusRequest(params=self._params()), EpisodeStatus, "status")

    async def close(self) -> EpisodeStatus | None:
        """Close the episode on the server (idempotent; None for a handle-less episode)."""
        try:
            if self.handle is None:
                return None
            return await self.connection._send(CloseRequest(params=self._params()), EpisodeStatus, "close")
        finally:
            hook, self._on_close = self._on_close, None
            if hook is not None:
                hook()

    async def oracle_plan(self) -> OraclePlan:
        """The verified oracle's calls for this episode's (task, seed), played by the server in its sandbox."""
        return await self.connection._send(OracleRequest(params=self._params()), OraclePlan, "oracle")

    async def play_oracle(self) -> StepOutcome:
        """Replay the oracle's calls through the real tools on this episode; return the last outcome.

        Gyms are deterministic in (task, seed, calls), so on a fresh episode the replay earns the reward
        the oracle earned; the reward is this episode's own."""
        plan = await self.oracle_plan()
        if not plan.calls:
            raise GymClientError(f"the oracle made no calls ({plan.error or 'no reason given'})")
        outcome: StepOutcome | None = None
        for call in plan.calls:
            outcome = await self.call(call.name, call.arguments)
            if outcome.done:
                break
        assert outcome is not None
        return outcome


@contextlib.asynccontextmanager
async def connect(target: Target, *, token: str | None = None, headers: Mapping[str, str] | None = None,
                  mode: str = "auto", retries: int = 3, backoff: float = 0.25, call_timeout: float | None = 300.0,
                  request_timeout: float = 60.0, env: Mapping[str, str] | None = None,
                  max_in_flight: int = MAX_IN_FLIGHT) -> AsyncIterator[GymConnection]:
    """Open a :class:`GymConnection` to one gym's server.

    Args:
        target: an in-process ``Server``, ``StdioServerParameters`` or a command list, or an HTTP URL.
        token: bearer token for HTTP.
        headers: extra HTTP headers.
        mode: MCP protocol mode: "auto" (2026-07-28, falling back to the handshake), "legacy", or a version.
        retries: retries of idempotent requests on connection errors.
        backoff: first retry delay in seconds (doubles each retry).
        call_timeout: seconds a tool call may take before :class:`CallInterrupted` (None: no limit).
        request_timeout: seconds any other request (and connecting) may take per try.
        env: extra environment for a stdio server started from a command list.
        max_in_flight: requests out at once (and HTTP connections kept); the others wait, in order.
    """
    connection = GymConnection(target, token=token, headers=headers, mode=mode, retries=retries, backoff=backoff,
                               call_timeout=call_timeout, request_timeout=request_timeout, env=env,
                               max_in_flight=max_in_flight)
    async with connection:
        yield connection


class _Pooled:
    """One pooled connection: (server, gym), its holder, and how many users (open episodes, requests) it has."""

    def __init__(self, server: str, gym: str, held: Held[GymConnection]) -> None:
        self.server = server
        self.gym = gym
        self.held = held
        self.users = 0


class GymPool:
    """Connections to the gyms of one or more gym servers, pooled and shared by many concurrent episodes.

    Usage::

        async with GymPool(["http://127.0.0.1:8000", "http://127.0.0.1:8001"], token=...) as pool:
            tools = await pool.tools("mountain_peak")              # cached per gym
            async with await pool.start("mountain_peak", task="hard-1", seed=0) as ep:
                out = await ep.call("Observe")

    Contract:

    - **Servers.** ``servers`` are base URLs (``http://host:port``: gym ``g`` at ``/gyms/g/mcp``, the list
      at ``GET /gyms``) that serve the same bank (e.g. the processes of ``codegym serve --procs N``), or
      a single gym's endpoint URL (ending in ``/mcp``), whose gym is named by the path segment before it.
    - **Connections.** One :class:`GymConnection` per (server, gym), opened on first use, each held by a
      task of the pool (:func:`hold`) so that no episode's task owns it; every episode and request of that
      gym on that server shares it (it multiplexes requests). :meth:`release` closes a gym's unused
      connections; ``max_connections`` closes the least recently used unused ones beyond that number.
    - **Spreading.** A new episode goes to the server with the fewest open episodes of this pool (ties in
      turn); the episode stays on that server until it is closed (``RemoteEpisode.close`` or ``async with``).
      Describing a gym (tools, tasks) asks the first server.
    - **Errors.** Every failure is a :class:`GymClientError` (its ``retryable`` says whether trying again
      later may help). ``start_retries`` retries a start refused as busy (full, stopping), with back-off,
      on the then least loaded server.

    Enter and exit it from one task; use it from any number of tasks in between.
    """

    def __init__(self, servers: str | Sequence[str], *, token: str | None = None, call_timeout: float | None = 300.0,
                 request_timeout: float = 60.0, retries: int = 3, backoff: float = 0.25,
                 max_in_flight: int = MAX_IN_FLIGHT, start_retries: int = 0, start_backoff: float = 0.5,
                 max_connections: int | None = None) -> None:
        urls = [servers] if isinstance(servers, str) else list(servers)
        if not urls:
            raise ValueError("a GymPool needs at least one server URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"a gym server must be an http(s) URL, not {url!r}")
        self.servers = [u.rstrip("/") for u in urls]
        single = [u for u in self.servers if u.endswith("/mcp")]
        if single and len(single) != len(self.servers):
            raise ValueError("give either base URLs of gym servers or endpoint URLs of one gym (ending in /mcp), "
                             "not both")
        self._single: str | None = None  # the gym of an endpoint URL
        if single:
            self._single = single[0].split("/")[-2] or "gym"
        self.token = token
        self.options: dict[str, Any] = dict(token=token, call_timeout=call_timeout, request_timeout=request_timeout,
                                            retries=retries, backoff=backoff, max_in_flight=max_in_flight)
        self.request_timeout = request_timeout
        self.start_retries = start_retries
        self.start_backoff = start_backoff
        self.max_connections = max_connections
        self._entries: OrderedDict[tuple[str, str], _Pooled] = OrderedDict()
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        self._load = dict.fromkeys(self.servers, 0)
        self._turn = 0
        self._tools: dict[str, list[ToolInfo]] = {}
        self._tasks: dict[str, list[TaskListing]] = {}
        self._tg: TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> GymPool:
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection. Idempotent."""
        for entry in self._entries.values():
            entry.held.stop()
        self._entries.clear()
        if self._stack is not None:
            stack, self._stack, self._tg = self._stack, None, None
            await stack.aclose()

    def endpoint(self, server: str, gym: str) -> str:
        """The MCP endpoint URL of ``gym`` on ``server``."""
        return server if self._single is not None else f"{server}/gyms/{gym}/mcp"

    def connections(self) -> list[tuple[str, str]]:
        """The (server, gym) pairs with an open connection, least recently used first."""
        return list(self._entries)

    def load(self) -> dict[str, int]:
        """Open episodes (and requests under way) of this pool per server."""
        return dict(self._load)

    # --- connections ----------------------------------------------------------------------------
    async def _acquire(self, server: str, gym: str) -> _Pooled:
        """The pooled connection of (server, gym), with one more user (give it back with :meth:`_release`)."""
        if self._tg is None:
            raise RuntimeError("a GymPool is used outside its `async with` block")
        key = (server, gym)
        entry = self._entries.get(key)
        if entry is None or entry.held.dead:
            async with self._locks.setdefault(key, anyio.Lock()):
                entry = self._entries.get(key)
                if entry is None or entry.held.dead:
                    endpoint = self.endpoint(server, gym)
                    try:
                        held = await hold(self._tg, lambda: connect(endpoint, **self.options))
                    except (GymClientError, OSError) as exc:
                        what = f"cannot connect to gym {gym!r} at {endpoint}: {exc}"
                        if isinstance(exc, (ConnectionLost, OSError)):
                            raise ConnectionLost(what) from None
                        raise GymClientError(what, retryable=exc.retryable) from None
                    entry = self._entries[key] = _Pooled(server, gym, held)
        self._entries.move_to_end(key)
        entry.users += 1
        self._load[server] += 1
        self._trim()
        return entry

    def _release(self, entry: _Pooled) -> None:
        entry.users -= 1
        self._load[entry.server] -= 1

    def _trim(self) -> None:
        if self.max_connections is None:
            return
        excess = len(self._entries) - self.max_connections
        for key in [k for k, e in self._entries.items() if e.users == 0][:max(0, excess)]:
            self._entries.pop(key).held.stop()

    async def release(self, gym: str) -> None:
        """Close the unused connections to ``gym`` (they reopen on next use)."""
        for key in [k for k, e in self._entries.items() if k[1] == gym and e.users == 0]:
            self._entries.pop(key).held.stop()

    # --- gyms -----------------------------------------------------------------------------------
    async def gym_ids(self) -> list[str]:
        """The gyms the servers serve (``GET /gyms`` of the first), or the gym of an endpoint URL."""
        if self._single is not None:
            return [self._single]
        url = f"{self.servers[0]}/gyms"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with httpx2.AsyncClient(timeout=self.request_timeout, headers=headers) as http:
                response = await http.get(url)
        except httpx2.HTTPError as exc:
            raise ConnectionLost(f"cannot reach the gym server at {self.servers[0]}: {type(exc).__name__}: {exc}"
                                 ) from None
        if response.status_code == 401:
            raise GymClientError(f"the gym server at {self.servers[0]} wants a bearer token (--token or "
                                 "$CODEGYM_TOKEN)")
        if response.status_code != 200:
            raise GymClientError(f"GET {url} answered HTTP {response.status_code}; is this a codegym server? "
                                 "(pass one gym's endpoint URL, ending in /mcp, for other servers)")
        try:
            return [str(g["id"]) for g in response.json()["gyms"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise GymClientError(f"GET {url} returned an unexpected body: {exc}") from None

    async def _from_first_server(self, gym: str, cache: dict[str, _T],
                                 fetch: Callable[[GymConnection], Awaitable[_T]]) -> _T:
        """``fetch`` on the first server's connection to ``gym``, once; later calls get the cached answer."""
        if gym not in cache:
            entry = await self._acquire(self.servers[0], gym)
            try:
                cache[gym] = await fetch(entry.held.value)
            finally:
                self._release(entry)
        return cache[gym]

    async def tools(self, gym: str) -> list[ToolInfo]:
        """The gym's tools as the first server lists them (what a model is shown); cached."""
        return await self._from_first_server(gym, self._tools, lambda connection: connection.list_tools())

    async def tasks(self, gym: str) -> list[TaskListing]:
        """The gym's tasks (index, id, difficulty, oracle steps) as the first server lists them; cached."""
        return await self._from_first_server(gym, self._tasks, lambda connection: connection.tasks())

    def _pick(self) -> str:
        """The server with the fewest open episodes; ties go round in turn."""
        self._turn = (self._turn + 1) % len(self.servers)
        order = self.servers[self._turn:] + self.servers[:self._turn]
        return min(order, key=self._load.__getitem__)

    async def start(self, gym: str, task: int | str | None = None, difficulty: str | None = None,
                    seed: int | None = None) -> RemoteEpisode:
        """Start an episode of ``gym`` on the least loaded server (see :meth:`GymConnection.start`); it counts
        as that server's load until it is closed."""
        delay = self.start_backoff
        for attempt in range(self.start_retries + 1):
            entry = await self._acquire(self._pick(), gym)
            try:
                episode = await entry.held.value.start(task=task, difficulty=difficulty, seed=seed)
            except EpisodeRequestError as exc:
                self._release(entry)
                if not exc.retryable or attempt == self.start_retries:
                    raise
                await anyio.sleep(delay)
                delay *= 2
                continue
            except BaseException:
                self._release(entry)
                raise
            episode._on_close = functools.partial(self._release, entry)
            return episode
        raise AssertionError("unreachable")
