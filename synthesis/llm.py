"""The LLM side of synthesis: any OpenAI-compatible chat endpoint, with an on-disk response cache.

:class:`LLMClient` wraps :class:`eval.chat.ChatModel` (the ``openai`` SDK's async client):

- **Configuration** — base URL, model and key come from :class:`LLMConfig`, whose defaults read the
  environment (``CODEGYM_LLM_BASE_URL`` / ``OPENAI_BASE_URL``, ``CODEGYM_LLM_MODEL``,
  ``CODEGYM_LLM_API_KEY`` / ``OPENAI_API_KEY``). A local server (vLLM, llama.cpp) needs no key.
- **Bounded concurrency** — at most ``concurrency`` requests in flight, however many callers.
- **Retries** — the project's one policy, :class:`eval.chat.ChatModel`'s: 408, 409, 425, 429, 5xx,
  timeouts and dropped connections are retried with exponential backoff and full jitter (a server's
  ``Retry-After`` / ``retry-after-ms`` is honoured, capped); other errors (400, 401, 404) fail at once.
- **Sampling per call** — :class:`Sampling` carries temperature, ``n``, ``max_tokens``, ``top_p``; if a
  server returns fewer than ``n`` choices, the client asks again for the rest.
- **Reasoning models** — ``<think>...</think>`` blocks (and anything before a lone ``</think>``) are
  removed from what callers see; the cache keeps the raw text.
- **Usage** — requests, retries, cache hits, prompt/completion tokens and (with prices) cost.
- **Cache** — content-addressed: the key is a SHA-256 of (model, messages, sampling). Entries are
  JSON files ``CACHE/<model>/<key[:2]>/<key>.json`` written atomically, so a crashed run resumes
  without paying twice, and ``offline=True`` replays a run with no endpoint at all (a missing entry
  raises :class:`CacheMiss`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from mcp_gyms.files import atomic_write

from .errors import TransientError

if TYPE_CHECKING:
    from eval.chat import ChatModel

__all__ = ["CacheMiss", "LLMClient", "LLMConfig", "LLMError", "ResponseCache", "Sampling", "Usage", "strip_think"]

Message = dict[str, str]


class LLMError(TransientError):
    """The endpoint could not give an answer (after retries, or for a non-retryable error).

    Transient for the pipeline: the problem is left incomplete and a rerun asks again."""


class CacheMiss(LLMError):
    """Replay mode found no cached response for a request."""


def _env(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


class Sampling(BaseModel):
    """Sampling parameters of one request (part of the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0, le=2)
    n: int = Field(1, ge=1, le=64)
    max_tokens: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)


class LLMConfig(BaseModel):
    """Where and how to reach the model. Defaults come from the environment."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(default_factory=lambda: _env("CODEGYM_LLM_BASE_URL", "OPENAI_BASE_URL"))
    model: str | None = Field(default_factory=lambda: _env("CODEGYM_LLM_MODEL"))
    api_key: str | None = Field(default_factory=lambda: _env("CODEGYM_LLM_API_KEY", "OPENAI_API_KEY"), repr=False)
    cache_dir: Path | None = None
    offline: bool = False
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(8, ge=0)
    backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each retry")
    max_backoff_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(600.0, gt=0)
    price_in_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens (for the cost estimate)")
    price_out_per_mtok: float = Field(0.0, ge=0)


@dataclass
class Usage:
    """What the client spent. ``saved_*`` counts tokens that cache hits did not pay again."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "cost_usd": round(self.cost_usd, 6), "errors": dict(self.errors)}


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def strip_think(text: str) -> str:
    """Remove reasoning: ``<think>...</think>`` blocks, everything before a lone ``</think>``, and an
    unterminated ``<think>`` to the end (a truncated reasoning trace holds no answer)."""
    text = _THINK.sub("", text)
    lowered = text.lower()
    if "</think>" in lowered:
        text = text[lowered.rindex("</think>") + len("</think>"):]
    elif "<think>" in lowered:
        text = text[:lowered.index("<think>")]
    return text.strip()


def _model_dir(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", model).strip("_") or "model"


class ResponseCache:
    """Content-addressed responses on disk: ``ROOT/<model>/<key[:2]>/<key>.json``.

    An entry is ``{"model", "messages", "sampling", "choices": [raw text, ...], "usage": {...}}``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def key(model: str, messages: list[Message], sampling: Sampling) -> str:
        blob = json.dumps({"model": model, "messages": messages, "sampling": sampling.model_dump()},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, model: str, key: str) -> Path:
        return self.root / _model_dir(model) / key[:2] / f"{key}.json"

    def get(self, model: str, key: str) -> dict[str, Any] | None:
        """The entry, or None when absent (an unreadable entry counts as absent and will be rewritten)."""
        try:
            entry = json.loads(self.path(model, key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("choices"), list) else None

    def put(self, model: str, key: str, entry: dict[str, Any]) -> None:
        atomic_write(self.path(model, key), json.dumps(entry, ensure_ascii=False, indent=1) + "\n")

    def models(self) -> list[str]:
        """Model folders present in the cache (for replay without ``--model``)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())


