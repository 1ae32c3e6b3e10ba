"""The adapter types: each maps new-encoder query vectors into the old encoder's space.

Applying one is numpy only, one or two matmuls on float32 C-contiguous arrays prepared at
construction, so serving a query through an adapter costs a few microseconds beyond the
matmul. Every adapter returns rows of unit length, the form the old index was built from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ragkit.errors import EncoderMismatchError

__all__ = [
    "LinearAdapter",
    "LowRankAdapter",
    "QueryAdapter",
    "ResidualMLPAdapter",
    "gelu_tanh",
]


@runtime_checkable
class QueryAdapter(Protocol):
    """Maps ``(n, in_dim)`` new-model vectors to ``(n, out_dim)`` unit rows of the old space."""

    kind: str
    in_dim: int
    out_dim: int
    fit_seconds: float

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def to_arrays(self) -> dict[str, np.ndarray]: ...


def _f32(array: np.ndarray, ndim: int, name: str) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=np.float32)
    if out.ndim != ndim:
        raise ValueError(f"{name} has {out.ndim} dimensions, expected {ndim}")
    return out


def _unit_rows(y: np.ndarray) -> np.ndarray:
    """Scale rows of ``y`` (float32, owned) to unit length in place; a zero row stays zero."""
    norms = np.sqrt(np.einsum("...i,...i->...", y, y))[..., None]
    np.maximum(norms, 1e-12, out=norms)
    y /= norms
    return y


def _query_rows(x: np.ndarray, in_dim: int, kind: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] != in_dim:
        raise EncoderMismatchError(
            f"the {kind} adapter maps {in_dim}-dimensional vectors of the new encoder, "
            f"got shape {x.shape}; encode the query with the encoder the adapter was fitted for"
        )
    return x


@dataclass(eq=False, slots=True)
class LinearAdapter:
    """``normalize(x @ weight [+ bias])``: procrustes (no bias) and affine adapters."""

    kind: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    fit_seconds: float = 0.0
    in_dim: int = field(init=False)
    out_dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.weight = _f32(self.weight, 2, "weight")
        self.in_dim, self.out_dim = self.weight.shape
        if self.bias is not None:
            self.bias = _f32(self.bias, 1, "bias")
            if self.bias.shape != (self.out_dim,):
                raise ValueError(f"bias has shape {self.bias.shape}, expected ({self.out_dim},)")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = _query_rows(x, self.in_dim, self.kind) @ self.weight
        if self.bias is not None:
            y += self.bias
        return _unit_rows(y)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"weight": self.weight}
        if self.bias is not None:
            arrays["bias"] = self.bias
        return arrays

    @classmethod
    def from_arrays(cls, kind: str, arrays: Mapping[str, np.ndarray]) -> LinearAdapter:
        return cls(kind, arrays["weight"], arrays.get("bias"))


@dataclass(eq=False, slots=True)
class LowRankAdapter:
    """``normalize((x @ left) @ right + bias)``; ``left`` is ``(in_dim, rank)``."""

    kind: str
    left: np.ndarray
    right: np.ndarray
    bias: np.ndarray
    fit_seconds: float = 0.0
    in_dim: int = field(init=False)
    out_dim: int = field(init=False)
    rank: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = _f32(self.left, 2, "left")
        self.right = _f32(self.right, 2, "right")
        self.bias = _f32(self.bias, 1, "bias")
        self.in_dim, self.rank = self.left.shape
        self.out_dim = self.right.shape[1]
        if self.right.shape[0] != self.rank or self.bias.shape != (self.out_dim,):
            raise ValueError(
                f"factors {self.left.shape} x {self.right.shape} + bias {self.bias.shape} "
                "do not chain"
            )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = (_query_rows(x, self.in_dim, self.kind) @ self.left) @ self.right
        y += self.bias
        return _unit_rows(y)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"left": self.left, "right": self.right, "bias": self.bias}

    @classmethod
    def from_arrays(cls, kind: str, arrays: Mapping[str, np.ndarray]) -> LowRankAdapter:
        return cls(kind, arrays["left"], arrays["right"], arrays["bias"])


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(h: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation, in place (``torch.nn.functional.gelu(approximate="tanh")``)."""
    inner = h * h
    inner *= 0.044715 * _GELU_C
    inner += _GELU_C
    inner *= h
    np.tanh(inner, out=inner)
    inner += 1.0
    h *= 0.5
    h *= inner
    return h


@dataclass(eq=False, slots=True)
class ResidualMLPAdapter:
    """``normalize(x @ weight + bias + gelu(x @ hidden_weight + hidden_bias) @ output_weight
    + output_bias)``: a linear map plus what a one-hidden-layer MLP adds to it."""

    kind: str
    weight: np.ndarray
    bias: np.ndarray
    hidden_weight: np.ndarray
    hidden_bias: np.ndarray
    output_weight: np.ndarray
    output_bias: np.ndarray
    fit_seconds: float = 0.0
    in_dim: int = field(init=False)
    out_dim: int = field(init=False)

    def __post_init__(self) -> None:
        for name, ndim in (("weight", 2), ("hidden_weight", 2), ("output_weight", 2)):
            setattr(self, name, _f32(getattr(self, name), ndim, name))
        for name in ("bias", "hidden_bias", "output_bias"):
            setattr(self, name, _f32(getattr(self, name), 1, name))
        self.in_dim, self.out_dim = self.weight.shape
        hidden = self.hidden_weight.shape[1]
        expected = {
            "bias": (self.out_dim,),
            "hidden_weight": (self.in_dim, hidden),
            "hidden_bias": (hidden,),
            "output_weight": (hidden, self.out_dim),
            "output_bias": (self.out_dim,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _query_rows(x, self.in_dim, self.kind)
        hidden = x @ self.hidden_weight
        hidden += self.hidden_bias
        y = gelu_tanh(hidden) @ self.output_weight
        y += x @ self.weight
        y += self.bias
        y += self.output_bias
        return _unit_rows(y)

    def to_arrays(self) -> dict[str, np.ndarray]:
        names = ("weight", "bias", "hidden_weight", "hidden_bias", "output_weight", "output_bias")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_arrays(cls, kind: str, arrays: Mapping[str, np.ndarray]) -> ResidualMLPAdapter:
        names = ("weight", "bias", "hidden_weight", "hidden_bias", "output_weight", "output_bias")
        return cls(kind, *(arrays[name] for name in names))
