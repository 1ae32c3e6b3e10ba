"""The teacher: the shipped all-mpnet-base-v2, mined false negatives it drops, and a fine-tune
guided and distilled by a second tiny model of another dimension (offline and fast)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragkit.encoders.registry import TEACHER_PARTS, resolve_model_path, resolve_teacher
from ragkit.errors import MissingDependencyError
from ragkit.training import Pair
from ragkit.training.teacher_filter import drop_false_negatives
from ragkit.training.trainer import dataset_from_pairs
from tests.conftest import build_tiny_model
from tests.test_training_pipeline import synthetic  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A 32-d teacher (the student is 64-d), saved as a folder like a real one."""
    from ragkit.config import EncoderConfig
    from ragkit.encoders import DenseEncoder

    folder = tmp_path_factory.mktemp("teacher") / "tiny-teacher"
    build_tiny_model(dim=32, seed=7).save(str(folder))
    return DenseEncoder.load(EncoderConfig(model=str(folder)))


def test_teacher_drops_mined_negatives_that_score_like_the_positive(tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    pairs = [
        Pair("zfs pool", "zfs pool snapshot", ("snapshot pool zfs", "git rebase branch")),
        Pair("git merge", "git merge commit", ("docker image", "python wheel")),
    ]
    kept, stats = drop_false_negatives(pairs, tiny_teacher, margin=0.95)
    assert kept[0].negatives == ("git rebase branch",)  # the positive reworded is gone
    assert kept[1] == pairs[1]
    assert stats == {
        "margin": 0.95,
        "negatives": 4,
        "dropped": 1,
        "pairs_left_without_negatives": 0,
    }
    # a margin above any score ratio keeps everything
    assert drop_false_negatives(pairs, tiny_teacher, margin=10.0)[1]["dropped"] == 0


def test_rows_a_teacher_left_short_borrow_negatives() -> None:
    pairs = [
        Pair("q1", "p1", ("a", "b")),
        Pair("q2", "p2", ("c",)),
        Pair("q3", "p3", ("d", "e")),
    ]
    dataset, columns = dataset_from_pairs(pairs, None)
    assert columns == ["anchor", "positive", "negative_1", "negative_2"]
    assert dataset["negative_1"] == ["a", "c", "d"]
    assert dataset["negative_2"] == ["b", "d", "e"]  # q2 borrowed q3's first negative


def test_finetune_guided_and_distilled_by_a_smaller_teacher(
    synthetic: Path,  # noqa: F811
    tmp_path: Path,
    tiny_encoder,
    tiny_teacher,
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    import typer

    import ragkit
    from ragkit.cli.finetune import finetune_command

    root = tmp_path / "ws"
    with ragkit.open(root, encoder=tiny_encoder, create=True) as kit:
        kit.ingest(synthetic / "corpus.jsonl")
    original = ragkit.open
    monkeypatch.setattr(
        ragkit, "open", lambda path, **kw: original(path, encoder=tiny_encoder, **kw)
    )
    app = typer.Typer()
    app.command("finetune")(finetune_command)
    app.command("noop")(lambda: None)
    args = ["finetune", "-w", str(root), "--dataset", str(synthetic)]
    args += ["--eval-dataset", str(synthetic), "--epochs", "4", "--batch-size", "16"]
    args += ["--lr", "0.1", "--negatives", "1", "--range-max", "10", "--no-soup"]
    args += ["--teacher", tiny_teacher.name, "--teacher-guided", "--distill", "scores"]
    args += ["--distill-weight", "0.1", "--loss", "infonce", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    before = report["metrics"]["before"]["dense"]["ndcg@10"]
    assert report["metrics"]["after"]["dense"]["ndcg@10"] > before + 0.5
    assert report["mining"]["teacher_filter"]["negatives"] == report["train_pairs"]
    card = (Path(report["model_path"]) / "README.md").read_text()
    assert "GuidedInfoNCELoss" in card and "ScoreDistillationLoss" in card

    # the symmetric variant through the CLI as well
    symmetric = [a for a in args if a not in ("--teacher-guided",)]
    symmetric[symmetric.index("infonce")] = "symmetric"
    symmetric[symmetric.index("scores")] = "none"
    result = CliRunner().invoke(app, [*symmetric, "--name", "sym"])
    assert result.exit_code == 0, result.output
    card = (root / "models" / "sym" / "README.md").read_text()
    assert '"doc_to_query"' in card and "ScoreDistillationLoss" not in card


def test_missing_teacher_extra_names_the_install(monkeypatch, tmp_path: Path) -> None:
    def absent(name: str):  # type: ignore[no-untyped-def]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(MissingDependencyError, match=r"ragkit\[teacher\]"):
        resolve_teacher(cache=tmp_path)
    assert resolve_model_path("some/other-model") == "some/other-model"


def _teacher_installed() -> bool:
    try:
        for package in TEACHER_PARTS:
            importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _teacher_installed(), reason="the teacher extra is absent: pip install 'ragkit[teacher]'"
)
def test_the_shipped_mpnet_teacher_assembles_once_and_encodes(tmp_path: Path, monkeypatch) -> None:
    from ragkit.config import EncoderConfig
    from ragkit.encoders import DenseEncoder

    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path))
    folder = resolve_teacher("all-mpnet-base-v2")
    assert folder == tmp_path / "teacher" / "all-mpnet-base-v2"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_teacher("sentence-transformers/all-mpnet-base-v2") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # assembled once
    teacher = DenseEncoder.load(EncoderConfig(model="all-mpnet-base-v2"))
    assert teacher.dim == 768
    vectors = teacher.encode_documents(
        ["restore a zfs snapshot", "roll a zfs dataset back to a snapshot", "bake bread"]
    )
    sims = np.asarray(vectors) @ np.asarray(vectors).T
    assert sims[0, 1] > sims[0, 2] + 0.2
