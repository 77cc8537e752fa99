"""EmbedDistillLoss, MSELoss, MarginMSELoss and DistillKLDivLoss: values and gradients against
sentence-transformers 6.3 and naive loops; the label shapes each accepts."""
from __future__ import annotations

import math

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import pairwise_cos_sim as st_pairwise_cos_sim
from st_model_stubs import STModelStub, columns, leaves

from labkit.distances import pairwise_cos_sim
from labkit.losses.distillation import DistillKLDivLoss, EmbedDistillLoss, MarginMSELoss, MSELoss


class SizedStub(STModelStub):
    """sentence-transformers' EmbedDistillLoss sizes its projection from the model."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def get_embedding_dimension(self):
        return self.dim


def random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def compare(ours_fn, st_fn, inputs, labels):
    mine, theirs = leaves(*inputs), leaves(*inputs)
    value = ours_fn(*mine, labels)
    grads = torch.autograd.grad(value, mine)
    st_value = st_fn(columns(*theirs), labels)
    st_value.backward()
    torch.testing.assert_close(value, st_value.detach(), rtol=1e-12, atol=1e-12)
    for grad, their in zip(grads, theirs):
        torch.testing.assert_close(grad, their.grad, rtol=1e-10, atol=1e-12)
    return value


# ------------------------------------------------------------------------------------------------------
# EmbedDistillLoss, MSELoss
# ------------------------------------------------------------------------------------------------------
def naive_embed_distill(students, teachers, metric):
    per_column = []
    for student, teacher in zip(students, teachers):
        if metric == "mse":
            squares = [(s - t) ** 2 for row_s, row_t in zip(student, teacher) for s, t in zip(row_s, row_t)]
            per_column.append(naive.mean(squares))
        elif metric == "l2":
            per_column.append(naive.mean([naive.norm([s - t for s, t in zip(rs, rt)])
                                          for rs, rt in zip(student, teacher)]))
        else:
            per_column.append(naive.mean([1 - naive.cosine(rs, rt) for rs, rt in zip(student, teacher)]))
    return naive.mean(per_column)


@pytest.mark.parametrize("metric", ["cosine", "mse", "l2"])
@pytest.mark.parametrize("label_shape", ["shared", "per_column"])
@pytest.mark.parametrize("num_columns", [1, 2, 3])
def test_embed_distill_matches_st_and_naive(metric, label_shape, num_columns):
    inputs = [random(6, 8, seed=i) for i in range(num_columns)]
    teacher = random(6, 8, seed=10) if label_shape == "shared" else random(6, num_columns, 8, seed=11)
    st_loss = st_losses.EmbedDistillLoss(STModelStub(), distance_metric=metric)
    value = compare(EmbedDistillLoss(metric), st_loss, inputs, teacher)
    teachers = [teacher] * num_columns if label_shape == "shared" else list(teacher.unbind(1))
    expected = naive_embed_distill([c.tolist() for c in inputs], [t.tolist() for t in teachers], metric)
    assert value.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("metric", ["cosine", "mse"])
def test_embed_distill_with_a_projection_matches_st(metric):
    inputs = [random(5, 6, seed=1), random(5, 6, seed=2)]
    teacher = random(5, 12, seed=3)
    st_loss = st_losses.EmbedDistillLoss(SizedStub(6), distance_metric=metric, projection_dim=12).double()
    ours = EmbedDistillLoss(metric, projection_dim=12, embedding_dimension=6).double()
    ours.projection.load_state_dict(st_loss.projection.state_dict())
    compare(ours, st_loss, inputs, teacher)
    assert [name for name, _ in ours.named_parameters()] == ["projection.weight", "projection.bias"]
    ours(*inputs, teacher).backward()
    assert ours.projection.weight.grad is not None  # the projection learns with the student


def test_mse_loss_matches_st():
    inputs = [random(4, 8, seed=4), random(4, 8, seed=5)]
    teacher = random(4, 8, seed=6)
    value = compare(MSELoss(), st_losses.MSELoss(STModelStub()), inputs, teacher)
    assert value.item() == pytest.approx(naive_embed_distill([c.tolist() for c in inputs],
                                                             [teacher.tolist()] * 2, "mse"), rel=1e-10)
    assert MSELoss().get_config_dict() == {"projection_dim": None}


def test_embed_distill_bad_arguments():
    with pytest.raises(ValueError, match="distance_metric must be one of"):
        EmbedDistillLoss("dot")
    with pytest.raises(ValueError, match="needs embedding_dimension"):
        EmbedDistillLoss(projection_dim=16)
    with pytest.raises(ValueError, match=r"pass projection_dim=16"):
        EmbedDistillLoss()(torch.randn(4, 8), torch.randn(4, 16))
    with pytest.raises(ValueError, match=r"\(batch_size, 2, teacher_dim\)"):
        EmbedDistillLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3, 8))
    with pytest.raises(ValueError, match="needs the embedding columns and the teacher's labels"):
        EmbedDistillLoss()(torch.randn(4, 8))


# ------------------------------------------------------------------------------------------------------
# MarginMSELoss
# ------------------------------------------------------------------------------------------------------
def naive_margin_mse(query, positive, negatives, margins, similarity=naive.dot):
    squares = []
    for i in range(len(query)):
        for k, negative in enumerate(negatives):
            student = similarity(query[i], positive[i]) - similarity(query[i], negative[i])
            squares.append((student - margins[i][k]) ** 2)
    return naive.mean(squares)


# A flat (B,) label is one margin per row: one negative only.
@pytest.mark.parametrize("num_negatives,label_form", [(1, "margins"), (1, "scores"), (1, "flat"), (3, "margins"),
                                                      (3, "scores")])
def test_margin_mse_matches_st_and_naive(num_negatives, label_form):
    inputs = [random(6, 8, seed=20 + i) for i in range(2 + num_negatives)]
    scores = random(6, 1 + num_negatives, seed=30)
    margins = scores[:, :1] - scores[:, 1:]
    labels = {"margins": margins, "scores": scores, "flat": margins[:, 0]}[label_form]
    value = compare(MarginMSELoss(), st_losses.MarginMSELoss(STModelStub()), inputs, labels)
    lists = [c.tolist() for c in inputs]
    assert value.item() == pytest.approx(naive_margin_mse(lists[0], lists[1], lists[2:], margins.tolist()), rel=1e-10)


def test_margin_mse_with_cosine_matches_st_and_gradient_matches_finite_differences():
    inputs = [random(3, 4, seed=40 + i) for i in range(3)]
    margins = random(3, 1, seed=43)
    compare(MarginMSELoss(pairwise_cos_sim), st_losses.MarginMSELoss(STModelStub(), st_pairwise_cos_sim),
            inputs, margins)
    mine = leaves(*inputs)
    grads = torch.autograd.grad(MarginMSELoss()(*mine, margins), mine)
    expected = naive.numerical_gradient(lambda q, p, n: naive_margin_mse(q, p, [n], margins.tolist()),
                                        [c.tolist() for c in inputs])
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_margin_mse_bad_labels():
    q, p, n = torch.randn(3, 4, 4).unbind(0)
    with pytest.raises(ValueError, match=r"does not match \(4, 1\)"):
        MarginMSELoss()(q, p, n, torch.randn(4, 3))
    with pytest.raises(ValueError, match="needs \\(query, positive, negative, ...\\) columns"):
        MarginMSELoss()(q, p, torch.randn(4))


# ------------------------------------------------------------------------------------------------------
# DistillKLDivLoss
# ------------------------------------------------------------------------------------------------------
def naive_distill_kl(query, candidates, teacher_scores, student_temperature, teacher_temperature):
    total = 0.0
    for i in range(len(query)):
        student = [naive.dot(query[i], c[i]) / student_temperature for c in candidates]
        teacher = [s / teacher_temperature for s in teacher_scores[i]]
        student_log = [s - naive.log_sum_exp(student) for s in student]
        teacher_p = [math.exp(t - naive.log_sum_exp(teacher)) for t in teacher]
        total += sum(p * (math.log(p) - log_q) for p, log_q in zip(teacher_p, student_log) if p > 0)
    return student_temperature ** 2 * total / len(query)


@pytest.mark.parametrize("temperatures", [dict(), dict(temperature=2.0), dict(student_temperature=0.5),
                                          dict(temperature=3.0, teacher_temperature=0.7)])
@pytest.mark.parametrize("num_candidates", [2, 4])
def test_distill_kl_matches_st_and_naive(num_candidates, temperatures):
    inputs = [random(5, 8, seed=50 + i) / 2 for i in range(1 + num_candidates)]
    teacher = 3 * random(5, num_candidates, seed=60)
    ours = DistillKLDivLoss(**temperatures)
    value = compare(ours, st_losses.DistillKLDivLoss(STModelStub(), **temperatures), inputs, teacher)
    lists = [c.tolist() for c in inputs]
    expected = naive_distill_kl(lists[0], lists[1:], teacher.tolist(), ours.student_temperature,
                                ours.teacher_temperature)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_distill_kl_is_zero_when_the_student_scores_as_the_teacher():
    query, *candidates = [random(4, 6, seed=70 + i) for i in range(4)]
    teacher = torch.stack([(query * c).sum(dim=1) for c in candidates], dim=1)
    assert DistillKLDivLoss()(query, *candidates, teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_distill_kl_bad_arguments():
    q, c = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="at least 3 columns"):
        DistillKLDivLoss()(q, c, torch.randn(4, 1))
    with pytest.raises(ValueError, match=r"shape \(batch_size, N\) = \(4, 2\)"):
        DistillKLDivLoss()(q, c, c, torch.randn(4, 3))
    with pytest.raises(ValueError, match="contain NaN"):
        DistillKLDivLoss()(q, c, c, torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="teacher_temperature must be a positive finite number"):
        DistillKLDivLoss(teacher_temperature=0.0)
    assert DistillKLDivLoss(temperature=2.0, student_temperature=1.0).get_config_dict() == {
        "similarity_fct": "pairwise_dot_score", "temperature": 2.0, "student_temperature": 1.0}


def test_the_training_loop_passes_the_teacher_outputs_as_labels():
    from labkit.model import tiny_model
    from labkit.train import compute_loss

    model = tiny_model(seed=0)
    features = [model.tokenize(["a cat", "a dog"]), model.tokenize(["eine Katze", "ein Hund"])]
    teacher = torch.randn(2, model.embedding_dim)
    with torch.no_grad():
        embeddings = [model(f) for f in features]
        torch.testing.assert_close(compute_loss(model, MSELoss(), features, teacher), MSELoss()(*embeddings, teacher))
        scores = torch.randn(2, 1)
        torch.testing.assert_close(compute_loss(model, MarginMSELoss(), features + features[:1], scores),
                                   MarginMSELoss()(*embeddings, embeddings[0], labels=scores))
