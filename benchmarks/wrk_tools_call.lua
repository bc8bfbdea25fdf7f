-- wrk script for benchmarks/bench_native.py: MCP 2026-07-28 `tools/call` POSTs over streamable HTTP.
--
-- Every request calls Height(position) on the next episode handle of HANDLES_FILE (one handle a line,
-- started beforehand with `codegym/episodes/start`), in turn per thread, so every call does real work
-- on a live episode. Every response is checked: HTTP 200, a JSON-RPC result with "isError":false, and
-- structuredContent whose observation is an integer and whose error is null. At the end one line
-- `NATIVE_RESULT {json}` gives requests, bad responses, socket errors and latency quantiles (us).
--
--   HANDLES_FILE=handles.txt wrk -t2 -c64 -d10s -s wrk_tools_call.lua http://127.0.0.1:PORT/PATH

local handles = {}
for line in io.lines(os.getenv("HANDLES_FILE")) do
  if #line > 0 then handles[#handles + 1] = line end
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter)
  threads[#threads + 1] = thread
end

local headers = {
  ["Content-Type"] = "application/json",
  ["Accept"] = "application/json, text/event-stream",
  ["MCP-Protocol-Version"] = "2026-07-28",
  ["Mcp-Method"] = "tools/call",
  ["Mcp-Name"] = "Height",
}
local template = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"Height",'
  .. '"arguments":{"position":%d},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
  .. '"io.modelcontextprotocol/clientCapabilities":{},"codegym/episode":"%s"}}}'

local n = 0
bad = 0
first_bad = ""

function init(args)
  -- threads start on different handles so they do not queue on the same episodes
  n = (offset or 1) * 7919
end

function request()
  n = n + 1
  local handle = handles[(n % #handles) + 1]
  return wrk.format("POST", nil, headers, string.format(template, n, n % 40, handle))
end

function response(status, hdrs, body)
  if status ~= 200
      or not string.find(body, '"isError":false', 1, true)
      or not string.find(body, '"structuredContent":{"observation":"%-?%d+"')
      or not string.find(body, '"error":null}', 1, true) then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body, 1, 300) end
  end
end

function done(summary, latency, requests)
  local total_bad, example = 0, ""
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    if example == "" then example = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'NATIVE_RESULT {"requests":%d,"duration_us":%d,"bad":%d,"socket_errors":%d,"status_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"first_bad":%q}\n',
    summary.requests, summary.duration, total_bad, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    (string.gsub(example, "[%c]", " "))))
end
