"""``ragkit doctor`` on what a Qdrant holds: the aliases that mirror the store's, the sparse
vectors copied into the points, and workspaces that share one Qdrant (``qdrant_alias_prefix``).

qdrant-client's local mode, in-process; one embedded folder shared by two workspaces stands
for one Qdrant server that two teams use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_qdrant_cluster import (
    assert_same_hits,
    hybrid,
    make_corpus,
    qdrant_aliases,
    qdrant_workspace,
)
from typer.testing import CliRunner

import ragkit
from ragkit.errors import AliasConflictWarning, ConfigError

pytest.importorskip("qdrant_client")
pytest.importorskip("bm25s", reason="the BM25 channel needs ragkit[sparse]")

from ragkit import doctor_qdrant
from ragkit.cli.app import app
from ragkit.config import IndexConfig
from ragkit.doctor_qdrant import QDRANT_ALIASES, QDRANT_SPARSE

runner = CliRunner()


def checked(kit: ragkit.Workspace, name: str) -> Any:
    report = kit.doctor()
    found = report.collection(kit.collection().name).check(name)
    assert found is not None, f"no {name!r} check"
    return found


# -- aliases ----------------------------------------------------------------------------------
def test_doctor_reports_a_drifted_qdrant_alias_and_repair_restores_it(
    tmp_path, tiny_encoder
) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=3)
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_path=str(tmp_path / "q")) as kit:
        kit.ingest(corpus)
        kit.set_alias("readers", kit.collection().name)
        name = kit.collection().name
        assert checked(kit, QDRANT_ALIASES).status == "ok"
        index = kit.collection().load_dense()
        index.remove_alias("readers")  # someone tidied the Qdrant by hand
        index.close()

        found = checked(kit, QDRANT_ALIASES)
        assert found.status == "problem" and found.counts["wrong"] == 1
        assert f"Qdrant alias 'readers' is missing instead of {name!r}" in found.detail
        assert "ragkit doctor --repair" in found.detail
        assert str(tmp_path / "q") in found.detail
        assert not kit.doctor().ok
        assert qdrant_aliases(kit) == {"default": name}  # checking wrote nothing

        report = kit.doctor(repair=True)
        assert f"Qdrant alias 'readers' -> {name!r} on {tmp_path / 'q'}" in report.repaired
        assert report.ok and qdrant_aliases(kit) == {"default": name, "readers": name}


def test_a_collection_in_its_own_folder_has_no_alias_check(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(make_corpus(tmp_path / "docs", n=2))
    assert workspace.doctor().collection(workspace.collection().name).check(QDRANT_ALIASES) is None


# -- sparse vectors in the points -------------------------------------------------------------
def damage_sparse(kit: ragkit.Workspace) -> tuple[int, int]:
    """One point loses its sparse vector, another gets someone else's: (missing, stale)."""
    index = kit.collection().load_dense()
    try:
        ids = index.ids()
        missing, stale = int(ids[0]), int(ids[1])
        index.client.delete_vectors(index.collection, vectors=["sparse"], points=[missing])
        other = index.sparse_vectors(np.array([int(ids[2])]))[int(ids[2])]
        from scipy import sparse

        row = sparse.csr_matrix((other[1], other[0], [0, len(other[0])]), shape=(1, 2**20))
        index.add_sparse(np.array([stale]), row)
        return missing, stale
    finally:
        index.close()


def test_doctor_finds_missing_and_stale_sparse_vectors_and_repair_rewrites_them(
    tmp_path, tiny_encoder
) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=8)
    # without document vectors: the table below is the one of the Qdrant checks alone
    index = {"qdrant_sparse": True, "document_vectors": False}
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, **index) as kit:
        kit.ingest(corpus)
        fine = checked(kit, QDRANT_SPARSE)
        assert fine.status == "ok" and fine.counts == {"checked": 8, "missing": 0, "stale": 0}
        assert "all 8 points" in fine.detail
        reference = hybrid(kit, server_side=False)
        missing, stale = damage_sparse(kit)

        found = checked(kit, QDRANT_SPARSE)
        assert found.status == "problem"
        assert found.counts == {"checked": 8, "missing": 1, "stale": 1}
        collection = kit.collection().name
        assert f"Qdrant collection {collection!r}, all 8 points" in found.detail
        assert f"1 without their sparse vector (ids {missing})" in found.detail
        assert f"1 stale (ids {stale})" in found.detail
        assert checked(kit, QDRANT_SPARSE).counts["missing"] == 1  # nothing was rewritten
        as_json = runner.invoke(app, ["doctor", "-w", str(kit.root), "--json"])
        assert as_json.exit_code == 1, as_json.output
        (reported,) = json.loads(as_json.stdout)["collections"]
        checks = {c["name"]: c for c in reported["checks"]}
        assert reported["name"] == collection and checks[QDRANT_SPARSE]["detail"] == found.detail
        table = runner.invoke(app, ["doctor", "-w", str(kit.root)]).stdout
        assert f"{collection} (live" in table and "qdrant sparse vectors │ problem" in table
        assert "1 without their sparse vector (ids" in table

        report = kit.doctor(repair=True)
        assert (
            f"{collection}: rewrote 2 sparse vectors in its Qdrant points (1 missing, 1 stale)"
            in "".join(report.repaired)
        )
        assert report.ok and report.collection(collection).check(QDRANT_SPARSE).counts == {
            "checked": 8,
            "missing": 0,
            "stale": 0,
        }
        assert_same_hits(hybrid(kit, server_side=True), reference)


