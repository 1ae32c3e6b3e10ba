"""An :class:`~ragkit.encoders.protocol.Encoder` over an embedding service's wire format.

A provider file supplies a :class:`Wire` (route, request body, where the vectors are in the
reply); this module does the rest the same way for all of them: prompts, batching by count
and token budget, concurrent requests, and the checks that keep a bad reply out of the store
(count, width, finite values, the model that answered) before any vector is returned.

The fingerprint names what determines the vectors (provider, model, width, prompts, task
types) and records the vectors returned for a fixed probe text. The probe is kept out of the
fingerprint ``id``: GPU servers are not bit-reproducible across batch shapes, and a query must
not be refused for float noise. ``ragkit doctor`` compares the probe instead
(:mod:`ragkit.encoders.drift`), which tells a provider that swapped the model behind a name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from ragkit.config import EncoderConfig
from ragkit.encoders.fingerprint import hash_text
from ragkit.encoders.http.client import (
    HttpClient,
    RateLimiter,
    RemoteEncoderError,
    RetryPolicy,
    plan_batches,
)
from ragkit.encoders.http.tokens import token_counter
from ragkit.errors import ConfigError

__all__ = ["RemoteEncoder", "Wire"]

QUERY, DOCUMENT = "query", "document"


class Wire(Protocol):
    """What differs between services: a provider file implements this and nothing else."""

    provider: str
    #: environment variable of the key when ``api_key_env`` is empty ("" = no key needed)
    default_key_env: str
    default_base_url: str
    #: the model's input limit in tokens when neither config nor preset says
    default_max_tokens: int
    #: estimated tokens per request when ``batch_tokens`` is 0
    default_batch_tokens: int

    def auth(self, key: str) -> dict[str, str]:
        """Headers that carry ``key``."""
        ...

    def route(self, kind: str) -> str: ...

    def body(self, texts: list[str], kind: str) -> dict[str, Any]: ...

    def vectors(self, reply: Any) -> list[Any]:
        """The reply's vectors in input order; raises ``ValueError`` saying what is wrong."""
        ...

    def answered_model(self, reply: Any) -> str | None:
        """The model the reply says computed it, when the format says."""
        ...

    def settings(self) -> dict[str, Any]:
        """Provider settings that change the vectors (task types), for the fingerprint."""
        ...


