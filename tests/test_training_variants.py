"""InfoNCE variants, the cached loss, teacher guidance and score distillation, each against a
formula written out here term by term (as tests/test_training_losses.py does for today's loss)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ragkit.errors import ConfigError
from ragkit.training.losses import (
    GuidedInfoNCELoss,
    RetrievalLoss,
    ScoreDistillationLoss,
    build_loss,
    weighted_infonce_loss,
)


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def weighted_terms(q, p, negatives, i, temperature, alpha):  # type: ignore[no-untyped-def]
    """exp-terms of query i against every document of the batch (own negatives weighted)."""
    terms = [torch.exp(q[i] @ p[j] / temperature) for j in range(p.size(0))]
    for n in negatives:
        for j in range(n.size(0)):
            sim = q[i] @ n[j]
            weight = torch.exp(alpha * sim.detach()) if j == i else 1.0
            terms.append(weight * torch.exp(sim / temperature))
    return terms


def reference_symmetric(q, p, negatives, temperature, alpha):  # type: ignore[no-untyped-def]
    """½ (query→documents InfoNCE + positive→queries InfoNCE)."""
    q, p, negatives = unit(q), unit(p), [unit(n) for n in negatives]
    losses = []
    for i in range(q.size(0)):
        positive = q[i] @ p[i] / temperature
        forward = -(
            positive - torch.log(sum(weighted_terms(q, p, negatives, i, temperature, alpha)))
        )
        backward = -(
            positive
            - torch.log(sum(torch.exp(p[i] @ q[j] / temperature) for j in range(q.size(0))))
        )
        losses.append((forward + backward) / 2)
    return torch.stack(losses).mean()


def reference_bidirectional(q, p, negatives, temperature, alpha):  # type: ignore[no-untyped-def]
    """GTE: one denominator with q_i·d_j, q_i·q_j (j≠i), p_i·q_j and p_i·d_j (d_j not row i's)."""
    q, p, negatives = unit(q), unit(p), [unit(n) for n in negatives]
    b = q.size(0)
    losses = []
    for i in range(b):
        terms = weighted_terms(q, p, negatives, i, temperature, alpha)
        terms += [torch.exp(q[i] @ q[j] / temperature) for j in range(b) if j != i]
        terms += [torch.exp(p[i] @ q[j] / temperature) for j in range(b)]
        for column in (p, *negatives):
            terms += [torch.exp(p[i] @ column[j] / temperature) for j in range(b) if j != i]
        losses.append(-(q[i] @ p[i] / temperature - torch.log(sum(terms))))
    return torch.stack(losses).mean()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    p = q + 0.8 * torch.randn(5, 8, generator=generator, dtype=torch.float64)
    n1 = q + 1.0 * torch.randn(5, 8, generator=generator, dtype=torch.float64)
    n2 = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    return q, p, [n1, n2]


@pytest.mark.parametrize("alpha", [0.0, 5.0])
@pytest.mark.parametrize(
    ("variant", "reference"),
    [("symmetric", reference_symmetric), ("bidirectional", reference_bidirectional)],
)
def test_variants_match_their_formulas(tiny_model, batch, variant, reference, alpha) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    loss = weighted_infonce_loss(tiny_model, temperature=0.1, alpha=alpha, variant=variant)
    ours = loss.compute_loss_from_embeddings([q, p, *negatives], None)
    assert ours.item() == pytest.approx(reference(q, p, negatives, 0.1, alpha).item(), rel=1e-9)
    plain = weighted_infonce_loss(tiny_model, temperature=0.1, alpha=alpha)
    assert plain.compute_loss_from_embeddings([q, p, *negatives], None).item() != pytest.approx(
        ours.item(), rel=1e-3
    )


def test_unknown_variant_names_the_known_ones(tiny_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="bidirectional"):
        weighted_infonce_loss(tiny_model, variant="triplet")


def build_tiny_bert(folder, dim: int = 16):  # type: ignore[no-untyped-def]
    """A 1-layer random BERT with mean pooling: cached losses need a model with a batch axis."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from tests.conftest import corpus_words

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(specials + corpus_words()) + "\n")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))  # positional: vocab_file= is ignored
    assert tokenizer.vocab_size == len(specials) + len(corpus_words())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=dim, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformer = Transformer(str(folder), max_seq_length=32)
    return SentenceTransformer(modules=[transformer, Pooling(dim, "mean")], device="cpu")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):  # type: ignore[no-untyped-def]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _features(model, columns):  # type: ignore[no-untyped-def]
    return [model.preprocess(list(texts)) for texts in columns]


COLUMNS = [
    ["backup zfs pool", "git rebase branch", "docker container image", "dns subnet router",
     "ssh agent keys", "python venv wheel", "sqlite wal index", "cron timer unit"],
    ["zfs snapshot restore", "git merge commit", "docker image python", "dhcp router network",
     "ssh key password", "python package wheel", "sqlite database vacuum", "systemd timer cron"],
    ["raid disk storage", "git bisect hook", "container shell", "tls certificate server",
     "encryption password manager", "linux server shell", "table queries index", "alert monitoring"],
]  # fmt: skip


@pytest.mark.parametrize("variant", ["infonce", "bidirectional"])
def test_cached_loss_equals_the_uncached_loss_and_gradients(tiny_bert, variant) -> None:  # type: ignore[no-untyped-def]
    """GradCache is exact: same value and same parameter gradients in mini-batches of 3."""
    import copy

    results = []
    for cached in (False, True):
        model = copy.deepcopy(tiny_bert).double()  # float64: equality, not float32 noise
        loss = weighted_infonce_loss(
            model, temperature=0.05, alpha=5.0, variant=variant, cached=cached, mini_batch_size=3
        )
        assert type(loss).__name__.startswith("Cached") == cached
        value = loss(_features(model, COLUMNS), None)
        value.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((value.item(), grads))
    (plain, plain_grads), (cached_value, cached_grads) = results
    assert cached_value == pytest.approx(plain, rel=1e-10)
    assert len(plain_grads) == len(cached_grads) > 0
    for a, b in zip(plain_grads, cached_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_cached_refuses_what_it_cannot_do(tiny_bert, tiny_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="--spread-out"):
        build_loss(tiny_bert, cached=True, spread_out_weight=0.1)
    with pytest.raises(ConfigError, match="teacher guidance"):
        build_loss(tiny_bert, cached=True, teacher_dim=16, guided=True)
    with pytest.raises(ConfigError, match="static"):
        build_loss(tiny_model, cached=True)
    cached = build_loss(tiny_bert, cached=True, mini_batch_size=4, matryoshka_dims=(8,))
    assert type(cached).__name__ == "MatryoshkaLoss"
    assert type(cached.loss).__name__ == "CachedMultipleNegativesRankingLoss"
    assert cached.loss.mini_batch_size == 4


# -- teacher terms -------------------------------------------------------------------------------
def reference_guided(q, p, negatives, tq, tp, tn, temperature, alpha, margin):  # type: ignore[no-untyped-def]
    """Weighted InfoNCE whose denominator skips documents the teacher ranks above the positive."""
    q, p, negatives = unit(q), unit(p), [unit(n) for n in negatives]
    tq, tp, tn = unit(tq), unit(tp), [unit(n) for n in tn]
    losses = []
    for i in range(q.size(0)):
        bar = tq[i] @ tp[i] - margin
        terms = []
        for column, teacher in ((p, tp), *zip(negatives, tn, strict=True)):
            for j in range(q.size(0)):
                if column is p and j == i:
                    terms.append(torch.exp(q[i] @ p[i] / temperature))
                    continue
                if tq[i] @ teacher[j] > bar:
                    continue  # a false negative in the teacher's eyes
                sim = q[i] @ column[j]
                weight = torch.exp(alpha * sim.detach()) if (column is not p and j == i) else 1.0
                terms.append(weight * torch.exp(sim / temperature))
        losses.append(-(q[i] @ p[i] / temperature - torch.log(sum(terms))))
    return torch.stack(losses).mean()


def teacher_labels(*columns: torch.Tensor) -> torch.Tensor:
    return torch.stack(columns, dim=1)


def test_guided_loss_drops_what_the_teacher_calls_false_negatives(tiny_model, batch) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    generator = torch.Generator().manual_seed(2)
    # a 16-d teacher (the student is 8-d): only its own scores are compared
    tq = torch.randn(5, 16, generator=generator, dtype=torch.float64)
    tp = tq + 0.5 * torch.randn(5, 16, generator=generator, dtype=torch.float64)
    tn = [torch.randn(5, 16, generator=generator, dtype=torch.float64) for _ in negatives]
    tp_dup = tp.clone()
    tp_dup[3] = tq[1]  # row 3's positive is, to the teacher, exactly query 1
    tn[0][1] = tq[1]  # and query 1's own mined negative too
    embeddings = [q, p, *negatives]
    guided = GuidedInfoNCELoss(tiny_model, temperature=0.05, alpha=5.0, margin=0.0)
    labels = teacher_labels(tq, tp_dup, *tn)
    mask = guided.false_negatives(list(labels.unbind(1)))
    assert bool(mask[1, 3]) and bool(mask[1, 5 + 1]) and not mask.diagonal().any()
    ours = guided.compute_loss_from_embeddings(embeddings, labels)
    expected = reference_guided(q, p, negatives, tq, tp_dup, tn, 0.05, 5.0, 0.0)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-9)
    # a teacher that suspects nothing leaves today's loss unchanged
    innocent = teacher_labels(tq, tq, *(-tq.abs() for _ in tn))
    innocent[:, 1] = tq  # every positive is its query: nothing can score above it
    plain = weighted_infonce_loss(tiny_model, temperature=0.05, alpha=5.0)
    assert guided.compute_loss_from_embeddings(embeddings, innocent).item() == pytest.approx(
        plain.compute_loss_from_embeddings(embeddings, None).item(), rel=1e-9
    )
    assert ours.item() < plain.compute_loss_from_embeddings(embeddings, None).item()


def test_score_distillation_is_the_kl_of_the_formula(tiny_model, batch) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    generator = torch.Generator().manual_seed(3)
    teacher = [torch.randn(5, 12, generator=generator, dtype=torch.float64) for _ in range(4)]
    loss = ScoreDistillationLoss(tiny_model, temperature=0.05, teacher_temperature=0.1)
    ours = loss.compute_loss_from_embeddings([q, p, *negatives], teacher_labels(*teacher))
    sq, sd = unit(q), unit(torch.cat([p, *negatives]))
    tq, td = unit(teacher[0]), unit(torch.cat(teacher[1:]))
    total = 0.0
    for i in range(5):
        s = [math.exp(float(sq[i] @ sd[j]) / 0.05) for j in range(sd.size(0))]
        t = [math.exp(float(tq[i] @ td[j]) / 0.1) for j in range(td.size(0))]
        ps, pt = [x / sum(s) for x in s], [x / sum(t) for x in t]
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
    assert ours.item() == pytest.approx(total / 5, rel=1e-7)
    # identical rankings at the same temperature: nothing left to learn
    same = ScoreDistillationLoss(tiny_model, temperature=0.05)
    assert same.compute_loss_from_embeddings(
        [q, p, *negatives], teacher_labels(q, p, *negatives)
    ).item() == pytest.approx(0.0, abs=1e-12)


def test_build_loss_wires_the_teacher_terms(tiny_model) -> None:  # type: ignore[no-untyped-def]
    loss = build_loss(
        tiny_model, teacher_dim=16, guided=True, distillation="scores", distillation_weight=0.5
    )
    assert isinstance(loss, RetrievalLoss)
    assert isinstance(loss.infonce, GuidedInfoNCELoss)
    assert isinstance(loss.distillation, ScoreDistillationLoss)
    config = loss.get_config_dict()
    assert config["infonce"]["loss"] == "GuidedInfoNCELoss" and config["distillation_weight"] == 0.5
    # scores work with Matryoshka whatever the teacher's dimension; embedding matching does not
    build_loss(tiny_model, teacher_dim=16, distillation="scores", distillation_weight=1.0,
               matryoshka_dims=(32,))  # fmt: skip
    with pytest.raises(ConfigError, match="--distill scores"):
        build_loss(tiny_model, teacher_dim=16, distillation_weight=1.0, matryoshka_dims=(32,))
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_loss(tiny_model, guided=True)
