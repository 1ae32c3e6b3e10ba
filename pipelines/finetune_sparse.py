"""The sparse half of ``ragkit finetune``: the workspace's SPLADE model learns the domain too.

Which SPLADE: ``--sparse-model`` when given, else the default collection's sparse channel when it
is SPLADE. BM25 has no weights to learn, so a BM25 collection without ``--sparse-model`` is
refused with the two ways to get a SPLADE model. The fine-tuned model is saved under the
workspace's ``models/`` with a card and registered like a dense one (``kind: sparse``), so a new
collection can take it as its sparse channel (``[sparse] model = "<path>"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.encoders.registry import quiet_loading
from ragkit.errors import ConfigError
from ragkit.training.pairs import Pair
from ragkit.training.sparse_trainer import SparseTrainConfig, train_sparse_encoder

if TYPE_CHECKING:
    from ragkit.encoders.sparse import SpladeEncoder
    from ragkit.workspace import Workspace

__all__ = ["SparseModel", "sparse_base", "train_sparse_channel"]

ProgressCallback = Callable[[str, int], None]


def sparse_base(kit: Workspace, model: str | None) -> SpladeEncoder:
    """The SPLADE model to fine-tune: ``model`` (a name or folder), else the collection's."""
    from ragkit.encoders.sparse import SpladeEncoder

    if model:  # "splade" is the channel's word for the shipped model, as in [sparse] model
        return SpladeEncoder.load("default" if model.lower() == "splade" else model)
    collection = kit.collection()
    channel = kit.sparse_channel_for(collection) if collection else kit.sparse_channel
    kind = getattr(channel, "kind", None)
    if kind == "splade":
        return channel.encoder  # type: ignore[union-attr]
    where = f"collection {collection.name!r}" if collection else f"workspace {kit.root}"
    has = f"a {kind.upper()} sparse channel" if kind else "no sparse channel"
    raise ConfigError(
        f"--sparse fine-tunes a SPLADE model, but the {where} has {has}, which has no model to "
        "train. Give one with --sparse-model NAME_OR_PATH (e.g. --sparse-model splade for the "
        'SPLADE ragkit[sparse] ships), or create a collection with [sparse] model = "splade" '
        "and fine-tune there"
    )


class SparseModel:
    """A fine-tuned SPLADE model saved on disk: what the card and the registry say about it."""

    def __init__(self, encoder: SpladeEncoder, base: SpladeEncoder, *, name: str, path: Path):
        self.encoder = encoder
        self.base = base
        self.name = name
        self.path = path
        self.info: dict[str, Any] = {}

    def describe(self, kit: Workspace, data: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "sparse",
            "name": self.name,
            "path": str(self.path),
            "workspace": str(kit.root),
            "base_model": self.base.name,
            "fingerprint": self.encoder.fingerprint["id"],
            "base_fingerprint": self.base.fingerprint["id"],
            "data": {"source": data.source, "train pairs": len(data.train)},
            "mining": data.mining["config"] | data.mining["stats"] if data.mining else {},
            **self.info,
            "metrics": metrics,
        }

    def registry_entry(self, run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "sparse",
            "name": self.name,
            "path": str(self.path),
            "fingerprint": self.encoder.fingerprint["id"],
            "base_model": self.base.name,
            "base_fingerprint": self.base.fingerprint["id"],
            "sparse": {"model": str(self.path)},
            "metrics": metrics,
            "run_dir": str(run_dir),
        }


def train_sparse_channel(
    base: SpladeEncoder,
    train: list[Pair],
    config: SparseTrainConfig,
    *,
    run_dir: Path,
    output: Path,
    name: str,
    seed: int,
    notify: ProgressCallback,
) -> SparseModel:
    """Train, save under ``output`` and reload from disk, so the "after" side is what a
    collection will load, not the object in memory."""
    from ragkit.encoders.sparse import SpladeEncoder

    notify("stage:sparse-train", seed)
    mark = time.perf_counter()
    run = train_sparse_encoder(
        base, train, config, run_dir / "checkpoints" / "sparse", seed=seed, progress=notify
    )
    seconds = time.perf_counter() - mark
    with quiet_loading():
        run.model.save(str(output), create_model_card=False)
    tuned = SpladeEncoder.load(str(output), batch_size=base.batch_size)
    model = SparseModel(tuned, base, name=name, path=output)
    losses = [e["loss"] for e in run.log if "loss" in e]
    model.info = {
        "training": {
            **asdict(config),
            "steps": run.steps,
            "compute_dtype": run.compute_dtype,
            "seconds": round(seconds, 1),
            "first loss": losses[0] if losses else None,
            "last loss": losses[-1] if losses else None,
        },
        "loss": run.loss,
    }
    return model
