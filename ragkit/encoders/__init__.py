"""Encoders turn text into vectors; every one carries a fingerprint of what it computes."""

from ragkit.encoders.dense import DenseEncoder
from ragkit.encoders.fingerprint import fingerprint_model
from ragkit.encoders.protocol import Encoder, TokenCounting
from ragkit.encoders.registry import (
    DEFAULT_DENSE_MODEL,
    ENCODERS,
    load_encoder,
    register_encoder,
    resolve_model_path,
)

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "ENCODERS",
    "DenseEncoder",
    "Encoder",
    "TokenCounting",
    "fingerprint_model",
    "load_encoder",
    "register_encoder",
    "resolve_model_path",
]
