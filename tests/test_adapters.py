"""Query adapters between encoder spaces: exact recoveries, recall, files, errors, real encoders."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_WORDS, build_tiny_model

from ragkit.errors import ConfigError, EncoderMismatchError
from ragkit.migration import (
    ADAPTER_KINDS,
    ADAPTERS,
    QueryAdapter,
    adapter_recall,
    fit_adapter,
    load_adapter,
    quality,
    save_adapter,
    split_holdout,
)
from ragkit.migration.maps import LinearAdapter, gelu_tanh

FAST = {"epochs": 2}  # mlp epochs where only shapes and plumbing are under test


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def orthonormal_rows(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((cols, rows)))[0].T


def latent_pair(n: int, latent: int, in_dim: int, out_dim: int, seed: int = 0):
    """new = Z @ B, old = Z @ A for unit latent rows Z and maps with orthonormal rows: both unit,
    and old is exactly a linear function of new."""
    rng = np.random.default_rng(seed)
    z = unit(rng.standard_normal((n, latent)))
    new = unit(z @ orthonormal_rows(rng, latent, in_dim))
    old = unit(z @ orthonormal_rows(rng, latent, out_dim))
    return new, old


def mean_cosine(adapter: QueryAdapter, new: np.ndarray, old: np.ndarray) -> float:
    return float((adapter(new) * old).sum(axis=1).mean())


def test_kinds_resolve_through_the_registry() -> None:
    assert set(ADAPTER_KINDS) == set(ADAPTERS.names())
    with pytest.raises(ConfigError, match=r"wavelet.*affine, lowrank, mlp, procrustes"):
        fit_adapter("wavelet", np.eye(4), np.eye(4))


def test_procrustes_recovers_a_rotation_exactly() -> None:
    rng = np.random.default_rng(1)
    old = unit(rng.standard_normal((300, 48)))
    rotation = np.linalg.qr(rng.standard_normal((48, 48)))[0]
    new = (old @ rotation).astype(np.float32)
    adapter = fit_adapter("procrustes", new, old)
    np.testing.assert_allclose(adapter(new), old, atol=1e-5)
    np.testing.assert_allclose(adapter.weight @ adapter.weight.T, np.eye(48), atol=1e-5)


def test_affine_recovers_an_affine_map_exactly() -> None:
    rng = np.random.default_rng(2)
    new = rng.standard_normal((200, 32))
    weight, bias = rng.standard_normal((32, 24)), rng.standard_normal(24)
    target = new @ weight + bias
    adapter = fit_adapter("affine", new, target, ridge=0.0)
    np.testing.assert_allclose(adapter.weight, weight, atol=1e-4)
    np.testing.assert_allclose(adapter.bias, bias, atol=1e-4)
    np.testing.assert_allclose(adapter(new), unit(target), atol=1e-5)
    # the default ridge shrinks a little, and only a little
    ridged = fit_adapter("affine", new, target)
    assert 1e-6 < np.abs(ridged.weight - weight).max() < 0.05


def test_recall_is_near_one_when_the_relation_is_linear_and_low_for_identity() -> None:
    new, old = latent_pair(3000, latent=24, in_dim=48, out_dim=48)
    fit, held = split_holdout(len(new), 0.1)
    for kind in ("procrustes", "affine", "lowrank"):
        adapter = fit_adapter(kind, new[fit], old[fit], rank=24)  # rank: lowrank only
        recall = adapter_recall(adapter, queries_new=new[held], docs_new=new, docs_old=old)
        assert recall >= 0.99, (kind, recall)
    identity = LinearAdapter("identity", np.eye(48))
    recall = adapter_recall(identity, queries_new=new[held], docs_new=new, docs_old=old)
    assert recall < 0.1


@pytest.mark.parametrize(("in_dim", "out_dim"), [(768, 384), (384, 768)])
@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_every_kind_maps_between_different_dimensions(kind: str, in_dim: int, out_dim: int) -> None:
    new, old = latent_pair(1500, latent=16, in_dim=in_dim, out_dim=out_dim, seed=3)
    fit, held = split_holdout(len(new))
    adapter = fit_adapter(kind, new[fit], old[fit], **(FAST if kind == "mlp" else {}))
    assert (adapter.kind, adapter.in_dim, adapter.out_dim) == (kind, in_dim, out_dim)
    served = adapter(new[held])
    assert served.dtype == np.float32 and served.shape == (len(held), out_dim)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    assert adapter_recall(adapter, queries_new=new[held], docs_new=new, docs_old=old) >= 0.9
    assert adapter.fit_seconds > 0
    with pytest.raises(EncoderMismatchError, match=f"{in_dim}-dimensional"):
        adapter(old[:2] if in_dim != out_dim else old[:2, :-1])


def test_procrustes_between_dimensions_is_semi_orthogonal() -> None:
    for in_dim, out_dim in ((64, 32), (32, 64)):
        new, old = latent_pair(500, latent=16, in_dim=in_dim, out_dim=out_dim)
        weight = fit_adapter("procrustes", new, old).weight
        small = min(in_dim, out_dim)
        gram = weight.T @ weight if in_dim > out_dim else weight @ weight.T
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)


def test_lowrank_has_the_rank_asked_for() -> None:
    new, old = latent_pair(800, latent=32, in_dim=64, out_dim=48)
    adapter = fit_adapter("lowrank", new, old, rank=5)
    assert adapter.left.shape == (64, 5) and adapter.right.shape == (5, 48)
    assert np.linalg.matrix_rank(adapter.left @ adapter.right) == 5
    assert fit_adapter("lowrank", new, old).rank == 12  # min(64, 48) // 4
    # rank 32 holds the whole latent relation, rank 5 cannot
    full = mean_cosine(fit_adapter("lowrank", new, old, rank=32), new, old)
    assert full > 0.999 > mean_cosine(adapter, new, old) + 0.1
    with pytest.raises(ConfigError, match="rank=49 must be between 1 and"):
        fit_adapter("lowrank", new, old, rank=49)


@pytest.fixture(scope="module")
def warped() -> tuple[np.ndarray, np.ndarray]:
    """old = normalize(tanh(2 · new @ C)): a smooth relation no linear map captures."""
    rng = np.random.default_rng(4)
    z = unit(rng.standard_normal((2000, 4)))
    new = unit(z @ orthonormal_rows(rng, 4, 64))
    old = unit(np.tanh(2.0 * z @ rng.standard_normal((4, 64))))
    return new, old


@pytest.fixture(scope="module")
def trained_mlp(warped):  # type: ignore[no-untyped-def]
    new, old = warped
    fit, _ = split_holdout(len(new))
    return fit_adapter("mlp", new[fit], old[fit], epochs=40)


def test_mlp_beats_affine_on_a_warped_relation(warped, trained_mlp) -> None:  # type: ignore[no-untyped-def]
    new, old = warped
    fit, held = split_holdout(len(new))
    affine = mean_cosine(fit_adapter("affine", new[fit], old[fit]), new[held], old[held])
    mlp = mean_cosine(trained_mlp, new[held], old[held])
    assert affine < 0.96 and mlp > affine + 0.03, (affine, mlp)


def test_mlp_is_deterministic_for_a_seed(warped) -> None:  # type: ignore[no-untyped-def]
    new, old = warped
    first, again, other = (fit_adapter("mlp", new, old, epochs=2, seed=s) for s in (0, 0, 1))
    for name, array in first.to_arrays().items():
        np.testing.assert_array_equal(array, again.to_arrays()[name])
    assert not np.array_equal(first.hidden_weight, other.hidden_weight)


def test_numpy_inference_matches_torch(warped, trained_mlp) -> None:  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    new, _ = warped
    assert np.abs(trained_mlp.output_weight).max() > 1e-3  # the residual is trained, not zero
    t = {name: torch.from_numpy(a) for name, a in trained_mlp.to_arrays().items()}
    x = torch.from_numpy(new)
    hidden = F.gelu(x @ t["hidden_weight"] + t["hidden_bias"], approximate="tanh")
    y = x @ t["weight"] + t["bias"] + hidden @ t["output_weight"] + t["output_bias"]
    np.testing.assert_allclose(trained_mlp(new), F.normalize(y, dim=1).numpy(), atol=1e-5)
    h = np.linspace(-8, 8, 2001, dtype=np.float32)
    torch_gelu = F.gelu(torch.from_numpy(h), approximate="tanh").numpy()
    np.testing.assert_allclose(gelu_tanh(h.copy()), torch_gelu, atol=1e-5)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_save_and_load_give_the_same_adapter(kind: str, tmp_path: Path) -> None:
    new, old = latent_pair(400, latent=16, in_dim=40, out_dim=24)
    adapter = fit_adapter(kind, new, old, **(FAST if kind == "mlp" else {}))
    path = tmp_path / "sub" / "adapter.npz"
    save_adapter(adapter, path)
    assert [p.name for p in path.parent.iterdir()] == ["adapter.npz"]  # no temp file left
    loaded = load_adapter(path)
    assert type(loaded) is type(adapter)
    assert (loaded.kind, loaded.in_dim, loaded.out_dim) == (kind, 40, 24)
    assert loaded.fit_seconds == adapter.fit_seconds
    np.testing.assert_array_equal(loaded(new), adapter(new))
    with np.load(path, allow_pickle=False) as data:  # plain arrays, readable without pickle
        assert int(data["meta.format_version"]) == 1 and str(data["meta.kind"]) == kind


def test_damaged_and_unknown_files_name_the_path(tmp_path: Path) -> None:
    new, old = latent_pair(200, latent=8, in_dim=16, out_dim=16)
    path = tmp_path / "adapter.npz"
    save_adapter(fit_adapter("affine", new, old), path)
    whole = path.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ConfigError, match=f"{truncated}.*not a readable adapter file"):
        load_adapter(truncated)

    single = tmp_path / "single.npy"
    np.save(single, np.eye(3))
    with pytest.raises(ConfigError, match=f"{single}.*not a readable adapter file"):
        load_adapter(single)

    with pytest.raises(ConfigError, match="no adapter file there"):
        load_adapter(tmp_path / "absent.npz")

    unknown = tmp_path / "unknown.npz"
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    np.savez(unknown, **{**arrays, "meta.kind": np.array("wavelet")})
    with pytest.raises(ConfigError, match=f"{unknown}.*'wavelet' is unknown.*procrustes"):
        load_adapter(unknown)

    lopsided = tmp_path / "lopsided.npz"
    np.savez(lopsided, **{**arrays, "bias": np.zeros(5, dtype=np.float32)})
    with pytest.raises(ConfigError, match=f"{lopsided}: damaged affine adapter"):
        load_adapter(lopsided)

    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("x.npy", b"")
    with pytest.raises(ConfigError, match=r"other.npz"):
        load_adapter(tmp_path / "other.npz")


def test_bad_inputs_are_refused_with_what_to_do() -> None:
    new, old = latent_pair(100, latent=8, in_dim=64, out_dim=32)
    with pytest.raises(ConfigError, match=r"new has 100 rows and old has 99.*same text"):
        fit_adapter("affine", new, old[:99])
    broken = new.copy()
    broken[3, 5] = np.nan
    with pytest.raises(ConfigError, match=r"new has non-finite values .* row 3"):
        fit_adapter("procrustes", broken, old)
    with pytest.raises(ConfigError, match=r"at least 65 pairs .* got 64.*or set ridge > 0"):
        fit_adapter("affine", new[:64], old[:64], ridge=0.0)
    with pytest.raises(ConfigError, match=r"procrustes .* needs at least 32 pairs .* got 20"):
        fit_adapter("procrustes", new[:20], old[:20])
    with pytest.raises(ConfigError, match=r"mlp .* at least 50 pairs"):
        fit_adapter("mlp", new[:40], old[:40])
    with pytest.raises(ConfigError, match="2-D array"):
        fit_adapter("affine", new[0], old[0])
    with pytest.raises(ConfigError, match="ridge=-1"):
        fit_adapter("affine", new, old, ridge=-1)


def test_recall_has_known_answers_and_blocks_do_not_change_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    docs = unit(rng.standard_normal((500, 16)))
    queries = unit(rng.standard_normal((40, 16)))
    identity = LinearAdapter("identity", np.eye(16))
    assert adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=docs) == 1.0
    # served from negated documents: the top 10 served are the bottom 10 native
    assert adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=-docs) == 0.0
    assert adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=-docs, k=500) == 1

    shuffled = docs.copy()
    shuffled[:250] = docs[rng.permutation(250)]
    whole = adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=shuffled, k=20)
    monkeypatch.setattr(quality, "_SCORE_BLOCK", 500 * 3)  # three queries per block
    blocked = adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=shuffled, k=20)
    assert blocked == whole and 0.2 < whole < 0.9
    with pytest.raises(ConfigError, match="docs_new has 500 rows and docs_old 499"):
        adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=docs[:-1])
    with pytest.raises(ConfigError, match="k=501"):
        adapter_recall(identity, queries_new=queries, docs_new=docs, docs_old=docs, k=501)


def test_split_holdout_is_a_deterministic_partition() -> None:
    fit, held = split_holdout(1000, 0.2, seed=7)
    assert len(held) == 200 and len(fit) == 800
    assert np.array_equal(np.sort(np.concatenate([fit, held])), np.arange(1000))
    again = split_holdout(1000, 0.2, seed=7)
    assert np.array_equal(fit, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(held, split_holdout(1000, 0.2, seed=8)[1])
    with pytest.raises(ConfigError, match="fraction"):
        split_holdout(10, 1.0)


# -- real encoders ----------------------------------------------------------------------------
def sentences(words: list[str], count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(count)]


def encode(model, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    words = BASE_WORDS[25:65]  # 40 content words
    return sentences(words, 600, seed=0), sentences(words, 60, seed=1)


def mapped_copy(model, matrix):  # type: ignore[no-untyped-def]
    """The same tokenizer and words as ``model``, every word vector multiplied by ``matrix``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding

    static = model[0]
    weights = static.embedding.weight.detach().numpy() @ matrix
    return SentenceTransformer(
        modules=[StaticEmbedding(static.tokenizer, embedding_weights=weights)], device="cpu"
    )


