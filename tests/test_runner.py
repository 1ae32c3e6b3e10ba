"""The job runner (pipelines/_runner.py): one lock per job tree, the runs row, checkpoints,
crashed-run reaping, Ctrl-C, and secrets kept out of the recorded parameters."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.errors import WorkspaceLockedError
from ragkit.lock import WorkspaceLock
from ragkit.pipelines._runner import MASK, job, public_params, runner_for
from ragkit.store import SCHEMA_VERSION

FIXTURE = Path(__file__).parent / "fixtures" / "workspace-v1"


@pytest.fixture
def kit(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A workspace without an encoder: the runner never needs one."""
    with ragkit.open(tmp_path / "ws", create=True) as workspace:
        yield workspace


def lock_is_free(root: Path) -> bool:
    other = WorkspaceLock(root / "write.lock")
    try:
        other.acquire(wait=0)
    except WorkspaceLockedError:
        return False
    other.release()
    return True


def test_a_job_records_kind_params_counts_duration_and_status(kit: ragkit.Workspace) -> None:
    with job(kit, "ingest", {"paths": [Path("docs")], "commit_every": 10}) as run:
        assert kit.lock.held and not lock_is_free(kit.root)
        run.outcome(False, {"files_failed": 1})
    assert not kit.lock.held and lock_is_free(kit.root)
    (row,) = kit.store.runs()
    assert (row["kind"], row["status"], row["error"]) == ("ingest", "partial", None)
    assert row["run_id"] == run.run_id and row["parent_id"] is None
    assert row["params"] == {"paths": ["docs"], "commit_every": 10}
    assert row["stats"] == {"files_failed": 1}
    assert row["seconds"] is not None and row["seconds"] >= 0
    assert kit.status()["runs"] == [row]  # `ragkit status` shows the last run


def test_secrets_are_masked_in_the_recorded_params(kit: ragkit.Workspace) -> None:
    params = {
        "model": "m",
        "api_key": "sk-1",
        "OPENAI_API_KEY": "sk-2",
        "encoder": {"hf_token": "hf_x", "url": "http://e"},
        "auth": [{"password": "p"}, {"refresh-token": "t"}],
        "client_secret": "s",
    }
    with job(kit, "ingest", params):
        pass
    recorded = kit.store.runs()[0]["params"]
    assert recorded == {
        "model": "m",
        "api_key": MASK,
        "OPENAI_API_KEY": MASK,
        "encoder": {"hf_token": MASK, "url": "http://e"},
        "auth": [{"password": MASK}, {"refresh-token": MASK}],
        "client_secret": MASK,
    }
    (raw,) = kit.store._query("SELECT params_json FROM runs")
    assert not any(secret in raw[0] for secret in ("sk-1", "sk-2", "hf_x", '"p"', '"t"', '"s"'))
    assert public_params({"tokens_per_chunk": 5}) == {"tokens_per_chunk": MASK}  # erring safe


def test_an_inner_job_reuses_the_lock_and_is_its_own_row(kit: ragkit.Workspace) -> None:
    with job(kit, "reindex", {"to": "b"}, wait=0) as outer:
        # waiting on its own lock would deadlock: the inner job must not take it again
        with outer.job("ingest", {"paths": []}) as inner:
            assert kit.lock.held and runner_for(kit).current is inner
            inner.outcome(True, {"commits": 1})
        assert kit.lock.held  # the inner job leaves the outer job's lock alone
        with job(kit, "repair", {}) as second:  # reached through the module, same stack
            assert second.parent_id == outer.run_id
    assert lock_is_free(kit.root)
    rows = {row["kind"]: row for row in kit.store.runs()}
    assert rows["ingest"]["parent_id"] == rows["repair"]["parent_id"] == outer.run_id
    assert rows["reindex"]["parent_id"] is None
    assert rows["ingest"]["stats"] == {"commits": 1}
    assert {row["status"] for row in rows.values()} == {"ok"}


def test_a_failing_inner_job_fails_both_and_releases_the_lock(kit: ragkit.Workspace) -> None:
    runner = runner_for(kit)
    with (
        pytest.raises(RuntimeError, match="disk full"),
        runner.job("migrate"),
        job(kit, "backfill"),
    ):
        raise RuntimeError("disk full")
    rows = kit.store.runs()
    assert [(r["kind"], r["status"], r["error"]) for r in rows] == [
        ("backfill", "failed", "RuntimeError: disk full"),
        ("migrate", "failed", "RuntimeError: disk full"),
    ]
    assert lock_is_free(kit.root) and runner_for(kit).current is None


def test_ctrl_c_marks_the_run_failed_interrupted_and_releases_the_lock(
    kit: ragkit.Workspace,
) -> None:
    with pytest.raises(KeyboardInterrupt), job(kit, "ingest") as run:
        run.outcome(True, {"commits": 2})
        raise KeyboardInterrupt
    (row,) = kit.store.runs()
    assert (row["status"], row["error"], row["stats"]) == ("failed", "interrupted", {"commits": 2})
    assert row["finished"] is not None
    assert not kit.lock.held and lock_is_free(kit.root)


