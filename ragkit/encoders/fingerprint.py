"""Fingerprints say exactly what an encoder computes, so a collection can refuse a wrong query.

Two encoders share a fingerprint only if they have the same weights, the same module config
(pooling, normalization, ...), the same prompts and the same output dimension.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["fingerprint_model", "hash_text"]


def hash_text(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _weights_digest(module: torch.nn.Module) -> str:
    import torch  # here, not at the top: chunking and the store only need hash_text

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.dtype == torch.bfloat16:
            data = data.float()
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def fingerprint_model(module: torch.nn.Module, settings: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"id": <hex>, ...settings, "weights": <hex>}``; ``id`` covers all of it."""
    weights = _weights_digest(module)
    described = {**settings, "weights": weights}
    described["id"] = hash_text(json.dumps(described, sort_keys=True, default=str))
    return described
