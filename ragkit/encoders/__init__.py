"""Encoders turn text into vectors; every one carries a fingerprint of what it computes."""

from ragkit.encoders.dense import DenseEncoder
from ragkit.encoders.fingerprint import fingerprint_model
from ragkit.encoders.registry import DEFAULT_DENSE_MODEL, resolve_model_path

__all__ = ["DEFAULT_DENSE_MODEL", "DenseEncoder", "fingerprint_model", "resolve_model_path"]
