"""The bounds of a query, checked in one place so that the CLI and the Python API refuse the
same input with the same message."""

from __future__ import annotations

from ragkit.errors import ConfigError

__all__ = ["MAX_K", "check_k", "check_query_text"]

#: The most hits one query may ask for: beyond it a search reads most of a large index and a
#: table of hits is no longer something a person or a prompt can use. Evaluation runs ask for
#: depth × 3 (300 at the default depth of 100), well inside.
MAX_K = 10_000


def check_k(k: object) -> int:
    """``k`` as an int from 1 to :data:`MAX_K`, or a ConfigError saying what is allowed."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    return k


def check_query_text(text: object) -> str:
    """A query must say something: an empty one would return arbitrary chunks (a dense
    encoder still embeds it), which looks like an answer and is not."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"the query text is empty ({text!r}); give words to search for, "
            'e.g. ragkit query "restore a snapshot"'
        )
    return text