class LLMClient:
    """An OpenAI-compatible chat client with concurrency bound, retries, usage counting and a cache.

    Use as ``async with LLMClient(config) as llm: texts = await llm.complete(messages, sampling)``."""

    def __init__(self, config: LLMConfig) -> None:
        if not config.model:
            raise LLMError("no model given: pass --model or set CODEGYM_LLM_MODEL")
        if not config.offline and not config.base_url and not config.api_key:
            raise LLMError("no endpoint: pass --llm-base-url (or set CODEGYM_LLM_BASE_URL / OPENAI_BASE_URL), "
                           "or set OPENAI_API_KEY for api.openai.com, or use --replay CACHE_DIR")
        if config.offline and config.cache_dir is None:
            raise LLMError("replay mode needs a cache directory")
        self.config = config
        self.model: str = config.model
        self.cache = ResponseCache(config.cache_dir) if config.cache_dir is not None else None
        self.usage = Usage()
        self._limiter = anyio.Semaphore(config.concurrency)
        self._client: ChatModel | None = None

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _chat(self) -> ChatModel:
        """The :class:`eval.chat.ChatModel` (made on first use: replay mode needs no endpoint nor ``openai``)."""
        if self._client is None:
            from eval.chat import ChatModel, RetryPolicy

            config = self.config
            self._client = ChatModel(self.model, base_url=config.base_url, api_key=config.api_key or "EMPTY",
                                     concurrency=config.concurrency, request_timeout=config.timeout_s,
                                     retry=RetryPolicy(config.max_retries, config.backoff_s, config.max_backoff_s))
        return self._client

    async def complete(self, messages: list[Message], sampling: Sampling) -> list[str]:
        """``sampling.n`` answers to ``messages`` (reasoning blocks stripped), from the cache when there.

        Raises :class:`CacheMiss` in replay mode when the answer is not cached, and :class:`LLMError`
        when the endpoint fails for good."""
        return [strip_think(text) for text in await self.complete_raw(messages, sampling)]

    async def complete_raw(self, messages: list[Message], sampling: Sampling) -> list[str]:
        """Like :meth:`complete`, without stripping reasoning blocks."""
        key = ResponseCache.key(self.model, messages, sampling)
        if self.cache is not None:
            entry = await anyio.to_thread.run_sync(self.cache.get, self.model, key)
            if entry is not None and len(entry["choices"]) >= sampling.n:
                self.usage.cache_hits += 1
                usage = entry.get("usage") or {}
                self.usage.saved_prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self.usage.saved_completion_tokens += int(usage.get("completion_tokens") or 0)
                return [str(c) for c in entry["choices"][:sampling.n]]
        if self.config.offline:
            raise CacheMiss(f"no cached response for this request (model {self.model}, key {key[:12]}) in "
                            f"{self.config.cache_dir}; replay needs the cache of a run with the same prompts")
        choices: list[str] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for _ in range(2 * sampling.n):  # servers that ignore `n` answer one choice per request
            got, used = await self._request(messages, sampling, sampling.n - len(choices))
            choices += got
            for name in usage:
                usage[name] += used.get(name, 0)
            if len(choices) >= sampling.n:
                break
        if len(choices) < sampling.n:
            raise LLMError(f"the endpoint returned {len(choices)} of {sampling.n} requested choices")
        choices = choices[:sampling.n]
        if self.cache is not None:
            entry = {"model": self.model, "messages": messages, "sampling": sampling.model_dump(), "choices": choices,
                     "usage": usage}
            await anyio.to_thread.run_sync(self.cache.put, self.model, key, entry)
        return choices

    async def _request(self, messages: list[Message], sampling: Sampling, n: int) -> tuple[list[str], dict[str, int]]:
        """One chat completion (retried by :class:`eval.chat.ChatModel`'s policy): the choices' texts and the
        token usage."""
        from eval.chat import FatalModelError, ModelFailure

        params: dict[str, Any] = {"temperature": sampling.temperature, "max_tokens": sampling.max_tokens,
                                  "top_p": sampling.top_p, "n": n if n > 1 else None}
        async with self._limiter:
            try:
                reply = await self._chat().complete(messages, None, **params)
            except ModelFailure as exc:
                self._count_attempts(exc.errors)
                raise LLMError(f"the endpoint failed after {len(exc.errors)} attempt(s): {exc.message}") from exc
            except FatalModelError as exc:
                self._count_attempts(["fatal"])
                raise LLMError(str(exc)) from exc
        self._count_attempts([*reply.errors, ""])
        texts = [(message.content or "") for message in reply.choices]
        used = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
        self.usage.prompt_tokens += used["prompt_tokens"]
        self.usage.completion_tokens += used["completion_tokens"]
        self.usage.cost_usd += (used["prompt_tokens"] * self.config.price_in_per_mtok
                                + used["completion_tokens"] * self.config.price_out_per_mtok) / 1e6
        return texts, used

    def _count_attempts(self, outcomes: list[str]) -> None:
        """Count one request's attempts: each failed one by its kind, and (``""``) the one that succeeded."""
        self.usage.requests += len(outcomes)
        failed = [kind for kind in outcomes if kind]
        self.usage.retries += len(outcomes) - 1
        for kind in failed:
            self.usage.errors[kind] = self.usage.errors.get(kind, 0) + 1
