"""Fine-tune the workspace's dense encoder on its own corpus, and prove it helped.

The job: training pairs (a file, BEIR qrels, or generated from the corpus) → a seeded held-out
split when no evaluation set is given → hard negatives mined from the workspace's own index →
training, one run per seed, checkpoints kept → checkpoint/seed soup, kept only if the dev metric
agrees → the model folder with its card, registered in ``models/registry.json`` → before/after
metrics on the held-out queries, the same procedure for both encoders.
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
from ragkit.evaluation import load_beir
from ragkit.evaluation.report import write_report
from ragkit.pipelines._runner import job
from ragkit.training.evaluator import RetrievalEvaluator, hard_subset
from ragkit.training.mining import ChunkTable, MiningConfig, mine_hard_negatives
from ragkit.training.model_card import metrics_table, register_model, write_model_card
from ragkit.training.pairs import (
    Pair,
    QueryGenerator,
    generate_pairs,
    load_pairs,
    pairs_from_beir,
    qrels_from_pairs,
    sample_pairs,
    split_pairs,
    write_pairs,
)
from ragkit.training.soup import SoupDecision, select_soup
from ragkit.training.teacher_filter import drop_false_negatives
from ragkit.training.trainer import TrainConfig, train_encoder

if TYPE_CHECKING:
    from ragkit.workspace import Workspace

__all__ = ["FinetuneConfig", "FinetuneReport", "finetune"]

ProgressCallback = Callable[[str, int], None]
SELECTION_METRIC = "ndcg@10"


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
    config.train.validate()
    config.mining.validate()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = kit.root / "runs" / f"finetune-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    base = kit.encoder
    table = ChunkTable(kit, base)

    notify("stage:pairs", 0)
    pairs, source = _training_pairs(kit, config)
    eval_queries, eval_qrels, eval_source, pairs = _evaluation_set(config, pairs)
    train, rest = sample_pairs(pairs, config.max_train_pairs, seed=config.seed)
    validation: list[Pair] = []
    if _needs_selection(config):
        if not rest and len({p.group for p in train}) >= 20:
            train, rest = split_pairs(
                train, fraction=0.1, max_queries=config.validation_queries, seed=config.seed + 2
            )
        validation = sample_pairs(rest, config.validation_queries, seed=config.seed)[0]
    if not train:
        raise ConfigError("no training pairs left after the held-out split")
    write_pairs(train, run_dir / "train_pairs.jsonl")
    clock["pairs"] = time.perf_counter() - started

    teacher = DenseEncoder.load(EncoderConfig(model=config.teacher)) if config.teacher else None
    mining_summary = None
    if config.mine and config.mining.num_negatives > 0:
        notify("stage:mining", 0)
        mark = time.perf_counter()
        mined = mine_hard_negatives(
            kit,
            train,
            config.mining,
            cross_encoder=_cross_encoder(config.cross_encoder),
            table=table,
            progress=notify,
        )
        mined.write(run_dir / "negatives.jsonl")
        train = mined.pairs
        mining_summary = {**mined.summary(), "file": str(run_dir / "negatives.jsonl")}
        if teacher is not None and config.teacher_negative_margin is not None:
            train, dropped = drop_false_negatives(
                train, teacher, margin=config.teacher_negative_margin
            )
            mining_summary["teacher_filter"] = dropped
        clock["mining"] = time.perf_counter() - mark

    notify("stage:before", 0)
    mark = time.perf_counter()
    evaluator = RetrievalEvaluator(
        kit,
        eval_queries,
        eval_qrels,
        table=table,
        chunk_ids=_eval_chunks(kit, table, eval_queries, eval_qrels, config),
    )
    before_runs = evaluator.runs(base)
    before = {mode: evaluator.score(run) for mode, run in before_runs.items()}
    clock["eval_before"] = time.perf_counter() - mark

    mark = time.perf_counter()
    runs = []
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
    model, decision = _choose(kit, base, runs, validation, table, config, notify)
    clock["select"] = time.perf_counter() - mark

    name = config.name or f"{_slug(base.name)}-ft-{stamp}"
    output = Path(config.output) if config.output else kit.root / "models" / name
    model.prompts = {
        **(getattr(model, "prompts", None) or {}),
        "query": base.query_prompt,
        "document": base.document_prompt,
    }
    with quiet_loading():
        model.save(str(output), create_model_card=False)
    tuned = DenseEncoder.load(base.config_for(str(output)))

    notify("stage:after", 0)
    mark = time.perf_counter()
    cache: list[Any] = []
    after_runs = evaluator.runs(tuned, on_vectors=lambda ids, v: cache.append((ids, v)))
    after = {mode: evaluator.score(run) for mode, run in after_runs.items()}
    clock["eval_after"] = time.perf_counter() - mark
    clock["total"] = time.perf_counter() - started
    metrics = {"before": before, "after": after}

    info = {
        "name": name,
        "path": str(output),
        "workspace": str(kit.root),
        "base_model": base.name,
        "fingerprint": tuned.fingerprint["id"],
        "base_fingerprint": base.fingerprint["id"],
        "query_prompt": base.query_prompt,
        "document_prompt": base.document_prompt,
        "data": {
            "source": source,
            "train pairs": len(train),
            "validation queries": len({p.group for p in validation}),
            "evaluation": eval_source,
            "evaluation queries": len(evaluator.qids),
            "evaluation corpus chunks": len(evaluator.chunks),
        },
        "mining": mining_summary["config"] | mining_summary["stats"] if mining_summary else {},
        "training": {
            **{k: v for k, v in asdict(config.train).items()},
            "steps": [r.steps for r in runs],
            "compute_dtype": runs[0].compute_dtype,
            "seconds": round(clock["train"], 1),
            "teacher": config.teacher,
        },
        "loss": runs[0].loss,
        "soup": _soup_info(decision),
        "metrics": metrics,
    }
    write_model_card(output, info)
    registry = None
    # The registry and the embedding cache are shared with other writers: a job of its own.
    params = {"name": name, "base_model": base.name, "output": str(output)}
    params |= {"register": config.register, "cache_vectors": config.cache_vectors}
    with job(kit, "finetune", params, wait=120) as run:
        if config.cache_vectors:
            with kit.store.transaction():
                for ids, vectors in cache:
                    hashes = [table.text_hash[c] for c in ids]
                    kit.store.cache_vectors(hashes, tuned.fingerprint["id"], vectors)
        if config.register:
            entry = {key: info[key] for key in ("name", "path", "fingerprint", "base_model")}
            entry |= {
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
            registry = str(register_model(kit.root, entry))
        cached = sum(len(ids) for ids, _ in cache) if config.cache_vectors else 0
        run.outcome(True, {"fingerprint": tuned.fingerprint["id"], "vectors_cached": cached})
    report = FinetuneReport(
        model_path=str(output),
        fingerprint=tuned.fingerprint["id"],
        base_fingerprint=base.fingerprint["id"],
        run_dir=str(run_dir),
        train_pairs=len(train),
        eval_queries=len(evaluator.qids),
        eval_source=eval_source,
        metrics=metrics,
        mining=mining_summary,
        soup=_soup_info(decision),
        seconds={k: round(v, 2) for k, v in clock.items()},
        registry=registry,
    )
    report.html = str(
        write_report(
            run_dir / "report.html",
            f"ragkit finetune · {name}",
            [
                *evaluator.report_runs("before", before_runs),
                *evaluator.report_runs("after", after_runs),
            ],
            queries=eval_queries,
            qrels=eval_qrels,
            subtitle=f"{base.name} → {output} · {eval_source} · {len(evaluator.qids)} queries · "
            f"{len(evaluator.chunks)} chunks",
        )
    )
    (run_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


# -- data --------------------------------------------------------------------------------------
def _training_pairs(kit: Workspace, config: FinetuneConfig) -> tuple[list[Pair], str]:
    if config.pairs is not None and config.dataset is not None:
        raise ConfigError("give either a pairs file or a BEIR dataset for training, not both")
    if config.pairs is not None:
        return load_pairs(config.pairs), f"pairs file {config.pairs}"
    if config.dataset is not None:
        data = load_beir(config.dataset, config.split)
        return pairs_from_beir(data), f"BEIR {config.dataset} split {config.split}"
    pairs = generate_pairs(
        kit, generator=config.generator, max_chunks=config.generate_max_chunks, seed=config.seed
    )
    how = (
        "inverse cloze"
        if config.generator is None
        else getattr(config.generator, "__name__", type(config.generator).__name__)
    )
    return pairs, f"generated from the workspace ({how})"


def _evaluation_set(
    config: FinetuneConfig, pairs: list[Pair]
) -> tuple[dict[str, str], dict[str, dict[str, int]], str, list[Pair]]:
    if config.eval_dataset is not None:
        data = load_beir(config.eval_dataset, config.eval_split)
        queries = {q: t for q, t in data.queries.items() if q in data.qrels}
        # The same query text on both sides would measure memorisation, not retrieval.
        seen = set(queries.values())
        kept = [p for p in pairs if p.query not in seen]
        return queries, data.qrels, f"BEIR {config.eval_dataset} split {config.eval_split}", kept
    if not any(p.positive_doc for p in pairs):
        raise ConfigError(
            "the pairs name no positive document (positive_doc), so held-out queries cannot be "
            "judged; add a positive_doc column or give --eval-dataset"
        )
    train, held = split_pairs(
        pairs,
        fraction=config.holdout_fraction,
        max_queries=config.max_holdout_queries,
        seed=config.seed,
    )
    queries, qrels = qrels_from_pairs(held)
    return queries, qrels, f"held out {len(queries)} queries (seed {config.seed})", train


def _needs_selection(config: FinetuneConfig) -> bool:
    """Whether training will leave more than one candidate model to choose from."""
    train = config.train
    several = len(train.seeds) > 1 or train.save_strategy == "steps" or train.epochs > 1
    return config.select and several


def _eval_chunks(
    kit: Workspace,
    table: ChunkTable,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    config: FinetuneConfig,
) -> list[int] | None:
    if config.eval_max_chunks is None:
        return None
    texts = list(queries.values())
    return hard_subset(kit, table, texts, qrels, size=config.eval_max_chunks, seed=config.seed)


# -- selection ---------------------------------------------------------------------------------
def _choose(
    kit: Workspace,
    base: DenseEncoder,
    runs: list[Any],
    validation: list[Pair],
    table: ChunkTable,
    config: FinetuneConfig,
    notify: ProgressCallback,
) -> tuple[Any, SoupDecision | None]:
    """The final model of a single run, or the best of checkpoints, seeds and their soup."""
    from sentence_transformers import SentenceTransformer

    candidates: dict[str, Any] = {}
    for run in runs:
        for checkpoint in run.checkpoints:
            if int(checkpoint.name.rsplit("-", 1)[-1]) >= run.steps:
                continue  # the last checkpoint is the final model, already in memory
            with quiet_loading():
                model = SentenceTransformer(str(checkpoint), device=str(run.model.device))
            candidates[f"seed-{run.seed}/{checkpoint.name}"] = model
        candidates[f"seed-{run.seed}/final"] = run.model
    if len(candidates) == 1 or not config.select or not validation:
        return runs[-1].model, None
    queries, qrels = qrels_from_pairs(validation)
    if not queries:
        return runs[-1].model, None
    notify("stage:select", len(candidates))
    texts = list(queries.values())
    chunks = hard_subset(kit, table, texts, qrels, size=config.selection_chunks, seed=config.seed)
    evaluator = RetrievalEvaluator(kit, queries, qrels, table=table, chunk_ids=chunks)

    def score(model: Any) -> float:
        return evaluator.dense_score(base.sibling(model, name="candidate"))[SELECTION_METRIC]

    return select_soup(candidates, score, method=config.soup_method)


def _soup_info(decision: SoupDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "metric": f"dense {SELECTION_METRIC} on validation queries",
        "chosen": decision.chosen,
        "scores": {k: round(v, 4) for k, v in decision.scores.items()},
        "soup_score": None if decision.soup_score is None else round(decision.soup_score, 4),
        "best_single": decision.best_single,
        "ingredients": decision.ingredients,
    }


def _cross_encoder(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    from sentence_transformers import CrossEncoder

    return CrossEncoder(value)


def _slug(name: str) -> str:
    tail = Path(name).name if name != "default" else "all-MiniLM-L6-v2"
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40] or "encoder"
