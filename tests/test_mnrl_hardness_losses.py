"""MultipleNegativesRankingLoss's hardness weighting (sentence-transformers 6.3's ``hardness_mode`` /
``hardness_strength``), with every direction and partition mode: values and gradients against
sentence-transformers, values against a naive loop written from the definition; the cached loss too."""
from __future__ import annotations

import math
import warnings

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from st_stub import st_loss

from labkit.losses.cached import CachedMultipleNegativesRankingLoss
from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.model import tiny_model

HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
ALL_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
DIRECTION_CASES = [
    (("query_to_doc",), "joint"),
    (("query_to_doc",), "per_direction"),
    (("query_to_doc", "doc_to_query"), "per_direction"),
    (ALL_DIRECTIONS, "joint"),
]


def columns(num_columns, batch_size=6, dim=16, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, dtype=dtype) for _ in range(num_columns)]


def value_and_grads(loss_fn, inputs):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    value = loss_fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


def naive_hardness_mnrl(anchor, positive, negatives, scale, directions, partition_mode, mode, strength):
    """InfoNCE, one anchor at a time, with alpha * cos added to the query->doc negatives `mode` names."""
    batch_size = len(anchor)
    candidates, owner, is_positive = [], [], []
    for column_index, column in enumerate([positive, *negatives]):
        candidates += column
        owner += list(range(batch_size))
        is_positive += [column_index == 0] * batch_size
    losses = []
    for i in range(batch_size):
        rows = {"query_to_doc": []}
        for j, candidate in enumerate(candidates):
            similarity = naive.cosine(anchor[i], candidate)
            own, own_positive = owner[j] == i, owner[j] == i and is_positive[j]
            penalised = {"in_batch_negatives": not own, "hard_negatives": own and not own_positive,
                         "all_negatives": not own_positive}[mode]
            rows["query_to_doc"].append(scale * similarity + (strength * similarity if penalised else 0.0))
        if "query_to_query" in directions:
            rows["query_to_query"] = [scale * naive.cosine(anchor[i], anchor[j]) for j in range(batch_size) if j != i]
        if "doc_to_query" in directions:
            rows["doc_to_query"] = [scale * naive.cosine(positive[i], anchor[j]) for j in range(batch_size)]
        if "doc_to_doc" in directions:
            rows["doc_to_doc"] = [scale * naive.cosine(positive[i], c) for c, o in zip(candidates, owner) if o != i]
        positive_logit = scale * naive.cosine(anchor[i], positive[i])
        if partition_mode == "joint":
            log_normaliser = naive.log_sum_exp([x for row in rows.values() for x in row])
        else:
            log_normaliser = naive.mean([naive.log_sum_exp(row) for row in rows.values()])
        losses.append(log_normaliser - positive_logit)
    return naive.mean(losses)


@pytest.mark.parametrize("num_negatives", [0, 1, 2])
@pytest.mark.parametrize("directions,partition_mode", DIRECTION_CASES)
@pytest.mark.parametrize("hardness_mode", HARDNESS_MODES)
def test_hardness_matches_st_and_naive(hardness_mode, directions, partition_mode, num_negatives):
    inputs = columns(2 + num_negatives, seed=num_negatives)
    kwargs = dict(directions=directions, partition_mode=partition_mode, hardness_mode=hardness_mode,
                  hardness_strength=9.0, scale=20.0)
    value, grads = value_and_grads(MultipleNegativesRankingLoss(**kwargs), inputs)
    st_value, st_grads = value_and_grads(
        lambda *c: st_loss(st_losses.MultipleNegativesRankingLoss, *c, **kwargs), inputs)
    torch.testing.assert_close(value, st_value, rtol=1e-12, atol=1e-12)
    for grad, st_grad in zip(grads, st_grads):
        torch.testing.assert_close(grad, st_grad, rtol=1e-10, atol=1e-12)
    lists = [c.tolist() for c in inputs]
    expected = naive_hardness_mnrl(lists[0], lists[1], lists[2:], 20.0, directions, partition_mode,
                                   hardness_mode, 9.0)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_hard_negatives_mode_without_negatives_is_plain_mnrl():
    """Only the anchor's own hard negatives are penalised: with pairs only, nothing changes."""
    inputs = columns(2)
    plain = MultipleNegativesRankingLoss()(*inputs)
    torch.testing.assert_close(MultipleNegativesRankingLoss(hardness_mode="hard_negatives",
                                                            hardness_strength=5.0)(*inputs), plain)
    assert MultipleNegativesRankingLoss(hardness_mode="in_batch_negatives", hardness_strength=5.0)(*inputs) != plain


