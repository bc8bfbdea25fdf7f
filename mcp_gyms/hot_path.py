"""The hot path of HTTP serving: the two requests every episode makes, answered in one ASGI step.

An rl rollout or an eval episode starts with ``codegym/episodes/start`` and then makes every step as a
``tools/call`` whose ``_meta`` names the episode; both are single-exchange POSTs (MCP 2026-07-28, no
session) to ``/gyms/{gym}/mcp``. The SDK serves them correctly but builds a great deal per request (a
connection, a runner, a tracing span, a middleware chain, pydantic models of the request and of the result,
a shielded clean-up scope), and that machinery cost more CPU than the sandboxed call itself.
:class:`HotPath` answers these two requests itself and hands every other request to the SDK, untouched.

Contract:

- **It only ever takes a request the SDK would answer the same way.** Every check the SDK's modern entry
  makes is made here first, with the SDK's own functions where it has them: POST; ``Content-Type`` JSON; ``Accept`` allowing JSON; Host and Origin under the
  DNS-rebinding settings; a single ``MCP-Protocol-Version`` and ``Mcp-Method`` (and, for ``tools/call``,
  ``Mcp-Name``) that agree with the body; a JSON-RPC 2.0 request object with a string or integer id; the
  envelope's protocol version and client capabilities in ``_meta``; params that pass what the SDK checks
  them with (``validate_client_request`` for ``tools/call``, its verdict kept per envelope since clients
  send the same one on every call; the handler's own :class:`~mcp_gyms.protocol.StartParams` for a start).
  Anything else, anything unusual (a session id, ``Mcp-Param-*`` headers, a body without a declared
  length, params the SDK would refuse, a handle that is not a string, arguments that are not an object, a
  tracing provider that is set up), goes to the SDK, which answers it as before, errors included. Falling
  back is always safe: the body is replayed as it came.
- **The answer is the SDK's answer.** The result comes from the same :class:`~mcp_gyms.gym_server.GymServer`
  code the SDK calls (one renderer for a step's result), with what the SDK's runner adds for this protocol
  version: ``resultType`` and the ``serverInfo`` stamp in ``_meta``; a refused start is the same JSON-RPC
  error with the same HTTP status; the same JSON encoding. ``tests/test_hot_path.py`` checks every case
  against the SDK path.
- **It can be turned off:** ``codegym serve --no-hot-path`` (``HttpService(hot_path=False)``) sends every
  request to the SDK; ``/metrics`` counts the requests answered here (``codegym_hot_path_requests``, by
  method).
- **Nothing else changes.** The requests go to the same :class:`~mcp_gyms.episode_manager.EpisodeManager`
  and sandbox, with the same metrics, state rules and errors.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, decode_header_value
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY
from mcp_types import methods as _methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from opentelemetry import trace
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .protocol import EPISODE_META_KEY, METHOD_START, StartParams

if TYPE_CHECKING:
    from .gym_server import GymServer

__all__ = ["HotPath"]

_MODERN = frozenset(v.encode() for v in MODERN_PROTOCOL_VERSIONS)
_ROUTING = (b"mcp-protocol-version", b"mcp-method", b"mcp-name")
_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAM_KEYS = frozenset({"name", "arguments", "_meta"})  # of tools/call
_METHODS = frozenset({b"tools/call", METHOD_START.encode()})
_JSON_TYPE = b"application/json"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # the SDK's encoding of replies (made once, not per call)
_ENVELOPES_KEPT, _ENVELOPE_KEPT_CHARS = 1024, 4096


def _tracing_configured() -> bool:
    """Whether an OpenTelemetry tracer provider is set up (then the SDK path runs, and traces every call)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class HotPath:
    """The hot path of one gym's ``/gyms/{gym}/mcp``; calls ``fallback`` for every request it does not take.

    Args:
        gym_server: the gym's server (its episodes, its renderer, its SDK ``Server`` for the stamp).
        security: the DNS-rebinding settings the SDK enforces on this endpoint.
        max_body: the largest request body taken here (bigger ones go to the SDK, which refuses them).
        enabled: False sends every request to the SDK (``codegym serve --no-hot-path``).
    """

    def __init__(self, gym_server: GymServer, security: TransportSecuritySettings, max_body: int, *,
                 enabled: bool = True) -> None:
        self.gym_server = gym_server
        self.security = TransportSecurityMiddleware(security)
        self.max_body = max_body
        self.server_info = gym_server.mcp.server_info_stamp  # never mutated: serialised as it is
        hinted = any(gym_server.mcp.cache_hints.get(method.decode()) is not None for method in _METHODS)
        schemas = json.dumps([t.input_schema for t in gym_server.gym_tools])
        # Cache hints or x-mcp-header annotations would change the SDK's answer: then every request takes its path
        self.enabled = enabled and not hinted and "x-mcp-header" not in schemas
        self.metrics = gym_server.manager.metrics  # counts the requests answered here
        self._envelopes: dict[str, bool] = {}

    def _headers_fit(self, scope: Scope) -> dict[bytes, bytes] | None:
        """The headers (first of each name) when the request line and headers are those of a well-formed
        modern ``tools/call`` or start; else None."""
        if not self.enabled or scope["method"] != "POST" or scope["path_params"].get("episode") is not None:
            return None
        seen: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            if key in seen and key in _ROUTING:
                return None  # a duplicated routing header: the SDK rejects it
            if key.startswith(b"mcp-param-") or key == b"mcp-session-id" or key == b"transfer-encoding":
                return None
            seen.setdefault(key, value)
        if seen.get(b"mcp-method") not in _METHODS or seen.get(b"mcp-protocol-version") not in _MODERN:
            return None
        length = seen.get(b"content-length", b"")
        if not length.isdigit() or int(length) > self.max_body:
            return None
        return None if _tracing_configured() else seen

    def _envelope_valid(self, version: str, meta: dict[str, Any]) -> bool:
        """Whether the SDK's ``validate_client_request`` passes a tools/call with this ``_meta`` (the rest of
        the params is already known to be valid: a string name, an object of arguments). Clients send the same
        envelope on every call, so the verdict is kept per envelope (the handle aside)."""
        try:
            key = _ENCODE({k: v for k, v in meta.items() if k != EPISODE_META_KEY})
        except (ValueError, RecursionError):  # nested deeper than the encoder goes: the SDK answers it
            return False
        verdict = self._envelopes.get(key)
        if verdict is None:
            try:
                _methods.validate_client_request("tools/call", version, {"name": "x", "arguments": {}, "_meta": meta})
                verdict = True
            except (ValidationError, KeyError, ValueError):
                verdict = False
            if len(key) <= _ENVELOPE_KEPT_CHARS:
                if len(self._envelopes) >= _ENVELOPES_KEPT:
                    self._envelopes.clear()
                self._envelopes[key] = verdict
        return verdict

    def _request_of(self, body: bytes, headers: dict[bytes, bytes]) -> tuple[Any, str, Any] | None:
        """``(id, method, what to do)`` of a body this path takes, else None. What to do: ``(handle, tool
        name, arguments JSON)`` for ``tools/call``, the validated :class:`StartParams` for a start."""
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(request, dict) or request.keys() != _ENVELOPE_KEYS or request["jsonrpc"] != "2.0":
            return None
        request_id, method, params = request["id"], request["method"], request["params"]
        if type(request_id) is not int and type(request_id) is not str:
            return None
        if not isinstance(method, str) or method.encode() != headers[b"mcp-method"] or not isinstance(params, dict):
            return None
        meta = params.get("_meta")
        version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        if (not isinstance(version, str) or version.encode() != headers[b"mcp-protocol-version"]
                or CLIENT_CAPABILITIES_META_KEY not in meta):
            return None
        if method == METHOD_START:  # a custom method: the SDK checks its params against the handler's model only
            try:
                return request_id, method, StartParams.model_validate(params, by_name=False)
            except ValidationError:
                return None
        name, arguments, handle = params.get("name"), params.get("arguments", {}), meta.get(EPISODE_META_KEY)
        if (not params.keys() <= _PARAM_KEYS or not isinstance(name, str) or not isinstance(arguments, dict)
                or not isinstance(handle, str)):
            return None
        if decode_header_value(headers.get(b"mcp-name", b"").decode("latin-1")) != name:
            return None
        if not self._envelope_valid(version, meta):
            return None
        return request_id, method, (handle, name, _ENCODE(arguments))

    async def _result(self, method: str, what: Any) -> dict[str, Any]:
        """The result of the request, in wire form, with what the SDK's runner adds for this protocol
        version: ``resultType`` (when missing) and the ``serverInfo`` stamp in ``_meta``."""
        if method == METHOD_START:
            info = await self.gym_server.start_episode(what)
            result = info.model_dump(by_alias=True, mode="json", exclude_none=True)
        else:
            result = await self.gym_server.call_with_handle(*what)
        result.setdefault("resultType", "complete")
        meta = result.get("_meta")
        if meta is None or (isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None):
            result["_meta"] = {**(meta or {}), SERVER_INFO_META_KEY: self.server_info}
        return result

    async def __call__(self, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp) -> None:
        headers = self._headers_fit(scope)
        if headers is None:
            await fallback(scope, receive, send)
            return
        # the SDK's own first checks, in its order: Content-Type, Host and Origin (its refusal, answered
        # as it answers it), then an Accept that allows JSON
        request = Request(scope)
        refused = await self.security.validate_request(request, is_post=True)
        if refused is not None:
            await refused(scope, receive, send)
            return
        if not check_accept_headers(request)[0]:
            await fallback(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        taken = self._request_of(b"".join(chunks), headers) if messages[-1]["type"] == "http.request" else None
        if taken is None:
            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await fallback(scope, replay, send)
            return
        request_id, method, what = taken
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        status = 200
        try:
            reply["result"] = await self._result(method, what)
        except Exception as exc:  # answered as the SDK answers a handler that raised (MCPError: its own error)
            error = modern_error_data(exc)
            reply["error"] = error.model_dump(mode="json", by_alias=True, exclude_none=True)
            status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
        body = _ENCODE(reply).encode()
        self.metrics.hot_path_requests[method] += 1
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON_TYPE)]})
        await send({"type": "http.response.body", "body": body})
