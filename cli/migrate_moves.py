"""``ragkit migrate adapter|cutover|rollback|finalize|abort``: the steps that fit an adapter,
move the alias or drop a collection (registered on the ``migrate`` app of
:mod:`ragkit.cli.migrate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ragkit.cli._common import WorkspaceOption, console, print_json
from ragkit.cli.migrate import (
    AliasOption,
    JsonOption,
    QrelsOption,
    QueriesOption,
    WaitOption,
    app,
    run_on,
)


@app.command("adapter")
def adapter_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    kind: Annotated[
        str, typer.Option(help="procrustes (same or other dims), affine, lowrank or mlp.")
    ] = "procrustes",
    sample: Annotated[int, typer.Option(min=2, help="Document pairs to fit on, at most.")] = 20000,
    queries: Annotated[int, typer.Option(min=10, help="Held-out queries to measure on.")] = 300,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Least recall@10 allowed to serve.")
    ] = 0.95,
    serve: Annotated[
        bool, typer.Option("--serve", help="Let it answer the live collection's queries.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop a serving adapter.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Serve even below the threshold.")] = False,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Fit a query adapter (new model's query vectors → the live collection's space), measure
    the share of the new model's recall@10 it keeps on held-out queries, and with --serve let
    it answer the live collection while the backfill runs (when the old model is switched off)."""
    from ragkit.pipelines.migrate import fit_query_adapter, stop_adapter

    if stop:
        run_on(workspace, lambda kit: stop_adapter(kit, alias=alias, wait=wait))
        console.print("the query adapter no longer serves")
        return
    info = run_on(
        workspace,
        lambda kit: fit_query_adapter(
            kit,
            alias=alias,
            kind=kind,
            sample=sample,
            queries=queries,
            threshold=threshold,
            serve=serve,
            force=force,
            wait=wait,
        ),
    )
    if as_json:
        print_json(info)
        return
    console.print(
        f"{info['kind']} adapter: keeps {info['relative_recall_at_10']:.3f} of the new model's "
        f"recall@10 ({info['served_recall_at_10']:.3f} of {info['new_recall_at_10']:.3f}; "
        f"agreement with its top 10 {info['agreement_at_10']:.3f}) on "
        f"{info['held_out_queries']} held-out queries ({info['fit_pairs']} pairs, fitted in "
        f"{info['fit_seconds']:.2f} s); " + ("serving" if info["serving"] else "not serving"),
        highlight=False,
    )


@app.command("cutover")
def cutover_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    queries: QueriesOption = None,
    qrels: QrelsOption = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="nDCG@10 the shadow may lose (0.01 = one point).")
    ] = 0.0,
    force: Annotated[
        bool, typer.Option("--force", help="Cut over although the gate found the shadow worse.")
    ] = False,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Point the alias at the shadow in one transaction, if it is complete, agrees with the
    store and is not worse on nDCG@10 (judged queries from --queries/--qrels or kept with the
    workspace; otherwise queries generated from the corpus, reported as such). --force overrides
    the gate only. The old collection is kept in step for `ragkit migrate rollback`."""
    from ragkit.pipelines.migrate import cutover

    result = run_on(
        workspace,
        lambda kit: cutover(
            kit,
            alias=alias,
            queries=queries,
            qrels=qrels,
            force=force,
            tolerance=tolerance,
            wait=wait,
        ),
    )
    _moved(result, as_json)


@app.command("rollback")
def rollback_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Point the alias back at the collection the cutover retired: one transaction, no
    encoder call."""
    from ragkit.pipelines.migrate import rollback

    _moved(run_on(workspace, lambda kit: rollback(kit, alias=alias, wait=wait)), as_json)


@app.command("finalize")
def finalize_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    drop_cache: Annotated[
        bool, typer.Option("--drop-cache", help="Also delete the old encoder's cached vectors.")
    ] = False,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Delete the retired collection (files, rows; with --drop-cache its cached vectors). No
    rollback after this."""
    from ragkit.pipelines.migrate import finalize

    result = run_on(
        workspace, lambda kit: finalize(kit, alias=alias, drop_cache=drop_cache, wait=wait)
    )
    if as_json:
        print_json(result)
        return
    console.print(
        f"migration #{result['migration']} finalized: {result['deleted']} deleted "
        f"({result.get('chunks', 0)} chunk rows, {result.get('vectors', 0)} cached vectors)",
        highlight=False,
    )


@app.command("abort")
def abort_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    alias: AliasOption = "default",
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Drop the shadow of a migration that is not cut over; the live collection is untouched."""
    from ragkit.pipelines.migrate import abort

    result = run_on(workspace, lambda kit: abort(kit, alias=alias, wait=wait))
    if as_json:
        print_json(result)
        return
    console.print(
        f"migration #{result['migration']} aborted: {result['deleted']} dropped", highlight=False
    )


def _moved(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    gate = result.get("gate")
    if gate:
        from ragkit.pipelines.migrate import GateResult

        console.print(f"gate: {GateResult(**gate).describe()}", highlight=False)
        if gate.get("forced"):
            console.print("[yellow]cut over by --force although the gate failed[/yellow]")
    console.print(
        f"alias {result['alias']} → {result['live']} ({result['state']}; {result['retired']} "
        f"retired, kept in step) in {result['swap_seconds'] * 1000:.1f} ms",
        highlight=False,
    )
