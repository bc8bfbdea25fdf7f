"""The one OpenAI-compatible chat client of the project: one chat-completion request, with retries and a
verdict. The evaluator's ``openai`` policy uses it directly; synthesis (:mod:`synthesis.llm`) adds its
response cache, usage counting and concurrency bound on top, so both follow one retry policy.

:class:`ChatModel` wraps the ``openai`` SDK's async client for any OpenAI-compatible endpoint (vLLM,
llama.cpp, OpenAI). Its contract:

- :meth:`ChatModel.complete` returns a :class:`ChatReply` or raises :class:`ModelFailure` whose
  ``reason`` is one of ``context_overflow``, ``model_error``, ``timeout`` (the episode's end reasons).
- **Retried** with exponential backoff and full jitter (honouring ``Retry-After`` / ``retry-after-ms``,
  capped): HTTP 408, 409, 425, 429 and 5xx, request timeouts and connection errors. After ``max_retries``
  retries the failure is final: ``timeout`` if the last attempt timed out, else ``model_error``. The
  SDK's own retries are off (``max_retries=0``): this is the only retry loop. Every failed attempt is
  recorded by kind (``"429"``, ``"503"``, ``"APITimeoutError"``...) in ``errors`` of the reply or failure.
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
from dataclasses import dataclass, field
from typing import Any, NoReturn

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

    def __init__(self, reason: str, message: str, retries: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retries = retries
        self.errors = errors or []  # the kind of every failed attempt, the last one included


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
    """One successful completion: the first choice's message (all choices in ``choices``)."""

    message: Any  # openai ChatCompletionMessage
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    retries: int
    choices: list[Any] = field(default_factory=list)  # every choice's message (more than one when n > 1)
    errors: list[str] = field(default_factory=list)  # the kinds of the attempts that failed before this one


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


def _kind(exc: BaseException) -> str:
    """A failed attempt's kind for counting: the HTTP status, else the exception's class name."""
    return str(exc.status_code) if isinstance(exc, openai.APIStatusError) else type(exc).__name__


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

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                       **sampling: Any) -> ChatReply:
        """One completion of ``messages`` (with ``tools`` as function tools when given; ``sampling`` adds to or
        overrides the model's sampling fields for this request); see the module doc."""
        kwargs: dict[str, Any] = {**self.sampling, **{k: v for k, v in sampling.items() if v is not None}}
        if tools:
            kwargs["tools"] = tools
        errors: list[str] = []
        while True:
            try:
                response = await self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
            except openai.APITimeoutError as exc:
                await self._backoff_or_fail(exc, errors, "timeout")
            except openai.APIConnectionError as exc:
                await self._backoff_or_fail(exc, errors, "model_error")
            except openai.APIStatusError as exc:
                if is_context_overflow(exc):
                    self._fail(exc, errors, "context_overflow")
                if exc.status_code in _FATAL_STATUS:
                    raise FatalModelError(f"the model endpoint refused the request: {self._describe(exc)} "
                                          "(check --model, --base-url and the API key)") from None
                if exc.status_code in _RETRY_STATUS or exc.status_code >= 500:
                    await self._backoff_or_fail(exc, errors, "model_error")
                else:
                    self._fail(exc, errors, "model_error")
            except openai.OpenAIError as exc:  # e.g. a reply that is not a chat completion
                self._fail(exc, errors, "model_error")
            else:
                if not response.choices:
                    raise ModelFailure("model_error", "the endpoint returned no choices", len(errors), errors)
                choice = response.choices[0]
                usage = response.usage
                return ChatReply(choice.message, choice.finish_reason,
                                 int(getattr(usage, "prompt_tokens", 0) or 0),
                                 int(getattr(usage, "completion_tokens", 0) or 0), len(errors),
                                 [c.message for c in response.choices], errors)

    def _fail(self, exc: BaseException, errors: list[str], reason: str) -> NoReturn:
        retries = len(errors)
        errors.append(_kind(exc))
        raise ModelFailure(reason, self._describe(exc), retries, errors) from None

    async def _backoff_or_fail(self, exc: BaseException, errors: list[str], reason: str) -> None:
        retries = len(errors)
        if retries >= self.retry.max_retries:
            errors.append(_kind(exc))
            raise ModelFailure(reason, f"{self._describe(exc)} (after {retries} retries)", retries, errors) from None
        errors.append(_kind(exc))
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
