"""The LLM client against a scripted OpenAI-compatible HTTP endpoint (real HTTP, real openai client)."""

from __future__ import annotations

import time

import anyio
import pytest
from fixtures.synthesis.scripted_llm import ScriptedLLM

from synthesis.llm import CacheMiss, LLMClient, LLMConfig, LLMError, ResponseCache, Sampling, strip_think

GYM_PROMPT = "# Task: turn a coding problem into a gym\n\n[key-A] please"


def messages(user: str = GYM_PROMPT) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": user}]


def client(server: ScriptedLLM, tmp_path, **overrides) -> LLMClient:
    options = {"base_url": server.base_url, "model": "scripted-model", "api_key": "test-key",
               "cache_dir": tmp_path / "cache", "backoff_s": 0.01, "max_backoff_s": 0.05, **overrides}
    return LLMClient(LLMConfig(**options))


@pytest.fixture
def server():
    with ScriptedLLM() as s:
        yield s


def test_strip_think_handles_reasoning_blocks():
    assert strip_think("<think>plan</think>\nanswer") == "answer"
    assert strip_think("<think>a</think>x<think>b</think>y") == "xy"
    assert strip_think("reasoning without an opening tag</think>final") == "final"
    assert strip_think("answer <think>truncated reasoning") == "answer"
    assert strip_think("plain") == "plain"


def test_cache_key_covers_model_messages_and_sampling():
    base = ResponseCache.key("m", messages(), Sampling())
    assert base == ResponseCache.key("m", messages(), Sampling())
    assert base != ResponseCache.key("other", messages(), Sampling())
    assert base != ResponseCache.key("m", messages("# Task: turn a coding problem into a gym\n\nX"), Sampling())
    assert base != ResponseCache.key("m", messages(), Sampling(temperature=0.1))
    assert base != ResponseCache.key("m", messages(), Sampling(n=2))


async def test_answers_usage_and_think_stripping(server, tmp_path):
    server.add("gym", "[key-A]", ["<think>hmm</think>first", "second"])
    async with client(server, tmp_path) as llm:
        texts = await llm.complete(messages(), Sampling(n=2, temperature=0.5))
    assert texts == ["first", "second"]
    assert llm.usage.requests == 1 and llm.usage.prompt_tokens > 0 and llm.usage.completion_tokens == 20
    assert server.requests()[0]["n"] == 2 and server.requests()[0]["temperature"] == 0.5


async def test_a_429_storm_is_retried_until_success(server, tmp_path):
    server.add("gym", "[key-A]", "made it", fail_first=6)
    async with client(server, tmp_path) as llm:
        assert await llm.complete(messages(), Sampling()) == ["made it"]
    assert llm.usage.retries == 6 and llm.usage.errors == {"429": 6}
    assert len(server.requests(status=429)) == 6 and len(server.requests(status=200)) == 1


async def test_5xx_is_retried_and_gives_up_after_max_retries(server, tmp_path):
    server.add("gym", "[key-A]", "never", fail_first=100, fail_status=503)
    async with client(server, tmp_path, max_retries=2) as llm:
        with pytest.raises(LLMError, match="failed after 3 attempt\\(s\\): HTTP 503"):
            await llm.complete(messages(), Sampling())
    assert len(server.requests(status=503)) == 3


async def test_synthesis_retries_by_the_evaluators_policy(server, tmp_path):
    """One retry policy for the project (eval.chat): 425 is retried here as in the evaluator."""
    server.add("gym", "[key-A]", "after 425", fail_first=2, fail_status=425)
    async with client(server, tmp_path) as llm:
        assert await llm.complete(messages(), Sampling()) == ["after 425"]
    assert llm.usage.retries == 2 and llm.usage.errors == {"425": 2} and llm.usage.requests == 3


async def test_client_errors_are_not_retried(server, tmp_path):
    async with client(server, tmp_path) as llm:  # no rule matches: the server answers 400
        with pytest.raises(LLMError, match="failed after 1 attempt\\(s\\): HTTP 400"):
            await llm.complete(messages(), Sampling())
    assert len(server.log) == 1 and llm.usage.retries == 0


async def test_timeouts_are_retried(server, tmp_path):
    server.add("gym", "[key-A]", "slow", delay_s=1.0)
    async with client(server, tmp_path, timeout_s=0.2, max_retries=1) as llm:
        started = time.monotonic()
        with pytest.raises(LLMError, match="timed out"):
            await llm.complete(messages(), Sampling())
    assert llm.usage.retries == 1 and time.monotonic() - started < 5


async def test_a_server_that_ignores_n_is_asked_again(tmp_path):
    with ScriptedLLM(ignore_n=True) as server:
        server.add("gym", "[key-A]", ["one", "two", "three"])
        async with client(server, tmp_path) as llm:
            texts = await llm.complete(messages(), Sampling(n=3))
    assert len(texts) == 3 and len(server.requests()) == 3


async def test_cache_answers_repeats_and_replays_offline(server, tmp_path):
    server.add("gym", "[key-A]", "cached answer")
    async with client(server, tmp_path) as llm:
        first = await llm.complete(messages(), Sampling(temperature=0.3))
        again = await llm.complete(messages(), Sampling(temperature=0.3))
    assert first == again == ["cached answer"]
    assert len(server.log) == 1 and llm.usage.cache_hits == 1 and llm.usage.saved_prompt_tokens > 0
    cache = ResponseCache(tmp_path / "cache")
    assert cache.models() == ["scripted-model"]
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temp files

    offline = LLMClient(LLMConfig(model="scripted-model", base_url=None, api_key=None, cache_dir=tmp_path / "cache",
                                  offline=True))
    assert await offline.complete(messages(), Sampling(temperature=0.3)) == ["cached answer"]
    with pytest.raises(CacheMiss, match="no cached response"):
        await offline.complete(messages(), Sampling(temperature=0.9))


async def test_concurrency_is_bounded(server, tmp_path):
    server.add("gym", "[key-", "ok", delay_s=0.15)
    async with client(server, tmp_path, concurrency=2, cache_dir=None) as llm:
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(llm.complete, messages(f"# Task: turn a coding problem into a gym\n[key-{i}]"), Sampling())
    assert len(server.log) == 6 and server.max_in_flight == 2


def test_configuration_errors_are_clear(monkeypatch):
    for name in ("CODEGYM_LLM_BASE_URL", "OPENAI_BASE_URL", "CODEGYM_LLM_API_KEY", "OPENAI_API_KEY", "CODEGYM_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LLMError, match="no model"):
        LLMClient(LLMConfig())
    with pytest.raises(LLMError, match="no endpoint"):
        LLMClient(LLMConfig(model="m"))
    monkeypatch.setenv("CODEGYM_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CODEGYM_LLM_MODEL", "from-env")
    config = LLMConfig()
    assert config.base_url == "http://127.0.0.1:9/v1" and LLMClient(config).model == "from-env"