class Lookup:
    """The old encoder's own query vectors: the best any adapter can serve."""

    def __init__(self, old_queries: np.ndarray) -> None:
        self.old_queries = old_queries

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.old_queries


def served_recall(adapter, new_model, old_model, corpus) -> float:  # type: ignore[no-untyped-def]
    docs, queries = corpus
    return adapter_recall(
        adapter,
        queries_new=encode(new_model, queries),
        docs_new=encode(new_model, docs),
        docs_old=encode(old_model, docs),
    )


def fitted(kind: str, new_model, old_model, corpus) -> QueryAdapter:  # type: ignore[no-untyped-def]
    docs, _ = corpus  # fitted on 400 sentences; the 60 queries are never seen
    return fit_adapter(kind, encode(new_model, docs[:400]), encode(old_model, docs[:400]))


def test_real_encoder_and_a_rotated_copy(tiny_model, corpus) -> None:  # type: ignore[no-untyped-def]
    rotated = mapped_copy(
        tiny_model, np.linalg.qr(np.random.default_rng(0).normal(size=(64, 64)))[0]
    )
    identity = LinearAdapter("identity", np.eye(64))
    assert served_recall(identity, rotated, tiny_model, corpus) < 0.5
    adapter = fitted("procrustes", rotated, tiny_model, corpus)
    assert served_recall(adapter, rotated, tiny_model, corpus) >= 0.99


