"""Token budgets for an encoder whose tokenizer is not on this machine.

A remote model truncates by its own tokenizer, which ragkit may not have. Chunks must still
never exceed the model's input limit, so without ``[encoder] tokenizer`` the budget is counted
in UTF-8 bytes: every token of a WordPiece vocabulary covers at least one character, and every
token of a byte-level BPE or of a SentencePiece model with byte fallback covers at least one
byte, so no such tokenizer counts more tokens than a text has bytes. The bound is loose for
English (about four bytes per token), which costs chunk length on models with short limits;
naming a local tokenizer (``tokenizer = "default"`` for all-MiniLM-L6-v2, a folder or a hub
name) makes counts exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragkit.encoders.tokens import TokenCounter
from ragkit.errors import ConfigError

__all__ = ["ByteBudget", "token_counter"]

#: room for what a server adds around a text (BOS/EOS, CLS/SEP) that ragkit cannot see
_SPECIAL_MARGIN = 4


class ByteBudget:
    """Counts a text's UTF-8 bytes: an upper bound on its tokens for WordPiece and BPE models."""

    special_tokens = _SPECIAL_MARGIN

    @property
    def id(self) -> str:
        return "utf8-bytes-v1"

    def for_thread(self) -> ByteBudget:
        return self  # no state: one instance serves every thread

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(text.encode("utf-8", "surrogatepass")) for text in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """One span per byte (a character of three bytes is three "tokens"), so a window of
        ``n`` spans holds at most ``n`` bytes."""
        spans: list[tuple[int, int]] = []
        for i, char in enumerate(text):
            spans.extend([(i, i + 1)] * len(char.encode("utf-8", "surrogatepass")))
        return spans


def token_counter(name: str) -> ByteBudget | TokenCounter:
    """The counter ``[encoder] tokenizer`` names: "" for the byte bound, ``"default"`` for the
    shipped MiniLM tokenizer, a ``tokenizer.json`` file or a folder holding one, or a hub name."""
    if not name:
        return ByteBudget()
    from tokenizers import Tokenizer

    from ragkit.encoders.registry import resolve_model_path

    path = Path(resolve_model_path(name))
    try:
        if path.is_dir():
            path = path / "tokenizer.json"
        tokenizer = (
            Tokenizer.from_file(str(path)) if path.is_file() else Tokenizer.from_pretrained(name)
        )
    except Exception as exc:  # tokenizers raises plain Exceptions for missing files and names
        raise ConfigError(
            f"encoder.tokenizer={name!r} cannot be loaded ({exc}); give a tokenizer.json, a "
            'folder holding one, a hub name, or "" to count chunk budgets in bytes'
        ) from exc
    # A saved tokenizer.json may carry truncation and padding (MiniLM's: 128): counting must
    # see every token, or a long text would look short.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return TokenCounter(tokenizer)
