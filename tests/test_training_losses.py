"""Training losses against independent formulas written here, on small hand-made tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ragkit.training.losses import (
    RetrievalLoss,
    SpreadOutLoss,
    build_loss,
    spread_out_term,
    teacher_embeddings,
    weighted_infonce_loss,
)


def reference_weighted_infonce(
    q: torch.Tensor,
    p: torch.Tensor,
    negatives: list[torch.Tensor],
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """EmbeddingGemma's loss, written out term by term.

    Denominator for query i: every positive p_j, every negative n_jk, and query i's own hard
    negatives weighted by w_ik = exp(alpha * stopgrad(cos(q_i, n_ik))).
    """
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    negatives = [F.normalize(n, dim=-1) for n in negatives]
    losses = []
    for i in range(q.size(0)):
        positive = torch.exp(q[i] @ p[i] / temperature)
        denominator = sum(torch.exp(q[i] @ p[j] / temperature) for j in range(p.size(0)))
        for n in negatives:
            for j in range(n.size(0)):
                sim = q[i] @ n[j]
                weight = torch.exp(alpha * sim.detach()) if j == i else 1.0
                denominator = denominator + weight * torch.exp(sim / temperature)
        losses.append(-torch.log(positive / denominator))
    return torch.stack(losses).mean()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    p = q + 0.8 * torch.randn(5, 8, generator=generator, dtype=torch.float64)
    n1 = q + 1.0 * torch.randn(5, 8, generator=generator, dtype=torch.float64)
    n2 = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    return q, p, [n1, n2]


@pytest.mark.parametrize(
    ("temperature", "alpha"), [(0.05, 5.0), (0.1, 5.0), (0.05, 2.0), (0.2, 0.0)]
)
def test_weighted_infonce_matches_the_formula(tiny_model, batch, temperature, alpha) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    loss = weighted_infonce_loss(tiny_model, temperature=temperature, alpha=alpha)
    ours = loss.compute_loss_from_embeddings([q, p, *negatives], None)
    expected = reference_weighted_infonce(q, p, negatives, temperature, alpha)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-9)


def test_alpha_zero_is_plain_infonce(tiny_model, batch) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    docs = F.normalize(torch.cat([p, *negatives]), dim=-1)
    logits = F.normalize(q, dim=-1) @ docs.T / 0.05
    plain = F.cross_entropy(logits, torch.arange(q.size(0)))
    loss = weighted_infonce_loss(tiny_model, temperature=0.05, alpha=0.0)
    assert loss.hardness_mode is None
    assert loss.compute_loss_from_embeddings([q, p, *negatives], None).item() == pytest.approx(
        plain.item(), rel=1e-9
    )
    weighted = weighted_infonce_loss(tiny_model, temperature=0.05, alpha=5.0)
    assert weighted.compute_loss_from_embeddings([q, p, *negatives], None) > plain


def _grads(loss_fn, q, p, negatives):  # type: ignore[no-untyped-def]
    leaves = [t.clone().requires_grad_(True) for t in (q, p, *negatives)]
    loss_fn(leaves).backward()
    return [t.grad for t in leaves]


def test_hardness_weight_is_a_stop_gradient_and_sharpens_the_hard_negative(
    tiny_model, batch
) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    st = weighted_infonce_loss(tiny_model, temperature=0.05, alpha=5.0)
    ours = _grads(lambda t: st.compute_loss_from_embeddings(t, None), q, p, negatives)
    reference = _grads(
        lambda t: reference_weighted_infonce(t[0], t[1], t[2:], 0.05, 5.0), q, p, negatives
    )
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)

    # Without the stop-gradient the weight itself would be differentiated: a different gradient.
    def no_stop_grad(t):  # type: ignore[no-untyped-def]
        qn, pn = F.normalize(t[0], dim=-1), F.normalize(t[1], dim=-1)
        nn_ = [F.normalize(n, dim=-1) for n in t[2:]]
        logits = [qn @ pn.T / 0.05]
        for n in nn_:
            sims = qn @ n.T
            logits.append(sims / 0.05 + 5.0 * torch.diag_embed(torch.diagonal(sims)))
        return F.cross_entropy(torch.cat(logits, dim=1), torch.arange(qn.size(0)))

    wrong = _grads(no_stop_grad, q, p, negatives)
    assert not torch.allclose(wrong[2], ours[2])

    # The weight puts more of the gradient on each query's own hard negative than alpha=0 does.
    plain = weighted_infonce_loss(tiny_model, temperature=0.05, alpha=0.0)
    plain_grads = _grads(lambda t: plain.compute_loss_from_embeddings(t, None), q, p, negatives)
    weighted_norm = ours[2].norm(dim=1)
    plain_norm = plain_grads[2].norm(dim=1)
    assert bool((weighted_norm > plain_norm).all())


def reference_spread_out(x: torch.Tensor) -> float:
    x = F.normalize(x, dim=-1)
    b = x.size(0)
    total = sum(float(x[i] @ x[j]) ** 2 for i in range(b) for j in range(b) if i != j)
    return total / (b * (b - 1))


def test_spread_out_on_orthogonal_and_collinear_embeddings() -> None:
    orthogonal = torch.eye(4, 6)
    collinear = torch.ones(4, 6) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    assert spread_out_term(orthogonal).item() == pytest.approx(0.0)
    assert spread_out_term(collinear).item() == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(1)
    random = torch.randn(6, 5, generator=generator)
    assert spread_out_term(random).item() == pytest.approx(reference_spread_out(random), rel=1e-5)
    assert spread_out_term(random[:1]).item() == 0.0


def test_spread_out_loss_uses_queries_and_positives_only(tiny_model) -> None:  # type: ignore[no-untyped-def]
    loss = SpreadOutLoss(tiny_model)
    q, p = torch.eye(3, 4), torch.ones(3, 4)
    negatives = torch.ones(3, 4)  # collinear, but negatives are not regularised
    value = loss.compute_loss_from_embeddings([q, p, negatives])
    assert value.item() == pytest.approx(0.0 + 1.0)


def test_sentence_transformers_gor_is_a_different_formula(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """Why spread_out.py exists: GOR hinges its second moment at 1/d and sees every column."""
    from sentence_transformers.sentence_transformer.losses import (
        GlobalOrthogonalRegularizationLoss,
    )

    gor = GlobalOrthogonalRegularizationLoss(tiny_model, mean_weight=0.0, aggregation="sum")
    angle = torch.tensor(0.9273)  # cos = 0.6: (q·q)^2 = 0.36 < 1/d = 0.5 for d = 2
    q = torch.stack([torch.tensor([1.0, 0.0]), torch.stack([angle.cos(), angle.sin()])])
    p = q.clone()
    ours = SpreadOutLoss(tiny_model).compute_loss_from_embeddings([q, p])
    theirs = gor.compute_loss_from_embeddings([q, p])["gor_second_moment"]
    assert ours.item() == pytest.approx(2 * 0.36, abs=1e-3)
    assert theirs.item() == 0.0


def test_combined_loss_adds_spread_out_with_its_weight(tiny_model, batch) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = batch
    q, p, negatives = q.float(), p.float(), [n.float() for n in negatives]
    infonce = weighted_infonce_loss(tiny_model, temperature=0.05, alpha=5.0)
    combined = RetrievalLoss(tiny_model, infonce=infonce, spread_out_weight=0.3)
    expected = reference_weighted_infonce(
        q.double(), p.double(), [n.double() for n in negatives], 0.05, 5.0
    )
    expected = expected.item() + 0.3 * (reference_spread_out(q) + reference_spread_out(p))
    value = combined.compute_loss_from_embeddings([q, p, *negatives], None)
    assert value.item() == pytest.approx(expected, rel=1e-4)
    config = combined.get_config_dict()
    assert config["spread_out_weight"] == 0.3
    assert config["infonce"]["scale"] == pytest.approx(20.0)
    assert config["infonce"]["hardness_strength"] == 5.0


def test_distillation_term_is_one_minus_cosine_per_column(tiny_model, batch) -> None:  # type: ignore[no-untyped-def]
    q, p, negatives = (t.float() for t in (batch[0], batch[1], batch[2][0]))
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(5, 3, 8, generator=generator)
    loss = build_loss(tiny_model, alpha=0.0, distillation_weight=0.5, teacher_dim=64)
    plain = weighted_infonce_loss(tiny_model, alpha=0.0)
    # teacher_dim 64 = the student's: no projection, a pure embedding-matching term
    assert loss.distillation.projection is None
    students = [q, p, negatives]
    value = loss.compute_loss_from_embeddings(students, teacher)
    distill = (
        sum(
            (1 - F.cosine_similarity(s, teacher[:, i], dim=-1)).mean()
            for i, s in enumerate(students)
        )
        / 3
    )
    expected = plain.compute_loss_from_embeddings(students, None) + 0.5 * distill
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_teacher_embeddings_are_per_column_and_encode_each_text_once(tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    class Counting:
        def encode_queries(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return tiny_encoder.encode_queries(texts)

        def encode_documents(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return tiny_encoder.encode_documents(texts)

    columns = [["git merge", "dns"], ["git rebase", "dhcp"], ["docker", "docker"]]
    out = teacher_embeddings(Counting(), columns, kinds=["query", "document", "document"])
    assert out.shape == (2, 3, 64)
    assert calls == [2, 2, 1]
    torch.testing.assert_close(
        torch.from_numpy(out[1, 0]), torch.from_numpy(tiny_encoder.encode_queries(["dns"])[0])
    )


def test_matryoshka_sums_the_loss_over_truncated_dims(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    loss = build_loss(
        tiny_model, temperature=0.1, alpha=5.0, spread_out_weight=0.2, matryoshka_dims=(32, 16)
    )
    assert isinstance(loss, MatryoshkaLoss)
    assert loss.matryoshka_dims == (64, 32, 16)  # the full dimension is always trained
    columns = [
        ["backup restore", "git merge", "dns subnet", "ssh agent"],
        ["snapshot disk", "rebase branch", "dhcp router", "key config"],
        ["python wheel", "docker image", "cron timer", "tls certificate"],
    ]
    features = [tiny_model.tokenize(texts) for texts in columns]
    with torch.no_grad():
        full = [tiny_model(dict(f))["sentence_embedding"] for f in features]
        expected = sum(
            loss.loss.compute_loss_from_embeddings(
                [F.normalize(e[:, :dim], dim=-1) for e in full], None
            )
            for dim in (64, 32, 16)
        )
        value = loss([dict(f) for f in features], None)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(Exception, match="dimension"):
        build_loss(tiny_model, matryoshka_dims=(128,))
