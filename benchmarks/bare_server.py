"""The ceiling of the protocol stack: a bare MCP SDK server whose one tool returns a constant.

Run as its own process by ``bench_serving.py``::

    python benchmarks/bare_server.py --port 0 [--sse] [--stateless]

It serves the low-level ``mcp.server.Server`` over streamable HTTP at ``/mcp`` on 127.0.0.1, under the
same uvicorn configuration as ``codegym serve --http`` (same listening socket, TCP_NODELAY, JSON
responses by default), and prints ``serving on http://127.0.0.1:PORT/mcp`` on stderr once it is ready.
The tool takes the same arguments as the gym tool the benchmark calls and answers with the same shape of
result (text + ``structuredContent``), so the two servers do the same protocol work per call.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import UVICORN, listen_socket  # noqa: E402
from mcp_gyms.protocol import STEP_OUTPUT_SCHEMA  # noqa: E402

TOOL = "Height"
INPUT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"position": {"type": "integer"}},
                                "required": ["position"], "additionalProperties": False}
CONSTANT = {"observation": "917", "reward": 0.0, "done": False, "terminated": False, "truncated": False,
            "steps": 1, "error": None}


def build_server() -> Server[Any]:
    """A low-level server with one tool, ``Height(position)``, that always answers the same."""
    tool = types.Tool(name=TOOL, description="Read the height at one position.", input_schema=INPUT_SCHEMA,
                      output_schema=STEP_OUTPUT_SCHEMA)

    async def list_tools(ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(text="917")], structured_content=dict(CONSTANT))

    return Server("bare", version="1", on_list_tools=list_tools, on_call_tool=call_tool,
                  get_tool_input_schema={TOOL: INPUT_SCHEMA}.get)


class _Endpoint:
    """The ASGI endpoint ``/mcp`` (a class, so Starlette passes it the raw ASGI call)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


def main() -> None:
    """Parse the options, bind 127.0.0.1, serve until killed."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sse", action="store_true", help="SSE responses instead of JSON responses")
    parser.add_argument("--stateless", action="store_true", help="stateless mode for handshake-era clients")
    args = parser.parse_args()
    manager = StreamableHTTPSessionManager(
        app=build_server(), json_response=not args.sse, stateless=args.stateless,
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            print(f"serving on http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
            yield

    app = Starlette(routes=[Route("/mcp", _Endpoint(manager), methods=["GET", "POST", "DELETE"])], lifespan=lifespan)
    sock = listen_socket(args.port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, **UVICORN)  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
