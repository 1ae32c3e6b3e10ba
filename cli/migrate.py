"""``ragkit migrate plan|start|resume|status|adapter|cutover|rollback|finalize|abort``.

Exit codes: 0 done; 1 error; 4 refused on purpose (the shadow is incomplete or disagrees with
the store, the gate found it worse, an adapter fell below its threshold: the message has the
figures); 75 another job holds the workspace (``--wait``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import TimeRemainingColumn

from ragkit.cli._common import (
    LogEveryOption,
    ProgressView,
    WorkspaceOption,
    console,
    err_console,
    exit_with,
    print_json,
    print_table,
)
from ragkit.errors import MigrationRefusedError, RagkitError

EXIT_REFUSED = 4

app = typer.Typer(
    name="migrate",
    help="Move a live collection onto a new encoder, chunking, index kind or sparse channel "
    "with no downtime: plan → start (shadow backfill) → status → cutover → rollback/finalize.",
    no_args_is_help=True,
)

AliasOption = Annotated[str, typer.Option("--alias", help="The alias to migrate.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
WaitOption = Annotated[
    float, typer.Option(help="Seconds to wait for a running job to finish (then exit 75).")
]
ToOption = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="MODEL",
        help="The new encoder: a model registered by `ragkit finetune` (its name), a preset "
        "(`ragkit encoders`), PROVIDER:MODEL for a served one (openai:, gemini:, tei:, "
        "ollama:), or a sentence-transformers name or folder. Default: ragkit.toml's settings.",
    ),
]
ChunkingOption = Annotated[
    list[str] | None,
    typer.Option(
        "--chunking", metavar="KEY=VALUE", help="Change a chunking setting (max_tokens=128)."
    ),
]
IndexOption = Annotated[
    list[str] | None,
    typer.Option("--index", metavar="KEY=VALUE", help="Change an index setting (kind=hnsw)."),
]
SparseOption = Annotated[
    str | None,
    typer.Option("--sparse", help="The new sparse channel: bm25, splade, a SPLADE model, none."),
]
QueriesOption = Annotated[
    Path | None, typer.Option(help="Judged queries (BEIR queries.jsonl) for the gate.")
]
QrelsOption = Annotated[Path | None, typer.Option(help="Their judgments (TSV qrels).")]


def _pairs(values: list[str] | None, option: str) -> dict[str, Any] | None:
    if not values:
        return None
    out = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=option)
        out[key.strip()] = raw.strip()
    return out


def run_on(workspace: Path, call: Any) -> Any:
    import ragkit

    try:
        with ragkit.open(workspace, create=False) as kit:
            return call(kit)
    except MigrationRefusedError as error:
        err_console.print(f"[red]refused:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except RagkitError as error:
        exit_with(error)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@app.command("plan")
def plan_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    to: ToOption = None,
    chunking: ChunkingOption = None,
    index: IndexOption = None,
    sparse: SparseOption = None,
    alias: AliasOption = "default",
    no_sample: Annotated[
        bool, typer.Option("--no-sample", help="Skip the timed sample encode (no estimate).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What a migration would change (encoder, dims, chunking, index, sparse channel), how many
    chunks must be embedded and how many the cache already holds, the disk it needs and how long
    it takes (from a timed sample encode). Writes nothing."""
    from ragkit.pipelines.migrate import plan_migration

    plan = run_on(
        workspace,
        lambda kit: plan_migration(
            kit,
            alias=alias,
            to=to,
            chunking=_pairs(chunking, "--chunking"),
            index=_pairs(index, "--index"),
            sparse=sparse,
            sample=not no_sample,
        ),
    )
    if as_json:
        print_json(plan.to_dict())
        return
    console.print(
        f"migration of [bold]{plan.alias}[/bold]: {plan.source} → {plan.target} "
        f"({plan.target_described})",
        highlight=False,
    )
    if plan.changes:
        print_table(
            "what changes",
            ["setting", "now", "after"],
            [[c.field, str(c.source), str(c.target)] for c in plan.changes],
        )
    about = "about " if plan.chunks_estimated else ""
    console.print(
        f"{plan.documents} documents, {about}{plan.chunks} chunks to index: {plan.cached} "
        f"vectors in the cache, {plan.to_encode} to encode; dims {plan.dims[0]} → {plan.dims[1]}; "
        f"disk about {_size(plan.disk_bytes)}",
        highlight=False,
    )
    if plan.sample_rate:
        console.print(
            f"new encoder: {plan.sample_rate:.0f} chunks/s on a sample → about "
            f"{_duration(plan.seconds_estimated)} to backfill",
            highlight=False,
        )
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False)
    if not plan.empty:
        console.print("next: `ragkit migrate start` with the same options", highlight=False)


class _BackfillView(ProgressView):
    def __init__(self, *, quiet: bool, log_every: float) -> None:
        super().__init__(quiet=quiet, extra_columns=(TimeRemainingColumn(),), log_every=log_every)
        self.task = self.bar.add_task("documents", total=None)

    def update(self, event: str, n: int) -> None:
        if event == "documents_total":
            self.bar.update(self.task, total=n)
        elif event == "documents":
            self.bar.advance(self.task, n)


