"""``ragkit reindex``: incremental, idempotent, guarded against lost mounts, loud on write errors."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.collection import CollectionWriter
from ragkit.pipelines.reindex import ReindexError, reindex

runner = CliRunner()


def _index_state(kit: ragkit.Workspace) -> tuple[int, dict[str, int]]:
    """The committed generation and the mtime of every index file: what an index write moves."""
    collection = kit.collection()
    assert collection is not None
    files = {p.name: p.stat().st_mtime_ns for p in collection.dir.iterdir()}
    return collection.record.generation, files


def test_reindex_takes_new_changed_and_deleted_files_and_counts_them_per_source(
    workspace, docs
) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    (docs / "new.md").write_text("# New\n\nzfs pool raid\n", encoding="utf-8")
    (docs / "fruit.txt").write_text("apple banana and more banana now\n", encoding="utf-8")
    (docs / "sub" / "net.md").unlink()
    report = reindex(workspace)
    (source,) = report.sources
    assert (source.added, source.updated, source.deleted, source.unchanged) == (1, 1, 1, 1)
    assert source.failed == 0 and report.ok and report.doctor_ok
    assert workspace.query("zfs pool raid", k=1)[0].uri == "new.md"
    runs = workspace.store.runs(limit=2)
    assert [r["kind"] for r in runs] == ["ingest", "reindex"]
    inner, outer = runs
    assert inner["parent_id"] == outer["run_id"] == report.run_id
    assert outer["status"] == inner["status"] == "ok"
    assert outer["stats"]["added"] == 1 and outer["stats"]["deleted"] == 1
    assert outer["stats"]["generations"] == report.generations


def test_a_second_reindex_makes_no_encoder_calls_and_no_index_writes(
    workspace, docs, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    (docs / "fruit.txt").write_text("cherry plum\n", encoding="utf-8")
    first = reindex(workspace)
    assert first.encoder_calls > 0 and first.commits == 1
    before = _index_state(workspace)
    calls: list[int] = []
    encode = workspace.encoder.encode_documents
    monkeypatch.setattr(
        workspace.encoder,
        "encode_documents",
        lambda texts, *a, **k: calls.append(len(texts)) or encode(texts, *a, **k),
    )
    second = reindex(workspace)
    assert calls == [] and second.encoder_calls == 0 and second.commits == 0
    assert _index_state(workspace) == before  # no new generation, no file rewritten
    assert second.generations == first.generations
    (source,) = second.sources
    assert (source.added, source.updated, source.deleted, source.unchanged) == (0, 0, 0, 3)


def test_a_suddenly_empty_source_deletes_nothing_and_fails_the_run(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    chunks = workspace.store.counts()["chunks"]
    generation = workspace.collection().record.generation
    shutil.rmtree(docs)
    docs.mkdir()  # an unmounted mount point: there, but empty
    with pytest.raises(ReindexError, match="found no files where the store has 3") as caught:
        reindex(workspace)
    assert caught.value.report is not None and caught.value.report.sources[0].refused
    assert workspace.store.counts()["chunks"] == chunks
    assert workspace.collection().record.generation == generation
    outer = workspace.store.runs(limit=2)[1]
    assert outer["kind"] == "reindex" and outer["status"] == "failed"
    assert "--allow-empty" in outer["error"]
    report = reindex(workspace, allow_empty=True)
    assert report.sources[0].deleted == 3 and workspace.store.counts()["chunks"] == 0


def test_a_missing_source_root_deletes_nothing_and_fails_the_run(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    chunks = workspace.store.counts()["chunks"]
    shutil.rmtree(docs)
    with pytest.raises(ReindexError, match="does not exist"):
        reindex(workspace, allow_empty=True)  # never for a root that is gone
    assert workspace.store.counts()["chunks"] == chunks


def test_max_delete_fraction_refuses_a_mass_deletion(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    (docs / "pets.md").unlink()
    (docs / "fruit.txt").unlink()
    with pytest.raises(ReindexError, match="2 of 3 files would be deleted"):
        reindex(workspace, max_delete_fraction=0.5)
    assert workspace.store.counts()["documents"] == 3
    assert reindex(workspace, max_delete_fraction=0.7).sources[0].deleted == 2


@pytest.fixture
def cli_ws(tmp_path: Path, tiny_model, docs) -> Path:  # type: ignore[no-untyped-def]
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n', encoding="utf-8")
    assert runner.invoke(app, ["ingest", str(docs), "-w", str(ws)]).exit_code == 0
    return ws


def test_cli_reindex_json_report_and_exit_3_keeps_a_failed_files_last_version(
    cli_ws: Path, docs: Path
) -> None:
    (docs / "fruit.txt").write_bytes(b"\x00\x00\x00 now binary")
    result = runner.invoke(app, ["reindex", "-w", str(cli_ws), "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert report["sources"][0]["failed"] == 1 and report["doctor_ok"] is True
    assert report["ingest"]["failures"][0]["path"].endswith("fruit.txt")
    with ragkit.open(cli_ws, create=False) as kit:
        assert kit.store.counts()["documents"] == 3  # fruit.txt's last good version stays
        assert kit.store.runs(limit=2)[1]["status"] == "partial"


def test_cli_reindex_of_an_emptied_source_exits_1_with_the_reason(cli_ws: Path, docs: Path) -> None:
    shutil.rmtree(docs)
    docs.mkdir()
    result = runner.invoke(app, ["reindex", "-w", str(cli_ws)])
    assert result.exit_code == 1
    assert "found no files" in result.stderr and "--allow-empty" in result.stderr


def test_cli_reindex_exits_75_while_another_job_holds_the_lock(cli_ws: Path) -> None:
    from ragkit.lock import WorkspaceLock

    holder = WorkspaceLock(cli_ws / "write.lock")
    holder.acquire()
    try:
        result = runner.invoke(app, ["reindex", "-w", str(cli_ws), "--wait", "0.2"])
    finally:
        holder.release()
    assert result.exit_code == 75, result.output


def test_a_write_failure_fails_the_run_and_keeps_the_previous_generation(
    workspace, docs, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    generation, _ = _index_state(workspace)
    hits = [h.chunk_id for h in workspace.query("banana cherry", k=3)]
    (docs / "fruit.txt").write_text("cherry plum pear\n", encoding="utf-8")

    def broken_apply(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CollectionWriter, "apply", broken_apply)
    with pytest.raises(OSError, match="No space left"):
        reindex(workspace)
    outer = workspace.store.runs(limit=2)[1]
    assert outer["kind"] == "reindex" and outer["status"] == "failed"
    assert "No space left" in outer["error"]
    monkeypatch.undo()
    assert workspace.collection().record.generation == generation
    assert [h.chunk_id for h in workspace.query("banana cherry", k=3)] == hits
    assert workspace.doctor(quick=True).ok


# -- the property: any sequence of edits, reindexed in any batch size, equals a fresh ingest --
NAMES = ["a.md", "b.txt", "sub/c.md", "sub/d.txt", "e.md"]
TEXTS = [
    "# Cats\n\nthe cat sat on the red apple",
    "banana cherry grape lemon",
    "# Net\n\ndns dhcp subnet router\n\n## More\n\nssh key agent config",
    "zfs pool raid disk storage snapshot backup restore",
    "git rebase merge commit branch bisect hook",
    "one two three four five six seven eight nine ten alpha beta gamma delta",
]
op = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.sampled_from(TEXTS)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.none()),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("touch"), st.sampled_from(NAMES), st.none()),  # identical content
    st.tuples(st.just("reindex"), st.integers(1, 6), st.none()),
)


def _snapshot(kit: ragkit.Workspace) -> dict[str, object]:
    store = kit.store
    collection = kit.collection()
    assert collection is not None
    ids = sorted(store.all_chunk_ids().tolist())
    assert sorted(collection.load_dense().ids().tolist()) == ids
    assert sorted(collection.load_sparse(kit.sparse_channel).ids().tolist()) == ids
    assert kit.doctor(quick=True).ok
    return {
        "documents": sorted(map(tuple, store._query("SELECT doc_id, content_hash FROM documents"))),
        "chunks": sorted(map(tuple, store._query("SELECT doc_id, ordinal, text FROM chunks"))),
        "files": sorted(map(tuple, store._query("SELECT path, content_hash FROM files"))),
    }


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(op, min_size=1, max_size=12))
def test_any_edit_sequence_reindexed_equals_a_fresh_ingest(tiny_encoder, ops) -> None:  # type: ignore[no-untyped-def]
    base = Path(tempfile.mkdtemp(prefix="reindex-prop-"))
    try:
        tree = base / "tree"
        tree.mkdir()
        (tree / "seed.md").write_text("# Seed\n\nbackup restore", encoding="utf-8")
        clock = [1_700_000_000 * 10**9]

        def put(path: Path, text: str) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            clock[0] += 10**9  # every write moves the mtime, whatever the clock's resolution
            os.utime(path, ns=(clock[0], clock[0]))

        with ragkit.open(base / "ws", encoder=tiny_encoder, create=True) as kit:
            kit.ingest(tree, commit_every=3)
            for kind, a, b in ops:
                path = tree / str(a)
                if kind == "write":
                    put(path, str(b))
                elif kind == "delete" and path.exists():
                    path.unlink()
                elif kind == "rename" and path.exists() and a != b:
                    (tree / str(b)).parent.mkdir(parents=True, exist_ok=True)
                    path.replace(tree / str(b))
                elif kind == "touch" and path.exists():
                    put(path, path.read_text(encoding="utf-8"))
                elif kind == "reindex":
                    reindex(kit, commit_every=int(a), allow_empty=True)
            reindex(kit, commit_every=2, allow_empty=True)
            got = _snapshot(kit)
            again = reindex(kit, allow_empty=True)
            assert again.encoder_calls == 0 and again.commits == 0
        with ragkit.open(base / "fresh", encoder=tiny_encoder, create=True) as fresh:
            fresh.ingest(tree)
            assert got == _snapshot(fresh)
    finally:
        shutil.rmtree(base, ignore_errors=True)