class RemoteEncoder:
    """Texts to L2-normalised float32 vectors computed by an embedding service."""

    def __init__(self, config: EncoderConfig, wire: Wire) -> None:
        if not config.model or config.model == "default":
            raise ConfigError(f"encoder.model must name the {wire.provider} model to call")
        if config.batch_size < 1 or config.concurrency < 1:
            raise ConfigError("encoder.batch_size and encoder.concurrency must be at least 1")
        self.config, self.wire = config, wire
        self.name = config.model
        self.provider = wire.provider
        self.batch_size = config.batch_size
        self.query_prompt = config.query_prompt or ""
        self.document_prompt = config.document_prompt or ""
        self.truncate_dim = config.truncate_dim
        self.tokens = token_counter(config.tokenizer)
        self._max_seq_length = config.max_seq_length or wire.default_max_tokens
        self._batch_tokens = config.batch_tokens or wire.default_batch_tokens
        #: the width every reply must have: asked for, or learned from the first reply
        self._server_dim: int | None = config.dimensions
        limit = self._server_dim or self.truncate_dim
        if self.truncate_dim is not None and not 0 < self.truncate_dim <= (limit or 0):
            raise ConfigError(
                f"encoder.truncate_dim={self.truncate_dim} must be within "
                f"encoder.dimensions={self._server_dim}"
            )
        self.client = HttpClient(
            provider=wire.provider,
            model=config.model,
            base_url=config.base_url or wire.default_base_url,
            key_env=config.api_key_env or wire.default_key_env,
            auth=wire.auth,
            params={"api-version": config.api_version} if config.api_version else None,
            timeout=config.timeout,
            concurrency=config.concurrency,
            policy=RetryPolicy(
                retries=config.max_retries,
                base=config.retry_base_delay,
                cap=config.retry_max_delay,
            ),
            limiter=RateLimiter(config.requests_per_minute, config.tokens_per_minute),
        )
        self._progress: Callable[[str, int], None] | None = None

    # -- the Encoder protocol ---------------------------------------------------------------
    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @property
    def dim(self) -> int:
        """The width of the vectors returned; a server not told the width is asked once."""
        if self.truncate_dim:
            return self.truncate_dim
        if self._server_dim is None:
            self.encode_documents([PROBE_TEXT])
        assert self._server_dim is not None
        return self._server_dim

    @cached_property
    def fingerprint(self) -> Mapping[str, Any]:
        return _Fingerprint(self)

    def described(self) -> dict[str, Any]:
        """What determines the vectors, without the probe (the fingerprint ``id`` covers it)."""
        return {
            "kind": "remote",
            "provider": self.provider,
            "model": self.name,
            "dim": self.dim,
            "dimensions": self.config.dimensions,
            "truncate_dim": self.truncate_dim,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            **self.wire.settings(),
            "normalized": True,
        }

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, QUERY)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, DOCUMENT)

    @contextlib.contextmanager
    def reporting(self, progress: Callable[[str, int], None] | None) -> Iterator[None]:
        """Send ``retry`` and ``throttle`` events to ``progress`` while the block runs."""
        previous, self._progress = self._progress, progress
        try:
            yield
        finally:
            self._progress = previous

    def close(self) -> None:
        self.client.close()

    # -- encoding -------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str], kind: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompt = self.query_prompt if kind == QUERY else self.document_prompt
        inputs = [prompt + text for text in texts]
        counts = self.tokens.count(inputs)
        batches = plan_batches(counts, max_items=self.batch_size, max_tokens=self._batch_tokens)
        calls = [
            _bind(
                self._request, inputs[start:end], kind, sum(counts[start:end]), start, len(inputs)
            )
            for start, end in batches
        ]
        parts = self.client.map(calls, self._progress)
        vectors = np.concatenate(parts, axis=0)
        if self.truncate_dim:
            vectors = vectors[:, : self.truncate_dim]
        # Truncated Matryoshka outputs (Gemini 768/1536, a ``dimensions`` a server does not
        # renormalise) are not unit length; cosine = inner product needs them to be.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def _request(self, texts: list[str], kind: str, tokens: int, start: int, total: int) -> Any:
        where = f"texts {start}–{start + len(texts) - 1} of {total}"
        reply = self.client.post(
            self.wire.route(kind), self.wire.body(texts, kind), tokens=tokens, where=where
        )
        return self._checked(reply, len(texts), where)

    def _checked(self, reply: Any, expected: int, where: str) -> np.ndarray:
        """The reply as an ``(expected, width)`` array, or an error naming what is wrong."""
        refuse = self._refuser(where)
        answered = _safe(self.wire.answered_model, reply)
        if answered and not _same_model(answered, self.name):
            raise refuse(f"the reply is from model {answered!r}, not {self.name!r}")
        try:
            rows = self.wire.vectors(reply)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise refuse(f"the reply has no usable vectors ({exc})") from None
        if len(rows) != expected:
            raise refuse(f"{len(rows)} vectors came back for {expected} texts")
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError):
            raise refuse("the vectors are not all numbers of one length") from None
        if vectors.ndim != 2:
            raise refuse("the vectors are not all of one length")
        width = vectors.shape[1]
        if self._server_dim is None:
            self._server_dim = width
        elif width != self._server_dim:
            raise refuse(f"vectors of width {width} came back, the encoder's is {self._server_dim}")
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise refuse(f"vector {int(np.argmax(bad))} of the reply holds NaN or infinity")
        zero = ~vectors.any(axis=1)
        if zero.any():
            raise refuse(f"vector {int(np.argmax(zero))} of the reply is all zeros")
        return vectors

    def _refuser(self, where: str) -> Callable[[str], RemoteEncoderError]:
        base = f"{self.provider} at {self.client.base_url}"

        def refuse(reason: str) -> RemoteEncoderError:
            message = f"{base}: {reason} (for {where}); nothing from this request was stored"
            return RemoteEncoderError(self.client.redact(message))

        return refuse


#: embedded once per encoder (as a document) to record, and later compare, what the model does
PROBE_TEXT = (
    "ragkit encoder probe: the quick brown fox jumps over the lazy dog; 0123456789; "
    "Élodie lit « Le Petit Prince » à Zürich; 東京の天気は晴れです."
)


class _Fingerprint(Mapping[str, Any]):
    """The fingerprint as a mapping whose ``probe`` entry is embedded only when read.

    Comparing ids (every query does) needs no request; recording the whole fingerprint
    (creating a collection: ``{**fingerprint}``) embeds the probe once.
    """

    def __init__(self, encoder: RemoteEncoder) -> None:
        self._encoder = encoder
        self._probe: dict[str, Any] | None = None

    @cached_property
    def _fields(self) -> dict[str, Any]:
        described = self._encoder.described()
        tokenizer = self._encoder.tokens.id
        return {
            **described,
            "tokenizer": tokenizer,
            "id": hash_text(
                json.dumps({**described, "tokenizer": tokenizer}, sort_keys=True, default=str)
            ),
        }

    def __getitem__(self, key: str) -> Any:
        if key == "probe":
            if self._probe is None:
                from ragkit.encoders.drift import probe_record

                self._probe = probe_record(self._encoder)
            return self._probe
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._fields
        yield "probe"

    def __len__(self) -> int:
        return len(self._fields) + 1


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


def _safe(function: Callable[[Any], Any], reply: Any) -> Any:
    try:
        return function(reply)
    except (KeyError, TypeError, AttributeError, IndexError):
        return None


def _same_model(answered: str, asked: str) -> bool:
    """Services add tags and prefixes ("models/", ":latest", "-v2"); a different base name
    is another model."""
    a = answered.lower().removeprefix("models/").split(":")[0]
    b = asked.lower().removeprefix("models/").split(":")[0]
    return a.startswith(b) or b.startswith(a) or a.endswith("/" + b) or b.endswith("/" + a)
