"""Play a list of tool calls with fastmcp's ``Client`` (default mode) and print a JSON transcript.

Runs in fastmcp's own venv (``.venv/fastmcp/bin/python tests/clients/fastmcp_play.py SCRIPT.json``); the
script and the transcript have the shapes of ``tests/clients/play.mjs``.
"""

import asyncio
import json
import sys

from fastmcp import Client
from fastmcp.client.transports import StdioTransport


async def main(path: str) -> None:
    with open(path) as f:
        script = json.load(f)
    target = script["target"]
    server = target["url"] if "url" in target else StdioTransport(target["command"], target["args"])
    async with Client(server) as client:
        transcript = {"tools": [t.name for t in await client.list_tools()], "results": []}
        for call in script["calls"]:
            r = await client.call_tool(call["name"], call["arguments"], raise_on_error=False)
            text = getattr(r.content[0], "text", "") if r.content else ""
            transcript["results"].append({"name": call["name"], "isError": r.is_error, "text": text,
                                          "structured": r.structured_content})
    print(json.dumps(transcript))


asyncio.run(main(sys.argv[1]))
