"""The CLI parses, calls the API and renders; these tests drive it through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app

runner = CliRunner()


@pytest.fixture
def cli_workspace(tmp_path: Path, tiny_model) -> Path:  # type: ignore[no-untyped-def]
    """A workspace whose config names the tiny model saved to disk, as a user would set it."""
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n', encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Backups\n\nrestic snapshot backup restore\n", encoding="utf-8")
    (docs / "b.txt").write_text("dns dhcp subnet router\n", encoding="utf-8")
    (docs / "bad.txt").write_bytes(b"")
    return ws


def test_ingest_json_report_and_partial_exit_code(cli_workspace: Path) -> None:
    docs = cli_workspace.parent / "docs"
    result = runner.invoke(app, ["ingest", str(docs), "-w", str(cli_workspace), "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert report["files_new"] == 2 and report["files_failed"] == 1
    assert report["failures"][0]["path"].endswith("bad.txt")


def test_query_table_and_json(cli_workspace: Path) -> None:
    docs = cli_workspace.parent / "docs"
    runner.invoke(app, ["ingest", str(docs), "-w", str(cli_workspace)])
    result = runner.invoke(
        app, ["query", "restic snapshot", "-k", "1", "-w", str(cli_workspace), "--json"]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 1 and hits[0]["uri"] == "a.md" and hits[0]["headings"] == ["Backups"]
    table = runner.invoke(app, ["query", "dns router", "-w", str(cli_workspace)])
    assert table.exit_code == 0 and "b.txt" in table.stdout


def test_status_reports_counts_and_collection(cli_workspace: Path) -> None:
    docs = cli_workspace.parent / "docs"
    runner.invoke(app, ["ingest", str(docs), "-w", str(cli_workspace)])
    result = runner.invoke(app, ["status", "-w", str(cli_workspace), "--json"])
    info = json.loads(result.stdout)
    assert info["counts"]["documents"] == 2
    (collection,) = info["collections"]
    assert collection["aliases"] == ["default"] and collection["dim"] == 64
    assert collection["index_bytes"] > 0


def test_errors_are_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["query", "x", "-w", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "no ragkit workspace" in result.output and "Traceback" not in result.output


def test_locked_workspace_exits_75(cli_workspace: Path) -> None:
    kit = ragkit.open(cli_workspace, create=True)
    kit.lock.acquire()
    try:
        docs = cli_workspace.parent / "docs"
        result = runner.invoke(app, ["ingest", str(docs), "-w", str(cli_workspace)])
        assert result.exit_code == 75 and "another ragkit job" in result.output
    finally:
        kit.close()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "query", "status"):
        assert command in result.stdout
