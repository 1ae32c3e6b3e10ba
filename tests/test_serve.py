"""``ragkit serve``: a real uvicorn server on a loopback port, driven over HTTP with httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app as cli_app
from ragkit.server import create_app, is_loopback, serve_in_thread
from ragkit.sparse_channel import sparse_path


@pytest.fixture
def served(workspace, docs) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    with (
        serve_in_thread(create_app(workspace)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def first_uris(client: httpx.Client, text: str, **options: object) -> list[str]:
    response = client.post("/query", json={"text": text, **options})
    assert response.status_code == 200, response.text
    return [hit["uri"] for hit in response.json()["hits"]]


def test_query_answers_hits_with_source_headings_and_text(served: httpx.Client) -> None:
    response = served.post("/query", json={"text": "dog pear", "k": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["mode"] == "hybrid" and answer["collection"] == "default"
    assert len(answer["hits"]) == 2 and answer["warnings"] == []
    top = answer["hits"][0]
    assert top["uri"] == "pets.md" and top["headings"] == ["Pets", "Dogs"]
    assert top["rank"] == 1 and "dog ate a green pear" in top["text"]
    assert top["metadata"]["format"] == "md"
    assert first_uris(served, "dns router", mode="dense", k=1) == ["sub/net.md"]
    assert first_uris(served, "lemon plum", mode="sparse", k=1) == ["fruit.txt"]
    assert first_uris(served, "dog pear", where=["format=txt"]) == ["fruit.txt"]
    assert set(first_uris(served, "dog", where={"format": "md"})) <= {"pets.md", "sub/net.md"}


def test_batch_keeps_request_order_and_matches_single_queries(served: httpx.Client) -> None:
    texts = ["dns router", "dog pear", "lemon plum"]
    response = served.post("/query/batch", json={"texts": texts, "k": 1, "mode": "dense"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [hits[0]["uri"] for hits in results] == ["sub/net.md", "pets.md", "fruit.txt"]
    for text, hits in zip(texts, results):
        assert [h["uri"] for h in hits] == first_uris(served, text, k=1, mode="dense")


def test_health_stats_collections_and_docs(served: httpx.Client) -> None:
    assert served.get("/health").json() == {"status": "ok", "collections": 1}
    served.post("/query", json={"text": "dog"})
    stats = served.get("/stats").json()
    assert stats["counts"]["documents"] == 3
    assert stats["server"]["queries"] == 1 and stats["server"]["errors"] == 0
    (collection,) = served.get("/collections").json()
    assert collection["aliases"] == ["default"] and collection["generation"] == 1
    assert collection["modes"][:3] == ["dense", "sparse", "hybrid"]
    by_name = served.post("/query", json={"text": "dog", "collection": collection["name"]})
    assert by_name.status_code == 200 and by_name.json()["collection"] == "default"
    assert "/query/batch" in served.get("/openapi.json").json()["paths"]
    assert served.get("/docs").status_code == 200
    page = served.get("/")
    assert page.status_code == 200 and '<form id="search">' in page.text


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"text": "   "}, 422, "text: Value error, the query text is empty"),
        ({"text": "dog", "k": 0}, 422, "k: "),
        ({"text": "dog", "k": 101}, 422, "k: "),
        ({"text": "dog", "mode": "fuzzy"}, 400, "query mode 'fuzzy' is unknown"),
        ({"text": "dog", "where": "no filter here"}, 400, "is not KEY OP VALUE"),
        ({"text": "dog", "where": {"a')": "b"}}, 422, "are not names"),
        ({"text": "dog", "collection": "nope"}, 404, "no alias or collection named 'nope'"),
        ({"text": "dog", "size": 3}, 422, "size: Extra inputs are not permitted"),
        ({"texts": ["dog", ""]}, 422, "texts[1] is empty"),
    ],
)
def test_bad_requests_are_4xx_json_errors(
    served: httpx.Client, body: dict, status: int, says: str
) -> None:
    path = "/query/batch" if "texts" in body else "/query"
    response = served.post(path, json=body)
    assert response.status_code == status, response.text
    assert says in response.json()["message"]
    assert "Traceback" not in response.text
    assert served.post("/query", content=b"{not json").status_code == 422


def test_damaged_index_is_a_503_and_hybrid_degrades_to_dense(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    collection = workspace.collection()
    path = sparse_path(collection.dir, workspace.sparse_channel, collection.record.generation)
    path.write_bytes(b"\0" * 64)
    with (
        ragkit.open(workspace.root, encoder=workspace.encoder) as kit,
        serve_in_thread(create_app(kit)) as url,
        httpx.Client(base_url=url) as client,
    ):
        sparse = client.post("/query", json={"text": "dog pear", "mode": "sparse"})
        assert sparse.status_code == 503
        assert sparse.json()["error"] == "workspace_damaged"
        assert path.name in sparse.json()["message"] and "doctor --repair" in sparse.text
        hybrid = client.post("/query", json={"text": "dog pear"}).json()
        assert hybrid["hits"][0]["uri"] == "pets.md"
        assert "dense channel alone" in hybrid["warnings"][0]


def test_an_unexpected_error_is_a_500_without_traceback(
    served: httpx.Client, workspace, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(workspace, "query_many", broken)
    response = served.post("/query", json={"text": "dog"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "RuntimeError: the server log has it",
    }


def test_api_key_guards_everything_but_health_and_page(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    with (
        serve_in_thread(create_app(workspace, api_key="s3cret")) as url,
        httpx.Client(base_url=url) as client,
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            denied = client.post("/query", json={"text": "dog"}, headers=headers)
            assert denied.status_code == 401 and denied.json()["error"] == "unauthorized"
            assert client.get("/stats", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/query", json={"text": "dog"}, headers=good).status_code == 200
        assert client.get("/collections", headers=good).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_binding_beyond_loopback_needs_an_api_key(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    runner = CliRunner()
    ws = ["-w", str(tmp_path / "ws")]
    open_ = runner.invoke(cli_app, ["serve", "--host", "0.0.0.0", *ws])
    assert open_.exit_code == 1 and "--api-key-env" in open_.output
    monkeypatch.delenv("RAGKIT_TEST_KEY", raising=False)
    unset = ["serve", "--host", "0.0.0.0", "--api-key-env", "RAGKIT_TEST_KEY", *ws]
    result = runner.invoke(cli_app, unset)
    assert result.exit_code == 1 and "RAGKIT_TEST_KEY is unset" in result.output
    monkeypatch.setenv("RAGKIT_TEST_KEY", "k")
    missing = runner.invoke(cli_app, unset)  # key fine; no workspace there: a clean error
    assert missing.exit_code == 1 and "no ragkit workspace" in missing.output


def test_a_reingest_is_seen_by_the_next_query(served: httpx.Client, workspace, docs) -> None:  # type: ignore[no-untyped-def]
    assert "new.md" not in first_uris(served, "gamma delta epsilon")
    (docs / "new.md").write_text("# Greek\n\ngamma delta epsilon zeta\n", encoding="utf-8")
    with ragkit.open(workspace.root, encoder=workspace.encoder) as writer:  # as a cron job would
        writer.ingest(docs)
    assert first_uris(served, "gamma delta epsilon", k=1) == ["new.md"]
    assert served.get("/collections").json()[0]["generation"] == 2


def test_queries_in_flight_while_an_ingest_commits(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One thread re-ingests changed files (new generations) while three clients query: every
    answer is a 200 with k hits of complete text, and a query afterwards sees the last round."""
    words = ["cat", "dog", "fish", "bird", "apple", "banana", "cherry", "grape", "lemon", "plum"]
    corpus = tmp_path / "corpus"
    corpus.mkdir()

    def write_round(n: int) -> None:
        for i, word in enumerate(words):
            marker = " ".join(words[(i + n + j) % len(words)] for j in range(3))
            text = f"# {word}\n\n{word} round {n} {marker}\n\n## more\n\n{word} snapshot backup\n"
            (corpus / f"{word}.md").write_text(text, encoding="utf-8")

    write_round(0)
    workspace.ingest(corpus)
    rounds, answers, errors = 4, [], []
    done = threading.Event()

    def reingest() -> None:
        with ragkit.open(workspace.root, encoder=workspace.encoder) as writer:
            for n in range(1, rounds + 1):
                write_round(n)
                writer.ingest(corpus)
        done.set()

    def ask(url: str, offset: int) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=30) as client:
            n = 0
            while (not done.is_set() or n < 5) and n < 150 and time.monotonic() < deadline:
                mode = ("dense", "sparse", "hybrid")[(n + offset) % 3]
                body = {"text": "snapshot backup", "k": 5, "mode": mode}
                response = client.post("/query", json=body)
                if response.status_code != 200:
                    errors.append(response.text)
                else:
                    answers.append(response.json()["hits"])
                n += 1

    with serve_in_thread(create_app(workspace)) as url:
        threads = [threading.Thread(target=reingest)]
        threads += [threading.Thread(target=ask, args=(url, i)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert done.is_set(), "the re-ingest did not finish"
        with httpx.Client(base_url=url) as client:
            body = {"text": f"round {rounds}", "k": 1, "mode": "sparse"}
            final = client.post("/query", json=body)
    assert errors == []
    assert len(answers) >= 15 and all(len(hits) == 5 for hits in answers)
    assert all(hit["text"].startswith(hit["uri"][:-3]) for hits in answers for hit in hits)
    assert f"round {rounds}" in final.json()["hits"][0]["text"]
    assert workspace.collection().record.generation == rounds + 1


def test_queries_in_flight_while_the_alias_is_swapped_see_one_collection_whole(
    tmp_path: Path, docs: Path
) -> None:
    """A cutover is an alias swap: the server resolves the alias per request, so every answer
    comes from the old or the new collection (each with its own encoder), never a mix, never
    empty, and no request fails."""
    from conftest import build_tiny_model

    from ragkit.config import EncoderConfig

    models = tmp_path / "a", tmp_path / "b"
    for seed, path in enumerate(models):
        build_tiny_model(seed=seed).save(str(path))
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ragkit.toml").write_text(f'[encoder]\nmodel = "{models[0]}"\n', encoding="utf-8")
    kit = ragkit.open(root, create=True)
    kit.ingest(docs)
    first = kit.collection().name
    kit.create_collection("b", encoder=EncoderConfig(model=str(models[1])))
    queries = ["dog pear", "dns router", "banana cherry"]

    def ranking(client: httpx.Client, text: str, **options: object) -> list[tuple[str, float]]:
        response = client.post("/query", json={"text": text, "k": 3, "mode": "dense", **options})
        assert response.status_code == 200, response.text
        return [(h["chunk_id"], round(h["score"], 5)) for h in response.json()["hits"]]

    failures: list[object] = []
    seen = {first: 0, "b": 0}
    stop = threading.Event()
    with (
        serve_in_thread(create_app(kit)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        expected = {
            name: {q: ranking(client, q, collection=name) for q in queries} for name in (first, "b")
        }
        assert all(expected[first][q] != expected["b"][q] for q in queries)

        def ask() -> None:
            with httpx.Client(base_url=url, timeout=30) as own:
                for _ in range(60):  # bounded: at most 180 requests
                    if stop.is_set():
                        return
                    for query in queries:
                        try:
                            found = ranking(own, query)
                        except AssertionError as exc:
                            failures.append(exc)
                            return
                        owner = [n for n in expected if expected[n][query] == found]
                        if len(owner) != 1:
                            failures.append((query, found))
                            return
                        seen[owner[0]] += 1

        thread = threading.Thread(target=ask)
        thread.start()
        deadline = time.monotonic() + 30
        flip = 0
        while thread.is_alive() and time.monotonic() < deadline and not failures:
            kit.set_alias("default", "b" if flip % 2 == 0 else first)
            flip += 1
            time.sleep(0.02)
        stop.set()
        thread.join(timeout=60)
    kit.close()
    assert not failures, failures[:3]
    assert flip > 1 and seen[first] > 0 and seen["b"] > 0, (flip, seen)
