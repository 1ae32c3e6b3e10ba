"""``ragkit runs``: listing, one run, crashed rows, monotonic ids and pruning."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.pipelines._runner import job

runner = CliRunner()


@pytest.fixture
def kit(tmp_path: Path) -> ragkit.Workspace:
    """A workspace without an encoder: the runs table needs none."""
    workspace = ragkit.open(tmp_path / "ws", create=True)
    yield workspace
    workspace.close()


def _run(kit: ragkit.Workspace, kind: str, stats: dict, ok: bool = True) -> int:
    with job(kit, kind, {"commit_every": 7}) as run:
        run.outcome(ok, stats)
    return run.run_id


def test_runs_lists_counts_and_filters_by_kind(kit: ragkit.Workspace) -> None:
    first = _run(kit, "ingest", {"files_new": 4, "files_failed": 1, "chunks_encoded": 9}, False)
    with job(kit, "reindex") as outer:
        _run(kit, "ingest", {"files_new": 0, "files_unchanged": 4, "chunks_encoded": 0})
        outer.outcome(True, {"added": 0, "unchanged": 4, "generations": {"c": 3}})
    result = runner.invoke(app, ["runs", "-w", str(kit.root), "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["run_id"] for r in runs] == sorted((r["run_id"] for r in runs), reverse=True)
    assert [r["kind"] for r in runs] == ["ingest", "reindex", "ingest"]
    assert runs[2]["run_id"] == first and runs[2]["status"] == "partial"
    assert runs[2]["counts"]["added"] == 4 and runs[2]["counts"]["failed"] == 1
    assert runs[2]["counts"]["encoded"] == 9
    assert runs[1]["counts"]["unchanged"] == 4 and runs[1]["generations"] == {"c": 3}
    assert runs[0]["parent_id"] == runs[1]["run_id"]
    only = json.loads(runner.invoke(app, ["runs", "-w", str(kit.root), "--json", "--kind",
                                          "reindex"]).stdout)  # fmt: skip
    assert [r["kind"] for r in only] == ["reindex"]
    table = runner.invoke(app, ["runs", "-w", str(kit.root), "--limit", "1"])
    assert table.exit_code == 0 and "ingest" in table.stdout and "reindex" not in table.stdout


def test_runs_show_gives_params_failures_and_inner_runs(kit: ragkit.Workspace) -> None:
    with job(kit, "reindex", {"allow_empty": False}) as outer:
        failures = [{"path": "/docs/bad.txt", "reason": "empty file"}]
        _run(kit, "ingest", {"files_failed": 1, "failures": failures}, False)
        outer.outcome(False, {"failed": 1})
    result = runner.invoke(app, ["runs", "-w", str(kit.root), "show", str(outer.run_id),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["params"] == {"allow_empty": False} and shown["status"] == "partial"
    (child,) = shown["children"]
    assert child["kind"] == "ingest" and child["failures"] == failures
    text = runner.invoke(app, ["runs", "-w", str(kit.root), "show", str(outer.run_id)])
    assert "bad.txt" in text.stdout and "empty file" in text.stdout
    missing = runner.invoke(app, ["runs", "-w", str(kit.root), "show", "999"])
    assert missing.exit_code == 1 and "no run 999" in missing.stderr


def test_a_run_left_running_by_a_dead_process_is_shown_crashed(kit: ragkit.Workspace) -> None:
    dead = kit.store.start_run("reindex", 2**22 + 12345, socket.gethostname())
    runs = json.loads(runner.invoke(app, ["runs", "-w", str(kit.root), "--json"]).stdout)
    assert runs[0]["run_id"] == dead and runs[0]["status"] == "crashed"
    _run(kit, "ingest", {})  # the next job records it so
    assert kit.store.run(dead)["status"] == "crashed"


def test_run_ids_only_grow_even_after_the_newest_rows_are_deleted(kit: ragkit.Workspace) -> None:
    ids = [_run(kit, "ingest", {}) for _ in range(3)]
    kit.store._exec("DELETE FROM runs WHERE run_id=?", (ids[-1],))
    assert _run(kit, "ingest", {}) > ids[-1]  # AUTOINCREMENT, not max(id) + 1 nor the clock


def test_the_runner_prunes_old_runs_but_never_a_running_one(kit: ragkit.Workspace) -> None:
    kit.config.runs.keep = 3
    alive = kit.store.start_run("serve", None, "another-host")  # never reaped, never pruned
    ids = [_run(kit, "ingest", {}) for _ in range(6)]
    left = [r["run_id"] for r in kit.store.runs(limit=50)]
    # pruned at each job's start: the 3 newest before the last job, plus the last one
    assert left == [*reversed(ids[-4:]), alive]
    assert kit.store.run(alive)["status"] == "running"


def test_keep_days_prunes_by_age(kit: ragkit.Workspace) -> None:
    old = _run(kit, "ingest", {})
    kit.store._exec("UPDATE runs SET started = started - 40 * 86400 WHERE run_id=?", (old,))
    kit.config.runs.keep_days = 30
    newer = _run(kit, "ingest", {})
    assert [r["run_id"] for r in kit.store.runs()] == [newer]


def test_runs_settings_are_validated(tmp_path: Path) -> None:
    (tmp_path / "ragkit.toml").write_text("[runs]\nkeep = -1\n", encoding="utf-8")
    with pytest.raises(ragkit.errors.ConfigError, match=r"\[runs\] keep"):
        ragkit.WorkspaceConfig.load(tmp_path / "ragkit.toml")
