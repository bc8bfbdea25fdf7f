"""The model side of the ``openai`` policy: one chat-completion request, with retries and a verdict.

:class:`ChatModel` wraps the ``openai`` SDK's async client for any OpenAI-compatible endpoint (vLLM,
llama.cpp, OpenAI). Its contract:

- :meth:`ChatModel.complete` returns a :class:`ChatReply` or raises :class:`ModelFailure` whose
  ``reason`` is one of ``context_overflow``, ``model_error``, ``timeout`` (the episode's end reasons).
- **Retried** with exponential backoff and full jitter (honouring ``Retry-After`` / ``retry-after-ms``,
  capped): HTTP 429, 408, 409 and 5xx, request timeouts and connection errors. After ``max_retries``
  retries the failure is final: ``timeout`` if the last attempt timed out, else ``model_error``.
- **Not retried**: a context-length error (HTTP 400/413 whose message says the prompt is too long for the
  model) ends the episode with ``context_overflow``; any other 4xx is ``model_error`` at once, except
  401/403/404, which are :class:`FatalModelError` (a wrong key, model or URL: every episode would fail,
  so the run stops with a clear message).
- The API key is held by the SDK client only. Every message this module produces goes through
  :meth:`ChatModel.redact`, which blanks the key, so it cannot reach records, logs or reports.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import openai

__all__ = ["ChatModel", "ChatReply", "FatalModelError", "ModelFailure", "RetryPolicy", "is_context_overflow"]

_CONTEXT_PATTERNS = re.compile(
    r"context[ _]length|maximum context|context window|context size|exceed_context|n_ctx|too many tokens|"
    r"prompt is too long|input is too long|reduce the length|exceeds? the (?:model'?s? )?(?:max|context)",
    re.IGNORECASE,
)
_RETRY_STATUS = frozenset({408, 409, 425, 429})
_FATAL_STATUS = frozenset({401, 403, 404})


class ModelFailure(Exception):
    """A request that failed for good; ``reason`` is the episode's end reason."""

    def __init__(self, reason: str, message: str, retries: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retries = retries


class FatalModelError(Exception):
    """A failure no episode can get past (wrong key, model or URL): the run stops."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of retried requests: ``min(cap_s, base_s * 2**attempt)`` with full jitter."""

    max_retries: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.cap_s, self.base_s * 2 ** attempt)
        if retry_after is not None and retry_after >= 0:
            return min(self.cap_s, max(retry_after, backoff * random.random()))
        return backoff * random.random()


@dataclass
class ChatReply:
    """One successful completion."""

    message: Any  # openai ChatCompletionMessage
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    retries: int


def is_context_overflow(exc: BaseException) -> bool:
    """Whether an API error says the prompt does not fit the model's context."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 413, 422):
        return False
    body = exc.body
    code = ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            code = f"{err.get('code', '')} {err.get('type', '')}"
    return bool(_CONTEXT_PATTERNS.search(f"{exc.message} {code}"))


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is not None:
            try:
                return float(value) / divisor
            except ValueError:
                return None
    return None


class ChatModel:
    """An OpenAI-compatible chat model with retries. Use as an async context manager (closes the pool).

    Args:
        model: the model name sent with each request.
        base_url: the endpoint (``.../v1``); None for the SDK default (OpenAI).
        api_key: the key (the caller resolves ``OPENAI_API_KEY``); never stored anywhere else.
        concurrency: size of the HTTP connection pool (the number of episodes in flight).
        request_timeout: seconds before one request counts as timed out.
        retry: the retry policy.
        sampling: extra request fields (temperature, top_p, max_tokens, seed...); None values are left out.
    """

    def __init__(self, model: str, *, base_url: str | None, api_key: str, concurrency: int = 64,
                 request_timeout: float = 600.0, retry: RetryPolicy | None = None,
                 sampling: dict[str, Any] | None = None) -> None:
        if not model:
            raise ValueError("the openai policy needs a model name (--model)")
        self.model = model
        self.base_url = base_url
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self.sampling = {k: v for k, v in (sampling or {}).items() if v is not None}
        limits = httpx2.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency))
        self._http = openai.DefaultAsyncHttpx2Client(limits=limits, timeout=request_timeout)
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                         timeout=request_timeout, http_client=self._http)

    async def __aenter__(self) -> ChatModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key blanked out."""
        return text.replace(self._key, "***") if self._key else text

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> ChatReply:
        """One completion of ``messages`` (with ``tools`` as function tools when given); see the module doc."""
        retries = 0
        while True:
            try:
                kwargs: dict[str, Any] = dict(self.sampling)
                if tools:
                    kwargs["tools"] = tools
                response = await self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
            except openai.APITimeoutError as exc:
                await self._backoff_or_fail(exc, retries, "timeout")
            except openai.APIConnectionError as exc:
                await self._backoff_or_fail(exc, retries, "model_error")
            except openai.APIStatusError as exc:
                if is_context_overflow(exc):
                    raise ModelFailure("context_overflow", self._describe(exc), retries) from None
                if exc.status_code in _FATAL_STATUS:
                    raise FatalModelError(f"the model endpoint refused the request: {self._describe(exc)} "
                                          "(check --model, --base-url and the API key)") from None
                if exc.status_code in _RETRY_STATUS or exc.status_code >= 500:
                    await self._backoff_or_fail(exc, retries, "model_error")
                else:
                    raise ModelFailure("model_error", self._describe(exc), retries) from None
            except openai.OpenAIError as exc:  # e.g. a reply that is not a chat completion
                raise ModelFailure("model_error", self._describe(exc), retries) from None
            else:
                if not response.choices:
                    raise ModelFailure("model_error", "the endpoint returned no choices", retries)
                choice = response.choices[0]
                usage = response.usage
                return ChatReply(choice.message, choice.finish_reason,
                                 int(getattr(usage, "prompt_tokens", 0) or 0),
                                 int(getattr(usage, "completion_tokens", 0) or 0), retries)
            retries += 1

    async def _backoff_or_fail(self, exc: BaseException, retries: int, reason: str) -> None:
        if retries >= self.retry.max_retries:
            raise ModelFailure(reason, f"{self._describe(exc)} (after {retries} retries)", retries) from None
        await anyio.sleep(self.retry.delay(retries, _retry_after(exc)))

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, openai.APIStatusError):
            text = f"HTTP {exc.status_code}: {exc.message}"
        elif isinstance(exc, openai.APITimeoutError):
            text = "the request timed out"
        else:
            text = f"{type(exc).__name__}: {exc}"
        text = self.redact(text)
        return text if len(text) <= 500 else text[:497] + "..."
