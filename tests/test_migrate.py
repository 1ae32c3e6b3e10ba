"""``ragkit migrate``: plan, resumable shadow backfill with ingests meanwhile, gate, atomic
cutover, rollback, finalize, abort — on real tiny encoders, FAISS and SQLite."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_model, corpus_words
from test_ingest import write
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.errors import MigrationRefusedError, WorkspaceError
from ragkit.pipelines import migrate


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny encoders on disk over one vocabulary: a (64-d), b (64-d, other weights), wide
    (96-d), flat, whose every word has the same vector (it cannot rank anything), and turned:
    a's vectors rotated."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    import torch

    for name, dim, seed in (
        ("a", 64, 0), ("b", 64, 1), ("wide", 96, 2), ("flat", 64, 3), ("turned", 64, 0)
    ):  # fmt: skip
        model = build_tiny_model(dim=dim, seed=seed)
        with torch.no_grad():
            weights = model[0].embedding.weight
            if name == "flat":
                weights.copy_(weights[2].expand_as(weights))
            if name == "turned":  # a's space, rotated: an orthogonal map recovers it exactly
                rotation, _ = torch.linalg.qr(
                    torch.randn(dim, dim, generator=torch.Generator().manual_seed(5))
                )
                weights.copy_(weights @ rotation)
        model.save(str(root / name))
        out[name] = root / name
    return out


def make_corpus(root: Path, n: int = 40, seed: int = 0) -> Path:
    """``n`` markdown files of ten-word sentences drawn from the models' vocabulary."""
    rng = random.Random(seed)
    words = [w for w in corpus_words() if w.isalpha() and len(w) > 3][:400]
    for i in range(n):
        sentences = [" ".join(rng.choices(words, k=10)) + "." for _ in range(6)]
        write(root / f"doc{i:03d}.md", f"# title {i}\n\n" + " ".join(sentences) + "\n")
    return root


def open_with(root: Path, model: Path) -> ragkit.Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model}"\n', encoding="utf-8")
    return ragkit.open(root, create=True)


def shadow_state(kit: ragkit.Workspace, name: str) -> tuple[list[int], np.ndarray]:
    collection = kit.collection(name)
    assert collection is not None and collection.name == name
    dense = collection.load_dense()
    ids = np.sort(dense.ids())
    _, vectors, _ = collection.vectors_from_cache()
    return ids.tolist(), vectors


def test_plan_writes_nothing_and_counts_what_the_cache_holds(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=12)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        before = (
            kit.store.counts(),
            kit.store.collections(),
            (kit.root / "ragkit.toml").read_text(),
        )
        plan = migrate.plan_migration(kit, to=str(models["wide"]))
        assert (kit.store.counts(), kit.store.collections()) == before[:2]
        assert (kit.root / "ragkit.toml").read_text() == before[2]
        fields = {c.field for c in plan.changes}
        assert {"encoder", "encoder.dim"} <= fields and plan.dims == (64, 96)
        assert plan.chunks == kit.store.counts()["chunks"] and plan.cached == 0
        assert plan.to_encode == plan.chunks and plan.sample_rate and plan.sample_rate > 0
        assert plan.disk_bytes > plan.chunks * 96 * 4
        # the plan of the source's own spec is empty
        assert migrate.plan_migration(kit, to=None).empty


