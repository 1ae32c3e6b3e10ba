"""What every embedding service needs alike: retries, rate limits, bounded concurrency, and
errors that say which setting to fix.

A long ingest over a flaky or busy server should finish, so transient failures (429, 408,
5xx, timeouts, dropped connections) are retried with exponential backoff and jitter; a
``Retry-After`` (or OpenAI's ``retry-after-ms``) is honoured and pauses every worker, not only
the one that was told, because the limit is per key. Requests- and tokens-per-minute limits
pace requests before the server has to refuse them. Everything else is a
:class:`RemoteEncoderError` at once: retrying a wrong key or a missing model only burns quota.

The API key is only ever put in a request header; every message built here passes through
:meth:`HttpClient.redact`, so a server that echoes the key back cannot leak it into a log.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ragkit.errors import MissingDependencyError, RagkitError

__all__ = ["HttpClient", "RateLimiter", "RemoteEncoderError", "RetryPolicy", "plan_batches"]

_RETRY_STATUS = frozenset({408, 409, 425, 429})
_MAX_PAUSE = 600.0  # a Retry-After beyond ten minutes is a misconfigured server, not a plan


class RemoteEncoderError(RagkitError):
    """An embedding service refused, failed past its retries, or answered something unusable."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff: ``base * 2**attempt`` capped at ``cap``, the upper half jittered
    so that workers throttled together do not come back together."""

    retries: int = 6
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.cap, self.base * 2**attempt)
        jittered = backoff / 2 + random.uniform(0, backoff / 2)
        if retry_after is not None:
            return min(max(retry_after, jittered), _MAX_PAUSE)
        return jittered


class RateLimiter:
    """Paces requests under ``rpm`` requests and ``tpm`` tokens per minute (0: no limit).

    Each request reserves its share of the minute ahead of it (``60 / rpm`` seconds, and
    ``tokens * 60 / tpm``), so no window of a minute ever holds more than the limits allow.
    """

    def __init__(self, rpm: int = 0, tpm: int = 0, *, clock: Callable[[], float] = time.monotonic):
        self.rpm, self.tpm = rpm, tpm
        self._clock = clock
        self._lock = threading.Lock()
        self._next_request = 0.0
        self._next_tokens = 0.0

    def reserve(self, tokens: int) -> float:
        """Seconds the caller must wait before sending a request of ``tokens`` tokens."""
        if not self.rpm and not self.tpm:
            return 0.0
        with self._lock:
            now = self._clock()
            start = now
            if self.rpm:
                start = max(start, self._next_request)
            if self.tpm:
                start = max(start, self._next_tokens)
            if self.rpm:
                self._next_request = start + 60.0 / self.rpm
            if self.tpm:
                self._next_tokens = start + tokens * 60.0 / self.tpm
            return start - now


def plan_batches(
    counts: Sequence[int], *, max_items: int, max_tokens: int
) -> list[tuple[int, int]]:
    """``(start, end)`` ranges of at most ``max_items`` texts and ``max_tokens`` tokens each
    (a text over the budget alone goes in a batch of its own; the server then truncates it)."""
    batches: list[tuple[int, int]] = []
    start, tokens = 0, 0
    for i, count in enumerate(counts):
        if i > start and (i - start >= max_items or (max_tokens and tokens + count > max_tokens)):
            batches.append((start, i))
            start, tokens = i, 0
        tokens += count
    if start < len(counts):
        batches.append((start, len(counts)))
    return batches


class HttpClient:
    """One connection pool, one retry policy and one rate limiter for an encoder's requests.

    ``events`` receives ``("retry", 1)`` and ``("throttle", 1)`` from worker threads; the
    encoder hands them to the progress callback on the calling thread (see :meth:`map`).
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        base_url: str,
        key_env: str,
        auth: Callable[[str], dict[str, str]],
        params: dict[str, str] | None = None,
        timeout: float = 60.0,
        concurrency: int = 4,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "remote", f"The {provider} encoder") from exc
        self.provider, self.model = provider, model
        self.base_url = base_url.rstrip("/")
        self.key_env = key_env
        self._key = os.environ.get(key_env, "") if key_env else ""
        headers = {"content-type": "application/json", **(auth(self._key) if self._key else {})}
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            params=params or {},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max(1, concurrency)),
        )
        self.concurrency = max(1, concurrency)
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self.events: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._pause_lock = threading.Lock()
        self._paused_until = 0.0
        self._pool: ThreadPoolExecutor | None = None

    # -- one request ---------------------------------------------------------------------
    def post(self, path: str, payload: dict[str, Any], *, tokens: int, where: str) -> Any:
        """POST ``payload`` and return the decoded JSON body, retrying transient failures.

        ``where`` ("texts 64–127 of 512") goes into every error so a bad input can be found.
        """
        httpx = self._httpx
        last = ""
        for attempt in range(self.policy.retries + 1):
            self._wait_turn(tokens)
            retry_after: float | None = None
            paused = False
            try:
                response = self._client.post(path, json=payload)
            except httpx.TimeoutException:
                last = f"no reply within {self._client.timeout.read:g}s"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                if status < 300:
                    return self._json(response, where)
                if status not in _RETRY_STATUS and status < 500:
                    raise self._refusal(response, where)
                last = f"HTTP {status}"
                retry_after = _retry_after(response.headers)
                if status == 429:  # the limit is the key's: every worker waits it out
                    self._pause(self.policy.delay(attempt, retry_after))
                    paused = True
            if attempt == self.policy.retries:
                break
            self.events.put(("retry", 1))
            if not paused:
                time.sleep(self.policy.delay(attempt, retry_after))
        raise RemoteEncoderError(
            self.redact(
                f"{self.provider} at {self.base_url} failed for {where} after "
                f"{self.policy.retries} retries (last: {last}); the texts before it are cached, "
                "so running the command again sends only what is missing"
            )
        )

    def _wait_turn(self, tokens: int) -> None:
        delay = self.limiter.reserve(tokens)
        with self._pause_lock:
            delay = max(delay, self._paused_until - time.monotonic())
        if delay > 0:
            self.events.put(("throttle", 1))
            time.sleep(delay)

    def _pause(self, seconds: float) -> None:
        with self._pause_lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _json(self, response: Any, where: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise RemoteEncoderError(
                self.redact(
                    f"{self.provider} at {self.base_url} returned malformed JSON for {where} "
                    f"({exc}); nothing from this request was stored"
                )
            ) from None

    def _refusal(self, response: Any, where: str) -> RemoteEncoderError:
        status = response.status_code
        if status in (401, 403):
            if not self.key_env:
                hint = "set encoder.api_key_env to the environment variable holding the key"
            elif not self._key:
                hint = f"the environment variable {self.key_env} is not set"
            else:
                hint = f"check the key in the environment variable {self.key_env}"
            message = (
                f"{self.provider} at {self.base_url} refused the request (HTTP {status}); {hint}"
            )
        elif status == 404:
            message = (
                f"{self.provider}: model {self.model!r} or its route was not found at "
                f"{self.base_url} (HTTP 404); check encoder.model and encoder.base_url"
            )
        else:
            message = (
                f"{self.provider} at {self.base_url} refused {where} (HTTP {status}: "
                f"{_server_message(response)})"
            )
        return RemoteEncoderError(self.redact(message))

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``***`` (servers sometimes echo it)."""
        return text.replace(self._key, "***") if len(self._key) >= 4 else text

    # -- many requests -------------------------------------------------------------------
    def map(
        self,
        calls: Sequence[Callable[[], Any]],
        progress: Callable[[str, int], None] | None = None,
    ) -> list[Any]:
        """Run ``calls`` at most ``concurrency`` at a time and return their results in order.

        The caller's thread waits and forwards the workers' retry/throttle events, so a
        progress callback never runs on a worker thread. The first failure cancels the calls
        not yet started and is raised.
        """
        if len(calls) == 1 or self.concurrency == 1:
            results = []
            for call in calls:
                results.append(call())
                self._drain(progress)
            return results
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ragkit-embed")
        futures: list[Future[Any]] = [self._pool.submit(call) for call in calls]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                self._drain(progress)
                for future in done:
                    future.result()  # raise the first failure now
        finally:
            for future in pending:
                future.cancel()
            self._drain(progress)
        return [future.result() for future in futures]

    def _drain(self, progress: Callable[[str, int], None] | None) -> None:
        for event, n in _drained(self.events):
            if progress is not None:
                progress(event, n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._client.close()

    def __del__(self) -> None:
        # A workspace drops its encoder without closing it; its sockets go with it.
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _drained(events: queue.SimpleQueue[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    while True:
        try:
            yield events.get_nowait()
        except queue.Empty:
            return


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _server_message(response: Any) -> str:
    """The service's own error text, short: OpenAI, Gemini and TEI nest it differently."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or "no message"
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:200]
    return str(body)[:200]