def test_a_big_collection_is_checked_on_a_seeded_sample(
    tmp_path, tiny_encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=8)
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_sparse=True) as kit:
        kit.ingest(corpus)
        monkeypatch.setattr(doctor_qdrant, "FULL_COMPARE_LIMIT", 3)
        fine = checked(kit, QDRANT_SPARSE)
        assert fine.status == "ok" and fine.counts["checked"] == 3
        assert "a sample of 3 of 8 points (seed 0)" in fine.detail
        index = kit.collection().load_dense()
        index.client.delete_vectors(
            index.collection, vectors=["sparse"], points=index.ids().tolist()
        )
        index.close()
        found = checked(kit, QDRANT_SPARSE)
        assert found.status == "problem" and found.counts["missing"] == 3


# -- two workspaces on one Qdrant -------------------------------------------------------------
def two_workspaces(tmp_path: Path, encoder: Any) -> tuple[ragkit.Workspace, ragkit.Workspace]:
    folder = str(tmp_path / "shared-qdrant")
    corpus = make_corpus(tmp_path / "docs", n=3)
    kits = []
    for team in ("a", "b"):
        kit = qdrant_workspace(
            tmp_path / team, encoder, qdrant_path=folder, qdrant_collection=f"team-{team}"
        )
        if team == "a":
            kit.ingest(corpus)  # its first ingest mirrors its alias "default"
        else:
            with pytest.warns(AliasConflictWarning, match="'default'"):
                kit.ingest(corpus)  # ... which b's first ingest finds taken
        kits.append(kit)
    return kits[0], kits[1]


def test_a_second_workspace_cannot_write_into_a_collection_of_the_first(
    tmp_path, tiny_encoder
) -> None:  # type: ignore[no-untyped-def]
    folder = str(tmp_path / "shared-qdrant")
    corpus = make_corpus(tmp_path / "docs", n=3)
    a = qdrant_workspace(tmp_path / "a", tiny_encoder, qdrant_path=folder)
    b = qdrant_workspace(tmp_path / "b", tiny_encoder, qdrant_path=folder)
    with a, b:
        a.ingest(corpus)
        assert a.doctor().ok, "a first ingest leaves its default alias mirrored in Qdrant"
        before = [h.chunk_id for h in a.query("zfs snapshot", k=5, mode="dense")]
        # the same encoder gives the same default collection name, so the same Qdrant name
        with pytest.raises(ConfigError, match="another ragkit workspace") as refused:
            b.ingest(corpus)
        assert "index.qdrant_collection" in str(refused.value)
        assert b.collections() == []  # refused before any record: nothing to undo
        assert a.doctor().ok
        assert [h.chunk_id for h in a.query("zfs snapshot", k=5, mode="dense")] == before

        b.config.index.qdrant_collection = "team-b"
        b.config.index.qdrant_alias_prefix = "team-b-"  # the alias "default" is a's
        b.ingest(corpus)
        assert b.doctor().ok and a.doctor().ok
        assert len(b.query("zfs snapshot", k=5, mode="dense")) == len(before)