def test_checkpoints_survive_a_failed_run_and_are_cleared_by_a_finished_one(
    kit: ragkit.Workspace,
) -> None:
    with pytest.raises(RuntimeError), job(kit, "backfill") as run:
        assert run.resume_point("last_chunk") is None
        run.checkpoint("last_chunk", 500)
        run.checkpoint("done", {"docs": ["a", "b"]})
        raise RuntimeError("killed halfway")
    with job(kit, "ingest") as other:  # checkpoints are per kind: another job sees none
        assert other.resume_point("last_chunk", default=0) == 0
    with job(kit, "backfill") as run:
        assert run.resume_point("last_chunk") == 500
        assert run.resume_point("done") == {"docs": ["a", "b"]}
    with job(kit, "backfill") as run:  # that run finished: the next one starts over
        assert run.resume_point("last_chunk") is None
    assert kit.store._query("SELECT * FROM checkpoints") == []


def test_a_checkpoint_commits_with_the_transaction_it_is_written_in(
    kit: ragkit.Workspace,
) -> None:
    with pytest.raises(RuntimeError), job(kit, "backfill") as run:
        with kit.store.transaction():
            run.checkpoint("last_chunk", 100)
        with kit.store.transaction():
            run.checkpoint("last_chunk", 200)
            raise RuntimeError("the batch did not commit, so neither did its checkpoint")
    with job(kit, "backfill") as run:
        assert run.resume_point("last_chunk") == 100


_SLEEPER = textwrap.dedent(
    """
    import sys, time
    import ragkit
    from ragkit.pipelines._runner import job

    kit = ragkit.open(sys.argv[1], create=True)
    with job(kit, "ingest", {"paths": ["docs"]}):
        print("started", flush=True)
        time.sleep(120)
    """
)


def test_a_run_killed_by_sigkill_is_marked_crashed_by_the_next_job(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ragkit.open(root, create=True).close()
    command = [sys.executable, "-c", _SLEEPER, str(root)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "started"
        finally:
            child.send_signal(signal.SIGKILL)  # the exit waits for it: no zombie is left
    with ragkit.open(root, create=True) as kit:
        (row,) = kit.store.runs()
        assert row["status"] == "running" and row["finished"] is None  # as the kill left it
        # another host's running row cannot be checked from here: it is left alone
        foreign = kit.store.start_run("ingest", child.pid, "elsewhere")
        with job(kit, "repair"):  # the kernel let go of the lock with the process
            pass
        rows = {row["run_id"]: row for row in kit.store.runs()}
    assert rows[row["run_id"]]["status"] == "crashed"
    assert f"process {child.pid}" in rows[row["run_id"]]["error"]
    assert rows[row["run_id"]]["finished"] is None
    assert rows[foreign]["status"] == "running"


def test_a_live_writers_run_is_not_reaped(kit: ragkit.Workspace) -> None:
    """A running row whose process is alive (here: pytest's parent) stays ``running``."""
    alive = kit.store.start_run("ingest", os.getppid(), socket.gethostname())
    with job(kit, "repair"):
        pass
    assert {r["run_id"]: r["status"] for r in kit.store.runs()}[alive] == "running"


def test_wait_takes_the_lock_once_the_holder_lets_go(kit: ragkit.Workspace) -> None:
    holder = WorkspaceLock(kit.root / "write.lock")
    holder.acquire()
    threading.Timer(0.4, holder.release).start()
    started = time.monotonic()
    with job(kit, "ingest", wait=10):
        pass
    assert 0.3 < time.monotonic() - started < 5
    assert kit.store.runs()[0]["status"] == "ok"


def test_wait_timing_out_exits_75_and_records_nothing(tmp_path: Path) -> None:
    root, docs = tmp_path / "ws", tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha\n", encoding="utf-8")
    ragkit.open(root, create=True).close()
    config_before = (root / "ragkit.toml").read_bytes()
    holder = WorkspaceLock(root / "write.lock")
    holder.acquire()
    try:
        started = time.monotonic()
        result = CliRunner().invoke(app, ["ingest", str(docs), "-w", str(root), "--wait", "0.6"])
        waited = time.monotonic() - started
    finally:
        holder.release()
    assert result.exit_code == 75 and "another ragkit job" in result.output
    assert waited >= 0.6
    with ragkit.open(root, create=True) as kit:
        assert kit.store.runs() == []  # refused before anything was recorded
    assert (root / "ragkit.toml").read_bytes() == config_before


def test_the_runner_upgrades_an_older_store_under_the_lock(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE / "ws", tmp_path / "ws")
    with ragkit.open(tmp_path / "ws", create=False) as kit:
        assert kit.store.schema_version == 1
        assert kit.status()["runs"][0]["params"] == {}  # a reader of the old table
        with job(kit, "repair"):
            assert kit.store.schema_version == SCHEMA_VERSION
        assert kit.store.runs()[0]["kind"] == "repair"


def test_ragkit_status_shows_the_last_run(kit: ragkit.Workspace) -> None:
    with pytest.raises(KeyboardInterrupt), job(kit, "repair"):
        raise KeyboardInterrupt
    result = CliRunner().invoke(app, ["status", "-w", str(kit.root)])
    assert result.exit_code == 0, result.output
    assert "last run repair failed" in result.output and "interrupted" in result.output