def test_backfill_cutover_rollback_finalize_on_a_dimension_change(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=40)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        source = kit.collection().name
        result = migrate.start(kit, to=str(models["wide"]), batch_chunks=8)
        assert result["state"] == "ready" and result["batches"] >= 5
        target = result["target"]
        assert kit.collection(target).state == "building"
        assert kit.doctor().ok
        ids, _ = shadow_state(kit, target)
        assert ids == kit.store.all_chunk_ids(kit.collection(target).chunking_fp).tolist()
        moved = migrate.cutover(kit, tolerance=1.0)
        assert moved["live"] == target and kit.collection().name == target
        assert kit.collection(source).state == "retired"
        assert kit.collection().record.dim == 96 and len(kit.query("title", k=3)) == 3
        assert "wide" in (kit.root / "ragkit.toml").read_text()
        assert not kit.status()["collections"][0].get("drift")
        # a retired collection is kept in step: an ingest now reaches it too
        write(corpus / "late.md", "# late\n\nalpha beta gamma delta epsilon zeta.\n")
        kit.ingest(corpus)
        assert kit.doctor().ok
        cached = kit.store.counts()["embeddings"]
        back = migrate.rollback(kit)
        assert back["live"] == source and back["swap_seconds"] < 1.0
        assert kit.collection().name == source and kit.collection(target).state == "retired"
        assert any("late" in h.uri for h in kit.query("alpha beta gamma delta", k=3))
        assert kit.store.counts()["embeddings"] == cached  # nothing was encoded
        migrate.cutover(kit, tolerance=1.0)
        done = migrate.finalize(kit, drop_cache=True)
        assert done["deleted"] == source and done["vectors"] > 0
        assert kit.store.collection(source) is None
        assert not (kit.root / "collections" / source).exists()
        assert kit.doctor().ok
        history = [(m.collection, m.reason) for m in kit.store.alias_history("default")]
        assert [c for c, _ in history[:3]] == [target, source, target]


def test_a_kill_mid_backfill_resumes_to_the_same_shadow(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=30)
    states = []
    for name, steps in (("straight", [None]), ("resumed", [2, 1, None])):
        with open_with(tmp_path / name, models["a"]) as kit:
            kit.ingest(corpus)
            for max_batches in steps:
                result = migrate.start(
                    kit,
                    to=str(models["b"]),
                    chunking={"max_tokens": 24},
                    batch_chunks=10,
                    max_batches=max_batches,
                )
            assert result["state"] == "ready"
            assert kit.doctor().ok
            states.append(shadow_state(kit, result["target"]))
    assert states[0][0] == states[1][0]
    np.testing.assert_array_equal(states[0][1], states[1][1])


def test_ingests_during_the_backfill_reach_the_shadow_and_deletes_stay_deleted(
    tmp_path, models
) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=30)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        first = migrate.start(
            kit, to=str(models["b"]), chunking={"max_tokens": 24}, batch_chunks=10, max_batches=1
        )
        assert first["state"] == "backfilling"
        # delete one document already backfilled and one not yet, update one of each, add one
        (corpus / "doc000.md").unlink()
        (corpus / "doc029.md").unlink()
        write(corpus / "doc001.md", "# changed\n\nquartz zebra quartz zebra.\n")
        write(corpus / "doc028.md", "# changed too\n\nmaple quartz maple.\n")
        write(corpus / "new.md", "# new\n\nbrand new words here.\n")
        report = kit.ingest(corpus)
        assert report.documents_deleted == 2 and report.documents_updated == 2
        result = migrate.start(kit, batch_chunks=10)
        assert result["state"] == "ready"
        assert kit.doctor().ok
        target = kit.collection(result["target"])
        rows = kit.store.chunk_rows(target.load_dense().ids().tolist())
        uris = {row["uri"] for row in rows.values()}
        assert not any(u.endswith(("doc000.md", "doc029.md")) for u in uris)
        assert any(u.endswith("new.md") for u in uris)
        texts = " ".join(row["text"] for row in rows.values())
        assert "quartz zebra" in texts and "maple quartz" in texts
        assert kit.store.count_chunks(target.chunking_fp) == len(rows)


def test_the_gate_refuses_a_worse_shadow_and_force_overrides_it(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=30)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        source = kit.collection().name
        migrate.start(kit, to=str(models["flat"]))
        with pytest.raises(MigrationRefusedError, match="worse") as refused:
            migrate.cutover(kit)
        assert "generated" in str(refused.value)
        assert kit.collection().name == source
        gate = kit.store.open_migration("default").gate
        assert gate["target"][gate["mode"]] < gate["source"][gate["mode"]] and not gate["passed"]
        moved = migrate.cutover(kit, force=True)
        assert moved["gate"]["forced"] and kit.collection().name != source
        # abort is refused once cut over; rollback then abort drops the shadow
        with pytest.raises(MigrationRefusedError, match="rollback"):
            migrate.abort(kit)
        migrate.rollback(kit)
        shadow = kit.store.open_migration("default").target
        migrate.abort(kit)
        assert kit.store.collection(shadow) is None and kit.collection().name == source
        assert kit.store.open_migration("default") is None and kit.doctor().ok


