"""What the rest of ragkit needs from an encoder, so any provider (sentence-transformers
today, HTTP embedding services next) can stand behind a collection.

Chunking, ingest, search, mining and evaluation are typed against :class:`Encoder`, not a
concrete class: an encoder that never touches torch (a remote API, a hashing encoder in a
test) builds and queries a workspace like the sentence-transformers one does. The fingerprint
is whatever the implementation computes from what determines its vectors (weights for a local
model, model name and version for a remote one); ragkit only compares its ``id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["CountsOnOtherThreads", "Encoder", "ReportsProgress", "TokenCounting"]


@runtime_checkable
class TokenCounting(Protocol):
    """Measures text in the units the encoder truncates by (see :class:`TokenCounter`)."""

    #: tokens the encoder adds around every text (CLS/SEP and the like)
    special_tokens: int

    @property
    def id(self) -> str:
        """A hash of the tokenizer (part of the chunking fingerprint); "" when unknown."""
        ...

    def count(self, texts: Sequence[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of each token, for cutting a text that has no other boundary."""
        ...


@runtime_checkable
class CountsOnOtherThreads(Protocol):
    """A token counter that gives another thread a counter of its own (the ingest chunks on a
    producer thread while the encoder tokenizes on the main one)."""

    def for_thread(self) -> TokenCounting: ...


@runtime_checkable
class Encoder(Protocol):
    """Text to L2-normalised float32 vectors of shape ``(len(texts), dim)``.

    Queries and documents may be encoded differently (prompts, or separate API task types);
    the prompts are exposed so chunking can leave room for the document prompt.
    """

    name: str
    dim: int
    batch_size: int
    query_prompt: str
    document_prompt: str

    @property
    def tokens(self) -> TokenCounting: ...

    @property
    def max_seq_length(self) -> int: ...

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What identifies the vectors this encoder computes; has at least an ``id`` string."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ReportsProgress(Protocol):
    """An encoder with more to tell than chunks done: a remote one's retries and throttling.

    ``with encoder.reporting(progress):`` sends ``("retry", n)`` and ``("throttle", n)`` to a
    job's progress callback while encoding, on the caller's thread.
    """

    def reporting(
        self, progress: Callable[[str, int], None] | None
    ) -> AbstractContextManager[None]: ...
