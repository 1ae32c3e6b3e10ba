"""`ragkit eval` on a small BEIR-format dataset built in the test, with the tiny encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app
from ragkit.evaluation import read_trec_run
from ragkit.pipelines.eval import eval_dataset

TOPICS = [
    "backup restore snapshot",
    "sqlite database wal vacuum",
    "git rebase merge bisect",
    "dns dhcp subnet router",
    "ssh key agent config",
    "systemd unit timer cron",
    "docker container image",
    "python package wheel venv",
    "prometheus monitoring alert",
    "tls certificate encryption",
    "zfs pool raid disk",
    "raspberry pi linux server",
]


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("beir")
    (root / "qrels").mkdir()
    with open(root / "corpus.jsonl", "w") as corpus, open(root / "queries.jsonl", "w") as queries:
        for i, topic in enumerate(TOPICS):
            corpus.write(
                json.dumps(
                    {
                        "_id": f"d{i}",
                        "title": topic.split()[0],
                        "text": f"{topic} the one two three",
                    }
                )
                + "\n"
            )
            queries.write(
                json.dumps({"_id": f"q{i}", "text": " ".join(topic.split()[1:]), "split": "dev"})
                + "\n"
            )
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(len(TOPICS))]
    (root / "qrels" / "dev.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_eval_dataset_scores_a_working_retriever_high(beir, tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    report = eval_dataset(beir, workspace=tmp_path / "ws", encoder=tiny_encoder)
    assert report.queries == len(TOPICS)
    assert [r.mode for r in report.results] == ["dense", "sparse", "hybrid"]
    for result in report.results:
        assert result.metrics["ndcg@10"] > 0.9 and result.metrics["recall@10"] == 1.0, result.mode
    dense = report.results[0]
    run = read_trec_run(dense.run_path)
    assert set(run) == {f"q{i}" for i in range(len(TOPICS))}
    assert max(run["q3"], key=run["q3"].get) == "d3"
    # a second run reuses the workspace: nothing is embedded again
    again = eval_dataset(beir, workspace=tmp_path / "ws", encoder=tiny_encoder)
    assert again.ingest["chunks_encoded"] == 0
    assert again.results[0].metrics == dense.metrics
    assert again.results[2].metrics == report.results[2].metrics


def test_baseline_comparison_reports_delta_and_p_value(beir, tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    worse = {f"q{i}": {f"d{(i + 1) % len(TOPICS)}": 2.0, f"d{i}": 1.0} for i in range(len(TOPICS))}
    report = eval_dataset(beir, workspace=tmp_path / "ws", encoder=tiny_encoder, baseline=worse)
    comparison = report.results[0].comparison["mrr@10"]
    assert comparison.mean_a == pytest.approx(0.5)
    assert comparison.delta > 0.4 and comparison.p_value < 0.01


def test_cli_eval_json(beir, tmp_path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n')
    result = CliRunner().invoke(app, ["eval", "--dataset", str(beir), "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["results"][0]["metrics"]["recall@100"] == 1.0
    missing = CliRunner().invoke(
        app, ["eval", "--dataset", str(beir), "--split", "test", "-w", str(ws)]
    )
    assert missing.exit_code == 1 and "dev" in missing.output


def test_tune_fusion_writes_a_setting_at_least_as_good(beir, tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    import ragkit
    from ragkit.evaluation import load_beir
    from ragkit.pipelines.tune_fusion import fusion_grid, tune_fusion

    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.ingest(beir / "corpus.jsonl")
    kit.config.fusion.weights = [0.0, 1.0]  # a poor start: dense ignored
    data = load_beir(beir, "dev")
    report = tune_fusion(kit, data.queries, data.qrels)
    assert len(report.trials) == len(fusion_grid())
    assert report.best.score >= report.current
    assert report.best.score == max(t.score for t in report.trials)
    assert 0.0 <= report.cross_validated <= report.best.score
    reopened = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    if report.written:
        assert reopened.config.fusion.method == report.best.method
        assert reopened.config.fusion.weights == list(report.best.weights)
    hits = reopened.query(data.queries["q5"], k=1)
    assert hits[0].uri.endswith("#d5")
