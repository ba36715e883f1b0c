"""Many chat completions at once through the `openai` package, cached, retried, counted.

`ChatClient.complete_many(prompts)` takes a list of message lists and returns one
`Completion` per prompt, in order, and never raises for an endpoint problem: a prompt whose
request failed gets `status` = `endpoint_unavailable` (no HTTP answer within the budget, or
the circuit breaker is open), `budget_exhausted` (answers came but only failures until
the retries or the time budget ran out) or `endpoint_rejected` (a 4xx that no retry fixes,
e.g. a wrong model name or key). Identical prompts are sent once; cached prompts are not
sent at all.

Speed: requests go through `AsyncOpenAI.post(..., cast_to=httpx2.Response)` (the
client's documented raw-request path: same auth, base URL, headers and error types as
`chat.completions.create`, without the per-call typed-dict transform and pydantic model
building, which cost more CPU than the HTTP exchange itself) and, when `aiohttp` is
installed (`openai[aiohttp]`), over the aiohttp transport, whose connection pool does not
slow down with many connections as httpx's does. With httpx the connections are split
over several small pools for the same reason.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import random
import sys
import time
from dataclasses import dataclass

from lifting.llm.cache import CachedCompletion, ResponseCache, cache_key
from lifting.llm.config import LLMConfig
from lifting.llm.retry import MalformedBody, RetryPolicy, classify_error

log = logging.getLogger(__name__)

#: Telemetry headers the openai client adds to every request. Dropped (openai.omit): they
#: carry nothing a chat server needs, and building them is a measurable share of the
#: client's CPU per request.
_TELEMETRY_HEADERS = ("X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
                      "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Async")
_PER_REQUEST_TELEMETRY = ("x-stainless-retry-count", "x-stainless-read-timeout")

#: Connections per httpx pool when the httpx transport is used (its pool scans every
#: connection on each request, so many small pools beat one large one).
_HTTPX_POOL_SIZE = 8


@dataclass
class Completion:
    """The outcome of one prompt.

    status: "ok" or a failure code (see module docstring); content: the assistant text
    (None unless ok); finish_reason: as the server said ("stop", "length", ...);
    prompt_tokens / completion_tokens: usage reported by the server; from_cache: answered
    from the persistent cache (no request); attempts: HTTP attempts made for it.
    """

    status: str
    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    from_cache: bool = False
    attempts: int = 0


class ClientStats:
    """Counters of one client; `as_dict()` is JSON-ready (for stats.json)."""

    def __init__(self) -> None:
        self.c: collections.Counter = collections.Counter()
        self.errors_by_cause: collections.Counter = collections.Counter()
        self.retries_by_cause: collections.Counter = collections.Counter()
        self.failures_by_reason: collections.Counter = collections.Counter()

    def as_dict(self) -> dict:
        keys = ["prompts", "unique_prompts", "dedup_hits", "cache_hits", "cache_misses", "requests",
                "responses_ok", "prompt_tokens", "completion_tokens", "cached_prompt_tokens",
                "cached_completion_tokens", "json_mode_fallbacks", "breaker_trips", "breaker_fast_fails"]
        d = {k: int(self.c[k]) for k in keys}
        d["retries"] = int(sum(self.retries_by_cause.values()))
        d["retries_by_cause"] = dict(sorted(self.retries_by_cause.items()))
        d["errors_by_cause"] = dict(sorted(self.errors_by_cause.items()))
        d["failures_by_reason"] = dict(sorted(self.failures_by_reason.items()))
        # flat copies, for consumers that keep only numeric top-level entries (Beam counters)
        for prefix, counter in (("retries_", self.retries_by_cause), ("errors_", self.errors_by_cause),
                                ("failed_", self.failures_by_reason)):
            for k, v in counter.items():
                d[prefix + k] = int(v)
        return d


class ChatClient:
    """Async chat-completions client over an OpenAI-compatible endpoint.

    Must be used from one event loop (the one it was first used in). `aclose()` releases
    the HTTP connections and flushes the cache.
    """

    def __init__(self, config: LLMConfig, cache: ResponseCache | None = None, rng: random.Random | None = None):
        if not config.model:
            raise ValueError("LLMConfig.model is required")
        self.config = config
        self.cache = cache if cache is not None else ResponseCache(config.cache_path)
        self.policy = RetryPolicy(config.max_retries, config.backoff_base_s, config.backoff_max_s, config.budget_s)
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        self._clients: list = []
        self._request_headers: dict = {}
        self._rr = None
        self._sem: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self._pending_puts: list[tuple[str, str, CachedCompletion]] = []
        self._json_mode = bool(config.json_mode)
        self._params = config.sampling_params()
        self._conn_fail_streak = 0
        self._breaker_open_until = 0.0

    # -- HTTP clients ---------------------------------------------------------------------
    def _backend(self) -> str:
        want = self.config.http_backend
        if want in ("auto", "aiohttp"):
            try:
                import aiohttp  # noqa: F401
                from openai._vendor.httpx_aiohttp import Httpx2AiohttpClient  # noqa: F401
                return "aiohttp"
            except ImportError:
                if want == "aiohttp":
                    raise RuntimeError("http_backend='aiohttp' needs `pip install openai[aiohttp]`") from None
        return "httpx"

    def _ensure_clients(self) -> None:
        if self._clients:
            return
        import httpx2
        import openai

        cfg = self.config
        n = cfg.concurrency
        timeout = httpx2.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s))
        common = dict(base_url=cfg.base_url, api_key=cfg.api_key(), max_retries=0, timeout=timeout,
                      default_headers={h: openai.omit for h in _TELEMETRY_HEADERS})
        self._request_headers = {h: openai.omit for h in _PER_REQUEST_TELEMETRY}
        if self._backend() == "aiohttp":
            limits = httpx2.Limits(max_connections=n, max_keepalive_connections=n)
            self._clients = [openai.AsyncOpenAI(http_client=openai.DefaultAioHttpClient(limits=limits, timeout=timeout),
                                                **common)]
        else:
            k = max(1, -(-n // _HTTPX_POOL_SIZE))
            per = -(-n // k)
            limits = httpx2.Limits(max_connections=per, max_keepalive_connections=per)
            self._clients = [openai.AsyncOpenAI(http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout),
                                                **common) for _ in range(k)]
        self._rr = itertools.cycle(self._clients)
        self._sem = asyncio.Semaphore(n)
        log.info("LLM client: %s model=%s backend=%s concurrency=%d", _redact(cfg.base_url), cfg.model,
                 self._backend(), n)

    async def aclose(self) -> None:
        """Close HTTP connections and write pending cache rows."""
        self.flush_cache()
        clients, self._clients = self._clients, []
        for c in clients:
            await c.close()

    def flush_cache(self) -> None:
        rows, self._pending_puts = self._pending_puts, []
        self.cache.put_many(rows)

    # -- public ---------------------------------------------------------------------------
    def key_of(self, messages: list[dict]) -> str:
        """Cache key of a prompt under this client's model and sampling parameters."""
        return cache_key(self.config.model, messages, self._params)

    async def complete_many(self, prompts: list[list[dict]]) -> list[Completion]:
        """One Completion per prompt (same order). Never raises for endpoint failures."""
        self.stats.c["prompts"] += len(prompts)
        keys = [self.key_of(m) for m in prompts]
        first: dict[str, list[dict]] = {}
        for k, m in zip(keys, prompts):
            first.setdefault(k, m)
        self.stats.c["unique_prompts"] += len(first)
        self.stats.c["dedup_hits"] += len(prompts) - len(first)
        cached = self.cache.get_many(list(first))
        results: dict[str, Completion] = {}
        for k, e in cached.items():
            results[k] = Completion("ok", e.content, e.finish_reason, e.prompt_tokens, e.completion_tokens, from_cache=True)
            self.stats.c["cached_prompt_tokens"] += e.prompt_tokens
            self.stats.c["cached_completion_tokens"] += e.completion_tokens
        self.stats.c["cache_hits"] += len(cached)
        todo = [k for k in first if k not in cached]
        self.stats.c["cache_misses"] += len(todo)
        if todo:
            self._ensure_clients()
            done = await asyncio.gather(*(self._complete_dedup(k, first[k]) for k in todo))
            results.update(zip(todo, done))
            self.flush_cache()
        return [results[k] for k in keys]

    # -- one prompt -----------------------------------------------------------------------
    async def _complete_dedup(self, key: str, messages: list[dict]) -> Completion:
        fut = self._inflight.get(key)
        if fut is not None:  # the same prompt from a concurrent call: share its answer
            self.stats.c["dedup_hits"] += 1
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            res = await self._complete_one(key, messages)
            fut.set_result(res)
            return res
        except BaseException as e:  # cancellation: let waiters see it too
            fut.set_exception(e)
            raise
        finally:
            del self._inflight[key]
            if not fut.done():
                fut.cancel()

    def _breaker_open(self) -> bool:
        return time.monotonic() < self._breaker_open_until

    async def _complete_one(self, key: str, messages: list[dict]) -> Completion:
        start = time.monotonic()
        attempts = 0
        only_connection_errors = True
        retry_index = 0
        while True:
            if self._breaker_open():
                self.stats.c["breaker_fast_fails"] += 1
                return self._fail("endpoint_unavailable", attempts)
            remaining = self.policy.budget_s - (time.monotonic() - start)
            if remaining <= 0:
                return self._fail("endpoint_unavailable" if only_connection_errors else "budget_exhausted", attempts)
            attempts += 1
            try:
                async with self._sem:
                    if self._breaker_open():
                        self.stats.c["breaker_fast_fails"] += 1
                        return self._fail("endpoint_unavailable", attempts - 1)
                    self.stats.c["requests"] += 1
                    body = await self._post(messages, min(self.config.timeout_s, remaining))
                completion = self._parse_body(body, attempts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified below; a non-retryable kind ends the request
                cause, retryable, retry_after = classify_error(exc)
                if cause == "endpoint_rejected" and self._json_mode and _rejects_json_mode(exc):
                    self._json_mode = False
                    self.stats.c["json_mode_fallbacks"] += 1
                    log.warning("server rejected response_format=json_object; continuing without JSON mode")
                    attempts -= 1
                    continue
                self.stats.errors_by_cause[cause] += 1
                if cause == "connection_error":
                    self._conn_fail_streak += 1
                    if self._conn_fail_streak >= self.config.breaker_threshold and not self._breaker_open():
                        self._breaker_open_until = time.monotonic() + self.config.breaker_cooldown_s
                        self.stats.c["breaker_trips"] += 1
                        log.warning("LLM endpoint unreachable (%d connection failures in a row); failing fast "
                                    "for %.0f s", self._conn_fail_streak, self.config.breaker_cooldown_s)
                else:
                    only_connection_errors = False
                    self._conn_fail_streak = 0
                if not retryable:
                    log.warning("LLM request rejected by the server: %s", _short(exc))
                    return self._fail("endpoint_rejected", attempts)
                if retry_index >= self.policy.max_retries:
                    return self._fail("endpoint_unavailable" if only_connection_errors else "budget_exhausted",
                                      attempts)
                delay = self.policy.delay(retry_index, retry_after, self._rng)
                if time.monotonic() - start + delay >= self.policy.budget_s:
                    return self._fail("endpoint_unavailable" if only_connection_errors else "budget_exhausted",
                                      attempts)
                self.stats.retries_by_cause[cause] += 1
                retry_index += 1
                await asyncio.sleep(delay)
                continue
            self._conn_fail_streak = 0
            self._record_ok(key, completion)
            return completion

    async def _post(self, messages: list[dict], timeout_s: float) -> bytes:
        import httpx2

        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens}
        if self.config.seed is not None:
            body["seed"] = self.config.seed
        if self.config.top_p is not None:
            body["top_p"] = self.config.top_p
        if self._json_mode:
            body["response_format"] = {"type": "json_object"}
        client = next(self._rr)
        call = client.post("/chat/completions", body=body, cast_to=httpx2.Response,
                           options={"timeout": timeout_s, "headers": self._request_headers})
        # The transport's own timeout covers each socket read; the outer one bounds the whole exchange.
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout_s + 1.0):
                resp = await call
        else:  # pragma: no cover - Python 3.10
            resp = await asyncio.wait_for(call, timeout_s + 1.0)
        return resp.content

    def _parse_body(self, raw: bytes, attempts: int) -> Completion:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            content = choice["message"].get("content")
            finish = choice.get("finish_reason")
            usage = data.get("usage") or {}
            pt = int(usage.get("prompt_tokens") or 0)
            ct = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise MalformedBody(f"not a chat completion: {raw[:80]!r}") from e
        if content is not None and not isinstance(content, str):
            raise MalformedBody("message content is not a string")
        return Completion("ok", content, finish, pt, ct, from_cache=False, attempts=attempts)

    def _record_ok(self, key: str, c: Completion) -> None:
        self.stats.c["responses_ok"] += 1
        self.stats.c["prompt_tokens"] += c.prompt_tokens
        self.stats.c["completion_tokens"] += c.completion_tokens
        self._pending_puts.append((key, self.config.model,
                                   CachedCompletion(c.content, c.finish_reason, c.prompt_tokens, c.completion_tokens)))
        if len(self._pending_puts) >= 256:
            self.flush_cache()

    def _fail(self, reason: str, attempts: int) -> Completion:
        self.stats.failures_by_reason[reason] += 1
        return Completion(reason, attempts=attempts)


def _rejects_json_mode(exc: BaseException) -> bool:
    """True for a 400/422 that complains about response_format (server without JSON mode)."""
    status = getattr(exc, "status_code", None)
    if status not in (400, 422):
        return False
    text = str(getattr(exc, "message", "")) + " " + str(getattr(exc, "body", ""))
    return "response_format" in text or "json_object" in text or "json mode" in text.lower()


def _redact(url: str | None) -> str:
    """A base URL for logs, without any user:password@ part."""
    if not url:
        return "<default>"
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)
    if "@" in host[0]:
        host[0] = "***@" + host[0].rsplit("@", 1)[1]
    return scheme + sep + "/".join(host)


def _short(exc: BaseException) -> str:
    """One line describing an error, with no request headers (they carry the key)."""
    status = getattr(exc, "status_code", None)
    msg = str(getattr(exc, "message", "") or type(exc).__name__)
    return f"{status} {msg}"[:200] if status is not None else msg[:200]
