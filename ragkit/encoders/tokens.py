"""Count and locate tokens with the encoder's own tokenizer (HF fast tokenizer or `tokenizers`)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from functools import cached_property
from typing import Any

__all__ = ["TokenCounter"]


class TokenCounter:
    """A thin adapter so chunking can measure text in the units the encoder truncates by."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._raw = hasattr(tokenizer, "encode_batch") and not hasattr(
            tokenizer, "model_max_length"
        )
        self.special_tokens = self._count_special()

    def _count_special(self) -> int:
        if self._raw:
            return len(self._tokenizer.encode("").ids)
        return len(self._tokenizer("")["input_ids"])

    @cached_property
    def id(self) -> str:
        """A hash of the tokenizer's serialized form (vocabulary, normalizer, pre-tokenizer),
        so a chunking fingerprint changes when the units chunks are measured in do; "" for a
        tokenizer that cannot serialize itself (the caller falls back to the encoder's id)."""
        from ragkit.encoders.fingerprint import serialized_at_rest

        backend = getattr(self._tokenizer, "backend_tokenizer", self._tokenizer)
        try:
            serialized = serialized_at_rest(backend)
        except AttributeError:
            return ""
        return hashlib.blake2b(serialized.encode("utf-8"), digest_size=16).hexdigest()

    def for_thread(self) -> TokenCounter:
        """A counter over a copy of the tokenizer, for another thread: a fast tokenizer is
        mutable (the encoder sets truncation and padding on each call), and two threads on one
        raise "Already borrowed". The copy is the bare ``tokenizers`` backend with truncation
        and padding off, which counts what :meth:`count` counts, with less overhead a call."""
        from tokenizers import Tokenizer

        backend = getattr(self._tokenizer, "backend_tokenizer", self._tokenizer)
        if not isinstance(backend, Tokenizer):  # a slow (Python) tokenizer: copy it whole
            return TokenCounter(copy.deepcopy(self._tokenizer))
        fresh = Tokenizer.from_str(backend.to_str())
        fresh.no_truncation()
        fresh.no_padding()
        counter = TokenCounter(fresh)
        counter.special_tokens = self.special_tokens
        return counter

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._raw:
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
            return [len(e.ids) for e in encodings]
        ids = self._tokenizer(
            list(texts),
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        return [len(i) for i in ids]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of each token, for cutting a text that has no other boundary."""
        if self._raw:
            return [
                tuple(span)
                for span in self._tokenizer.encode(text, add_special_tokens=False).offsets
            ]
        out = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [tuple(span) for span in out["offset_mapping"]]
