"""The edges where MCP clients in the wild meet the server: the bearer scheme in any case, OAuth discovery
answered 404 (not 401), a handshake session's DELETE closing its implicit episode at once, the request
body limit as a JSON-RPC error that names it, bad episode names in URLs, and end of stdin with a call in
flight (real uvicorn on 127.0.0.1; a real stdio subprocess)."""

from __future__ import annotations

import json
import subprocess

import httpx
from server_support import REPO, SERVER, running_http
from test_server_http import ACCEPT, LegacySession, endpoint, modern

from mcp_gyms.bank import Bank
from mcp_gyms.http_service import HttpService

GYM = "mountain_peak"


async def test_bearer_scheme_is_case_insensitive_and_oauth_discovery_is_404(bank: Bank) -> None:
    service = HttpService(bank, gyms=[GYM], workers=1, token="s3cret")
    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = await http.get(f"{base}/gyms", headers={"Authorization": f"{scheme} s3cret"})
            assert r.status_code == 200, (scheme, r.text)
        for wrong in ("Bearer s3cre", "Basic s3cret", "s3cret", "Bearers3cret"):
            assert (await http.get(f"{base}/gyms", headers={"Authorization": wrong})).status_code == 401
        for path in ("/.well-known/oauth-protected-resource", f"/.well-known/oauth-protected-resource/gyms/{GYM}/mcp",
                     "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            r = await http.get(base + path)  # no token: a client probing for OAuth must not be told 401
            assert r.status_code == 404 and "does not use OAuth" in r.json()["error"]["message"], path
        assert (await http.post(endpoint(base), json={})).status_code == 401  # the endpoints still need it


async def test_delete_closes_the_sessions_implicit_episode_at_once(bank: Bank) -> None:
    service = HttpService(bank, gyms=[GYM], workers=1)
    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        keep, leave = await LegacySession(http, endpoint(base)).open(), await LegacySession(http, endpoint(base)).open()
        assert not (await keep.call("Observe"))["isError"] and not (await leave.call("Observe"))["isError"]
        assert service.manager is not None and service.manager.open_episodes == 2
        r = await http.delete(endpoint(base), headers=leave.headers)
        assert r.status_code in (200, 204)
        assert service.manager.open_episodes == 1  # at once, not after the idle timeout
        assert (await keep.call("Observe"))["structuredContent"]["steps"] == 2  # the other session's is untouched


async def test_episode_urls(bank: Bank) -> None:
    service = HttpService(bank, gyms=[GYM], workers=1)
    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        url = f"{endpoint(base)}/mine"
        r = await modern(http, url, "tools/call", {"name": "Observe", "arguments": {}}, name="Observe")
        assert r.json()["result"]["structuredContent"]["steps"] == 1
        r = await modern(http, url, "tools/call", {"name": "Observe", "arguments": {}}, name="Observe")
        assert r.json()["result"]["structuredContent"]["steps"] == 2  # the same episode, no handle, no session
        for bad in ("x" * 65, "a%20b", "bad!name"):
            r = await modern(http, f"{endpoint(base)}/{bad}", "tools/list", {})
            assert r.status_code == 404 and "episode name" in r.json()["error"]["message"], bad
        listing = (await http.get(f"{base}/gyms")).json()["gyms"][0]
        assert listing["episode_endpoint"] == f"/gyms/{GYM}/mcp/{{name}}"


async def test_body_over_the_limit_is_a_json_rpc_error_naming_it(bank: Bank) -> None:
    service = HttpService(bank, gyms=[GYM], workers=1, max_request_body=2000)
    big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": "Done", "arguments": {"answer": "x" * 3000}}}
    body = json.dumps(big).encode()

    async def chunks():  # no Content-Length: the limit must hold on a streamed body too
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    async with running_http(service) as base, httpx.AsyncClient(timeout=30) as http:
        headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        for content in (body, chunks()):
            r = await http.post(f"{endpoint(base)}/big", content=content, headers=headers)
            assert r.status_code == 413
            error = r.json()["error"]
            assert "2000 bytes" in error["message"] and "--max-request-body" in error["message"]
        small = await modern(http, f"{endpoint(base)}/big", "tools/call", {"name": "Observe", "arguments": {}},
                             name="Observe")
        assert small.status_code == 200 and not small.json()["result"]["isError"]  # still serving


def test_stdio_end_of_input_lets_the_call_in_flight_answer() -> None:
    """``printf REQUESTS | codegym serve GYM``: stdin ends right after the calls; both are answered."""
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pipe", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "Length", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "Height", "arguments": {"position": 0}}},
    ]
    out = subprocess.run([*SERVER, GYM], input="".join(json.dumps(m) + "\n" for m in lines), capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    answers = {m["id"]: m for m in map(json.loads, out.stdout.splitlines())}
    assert set(answers) == {0, 1, 2}, out.stdout
    assert all("result" in answers[i] and not answers[i]["result"]["isError"] for i in (1, 2)), answers