def _start(
    workspace: Path,
    *,
    resume_only: bool,
    to: str | None = None,
    chunking: list[str] | None = None,
    index: list[str] | None = None,
    sparse: str | None = None,
    alias: str,
    batch_chunks: int,
    queries: Path | None = None,
    qrels: Path | None = None,
    wait: float,
    quiet: bool,
    log_every: float,
    as_json: bool,
) -> None:
    from ragkit.pipelines.migrate import start

    view = _BackfillView(quiet=quiet or as_json, log_every=log_every)
    with view as on_progress:
        result = run_on(
            workspace,
            lambda kit: start(
                kit,
                alias=alias,
                to=to,
                chunking=_pairs(chunking, "--chunking"),
                index=_pairs(index, "--index"),
                sparse=sparse,
                batch_chunks=batch_chunks,
                queries=queries,
                qrels=qrels,
                wait=wait,
                progress=on_progress,
                resume_only=resume_only,
            ),
        )
    if as_json:
        print_json(result)
        return
    verb = "resumed" if result["resumed"] else "started"
    console.print(
        f"migration #{result['migration']} {verb}: {result['target']} is {result['state']} — "
        f"{result.get('chunks', 0)} chunks indexed, {result.get('encoded', 0)} encoded, "
        f"{result.get('from_cache', 0)} from the cache",
        highlight=False,
    )
    if result["state"] == "ready":
        console.print("next: `ragkit migrate status --eval`, then `ragkit migrate cutover`")


BatchOption = Annotated[
    int, typer.Option(min=1, help="Chunks per batch: one commit, at most one batch redone.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command("start")
def start_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    to: ToOption = None,
    chunking: ChunkingOption = None,
    index: IndexOption = None,
    sparse: SparseOption = None,
    alias: AliasOption = "default",
    batch_chunks: BatchOption = 2048,
    queries: Annotated[
        Path | None, typer.Option(help="Judged queries to keep with the workspace for the gate.")
    ] = None,
    qrels: QrelsOption = None,
    wait: WaitOption = 0.0,
    quiet: QuietOption = False,
    log_every: LogEveryOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Create the shadow collection and backfill it from the store, in batches. Ingests keep
    running meanwhile (the lock is let go while a batch encodes) and reach both collections,
    deletes included. Ctrl-C or a kill loses at most one batch: `ragkit migrate resume`."""
    _start(
        workspace,
        resume_only=False,
        to=to,
        chunking=chunking,
        index=index,
        sparse=sparse,
        alias=alias,
        batch_chunks=batch_chunks,
        queries=queries,
        qrels=qrels,
        wait=wait,
        quiet=quiet,
        log_every=log_every,
        as_json=as_json,
    )


@app.command("resume")
def resume_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    batch_chunks: BatchOption = 2048,
    wait: WaitOption = 0.0,
    quiet: QuietOption = False,
    log_every: LogEveryOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Go on with an interrupted backfill from its last committed batch."""
    _start(
        workspace,
        resume_only=True,
        alias=alias,
        batch_chunks=batch_chunks,
        wait=wait,
        quiet=quiet,
        log_every=log_every,
        as_json=as_json,
    )


@app.command("status")
def status_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    evaluate: Annotated[
        bool,
        typer.Option("--eval", help="Also compare old and new on the evaluation queries."),
    ] = False,
    queries: QueriesOption = None,
    qrels: QrelsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Progress, rate and ETA of the backfill, the adapter's measured quality, the last gate,
    and with --eval old vs new on judged (or generated) queries."""
    from ragkit.pipelines.migrate import migration_status

    status = run_on(
        workspace,
        lambda kit: migration_status(
            kit, alias=alias, queries=queries, qrels=qrels, evaluate=evaluate
        ),
    )
    if as_json:
        print_json(status)
        return
    migration = status["open"]
    if migration is None:
        console.print(f"alias {alias!r} has no open migration", highlight=False)
        for old in status["recent"]:
            console.print(
                f"  #{old['id']} {old['state']}: {old['source']} → {old['target']}", highlight=False
            )
        return
    console.print(
        f"migration #{migration['id']} [bold]{migration['state']}[/bold]: "
        f"{migration['source']} ({status['source_state']}) → {migration['target']} "
        f"({status['target_state']})",
        highlight=False,
    )
    for change in migration["changes"]:
        console.print(f"  {change}", highlight=False)
    rate = status["backfill_rate"]
    console.print(
        f"backfill {status['progress'] * 100:.1f}% ({status['documents_left']} of "
        f"{status['documents']} documents left); "
        + (f"{rate:.0f} chunks/s; " if rate else "")
        + f"ETA {_duration(status['eta_seconds'])}"
        + (" — running now" if status["running"] else ""),
        highlight=False,
    )
    adapter = status["adapter"]
    if adapter:
        console.print(
            f"adapter {adapter['kind']}: keeps {adapter['relative_recall_at_10']:.3f} of the "
            f"new model's recall@10 ({adapter['held_out_queries']} held-out queries, "
            f"{adapter['fit_pairs']} pairs); "
            + ("serving" if adapter["serving"] else "not serving"),
            highlight=False,
        )
    for key in ("evaluation", "gate"):
        if status.get(key):
            from ragkit.pipelines.migrate import GateResult

            console.print(f"{key}: {GateResult(**status[key]).describe()}", highlight=False)
