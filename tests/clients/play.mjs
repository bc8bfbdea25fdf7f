// Plays a list of tool calls with an official MCP TypeScript SDK client and prints a JSON transcript.
//
// Usage: node play.mjs v1|v2 SCRIPT.json
//   SCRIPT.json: {"target": {"url": URL} | {"command": CMD, "args": [...]}, "calls": [{"name", "arguments"}]}
//   v1: @modelcontextprotocol/sdk 1.x (the handshake revision).
//   v2: @modelcontextprotocol/client 2.x with versionNegotiation {mode: "auto"} (2026-07-28 when offered).
// Output (stdout): {"tools": [names], "results": [{"name", "isError", "text", "structured"} | {"name", "exception"}]}
import { readFileSync } from "node:fs";

const [sdk, scriptPath] = process.argv.slice(2);
const script = JSON.parse(readFileSync(scriptPath, "utf8"));
const info = { name: `codegym-test-${sdk}`, version: "1.0.0" };

let client, transport;
if (sdk === "v1") {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  client = new Client(info);
  if (script.target.url) {
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    transport = new StreamableHTTPClientTransport(new URL(script.target.url));
  } else {
    const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js");
    transport = new StdioClientTransport({ command: script.target.command, args: script.target.args });
  }
} else if (sdk === "v2") {
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  client = new Client(info, { versionNegotiation: { mode: "auto" } });
  if (script.target.url) {
    transport = new StreamableHTTPClientTransport(new URL(script.target.url));
  } else {
    const { StdioClientTransport } = await import("@modelcontextprotocol/client/stdio");
    transport = new StdioClientTransport({ command: script.target.command, args: script.target.args });
  }
} else {
  throw new Error(`unknown sdk ${sdk}: use v1 or v2`);
}

await client.connect(transport);
const transcript = { tools: (await client.listTools()).tools.map((t) => t.name), results: [] };
for (const call of script.calls) {
  try {
    const r = await client.callTool({ name: call.name, arguments: call.arguments });
    transcript.results.push({ name: call.name, isError: Boolean(r.isError), text: r.content?.[0]?.text ?? "",
                              structured: r.structuredContent ?? null });
  } catch (err) {
    transcript.results.push({ name: call.name, exception: String(err?.message ?? err) });
  }
}
transcript.protocol = client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion ?? null;
await client.close();
process.stdout.write(JSON.stringify(transcript) + "\n");