def test_cutover_refuses_an_incomplete_backfill(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=20)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        migrate.start(kit, to=str(models["b"]), batch_chunks=4, max_batches=1)
        with pytest.raises(MigrationRefusedError, match="not complete"):
            migrate.cutover(kit, force=True)
        report = kit.doctor()
        assert report.ok, report.to_dict()
        status = migrate.migration_status(kit)
        assert 0 < status["progress"] < 1 and status["documents_left"] > 0
        with pytest.raises(WorkspaceError, match="resume"):
            migrate.start(kit, to=str(models["wide"]))


def test_queries_during_the_whole_migration_never_fail_or_mix(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    """Every answer seen while plan → backfill → cutover → rollback → cutover → finalize run
    is exactly the old collection's or exactly the new one's: no error, no empty answer."""
    corpus = make_corpus(tmp_path / "docs", n=30)
    query = "title alpha"

    def answer(kit: ragkit.Workspace, **where) -> tuple:  # type: ignore[no-untyped-def]
        return tuple(
            (h.chunk_id, round(h.score, 5)) for h in kit.query(query, k=5, mode="dense", **where)
        )

    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        old = answer(kit)
    stop = threading.Event()
    answers: dict[tuple, int] = {}
    errors: list[str] = []

    def ask() -> None:
        with ragkit.open(tmp_path / "ws", create=False) as reader:
            while not stop.is_set():
                try:
                    got = answer(reader)
                except Exception as exc:  # recorded: the test asserts there are none
                    errors.append(repr(exc))
                    continue
                answers[got] = answers.get(got, 0) + 1

    thread = threading.Thread(target=ask)
    thread.start()
    try:
        with ragkit.open(tmp_path / "ws", create=False) as kit:
            migrate.plan_migration(kit, to=str(models["wide"]))
            started = migrate.start(kit, to=str(models["wide"]), batch_chunks=6)
            new = answer(kit, collection=started["target"])
            for step in (
                lambda: migrate.cutover(kit, tolerance=1.0),
                lambda: migrate.rollback(kit),
                lambda: migrate.cutover(kit, tolerance=1.0),
                lambda: migrate.finalize(kit),
            ):
                time.sleep(0.2)
                step()
            time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert sum(answers.values()) > 20 and old != new
    assert set(answers) <= {old, new} and () not in answers
    assert answers.get(new, 0) > 0 and answers.get(old, 0) > 0


def test_the_cli_runs_a_migration_end_to_end(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=12)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
    runner = CliRunner()
    ws = ["-w", str(tmp_path / "ws")]
    plan = runner.invoke(app, ["migrate", "plan", *ws, "--to", str(models["wide"]), "--json"])
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.output)["dims"] == [64, 96]
    assert runner.invoke(app, ["migrate", "cutover", *ws]).exit_code == 1  # nothing open
    started = runner.invoke(app, ["migrate", "start", *ws, "--to", str(models["flat"]), "-q"])
    assert started.exit_code == 0, started.output
    refused = runner.invoke(app, ["migrate", "cutover", *ws])
    assert refused.exit_code == 4 and "worse" in refused.output
    status = runner.invoke(app, ["migrate", "status", *ws, "--json"])
    assert json.loads(status.output)["open"]["state"] == "ready"
    shown = runner.invoke(app, ["status", *ws])
    assert shown.exit_code == 0 and "migration #1 of default ready" in shown.output
    human = runner.invoke(app, ["migrate", "status", *ws, "--eval"])
    assert human.exit_code == 0 and "generated from the corpus" in human.output
    assert "ragkit.toml differs" not in shown.output  # a shadow differs from it on purpose
    assert runner.invoke(app, ["migrate", "abort", *ws]).exit_code == 0
    assert runner.invoke(app, ["migrate", "--help"]).exit_code == 0
    # the human-readable output of every step
    human = runner.invoke(app, ["migrate", "plan", *ws, "--to", str(models["wide"])])
    assert human.exit_code == 0 and "encoder.dim" in human.output and "384" not in human.output
    assert "64 → 96" in " ".join(human.output.split())
    steps = [
        (["start", "--to", str(models["wide"]), "-q"], "is ready"),
        (["adapter", "--kind", "affine"], "of the new model's"),
        (["cutover", "--tolerance", "1"], "alias default →"),
        (["rollback"], "rolled-back"),
        (["cutover", "--force"], "cutover"),
        (["finalize", "--drop-cache"], "finalized"),
        (["status"], "no open migration"),
    ]
    for args, expect in steps:
        done = runner.invoke(app, ["migrate", args[0], *ws, *args[1:]])
        assert done.exit_code == 0, (args, done.output)
        assert expect in " ".join(done.output.split()), (args, done.output)


