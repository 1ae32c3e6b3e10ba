"""Collections own their spec: several collections over one store, each queried and written
with its own encoder, chunking and sparse channel; ragkit.toml edits reported, never applied;
an alias swap switching collection and query encoder together."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import build_tiny_model
from test_ingest import write
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.config import ChunkingConfig, EncoderConfig, FusionConfig, SparseConfig, WorkspaceConfig
from ragkit.errors import ConfigError, EncoderMismatchError, WorkspaceError

QUERIES = ["dog pear", "dns router", "banana cherry", "the cat sat"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny encoders on disk with the same vocabulary and different weights."""
    root = tmp_path_factory.mktemp("models")
    dirs = root / "a", root / "b"
    for seed, path in enumerate(dirs):
        build_tiny_model(seed=seed).save(str(path))
    return dirs


def open_with(root: Path, model: Path, extra: str = "") -> ragkit.Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model}"\n{extra}', encoding="utf-8")
    return ragkit.open(root, create=True)


def ranking(kit: ragkit.Workspace, query: str, **options) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    return [(h.chunk_id, round(h.score, 5)) for h in kit.query(query, k=3, **options)]


def test_a_second_collection_is_queried_with_its_own_encoder(tmp_path, docs, model_dirs) -> None:  # type: ignore[no-untyped-def]
    a, b = model_dirs
    with open_with(tmp_path / "ws", a) as kit:
        kit.ingest(docs)
        built = kit.create_collection("b", encoder=EncoderConfig(model=str(b)))
        assert built.state == "building" and built.record.spec.encoder.model == str(b)
        assert built.chunking_fp == kit.collection().chunking_fp  # same tokenizer and budget
        assert kit.store.counts()["chunks"] == 4  # shared rows, no copy
        by_b = {q: ranking(kit, q, collection="b", mode="dense") for q in QUERIES}
        by_a = {q: ranking(kit, q, mode="dense") for q in QUERIES}
    assert by_a != by_b
    with open_with(tmp_path / "only-b", b) as reference:
        reference.ingest(docs)
        # the same hits and scores as a workspace built with encoder b alone
        assert by_b == {q: ranking(reference, q, mode="dense") for q in QUERIES}
    # a fresh process needs no encoder handed in: each collection loads its own from its spec
    with ragkit.open(tmp_path / "ws", create=False) as again:
        assert {q: ranking(again, q, collection="b", mode="dense") for q in QUERIES} == by_b
        encoders = {again.encoder_for(c).fingerprint["id"] for c in again.collections()}
        assert encoders == {c.record.model_fp for c in again.collections()} and len(encoders) == 2
        with pytest.raises(WorkspaceError, match="no collection or alias 'c'"):
            again.query("dog", collection="c")


def test_an_alias_swap_switches_collection_and_encoder_for_running_queries(
    tmp_path, docs, model_dirs
) -> None:  # type: ignore[no-untyped-def]
    a, b = model_dirs
    kit = open_with(tmp_path / "ws", a)
    kit.ingest(docs)
    first = kit.collection().name
    kit.create_collection("b", encoder=EncoderConfig(model=str(b)))
    expected = {
        first: {q: ranking(kit, q, collection=first) for q in QUERIES},
        "b": {q: ranking(kit, q, collection="b") for q in QUERIES},
    }
    assert all(expected[first][q] != expected["b"][q] for q in QUERIES)
    seen: dict[str, int] = {first: 0, "b": 0}
    failures: list[object] = []
    stop = threading.Event()

    def query_while_swapping() -> None:
        try:
            while not stop.is_set():
                for query in QUERIES:
                    found = ranking(kit, query)
                    owner = [n for n in expected if expected[n][query] == found]
                    if len(owner) != 1:  # empty, or a mix of the two collections
                        failures.append((query, found))
                        return
                    seen[owner[0]] += 1
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=query_while_swapping)
    thread.start()
    try:
        for flip in range(40):
            kit.set_alias("default", "b" if flip % 2 == 0 else first)
            if failures:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures[:3]
    assert seen[first] > 0 and seen["b"] > 0, seen
    assert kit.collection("b").state == "live"  # an alias points at it now
    kit.close()