def test_penalty_has_no_gradient_of_its_own():
    """The gradient equals that of plain MNRL on logits shifted by a constant: the penalty is stop-grad."""
    anchor, positive, negative = columns(3, batch_size=3, dim=4, seed=5)
    loss_fn = MultipleNegativesRankingLoss(hardness_mode="all_negatives", hardness_strength=3.0, scale=2.0)
    _, grads = value_and_grads(loss_fn, [anchor, positive, negative])
    # Finite differences of the naive loss with the penalty frozen at the unperturbed similarities:
    frozen = [[3.0 * naive.cosine(a, c) for c in positive.tolist() + negative.tolist()] for a in anchor.tolist()]

    def frozen_loss(a, p, n):
        total = 0.0
        for i in range(len(a)):
            row = [2.0 * naive.cosine(a[i], c) + (0.0 if j == i else frozen[i][j]) for j, c in enumerate(p + n)]
            total += naive.log_sum_exp(row) - 2.0 * naive.cosine(a[i], p[i])
        return total / len(a)

    expected = naive.numerical_gradient(frozen_loss, [anchor.tolist(), positive.tolist(), negative.tolist()])
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_explain_with_hardness_keeps_raw_similarities_and_the_forward_value():
    inputs = columns(3, seed=6)
    loss_fn = MultipleNegativesRankingLoss(hardness_mode="in_batch_negatives", hardness_strength=9.0)
    explanation = loss_fn.explain(*inputs)
    torch.testing.assert_close(explanation.loss, loss_fn(*inputs))
    raw = torch.nn.functional.normalize(inputs[0], dim=1) @ torch.nn.functional.normalize(
        torch.cat(inputs[1:]), dim=1).T
    torch.testing.assert_close(explanation.similarity["query_to_doc"], raw)
    diagonal = torch.arange(6)
    torch.testing.assert_close(explanation.logits["query_to_doc"][diagonal, diagonal], 20.0 * raw[diagonal, diagonal])


def test_hardness_defaults_and_bad_arguments():
    loss_fn = MultipleNegativesRankingLoss()
    assert (loss_fn.hardness_mode, loss_fn.hardness_strength) == (None, 0.0)
    assert loss_fn.get_config_dict()["hardness_mode"] is None
    with pytest.raises(ValueError, match="hardness_mode must be one of"):
        MultipleNegativesRankingLoss(hardness_mode="hardest")
    with pytest.raises(ValueError, match="hardness_strength must be non-negative"):
        MultipleNegativesRankingLoss(hardness_mode="hard_negatives", hardness_strength=-1.0)
    with pytest.warns(UserWarning, match="no effect"):
        MultipleNegativesRankingLoss(hardness_mode="hard_negatives")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MultipleNegativesRankingLoss(hardness_strength=3.0)  # ignored without a mode, as in sentence-transformers


@pytest.mark.parametrize("hardness_mode", ["in_batch_negatives", "hard_negatives"])
def test_cached_mnrl_with_hardness_matches_st_on_the_model(hardness_mode):
    model = tiny_model(seed=0).double()
    texts = [["a cat", "a dog", "the sun", "rain falls", "my card"], ["a kitten", "a puppy", "sunshine", "a storm",
             "the pin"], ["a car", "a tree", "the moon", "snow", "a refund"]]
    features = [model.tokenize(t) for t in texts]
    kwargs = dict(hardness_mode=hardness_mode, hardness_strength=5.0)

    model.zero_grad()
    st_value = st_loss(st_losses.MultipleNegativesRankingLoss, *[model(f) for f in features], **kwargs)
    st_value.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    value = CachedMultipleNegativesRankingLoss(model, mini_batch_size=2, **kwargs)(features)
    value.backward()
    assert math.isclose(value.item(), st_value.item(), rel_tol=1e-10)
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-8, atol=1e-10)