CHILD = """
import sys
import ragkit
from ragkit.pipelines import migrate

def progress(event, n):
    if event == "documents":
        print("batch", flush=True)

with ragkit.open(sys.argv[1], create=False) as kit:
    result = migrate.start(
        kit, to=sys.argv[2], chunking={"max_tokens": 24}, batch_chunks=4, progress=progress
    )
    print("OK", result["state"], flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_random_points_of_a_backfill_then_resume(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    """kill -9 mid-backfill, several times, then finish: the shadow equals one built without
    interruption (same chunk ids, same vectors), doctor clean, the killed runs crashed. Each
    kill lands after a random number of committed batches plus a random delay, so it falls
    inside the backfill however loaded the machine is."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    corpus = make_corpus(tmp_path / "docs", n=240)
    for name in ("straight", "killed"):
        with open_with(tmp_path / name, models["a"]) as kit:
            kit.ingest(corpus)
    command = [sys.executable, str(script), str(tmp_path / "straight"), str(models["b"])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "OK ready" in done.stdout, done.stderr
    batches = done.stdout.count("batch")
    assert batches >= 60  # many short batches: each kill lands inside the backfill
    command[2] = str(tmp_path / "killed")
    rng = random.Random(7)
    killed = 0
    for _ in range(8):  # until five kills caught a run in flight, or the backfill is done
        if killed >= 5:
            break
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert child.stdout is not None
        wait_for = rng.randint(1, 3)  # the first line is the count resumed from
        seen, finished = 0, False
        for line in child.stdout:
            seen += line.startswith("batch")
            finished = line.startswith("OK")
            if seen > wait_for or finished:
                break
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere inside the next batch
        if child.poll() is None and not finished:  # a run that printed OK is done: no kill
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed += _last_migrate_run(tmp_path / "killed") == "running"  # killed mid-run
        child.wait()
        child.stdout.close()
        if finished:
            break  # the backfill is complete: nothing left to interrupt
    assert killed >= 3, f"only {killed} runs were killed mid-run"
    finish = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0 and "OK ready" in finish.stdout, finish.stderr
    states = []
    for name in ("straight", "killed"):
        with ragkit.open(tmp_path / name, create=False) as kit:
            migration = kit.store.open_migration("default")
            assert migration.state == "ready" and kit.doctor().ok
            states.append(shadow_state(kit, migration.target))
            statuses = [r["status"] for r in kit.store.runs(limit=50, kind="migrate")]
            if name == "killed":
                assert statuses[0] == "ok" and "running" not in statuses
                assert statuses.count("crashed") >= killed
    assert states[0][0] == states[1][0]
    np.testing.assert_array_equal(states[0][1], states[1][1])


def _last_migrate_run(root: Path) -> str:
    import sqlite3

    with sqlite3.connect(root / "store.sqlite") as db:
        row = db.execute(
            "SELECT status FROM runs WHERE kind='migrate' ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
    return row[0] if row else ""


def test_a_query_adapter_serves_when_the_old_model_is_gone(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    import shutil

    corpus = make_corpus(tmp_path / "docs", n=80)
    old_model = tmp_path / "old-model"
    shutil.copytree(models["a"], old_model)
    with open_with(tmp_path / "ws", old_model) as kit:
        kit.ingest(corpus)
        expected = [h.chunk_id for h in kit.query("title alpha", k=5, mode="dense")]
        migrate.start(kit, to=str(models["turned"]), batch_chunks=8, max_batches=6)
        # below its threshold an adapter is measured, refused with the figure, and not served
        with pytest.raises(MigrationRefusedError, match=r"keeps [01]\.\d+ of the new model's"):
            migrate.fit_query_adapter(kit, kind="affine", serve=True, queries=40, threshold=1.01)
        assert kit.store.open_migration("default").adapter["serving"] is False
        info = migrate.fit_query_adapter(kit, kind="procrustes", serve=True, queries=40)
        assert info["serving"] and info["relative_recall_at_10"] >= 0.95
        assert info["agreement_at_10"] >= 0.95  # a rotation: the same ranking
        assert info["fit_pairs"] >= 20 and info["held_out_queries"] >= 20
    shutil.rmtree(old_model)  # the provider switched the old model off
    with ragkit.open(tmp_path / "ws", create=False) as kit:
        served = [h.chunk_id for h in kit.query("title alpha", k=5, mode="dense")]
        assert served == expected  # the new model's queries, mapped into the old space
        assert kit.query("title alpha", k=5)  # hybrid too: the sparse channel is unchanged
        migrate.stop_adapter(kit)
        with pytest.raises(Exception, match="old-model"):
            kit.query("title alpha", k=5, mode="dense")


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"index": {"kind": "hnsw"}}, "index.kind"),
        ({"index": {"kind": "int8"}}, "index.kind"),
        ({"index": {"backend": "qdrant"}}, "index.backend"),
        ({"sparse": "splade"}, "sparse"),
        ({"sparse": "none"}, "sparse"),
    ],
    ids=["flat-to-hnsw", "flat-to-int8", "faiss-to-qdrant", "bm25-to-splade", "bm25-to-none"],
)
def test_index_kind_backend_and_sparse_channel_migrate_with_edits_meanwhile(
    tmp_path, models, change, expect
) -> None:  # type: ignore[no-untyped-def]
    """The same encoder (every vector from the cache) onto another index kind, backend or
    sparse channel, with a delete, an update and an add between two backfill batches: HNSW and
    trained kinds rebuild from the part of the cache the shadow has so far."""
    corpus = make_corpus(tmp_path / "docs", n=24)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        plan = migrate.plan_migration(kit, **change)
        assert expect in {c.field for c in plan.changes} and plan.to_encode == 0
        first = migrate.start(kit, batch_chunks=6, max_batches=1, **change)
        assert first["state"] == "backfilling" and first["encoded"] == 0
        (corpus / "doc003.md").unlink()
        (corpus / "doc020.md").unlink()
        write(corpus / "doc001.md", "# changed\n\nquartz zebra quartz zebra.\n")
        write(corpus / "extra.md", "# extra\n\nmaple quartz maple.\n")
        kit.ingest(corpus)
        assert kit.doctor().ok
        result = migrate.start(kit, batch_chunks=6)
        assert result["state"] == "ready"
        report = kit.doctor()
        assert report.ok, report.to_dict()
        shadow = kit.collection(result["target"])
        stored = kit.store.all_chunk_ids(shadow.chunking_fp).tolist()
        assert shadow_state(kit, shadow.name)[0] == stored
        rows = kit.store.chunk_rows(stored).values()
        uris = {row["uri"].rsplit("/", 1)[-1] for row in rows}
        assert "extra.md" in uris and not uris & {"doc003.md", "doc020.md"}
        assert any(row["text"].startswith("quartz zebra") for row in rows)
        assert len(kit.query("title alpha", k=3, collection=shadow.name)) == 3
        migrate.cutover(kit, tolerance=1.0)
        assert kit.collection().name == shadow.name
        modes = kit.available_modes()
        assert ("hybrid" in modes) == (change.get("sparse") != "none")
        assert kit.doctor().ok