def test_every_write_reaches_building_live_and_retired_collections(
    tmp_path, docs, model_dirs, tiny_encoder
) -> None:  # type: ignore[no-untyped-def]
    a, b = model_dirs
    kit = open_with(tmp_path / "ws", a)
    kit.ingest(docs)
    live = kit.collection()
    small = ChunkingConfig(max_tokens=24, overlap_tokens=0)
    kit.create_collection("b-small", encoder=EncoderConfig(model=str(b)), chunking=small)
    kit.create_collection("retired", encoder=EncoderConfig(model=str(b)))
    kit.store.set_collection("retired", state="retired")
    shadow = kit.collection("b-small")
    assert shadow.chunking_fp != live.chunking_fp
    rows = [set(kit.store.all_chunk_ids(c.chunking_fp).tolist()) for c in (live, shadow)]
    assert rows[0] and rows[1] and not rows[0] & rows[1]  # each chunking has its own rows
    write(docs / "birds.md", "# Birds\n\nthe bird ate a plum and a green pear\n")
    (docs / "sub" / "net.md").unlink()
    report = kit.ingest(docs)
    assert (report.files_new, report.files_deleted, report.commits) == (1, 1, 1)
    retired = kit.collection("retired")
    for collection in (live, shadow, retired):
        collection.refresh()
        stored = set(kit.store.all_chunk_ids(collection.chunking_fp).tolist())
        assert set(collection.load_dense().ids().tolist()) == stored
        channel = kit.sparse_channel_for(collection)
        assert set(collection.load_sparse(channel).ids().tolist()) == stored
        hits = kit.query("bird plum", k=1, collection=collection.name)
        assert hits[0].uri == "birds.md"
        assert all(
            h.uri != "sub/net.md" for h in kit.query("dns router", collection=collection.name)
        )
    # kept in step until its migration is finalized, so a rollback to it loses nothing
    assert retired.record.generation == 2
    report = kit.doctor()
    assert report.ok, report.to_dict()
    assert report.collection("retired").state == "retired"
    assert report.collection("b-small").state == "building"
    with pytest.raises(WorkspaceError, match="retired"):
        kit.set_alias("default", "retired")
    kit.close()


