"""Fine-tuning ablations: named configurations × training seeds, one run at a time.

    python bench/finetune.py -w WS --configs base alpha0 symmetric --seeds 0 1
    python bench/finetune.py -w WS --setup full --configs base --seeds 0
    python bench/finetune.py -w WS --setup full --configs base --seeds 0 1 --soup
    python bench/finetune.py --table                # the table of every recorded run

``WS`` is a workspace with debian-packages ingested (the whole corpus: negatives are mined from
its hybrid index). **small**: 1,500 train pairs, max 64 tokens, dev queries scored on a
3,000-chunk corpus sample that holds every judged document (as runs A–G of BENCHMARKS.md).
**full**: every train pair, max 128 tokens, the whole corpus (as run H). Both: bf16 autocast
where the CPU has it, 1 epoch, lr 5e-5, 1 mined negative. The pairs, the negatives and the
evaluation sample are drawn with seed 0 in every run; ``--seeds`` changes the training seed
only (initialisation of the shuffling and dropout), so the spread is the training's.
With ``--soup`` the seeds train in one ``finetune`` call, which averages their weights and keeps
the soup only when the held-out validation queries score it at least as high as the best seed
(ragkit's own rule); every seed's final model is then also scored on dev, so the line records
each seed, the soup and the choice.

Each run appends one JSON line to ``bench/results/finetune.jsonl`` as soon as it ends, so an
interrupted session keeps what it measured. Nothing is registered or cached in the workspace
unless `--keep NAME` asks for it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

RESULTS = _common.RESULTS_DIR / "finetune.jsonl"
TEACHER = "all-mpnet-base-v2"

# name → (FinetuneConfig fields, TrainConfig fields) on top of the setup's base recipe
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "base": ({}, {}),
    "alpha0": ({}, {"alpha": 0.0}),
    "spread1": ({}, {"spread_out_weight": 1.0}),
    "symmetric": ({}, {"loss": "symmetric"}),
    "bidirectional": ({}, {"loss": "bidirectional"}),
    "cached256": ({}, {"cached": True, "batch_size": 256}),
    "cached1024": ({}, {"cached": True, "batch_size": 1024}),
    # learning rate: 5e-5 is the base; a batch 4× larger takes 4× fewer steps, so the cached
    # batches are also run at lr × √(batch / 64)
    "lr1e-4": ({}, {"learning_rate": 1e-4}),
    "lr2e-4": ({}, {"learning_rate": 2e-4}),
    "cached256-lr1e-4": ({}, {"cached": True, "batch_size": 256, "learning_rate": 1e-4}),
    "cached1024-lr2e-4": ({}, {"cached": True, "batch_size": 1024, "learning_rate": 2e-4}),
    "teacher-filter": ({"teacher": TEACHER}, {"distillation": "none"}),
    "teacher-guided": ({"teacher": TEACHER}, {"distillation": "none", "teacher_guided": True}),
    "teacher-kl": (
        {"teacher": TEACHER},
        {"distillation": "scores", "teacher_guided": True},
    ),
    "splade": ({"channels": ("sparse",), "sparse_model": "splade"}, {}),
}
SETUPS = {
    "small": {"max_train_pairs": 1500, "eval_max_chunks": 3000, "max_seq_length": 64},
    "full": {"max_train_pairs": None, "eval_max_chunks": None, "max_seq_length": 128},
}


def run_one(
    workspace: Path,
    dataset: Path,
    setup: str,
    name: str,
    seed: int,
    pairs: int | None,
    keep: str | None = None,
    seeds: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    import ragkit
    from ragkit.pipelines.finetune import FinetuneConfig, finetune
    from ragkit.training import MiningConfig, TrainConfig

    shape = SETUPS[setup]
    outer, inner = CONFIGS[name]
    train = replace(
        TrainConfig(batch_size=64, max_seq_length=shape["max_seq_length"], precision="auto"),
        seeds=seeds or (seed,),
        **inner,
    )
    config = FinetuneConfig(
        dataset=dataset,
        split="train",
        eval_dataset=dataset,
        eval_split="dev",
        max_train_pairs=pairs if pairs is not None else shape["max_train_pairs"],
        eval_max_chunks=shape["eval_max_chunks"],
        mining=MiningConfig(num_negatives=1),
        train=train,
        register=keep is not None,
        cache_vectors=keep is not None,
        name=keep,
        **outer,
    )
    config.sparse_train = replace(
        config.sparse_train, batch_size=train.batch_size, max_seq_length=train.max_seq_length
    )
    load = os.getloadavg()[0]
    kit = ragkit.open(workspace, create=False)
    try:
        report = finetune(kit, config)
        per_seed = _score_seeds(kit, config, Path(report.run_dir)) if seeds else None
    finally:
        kit.close()
    extra = {} if per_seed is None else {"soup": report.soup, "per_seed": per_seed}
    return extra | {
        "setup": setup,
        "config": name,
        "seed": seed,
        "pairs": report.train_pairs,
        "batch_size": train.batch_size,
        "eval_queries": report.eval_queries,
        "metrics": report.metrics,
        "seconds": report.seconds,
        "mining": {k: v for k, v in (report.mining or {}).items() if k != "file"},
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],
        "run_dir": report.run_dir,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _score_seeds(kit: Any, config: Any, run_dir: Path) -> dict[str, Any]:
    """Dev metrics of each seed's final checkpoint, scored as ``finetune`` scores its model."""
    from ragkit.evaluation.beir import load_beir
    from ragkit.pipelines.finetune_data import eval_chunks
    from ragkit.training.evaluator import RetrievalEvaluator
    from ragkit.training.mining import ChunkTable
    from ragkit.training.trainer import load_checkpoint

    data = load_beir(config.eval_dataset, config.eval_split)
    table = ChunkTable(kit, kit.encoder)
    chunks = eval_chunks(kit, table, data.queries, data.qrels, config)
    evaluator = RetrievalEvaluator(kit, data.queries, data.qrels, table=table, chunk_ids=chunks)
    out: dict[str, Any] = {}
    for folder in sorted((run_dir / "checkpoints").glob("seed-*")):
        last = max(folder.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
        encoder = kit.encoder.sibling(load_checkpoint(last, kit.encoder.model), name=str(last))
        out[folder.name.removeprefix("seed-")] = evaluator.evaluate(encoder)
    return out


def table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """One line per (setup, config, pairs): nDCG@10 × 100 as the mean ± half the range over
    seeds, and the range of training seconds (they follow the machine's load, not the config)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["setup"], row["config"], row["pairs"]), []).append(row)
    out = []
    for (setup, name, pairs), runs in groups.items():
        channel = "sparse" if name == "splade" else "dense"

        def cell(mode: str, when: str, runs: list[dict[str, Any]] = runs) -> str:
            values = [100 * r["metrics"][when][mode]["ndcg@10"] for r in runs]
            spread = (max(values) - min(values)) / 2
            if spread == 0:
                return f"{values[0]:.2f}"
            return f"{statistics.fmean(values):.2f} ± {spread:.2f}"

        key = "sparse_train" if channel == "sparse" else "train"
        seconds = sorted(r["seconds"].get(key, 0.0) for r in runs)
        loads = [x for r in runs for x in r["load"]]
        out.append(
            [
                f"{setup}/{name}",
                ",".join(str(r["seed"]) for r in runs),
                pairs,
                cell(channel, "before"),
                cell(channel, "after"),
                cell("hybrid", "before"),
                cell("hybrid", "after"),
                "–".join(f"{x:.0f}" for x in dict.fromkeys([seconds[0], seconds[-1]])),
                f"{min(loads):.1f}–{max(loads):.1f}",
            ]
        )
    return out


COLUMNS = [
    "config",
    "seeds",
    "pairs",
    "before",
    "after",
    "hybrid before",
    "hybrid after",
    "train s",
    "load",
]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("-w", "--workspace", type=Path)
    p.add_argument("--setup", choices=sorted(SETUPS), default="small")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["base"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--pairs", type=int, help="train pairs instead of the setup's")
    p.add_argument(
        "--keep",
        metavar="NAME",
        help="register the model under NAME and cache its evaluation vectors in the workspace "
        "(for `ragkit migrate --to NAME` and `ragkit tune-fusion` afterwards)",
    )
    p.add_argument(
        "--soup",
        action="store_true",
        help="train all --seeds in one run and soup them (ragkit's rule decides), scoring each "
        "seed on dev as well",
    )
    p.add_argument("--table", action="store_true", help="only print the recorded runs")
    args = p.parse_args()
    _common.offline()
    if not args.table:
        if args.workspace is None:
            p.error("--workspace is needed to run")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        groups = [tuple(args.seeds)] if args.soup else [(seed,) for seed in args.seeds]
        for name in args.configs:
            for group in groups:
                row = run_one(
                    args.workspace,
                    args.dataset,
                    args.setup,
                    name,
                    group[0],
                    args.pairs,
                    args.keep,
                    seeds=group if args.soup else None,
                )
                row["machine"] = _common.machine_line()
                with RESULTS.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row, default=str) + "\n")
                print(json.dumps({k: row[k] for k in ("config", "seed", "seconds", "load")}))
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    _common.print_table("ragkit finetune ablations (nDCG@10)", COLUMNS, table(rows))
    print(_common.markdown_table(COLUMNS, table(rows)))


if __name__ == "__main__":
    main()