def test_to_names_a_registered_model_a_preset_or_a_served_model(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipelines.migrate.target import resolve_target
    from ragkit.training.model_card import register_model

    corpus = make_corpus(tmp_path / "docs", n=6)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        register_model(
            kit.root,
            {
                "name": "tuned",
                "path": str(models["b"]),
                "encoder": {"model": str(models["b"]), "query_prompt": "q: "},
            },
        )
        source = kit.collection()
        tuned = resolve_target(kit, source, "tuned").encoder
        assert (tuned.model, tuned.query_prompt) == (str(models["b"]), "q: ")
        assert (
            resolve_target(kit, source, "gemini-embedding-001").encoder.preset
            == "gemini-embedding-001"
        )
        served = resolve_target(kit, source, "openai:text-embedding-3-small").encoder
        assert (served.provider, served.model) == ("openai", "text-embedding-3-small")
        plain = resolve_target(
            kit, source, str(models["wide"]), index={"kind": "hnsw", "hnsw_m": "16"}
        )
        assert plain.encoder.provider == "sentence-transformers" and plain.index.hnsw_m == 16
        with pytest.raises(Exception, match="no nonsense"):
            resolve_target(kit, source, None, index={"nonsense": 1})
        plan = migrate.plan_migration(kit, to="tuned")
        assert plan.target_described == "tuned" and plan.dims == (64, 64)
        assert any(c.field == "encoder.query_prompt" for c in plan.changes)


def test_a_reader_loads_the_new_encoder_before_the_cutover(tmp_path, models, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Once the shadow is ready, a querying process loads its encoder in the background, so
    the first query after the cutover pays no model load."""
    from ragkit.retrieval import migration_queries

    monkeypatch.setattr(migration_queries, "WARM_EVERY", 0.0)
    corpus = make_corpus(tmp_path / "docs", n=10)
    with open_with(tmp_path / "ws", models["a"]) as kit:
        kit.ingest(corpus)
        migrate.start(kit, to=str(models["wide"]))
        target = kit.collection(kit.store.open_migration("default").target)
    with ragkit.open(tmp_path / "ws", create=False) as reader:
        fingerprint = target.record.model_fp
        reader.query("title alpha", k=3)
        for _ in range(100):
            if fingerprint in reader.parts._encoders:
                break
            time.sleep(0.1)
        assert fingerprint in reader.parts._encoders


def test_finalize_deletes_a_qdrant_collection_kept_outside_the_workspace(tmp_path, models) -> None:  # type: ignore[no-untyped-def]
    """A Qdrant store at an explicit qdrant_path is not under the collection's folder:
    finalize deletes the retired collection's Qdrant collection itself."""
    from ragkit.indexes.qdrant_index import _LocalClients

    corpus = make_corpus(tmp_path / "docs", n=8)
    store = tmp_path / "qdrant-store"
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ragkit.toml").write_text(
        f'[encoder]\nmodel = "{models["a"]}"\n[index]\nbackend = "qdrant"\nqdrant_path = "{store}"\n',
        encoding="utf-8",
    )
    with ragkit.open(root, create=True) as kit:
        kit.ingest(corpus)
        source = kit.collection()
        dense = source.load_dense()
        held = dense.collection
        dense.close()
        migrate.start(kit, index={"backend": "faiss"})
        migrate.cutover(kit, tolerance=1.0)
        migrate.finalize(kit)
        assert kit.doctor().ok
    # the process's own client of that folder (a reader of the workspace may still hold it)
    client = _LocalClients.acquire(str(store.resolve()))
    try:
        assert held and not client.collection_exists(held)
    finally:
        _LocalClients.release(str(store.resolve()))
