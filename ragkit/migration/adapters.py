"""Query adapters: map a query encoded by a collection's new encoder into its old vector space.

During a migration to a new encoder the old index keeps answering: a query is encoded by the
new model and mapped into the old model's space by an adapter fitted on pairs of vectors of
the same texts (Drift-Adapter, EMNLP 2025), while the new index is backfilled. Adapters are
small and exact to apply (one or two matmuls in numpy).

Kinds resolve by name through :data:`ADAPTERS`; a new kind is a fit function decorated with
:func:`register_adapter`, which also names how to rebuild the adapter from its saved arrays.

* ``procrustes`` — an orthogonal map (rotation/reflection), the right model when the two spaces
  differ by a rotation and the least prone to overfit. With ``in_dim != out_dim`` the map is
  semi-orthogonal: ``in_dim < out_dim`` embeds the new space isometrically into the old one
  (``W @ W.T == I``); ``in_dim > out_dim`` projects onto the ``out_dim`` directions that best
  match (``W.T @ W == I``).
* ``affine`` — ridge least squares ``x @ W + b``, closed form on centred data.
* ``lowrank`` — reduced-rank regression: the affine map restricted to the ``rank`` directions
  of the old space that its fitted values use most, stored as two factors.
* ``mlp`` — the affine map plus a residual MLP trained with torch for what is not linear.

The adapter types themselves are in :mod:`ragkit.migration.maps`, recall and hold-out splits
in :mod:`ragkit.migration.quality`; this module re-exports them so one import serves.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragkit.errors import ConfigError
from ragkit.migration.maps import LinearAdapter, LowRankAdapter, QueryAdapter, ResidualMLPAdapter
from ragkit.migration.quality import adapter_recall, split_holdout
from ragkit.registry import Registry

__all__ = [
    "ADAPTERS",
    "ADAPTER_KINDS",
    "FORMAT_VERSION",
    "AdapterKind",
    "FitOptions",
    "LinearAdapter",
    "LowRankAdapter",
    "QueryAdapter",
    "ResidualMLPAdapter",
    "adapter_recall",
    "fit_adapter",
    "load_adapter",
    "register_adapter",
    "save_adapter",
    "split_holdout",
]

#: the built-in kinds, simplest first
ADAPTER_KINDS: tuple[str, ...] = ("procrustes", "affine", "lowrank", "mlp")
#: version of the ``.npz`` layout written by :func:`save_adapter`
FORMAT_VERSION = 1
#: the residual MLP's hidden width: enough for a smooth warp, cheap to train on two cores
MLP_HIDDEN = 512
#: the MLP needs this many pairs at least, so its 10% validation slice means something
MLP_MIN_SAMPLES = 50


@dataclass(frozen=True)
class FitOptions:
    """The knobs of :func:`fit_adapter`; each kind reads the ones it uses."""

    rank: int | None = None
    seed: int = 0
    epochs: int | None = None
    ridge: float = 1e-3


FitFunction = Callable[[np.ndarray, np.ndarray, FitOptions], QueryAdapter]


@dataclass(frozen=True)
class AdapterKind:
    """What the registry holds for one kind: how to fit it, rebuild it, and its data needs."""

    name: str
    fit: FitFunction
    #: ``(kind, saved arrays) -> adapter``; raises KeyError/ValueError on arrays that do not fit
    from_arrays: Callable[[str, Mapping[str, np.ndarray]], QueryAdapter]
    #: ``(in_dim, out_dim, options) -> fewest pairs the fit accepts``
    needed_samples: Callable[[int, int, FitOptions], int]
    #: why that many, for the error message
    needed_reason: str


ADAPTERS: Registry[AdapterKind] = Registry("query adapter", "migration.adapter")


def register_adapter(
    name: str,
    *,
    from_arrays: Callable[[str, Mapping[str, np.ndarray]], QueryAdapter],
    needed_samples: Callable[[int, int, FitOptions], int],
    needed_reason: str,
) -> Callable[[FitFunction], FitFunction]:
    """Decorator: make ``fit(new, old, options) -> adapter`` the adapter kind ``name``.

    ``fit`` gets float64 arrays already checked for shape, finiteness and sample count.
    """

    def decorate(fit: FitFunction) -> FitFunction:
        ADAPTERS.add(name, AdapterKind(name, fit, from_arrays, needed_samples, needed_reason))
        return fit

    return decorate


# -- adapters ---------------------------------------------------------------------------------
# -- fitting ------------------------------------------------------------------------------
def fit_adapter(
    kind: str,
    new: np.ndarray,
    old: np.ndarray,
    *,
    rank: int | None = None,
    seed: int = 0,
    epochs: int | None = None,
    ridge: float = 1e-3,
) -> QueryAdapter:
    """Fit a ``kind`` adapter on pairs: row ``i`` of ``new`` and of ``old`` encode one text.

    ``new`` is ``(n, in_dim)`` from the new encoder, ``old`` ``(n, out_dim)`` from the old one
    (unit rows). ``ridge`` is relative to the mean variance of ``new``, so one value suits any
    scale; ``rank`` is used by ``lowrank`` (default ``min(in_dim, out_dim) // 4``, at least 8),
    ``epochs`` and ``seed`` by ``mlp`` (a seed gives the same adapter on the same machine).
    """
    spec = ADAPTERS.get(kind)
    options = FitOptions(rank=rank, seed=seed, epochs=epochs, ridge=ridge)
    new64, old64 = _checked_pairs(new, old)
    if not math.isfinite(ridge) or ridge < 0:
        raise ConfigError(f"ridge={ridge!r} must be a finite number >= 0 (1e-3 is a good start)")
    if epochs is not None and epochs < 0:
        raise ConfigError(f"epochs={epochs} must be >= 0; leave it unset for the default")
    needed = spec.needed_samples(new64.shape[1], old64.shape[1], options)
    if len(new64) < needed:
        raise ConfigError(
            f"a {spec.name} adapter from {new64.shape[1]} to {old64.shape[1]} dimensions needs "
            f"at least {needed} pairs ({spec.needed_reason}); got {len(new64)}. "
            "Encode more texts with both encoders"
            + (", or set ridge > 0" if ridge == 0 and spec.name in {"affine", "lowrank"} else "")
        )
    start = time.perf_counter()
    adapter = spec.fit(new64, old64, options)
    adapter.fit_seconds = time.perf_counter() - start
    return adapter


def _checked_pairs(new: np.ndarray, old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, array in (("new", new), ("old", old)):
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise ConfigError(
                f"{name} must be a non-empty 2-D array (one row per text), got shape {array.shape}"
            )
        array = array.astype(np.float64)
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ConfigError(
                f"{name} has non-finite values (NaN or inf) in {len(bad)} rows, the first is row "
                f"{int(bad[0])}; re-encode those texts or drop those pairs from both arrays"
            )
        arrays.append(array)
    new64, old64 = arrays
    if len(new64) != len(old64):
        raise ConfigError(
            f"new has {len(new64)} rows and old has {len(old64)}: row i of both must be the "
            "vectors of the same text; encode the same list of texts with both encoders"
        )
    return new64, old64


def _procrustes_samples(in_dim: int, out_dim: int, options: FitOptions) -> int:
    return min(in_dim, out_dim)


def _affine_samples(in_dim: int, out_dim: int, options: FitOptions) -> int:
    return 2 if options.ridge > 0 else in_dim + 1


def _mlp_samples(in_dim: int, out_dim: int, options: FitOptions) -> int:
    return max(_affine_samples(in_dim, out_dim, options), MLP_MIN_SAMPLES)


@register_adapter(
    "procrustes",
    from_arrays=LinearAdapter.from_arrays,
    needed_samples=_procrustes_samples,
    needed_reason="an orthogonal map of d dimensions is fixed by d independent pairs",
)
def fit_procrustes(new: np.ndarray, old: np.ndarray, options: FitOptions) -> LinearAdapter:
    """``W = U @ Vt`` from ``svd(new.T @ old)``: the orthogonal W minimising ``|new W - old|``."""
    u, _, vt = np.linalg.svd(new.T @ old, full_matrices=False)
    return LinearAdapter("procrustes", u @ vt)


def _ridge_fit(
    new: np.ndarray, old: np.ndarray, ridge: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(W, x_mean, y_mean, centred new)`` of ridge regression on centred data."""
    x_mean, y_mean = new.mean(axis=0), old.mean(axis=0)
    xc = new - x_mean
    gram = xc.T @ xc
    if ridge > 0:
        scale = np.trace(gram) / gram.shape[0]
        gram[np.diag_indices_from(gram)] += ridge * (scale if scale > 0 else 1.0)
    try:
        weight = np.linalg.solve(gram, xc.T @ (old - y_mean))
    except np.linalg.LinAlgError as error:
        raise ConfigError(
            "the new vectors are linearly dependent, so the least-squares map is not unique; "
            "fit with ridge > 0 (e.g. 1e-3) or with more distinct texts"
        ) from error
    return weight, x_mean, y_mean, xc


def affine_map(new: np.ndarray, old: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` minimising ``|new W + b - old|² + λ|W|²`` (λ = ridge · mean variance)."""
    weight, x_mean, y_mean, _ = _ridge_fit(new, old, ridge)
    return weight, y_mean - x_mean @ weight


@register_adapter(
    "affine",
    from_arrays=LinearAdapter.from_arrays,
    needed_samples=_affine_samples,
    needed_reason="without ridge, the centred least squares needs in_dim + 1 pairs",
)
def fit_affine(new: np.ndarray, old: np.ndarray, options: FitOptions) -> LinearAdapter:
    weight, bias = affine_map(new, old, options.ridge)
    return LinearAdapter("affine", weight, bias)


@register_adapter(
    "lowrank",
    from_arrays=LowRankAdapter.from_arrays,
    needed_samples=_affine_samples,
    needed_reason="without ridge, the centred least squares needs in_dim + 1 pairs",
)
def fit_lowrank(new: np.ndarray, old: np.ndarray, options: FitOptions) -> LowRankAdapter:
    """Reduced-rank regression: project the ridge map onto the top ``rank`` principal
    directions of its fitted values, which is the best rank-r map for the same loss."""
    in_dim, out_dim = new.shape[1], old.shape[1]
    most = min(in_dim, out_dim)
    rank = options.rank if options.rank is not None else min(most, max(8, most // 4))
    if not 1 <= rank <= most:
        raise ConfigError(
            f"rank={rank} must be between 1 and min(in_dim, out_dim) = {most}; "
            "leave it unset for the default min(in_dim, out_dim) // 4"
        )
    weight, x_mean, y_mean, xc = _ridge_fit(new, old, options.ridge)
    fitted = xc @ weight
    _, vectors = np.linalg.eigh(fitted.T @ fitted)  # ascending eigenvalues
    directions = vectors[:, ::-1][:, :rank]
    left = weight @ directions
    bias = y_mean - (x_mean @ left) @ directions.T
    return LowRankAdapter("lowrank", left, directions.T, bias)


@register_adapter(
    "mlp",
    from_arrays=ResidualMLPAdapter.from_arrays,
    needed_samples=_mlp_samples,
    needed_reason=f"its linear part as affine, and at least {MLP_MIN_SAMPLES} so that the "
    "10% validation slice can stop training",
)
def fit_mlp(new: np.ndarray, old: np.ndarray, options: FitOptions) -> ResidualMLPAdapter:
    from ragkit.migration._residual_mlp import train_residual

    weight, bias = affine_map(new, old, options.ridge)
    hidden = train_residual(
        new.astype(np.float32),
        old.astype(np.float32),
        weight.astype(np.float32),
        bias.astype(np.float32),
        hidden=MLP_HIDDEN,
        epochs=options.epochs,
        seed=options.seed,
    )
    return ResidualMLPAdapter("mlp", weight, bias, *hidden)


# -- files --------------------------------------------------------------------------------
_META = ("meta.format_version", "meta.kind", "meta.in_dim", "meta.out_dim", "meta.fit_seconds")


def save_adapter(adapter: QueryAdapter, path: Path) -> None:
    """Write ``adapter`` as one ``.npz`` (no pickle), atomically: readers see old or new."""
    path = Path(path)
    arrays = adapter.to_arrays()
    clash = [name for name in arrays if name.startswith("meta.")]
    if clash:
        raise ValueError(f"array names {clash} clash with the metadata keys")
    meta = {
        "meta.format_version": np.array(FORMAT_VERSION),
        "meta.kind": np.array(adapter.kind),
        "meta.in_dim": np.array(adapter.in_dim),
        "meta.out_dim": np.array(adapter.out_dim),
        "meta.fit_seconds": np.array(adapter.fit_seconds),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **meta, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_adapter(path: Path) -> QueryAdapter:
    """The adapter :func:`save_adapter` wrote; anything else is a ConfigError naming ``path``."""
    path = Path(path)
    refit = "fit the adapter again and save it"
    try:
        with open(path, "rb") as handle:  # ours to close, also when numpy fails half-way
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("it holds one array, not an archive")
            with loaded as data:
                arrays = {name: data[name] for name in data.files}
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no adapter file there; {refit}") from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{path}: not a readable adapter file ({error}); {refit}") from error
    missing = [name for name in _META if name not in arrays]
    if missing:
        raise ConfigError(f"{path}: not an adapter file (no {', '.join(missing)}); {refit}")
    version = int(arrays.pop("meta.format_version"))
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{path}: adapter format {version} is newer than this ragkit reads "
            f"({FORMAT_VERSION}); upgrade ragkit"
        )
    kind = str(arrays.pop("meta.kind"))
    dims = (int(arrays.pop("meta.in_dim")), int(arrays.pop("meta.out_dim")))
    fit_seconds = float(arrays.pop("meta.fit_seconds"))
    try:
        spec = ADAPTERS.get(kind)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error
    try:
        adapter = spec.from_arrays(kind, arrays)
    except (KeyError, ValueError) as error:
        raise ConfigError(f"{path}: damaged {kind} adapter ({error}); {refit}") from error
    if (adapter.in_dim, adapter.out_dim) != dims:
        raise ConfigError(
            f"{path}: damaged {kind} adapter (arrays map {adapter.in_dim} -> {adapter.out_dim} "
            f"dimensions, metadata says {dims[0]} -> {dims[1]}); {refit}"
        )
    adapter.fit_seconds = fit_seconds
    return adapter
