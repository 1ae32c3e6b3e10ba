"""Fingerprints say exactly what an encoder computes, so a collection can refuse a wrong query.

Two encoders share a fingerprint only if they have the same weights, the same module config
(pooling, normalization, ...), the same prompts, the same output dimension and, when one is
given, the same tokenizer (vocabulary, normalizer, pre-tokenizer, special tokens, truncation):
the same weights behind a tokenizer that no longer lowercases return other vectors.

Fingerprints of ragkit 0.1.0 did not cover the tokenizer. Their formula is kept as the
``legacy_id`` so that a collection built then is recognised (and re-keyed once by a writer,
see ``Workspace.ensure_collection``) instead of being refused as another encoder's.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "fingerprint_model",
    "hash_text",
    "is_legacy_of",
    "same_encoder",
    "serialized_at_rest",
    "tokenizer_spec",
]

# Runtime state a fast tokenizer changes on every call (transformers sets them per batch); what
# truncation actually does is described by the encoder's max_seq_length and the fields below.
_CALL_STATE = ("truncation", "padding")
_WRAPPER_SETTINGS = ("model_max_length", "truncation_side", "do_lower_case", "strip_accents")


def hash_text(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _weights_digest(module: torch.nn.Module) -> str:
    import torch  # only when an encoder is fingerprinted: matching ids needs no torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.dtype == torch.bfloat16:
            data = data.float()
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def serialized_at_rest(backend: Any) -> str:
    """``backend.to_str()`` as a freshly loaded tokenizer gives it. transformers sets truncation
    and padding on the backend for every call and leaves them set, so the plain string differs
    once anything was encoded (the chunking fingerprint hashes this one)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return str(copy.to_str())


def tokenizer_spec(tokenizer: Any) -> dict[str, Any]:
    """What a tokenizer does to a text, as a digest: its serialized pipeline (a ``tokenizers``
    object or the backend of a transformers fast tokenizer), or the vocabulary and settings of
    a slow one, plus the wrapper's truncation settings. Paths and names are left out, so a
    model copied to another folder keeps its fingerprint."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    to_str = getattr(backend, "to_str", None)
    if to_str is not None:
        pipeline = json.loads(to_str())
        for key in _CALL_STATE:
            pipeline.pop(key, None)
    else:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        pipeline = {"type": type(tokenizer).__name__, "vocab": sorted(vocab.items())}
    settings = {key: getattr(tokenizer, key, None) for key in _WRAPPER_SETTINGS}
    described = json.dumps({"pipeline": pipeline, **settings}, sort_keys=True, default=str)
    return {"digest": hash_text(described), **settings}


def fingerprint_model(
    module: torch.nn.Module, settings: dict[str, Any], *, tokenizer: Any = None
) -> dict[str, Any]:
    """Return ``{"id": <hex>, ...settings, "weights": <hex>}``; ``id`` covers all of it.

    With ``tokenizer``, the dict also holds ``"tokenizer"`` (covered by ``id``) and
    ``"legacy_id"``, the id ragkit 0.1.0 gave the same encoder (settings and weights only)."""
    described = {**settings, "weights": _weights_digest(module)}
    legacy_id = _id(described)
    if tokenizer is None:
        return {**described, "id": legacy_id}
    described["tokenizer"] = tokenizer_spec(tokenizer)
    return {**described, "id": _id(described), "legacy_id": legacy_id}


def _id(described: dict[str, Any]) -> str:
    return hash_text(json.dumps(described, sort_keys=True, default=str))


def is_legacy_of(stored_id: str, stored: dict[str, Any], fingerprint: dict[str, Any]) -> bool:
    """A collection recorded before fingerprints covered the tokenizer, by this encoder's
    weights and settings. Its tokenizer was never recorded, so it cannot be checked."""
    return "tokenizer" not in stored and stored_id == fingerprint.get("legacy_id")


def same_encoder(stored_id: str, stored: dict[str, Any], fingerprint: dict[str, Any]) -> bool:
    """Whether vectors recorded as ``stored_id`` (described by ``stored``) are this encoder's."""
    return stored_id == fingerprint["id"] or is_legacy_of(stored_id, stored, fingerprint)