def test_a_second_workspace_does_not_steal_an_alias_of_the_first(tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    a, b = two_workspaces(tmp_path, tiny_encoder)
    with a, b:
        a.set_alias("default", a.collection().name)
        assert qdrant_aliases(a) == {"default": "team-a"}
        with pytest.warns(AliasConflictWarning) as caught:
            b.set_alias("default", b.collection().name)
        message = str(caught[0].message)
        for part in ("'default'", "'team-a'", "'team-b'", "qdrant_alias_prefix"):
            assert part in message
        assert qdrant_aliases(b) == {"default": "team-a"}

        found = checked(b, QDRANT_ALIASES)  # doctor only reads: no job, no warning
        assert found.status == "problem" and found.counts["conflicts"] == 1
        assert "points at 'team-a'" in found.detail and "qdrant_alias_prefix" in found.detail
        assert checked(a, QDRANT_ALIASES).status == "ok"

        with pytest.warns(AliasConflictWarning, match="'default'"):
            b.ingest(tmp_path / "docs")  # every writer job says so at its start
        with pytest.warns(AliasConflictWarning):
            repaired = b.doctor(repair=True)
        assert not repaired.ok and qdrant_aliases(a) == {"default": "team-a"}  # not taken


def test_with_prefixes_both_workspaces_hold_their_aliases(tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    a, b = two_workspaces(tmp_path, tiny_encoder)
    with a, b:
        a.set_alias("default", a.collection().name)
        assert qdrant_aliases(a) == {"default": "team-a"}
        a.config.index.qdrant_alias_prefix = "a-"
        b.config.index.qdrant_alias_prefix = "b-"
        assert checked(a, QDRANT_ALIASES).counts == {"wrong": 1, "left over": 1, "conflicts": 0}
        assert checked(a, "settings").status == "ok"  # a prefix names aliases: no drift
        a.set_alias("default", a.collection().name)
        b.set_alias("default", b.collection().name)
        assert qdrant_aliases(a) == {"a-default": "team-a", "b-default": "team-b"}
        assert checked(a, QDRANT_ALIASES).status == "ok"
        assert checked(b, QDRANT_ALIASES).status == "ok"

        a.config.index.qdrant_alias_prefix = "a2-"  # the recorded name moves with the prefix
        a.ingest(tmp_path / "docs")  # a writer job follows the store's aliases at its start
        assert qdrant_aliases(a) == {"a2-default": "team-a", "b-default": "team-b"}


@pytest.mark.parametrize("prefix", ["team a", "a/b", "x" * 65, "ünï-"])
def test_an_alias_prefix_outside_qdrant_names_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="qdrant_alias_prefix"):
        IndexConfig(qdrant_alias_prefix=prefix)


def test_the_alias_prefix_is_read_from_ragkit_toml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragkit.config import WorkspaceConfig

    path = tmp_path / "ragkit.toml"
    path.write_text('[index]\nqdrant_alias_prefix = "team-a-"\n', encoding="utf-8")
    assert WorkspaceConfig.load(path).index.qdrant_alias_prefix == "team-a-"
    path.write_text('[index]\nqdrant_alias_prefix = "team a"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="qdrant_alias_prefix 'team a'"):
        WorkspaceConfig.load(path)


def test_the_alias_prefix_is_no_part_of_a_collection_spec() -> None:
    from ragkit.collection_spec import DenseIndexSpec

    spec = DenseIndexSpec.from_config(IndexConfig(qdrant_alias_prefix="team-a-"))
    assert "qdrant_alias_prefix" not in spec.params
    assert IndexConfig(qdrant_alias_prefix="team-a.v2_").qdrant_alias_prefix == "team-a.v2_"


def test_a_qdrant_edge_collection_has_its_sparse_vectors_checked(tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_edge")
    corpus = make_corpus(tmp_path / "docs", n=5)
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_sparse=True) as kit:
        kit.config.index.backend = "qdrant-edge"
        kit.ingest(corpus)
        found = checked(kit, QDRANT_SPARSE)  # the writer once saved the shard before them
        assert found.status == "ok" and found.counts == {"checked": 5, "missing": 0, "stale": 0}
        assert "all 5 points" in found.detail
        assert kit.doctor().collection(kit.collection().name).check(QDRANT_ALIASES) is None
        (corpus / "doc01.md").write_text("# new\n\nlemon grape cherry\n", encoding="utf-8")
        kit.ingest(corpus)
        assert checked(kit, QDRANT_SPARSE).counts == {"checked": 5, "missing": 0, "stale": 0}
        assert_same_hits(hybrid(kit, server_side=True), hybrid(kit, server_side=False))


def test_repair_commits_the_sparse_vectors_a_qdrant_edge_generation_lacks(
    tmp_path, tiny_encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A generation written before the writer saved Edge shards after the sparse mirror."""
    pytest.importorskip("qdrant_edge")
    from ragkit.sparse_mirror import SparseMirror

    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_sparse=True) as kit:
        kit.config.index.backend = "qdrant-edge"
        monkeypatch.setattr(SparseMirror, "write", lambda self, sparse_index: 0)
        kit.ingest(make_corpus(tmp_path / "docs", n=4))
        monkeypatch.undo()
        assert checked(kit, QDRANT_SPARSE).counts == {"checked": 4, "missing": 4, "stale": 0}
        generation = kit.collection().record.generation
        report = kit.doctor(repair=True)
        assert any("rewrote 4 sparse vectors" in action for action in report.repaired)
        assert report.ok and kit.collection().record.generation == generation + 1
        assert_same_hits(hybrid(kit, server_side=True), hybrid(kit, server_side=False))