def test_a_toml_edit_is_reported_field_by_field_and_never_applied(
    tmp_path, docs, model_dirs
) -> None:  # type: ignore[no-untyped-def]
    a, b = model_dirs
    with open_with(tmp_path / "ws", a) as kit:
        kit.ingest(docs)
        before = ranking(kit, "dog pear")
        generation = kit.collection().record.generation
    config = '[chunking]\nmax_tokens = 40\n[index]\nkind = "hnsw"\n[sparse]\nmodel = "none"\n'
    (tmp_path / "ws" / "ragkit.toml").write_text(
        f'[encoder]\nmodel = "{b}"\n{config}', encoding="utf-8"
    )
    runner = CliRunner()
    shown = runner.invoke(app, ["status", "-w", str(tmp_path / "ws")], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    for field in ("encoder.model", "chunking.max_tokens", "index.kind", "sparse.model"):
        assert field in shown.output
    assert "ragkit migrate start" in " ".join(shown.output.split())
    listed = runner.invoke(app, ["collections", "-w", str(tmp_path / "ws"), "--json"])
    (entry,) = json.loads(listed.output)
    assert entry["state"] == "live" and entry["aliases"] == ["default"] and entry["chunks"] == 4
    drift = {d["field"]: (d["collection"], d["ragkit.toml"]) for d in entry["drift"]}
    assert drift == {
        "encoder.model": (str(a), str(b)),
        "chunking.max_tokens": (0, 40),
        "index.kind": ("flat", "hnsw"),
        "sparse.model": ("bm25", "none"),
    }
    doctor = runner.invoke(app, ["doctor", "-w", str(tmp_path / "ws"), "--json"])
    assert doctor.exit_code == 0, doctor.output  # drift is reported, the indexes are sound
    (checked,) = json.loads(doctor.output)["collections"]
    settings = next(c for c in checked["checks"] if c["name"] == "settings")
    assert settings["status"] == "drift" and "encoder.model" in settings["detail"]
    with ragkit.open(tmp_path / "ws", create=False) as kit:
        report = kit.ingest(docs)
        assert report.chunks_encoded == 0 and report.chunks_added == 0
        assert kit.collection().record.generation == generation
        assert ranking(kit, "dog pear") == before  # still encoder a, bm25, the old chunks
        found = runner.invoke(app, ["query", "dog pear", "-w", str(tmp_path / "ws"), "--json"])
        assert found.exit_code == 0 and json.loads(found.output)[0]["uri"] == "pets.md"


def test_fusion_comes_from_the_spec_unless_ragkit_toml_sets_it(tmp_path, docs, model_dirs) -> None:  # type: ignore[no-untyped-def]
    a, _ = model_dirs
    with open_with(tmp_path / "ws", a, '[fusion]\nmethod = "convex"\n') as kit:
        kit.ingest(docs)
        spec = kit.collection().record.spec
        assert spec.fusion.method == "convex"
    (tmp_path / "ws" / "ragkit.toml").write_text(f'[encoder]\nmodel = "{a}"\n', encoding="utf-8")
    with ragkit.open(tmp_path / "ws", create=False) as kit:
        assert spec.fusion_for(kit.config).method == "convex"  # no [fusion]: the spec's
        assert kit.collection().record.spec == spec
    explicit = WorkspaceConfig.from_dict({"fusion": {"method": "rrf"}})
    assert spec.fusion_for(explicit).method == "rrf"


def test_a_set_fusion_table_stays_set_when_it_holds_the_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragkit.collection_spec import CollectionSpec, FusionSpec

    assert FusionConfig().method == "dbsf" and CollectionSpec().fusion.method == "dbsf"
    old = CollectionSpec(fusion=FusionSpec(method="rrf"))  # a collection made before
    assert old.fusion_for(WorkspaceConfig()).method == "rrf"  # no [fusion]: its own
    # ragkit.toml says dbsf, the default: saved again (as ragkit does when a source is added
    # or tune-fusion writes), the table stays, so it still wins over the collection's rrf
    config = WorkspaceConfig.from_dict({"fusion": {"method": "dbsf"}})
    assert config.to_dict() == {"fusion": {}}
    config.save(tmp_path / "ragkit.toml")
    reloaded = WorkspaceConfig.load(tmp_path / "ragkit.toml")
    assert "fusion" in reloaded.sections_set
    assert old.fusion_for(reloaded).method == "dbsf"
    assert WorkspaceConfig().to_dict() == {}  # nothing set, nothing written


def test_secrets_in_ragkit_toml_are_refused_and_never_stored(
    tmp_path, docs, tiny_encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"\[index\] qdrant_api_key_env"):
        WorkspaceConfig.from_dict({"index": {"qdrant_api_key": "s3cret"}})
    with pytest.raises(ConfigError, match=r"\[encoder\] api_key_env"):
        WorkspaceConfig.from_dict({"encoder": {"api_key": "sk-live-123"}})
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ragkit.toml").write_text('[index]\nqdrant_api_key = "s3cret"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="qdrant_api_key_env"):
        ragkit.open(root, create=True)
    (root / "ragkit.toml").write_text(
        '[index]\nqdrant_api_key_env = "MY_QDRANT_KEY"\n', encoding="utf-8"
    )
    monkeypatch.setenv("MY_QDRANT_KEY", "s3cret")
    with ragkit.open(root, encoder=tiny_encoder, create=True) as kit:
        kit.ingest(docs)
        assert kit.collection().record.spec.index.api_key_env == "MY_QDRANT_KEY"
    stored = (root / "store.sqlite").read_bytes() + (root / "ragkit.toml").read_bytes()
    assert b"s3cret" not in stored and b"MY_QDRANT_KEY" in stored


def test_create_collection_refuses_bad_names_and_duplicates(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    with pytest.raises(ConfigError, match="collection name"):
        workspace.create_collection("../escape")
    with pytest.raises(WorkspaceError, match="exists already"):
        workspace.create_collection(workspace.collection().name)
    built = workspace.create_collection("none", sparse=SparseConfig(model="none"))
    assert built.record.spec.sparse.model == "none" and built.record.sparse_fp == ""
    assert workspace.available_modes("none") == ["dense"]


def test_a_handed_in_encoder_that_claims_the_collections_model_is_refused(
    workspace, docs, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    from ragkit.encoders import DenseEncoder

    workspace.ingest(docs)
    other = DenseEncoder.from_model(build_tiny_model(seed=3), name="tiny-static")
    with (
        ragkit.open(workspace.root, encoder=other) as kit,
        pytest.raises(EncoderMismatchError, match="fingerprint"),
    ):
        kit.query("dog", collection=workspace.collection().name)


class Borrowed:
    """Exactly a protocol's members, borrowed from a workspace: whatever else a consumer
    reached for would be an AttributeError."""

    def __init__(self, kit: ragkit.Workspace, protocol: type) -> None:
        self._kit = kit
        self._names = protocol_members(protocol)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name not in self._names:
            raise AttributeError(f"{name!r} is not a member of the source")
        return getattr(self._kit, name)


def protocol_members(protocol: type) -> set[str]:
    import typing

    skip = (object, typing.Protocol, typing.Generic)
    return {
        name
        for cls in protocol.__mro__
        if cls not in skip
        for name in vars(cls)
        if not name.startswith("_")
    }


def test_the_searcher_doctor_and_mining_need_only_their_source(tmp_path, docs, model_dirs) -> None:  # type: ignore[no-untyped-def]
    from ragkit.collection_parts import CheckedSource, CollectionSource, QueryableSource
    from ragkit.doctor import check_workspace
    from ragkit.retrieval.search import Searcher
    from ragkit.training import MiningConfig, mine_hard_negatives
    from ragkit.training.pairs import Pair

    assert protocol_members(CollectionSource) == {
        "root", "store", "config", "collection", "encoder_for", "sparse_channel_for",
        "warm_encoder",
    }  # fmt: skip
    a, b = model_dirs
    with open_with(tmp_path / "ws", a) as kit:
        kit.ingest(docs)
        kit.create_collection("b", encoder=EncoderConfig(model=str(b)))
        searcher = Searcher(Borrowed(kit, CollectionSource))
        for name in ("default", "b"):
            for mode in ("dense", "sparse", "hybrid"):
                got = searcher.query_many(
                    QUERIES,
                    k=3,
                    where=None,
                    mode=mode,
                    rerank=False,
                    alias=name,
                    query_vectors=None,
                )
                want = kit.query_many(QUERIES, k=3, mode=mode, rerank=False, collection=name)
                assert got == want and all(got), (name, mode)
            assert searcher.available_modes(name) == kit.available_modes(name)
        with pytest.raises(WorkspaceError, match="no collection or alias 'c'"):
            searcher.query_many(
                ["dog"], k=1, where=None, mode=None, rerank=False, alias="c", query_vectors=None
            )
        checked = check_workspace(Borrowed(kit, CheckedSource))
        assert checked.ok and checked.to_dict() == kit.doctor().to_dict()
        assert len(checked.collections) == 2  # both collections were checked
        pairs = [Pair("dog pear", "the dog ate a green pear", positive_doc="pets.md")]
        config = MiningConfig(num_negatives=2, relative_margin=None)
        mined = mine_hard_negatives(Borrowed(kit, QueryableSource), pairs, config)
        assert mined.records == mine_hard_negatives(kit, pairs, config).records
        assert mined.pairs and mined.pairs[0].negatives
        with pytest.raises(AttributeError, match="'ingest' is not a member"):
            Borrowed(kit, QueryableSource).ingest  # noqa: B018


def test_collections_history_shows_every_alias_move(tmp_path, docs, model_dirs) -> None:  # type: ignore[no-untyped-def]
    a, b = model_dirs
    root = tmp_path / "ws"
    with open_with(root, a) as kit:
        kit.ingest(docs)
        first = kit.collection().name
        kit.create_collection("b", encoder=EncoderConfig(model=str(b)))
        kit.set_alias("default", "b")
        kit.set_alias("staging", first)
        kit.set_alias("default", first)
    runner = CliRunner()
    shown = runner.invoke(app, ["collections", "-w", str(root), "--history", "--json"])
    assert shown.exit_code == 0, shown.output
    moves = json.loads(shown.output)
    assert [(m["alias"], m["from"], m["to"], m["reason"]) for m in moves] == [
        ("default", "b", first, "set"),
        ("staging", None, first, "set"),
        ("default", first, "b", "set"),
        ("default", None, first, "set"),  # the first ingest made the default alias
    ]
    assert [m["at"] for m in moves] == sorted((m["at"] for m in moves), reverse=True)
    only = runner.invoke(
        app, ["collections", "-w", str(root), "--history", "--alias", "staging", "--json"]
    )
    assert [m["alias"] for m in json.loads(only.output)] == ["staging"]
    latest = runner.invoke(
        app, ["collections", "-w", str(root), "--history", "--limit", "1", "--json"]
    )
    assert [(m["from"], m["to"]) for m in json.loads(latest.output)] == [("b", first)]
    table = runner.invoke(app, ["collections", "-w", str(root), "--history"], terminal_width=200)
    assert table.exit_code == 0, table.output
    lines = [line for line in table.output.splitlines() if "default" in line or "staging" in line]
    assert len(lines) == 4
    assert f"b → {first}" in lines[0] and f"(new) → {first}" in lines[-1]
