"""A whole bank over streamable HTTP on one port: :class:`HttpService`.

``/gyms/{gym_id}/mcp`` per gym (made on first use) and ``/gyms/{gym_id}/mcp/{name}`` (the same server, with
the implicit episode bound to the URL, for plain clients), ``GET /gyms``, ``GET /healthz`` (always open),
``GET /metrics`` (Prometheus text), ``/.well-known/*`` 404 (no OAuth), an optional bearer token (scheme name in
any case), a request body limit answered as a JSON-RPC error, DNS-rebinding protection on loopback, and a
graceful shutdown that lets in-flight calls finish and stops every sandbox worker. Unknown gym paths are 404
with a JSON body; nothing a client sends makes the service answer 500 or hang.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable

import anyio
import mcp_types as types
import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .background import hold
from .bank import Bank
from .episode_manager import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_EPISODES,
    EpisodeError,
    EpisodeManager,
)
from .gym_server import GymServer, StartupTask
from .hot_path import HotPath
from .metrics import PROMETHEUS_CONTENT_TYPE, prometheus_text
from .protocol import (
    EPISODE_NAME,
)
from .ready import ReadyInfo
from .sandbox import SandboxLimits, SandboxPool
from .v1 import worker_preload

__all__ = ["DEFAULT_MAX_REQUEST_BODY", "HttpService", "base_url", "bind_socket", "serve_http", "uvicorn_config"]

_LOOPBACK_HOSTS = ("localhost",)
#: The largest HTTP request body accepted by default (bytes).
DEFAULT_MAX_REQUEST_BODY = 4 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or name."""
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
        if declared.isdigit():  # the server reads exactly the declared length: no need to count it
            if int(declared) > limit:
                await too_big()(scope, receive, send)
            else:
                await app(scope, receive, send)
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


def _gym_posts_first(app: ASGIApp, endpoints: _GymEndpoints) -> ASGIApp:
    """``app`` with ``POST /gyms/{gym_id}/mcp`` (every tool call) routed straight to ``endpoints``, ahead of
    Starlette's middleware and router: the same match as the route, one step less per call."""

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            gym_id = path[6:-4] if path.startswith("/gyms/") and path.endswith("/mcp") else ""
            if gym_id and "/" not in gym_id:
                scope["path_params"] = {"gym_id": gym_id}
                await endpoints(scope, receive, send)
                return
        await app(scope, receive, send)

    return route


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
        self.managers: dict[str, tuple[StreamableHTTPSessionManager, HotPath]] = {}
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

    async def endpoint(self, gym_id: str) -> tuple[StreamableHTTPSessionManager, HotPath]:
        """The gym's SDK session manager and its hot path (made on first use)."""
        served = self.managers.get(gym_id)
        if served is not None:
            return served
        manager = self.service.manager
        if manager is None or self._tg is None:
            raise EpisodeError(EpisodeError.SHUTTING_DOWN, "the server is not running")
        async with self._locks.setdefault(gym_id, anyio.Lock()):
            if gym_id in self.managers:
                return self.managers[gym_id]
            gym = await manager.gym(gym_id)
            gym_server = GymServer(manager, gym, handleless="session", startup=self.service.startup)
            mgr = StreamableHTTPSessionManager(
                app=gym_server.mcp, stateless=False, json_response=True, security_settings=self.service.security,
                session_idle_timeout=self.service.session_idle_timeout, max_sessions=self.service.max_sessions,
                max_request_body_size=self.service.max_request_body,
            )
            await hold(self._tg, mgr.run)  # runs until the service's task group is cancelled
            hot_path = HotPath(gym_server, self.service.security, self.service.max_request_body,
                                       enabled=self.service.hot_path)
            self.managers[gym_id] = mgr, hot_path
            return mgr, hot_path

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
            mgr, hot_path = await self.endpoint(gym_id)
        except EpisodeError as exc:
            status = 503 if exc.kind in (EpisodeError.GYM_UNAVAILABLE, EpisodeError.SHUTTING_DOWN) else 404
            await _json_error(status, exc.message, exc.code)(scope, receive, send)
            return
        await hot_path(scope, receive, send, _limit_body(mgr.handle_request, self.service.max_request_body))
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
                 allow_unverified: bool = False, max_workers: int | None = None, hot_path: bool = True) -> None:
        self.bank = bank
        self.allow_unverified = allow_unverified
        self.gyms = gyms
        self.workers = workers
        self.max_workers = max_workers
        self.limits = limits
        self.max_episodes = max_episodes
        self.idle_timeout = idle_timeout
        self.token = token
        self.host = host
        self.startup = startup
        self.shutdown_grace = shutdown_grace
        self.max_sessions = max_sessions
        self.max_request_body = max_request_body
        self.hot_path = hot_path
        self.session_idle_timeout = idle_timeout or DEFAULT_IDLE_TIMEOUT_S
        self.manager: EpisodeManager | None = None
        self.pool: SandboxPool | None = None
        self.on_ready: Callable[[], None] | None = None  # called once the app is ready to serve
        if is_loopback(host):
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
            preload = worker_preload(self.bank.kinds(self.gyms))
            async with SandboxPool(self.workers, self.limits, max_workers=self.max_workers, preload=preload) as pool:
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
            return Response(prometheus_text(manager), media_type=PROMETHEUS_CONTENT_TYPE)

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
        routed = _gym_posts_first(app, endpoints)
        return BearerAuth(routed, self.token) if self.token else routed


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


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def announce(service: HttpService, urls: list[str]) -> None:
    """Say on stderr where ``service`` is served (for people: programs read ``--ready-file``)."""
    count = len(service.gyms) if service.gyms is not None else len(service.bank)
    print(f"codegym: serving {count} gym(s) on {urls[0]}/gyms/{{gym_id}}/mcp "
          f"(plain MCP clients: .../mcp/{{episode_name}}; health: /healthz, metrics: /metrics)"
          f"{' with a bearer token' if service.token else ''}", file=sys.stderr, flush=True)
    if len(urls) > 1:
        print(f"codegym: {len(urls)} server processes, each a full server with its own episodes, sandbox "
              f"and /metrics: {', '.join(urls)}", file=sys.stderr, flush=True)


def serve_http(service: HttpService, port: int, *, log_level: str = "warning", ready_file: str | None = None) -> None:
    """Run ``service`` in this process under uvicorn until SIGINT/SIGTERM (graceful: see :class:`HttpService`).

    Once it serves, it says so on stderr and writes ``ready_file`` (a :class:`ReadyInfo`), which it removes
    again on the way out."""
    sock = bind_socket(service.host, port)
    url = base_url(sock)

    def ready() -> None:
        announce(service, [url])
        if ready_file:
            ReadyInfo.of([url], [os.getpid()]).write(ready_file)

    service.on_ready = ready
    try:
        uvicorn.Server(uvicorn_config(service, log_level)).run(sockets=[sock])
    finally:
        if ready_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ready_file)