def test_real_encoder_and_a_wider_isometric_copy(tiny_model, corpus) -> None:  # type: ignore[no-untyped-def]
    wider = mapped_copy(tiny_model, orthonormal_rows(np.random.default_rng(1), 64, 96))
    for kind in ("procrustes", "affine"):
        adapter = fitted(kind, wider, tiny_model, corpus)
        assert (adapter.in_dim, adapter.out_dim) == (96, 64)
        assert served_recall(adapter, wider, tiny_model, corpus) >= 0.9, kind


def test_real_encoders_initialised_independently(tiny_model, corpus) -> None:  # type: ignore[no-untyped-def]
    """Two unrelated encoders rank differently, so even a perfect adapter (the old encoder's
    own query vectors) agrees with the new encoder's search only partly: affine gets close to
    that ceiling, an unfitted map does not."""
    other = build_tiny_model(dim=48, seed=1)
    ceiling = served_recall(Lookup(encode(tiny_model, corpus[1])), other, tiny_model, corpus)
    affine = served_recall(fitted("affine", other, tiny_model, corpus), other, tiny_model, corpus)
    crop = served_recall(LinearAdapter("crop", np.eye(48, 64)), other, tiny_model, corpus)
    assert 0.2 < ceiling < 0.8
    assert affine >= 0.9 * ceiling and crop < 0.5 * ceiling, (ceiling, affine, crop)


def test_relative_recall_keeps_the_new_models_recall_only_when_the_map_is_right() -> None:
    """Queries must find their own item: a fitted map keeps the new model's recall@10, the
    identity between unrelated spaces keeps almost none of it."""
    from ragkit.migration import relative_recall

    rng = np.random.default_rng(3)
    latent = rng.standard_normal((2000, 48)).astype(np.float32)
    to_old, to_new = rng.standard_normal((48, 48)), rng.standard_normal((48, 48))
    old = unit((latent @ to_old).astype(np.float32))
    new = unit((latent @ to_new).astype(np.float32))
    noise = unit(rng.standard_normal((200, 48)).astype(np.float32))
    queries = unit(new[:200] + 0.3 * noise)
    relevant = np.arange(200)
    fitted = fit_adapter("affine", new, old)
    served, native, kept = relative_recall(
        fitted, queries_new=queries, relevant=relevant, docs_new=new, docs_old=old
    )
    assert native > 0.5 and kept > 0.8 and served <= 1.0
    identity = fit_adapter("procrustes", new, new)
    _, _, lost = relative_recall(
        identity, queries_new=queries, relevant=relevant, docs_new=new, docs_old=old
    )
    assert lost < 0.2
