"""Which failures of a chat request are retried, and how long to wait before the next try.

Causes (stable codes, counted in stats): `rate_limited` (429), `server_error` (5xx, 409),
`timeout` (client timeout or 408), `connection_error` (refused, reset, dropped: no HTTP
answer), `malformed_body` (a 200 whose body is not a chat completion). Anything else from
the server (400, 401, 403, 404, 422) is not retried: `endpoint_rejected`.

The wait is exponential backoff with full jitter (AWS architecture blog, "Exponential
Backoff And Jitter"): uniform(0, min(cap, base * 2**attempt)); a server's Retry-After (or
retry-after-ms) is honoured when given, capped the same way. Hand-written rather than
tenacity/backoff because the loop also has to respect an overall per-request budget and a
shared circuit breaker, which those decorators do not model.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

RETRYABLE_CAUSES = ("rate_limited", "server_error", "timeout", "connection_error", "malformed_body")


def classify_error(exc: BaseException) -> tuple[str, bool, float | None]:
    """(cause, retryable, retry_after_s) of an exception raised by one `openai` request."""
    import openai

    low = _low_level_cause(exc)
    if low is not None:
        return low, True, None
    if isinstance(exc, openai.APITimeoutError) or isinstance(exc, TimeoutError):
        return "timeout", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error", True, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(exc.response.headers if exc.response is not None else {})
        if status == 429:
            return "rate_limited", True, retry_after
        if status == 408:
            return "timeout", True, retry_after
        if status >= 500 or status == 409:
            return "server_error", True, retry_after
        return "endpoint_rejected", False, None
    if isinstance(exc, MalformedBody):
        return "malformed_body", True, None
    if isinstance(exc, (ConnectionError, OSError)):
        return "connection_error", True, None
    return "endpoint_rejected", False, None


def _low_level_cause(exc: BaseException) -> str | None:
    """'connection_error' / 'timeout' read from the transport error under an openai error.

    The aiohttp transport reports a dropped connection as a connect *timeout*; looking at
    the original aiohttp exception keeps a reset apart from a slow server.
    """
    try:
        import aiohttp
    except ImportError:
        return None
    e, depth = exc, 0
    while e is not None and depth < 8:
        if isinstance(e, (aiohttp.ServerTimeoutError, aiohttp.SocketTimeoutError)):
            return "timeout"
        if isinstance(e, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientConnectorError,
                          ConnectionResetError, ConnectionRefusedError)):
            return "connection_error"
        e, depth = e.__cause__ or e.__context__, depth + 1
    return None


class MalformedBody(Exception):
    """A 2xx answer whose body is not a chat.completion object."""


def parse_retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` / `retry-after` (seconds or HTTP date), or None."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        ra = headers.get("retry-after")
    except AttributeError:
        return None
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class RetryPolicy:
    """max_retries after the first attempt; waits in seconds; budget_s for the whole request."""

    max_retries: int = 8
    base_s: float = 0.5
    max_s: float = 30.0
    budget_s: float = 300.0

    def delay(self, retry_index: int, retry_after_s: float | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry_index` (0 = first retry)."""
        if retry_after_s is not None:
            return min(self.max_s, retry_after_s)
        r = rng or random
        return r.uniform(0.0, min(self.max_s, self.base_s * (2.0 ** retry_index)))
