"""Tests for labkit.losses.classification.ClassificationLoss: a linear head + cross-entropy on embeddings.

References: torch.nn.functional.cross_entropy on a linear layer built by hand from the same weights, and a
slow Python loop over the batch (log-sum-exp written out); values and gradients (embeddings and head)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.losses.classification import ClassificationLoss


def batch(size: int = 6, dim: int = 5, classes: int = 4, seed: int = 0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(size, dim, generator=generator, dtype=dtype)
    labels = torch.randint(0, classes, (size,), generator=generator)
    return embeddings, labels


def loss_with_head(dim: int, classes: int, seed: int, dtype=torch.float64, **kwargs) -> ClassificationLoss:
    torch.manual_seed(seed)
    return ClassificationLoss(dim, classes, **kwargs).to(dtype)


def naive_cross_entropy(embeddings: np.ndarray, weight: np.ndarray, bias: np.ndarray, labels) -> float:
    """-log softmax(W e + b)[y], averaged over the batch, one example and one class at a time."""
    total = 0.0
    for e, y in zip(embeddings, labels):
        logits = [sum(w_k * e_k for w_k, e_k in zip(w, e)) + b for w, b in zip(weight, bias)]
        largest = max(logits)
        log_sum_exp = largest + math.log(sum(math.exp(z - largest) for z in logits))
        total += log_sum_exp - logits[int(y)]
    return total / len(labels)


@pytest.mark.parametrize("size, dim, classes, seed", [(6, 5, 4, 0), (1, 3, 2, 1), (16, 32, 70, 2)])
def test_value_and_gradients_equal_cross_entropy_on_a_hand_built_linear_layer(size, dim, classes, seed):
    embeddings, labels = batch(size, dim, classes, seed)
    loss_fn = loss_with_head(dim, classes, seed)
    weight = loss_fn.classifier.weight.detach().clone().requires_grad_(True)
    bias = loss_fn.classifier.bias.detach().clone().requires_grad_(True)

    ours_input = embeddings.clone().requires_grad_(True)
    ours = loss_fn(ours_input, labels)
    ours.backward()

    ref_input = embeddings.clone().requires_grad_(True)
    reference = F.cross_entropy(ref_input @ weight.T + bias, labels)
    reference.backward()

    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours_input.grad, ref_input.grad)
    torch.testing.assert_close(loss_fn.classifier.weight.grad, weight.grad)
    torch.testing.assert_close(loss_fn.classifier.bias.grad, bias.grad)


def test_value_equals_a_naive_loop():
    embeddings, labels = batch(7, 4, 3, seed=3)
    loss_fn = loss_with_head(4, 3, seed=3)
    expected = naive_cross_entropy(embeddings.numpy(), loss_fn.classifier.weight.detach().numpy(),
                                   loss_fn.classifier.bias.detach().numpy(), labels.tolist())
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_gradient_with_respect_to_embeddings_is_softmax_minus_one_hot_through_the_head():
    # d/d e_i of mean CE = (softmax(z_i) - onehot(y_i)) W / B: written out, not taken from autograd.
    embeddings, labels = batch(5, 3, 4, seed=4)
    loss_fn = loss_with_head(3, 4, seed=4)
    weight = loss_fn.classifier.weight.detach().numpy()
    bias = loss_fn.classifier.bias.detach().numpy()
    expected = np.zeros((5, 3))
    for i, (e, y) in enumerate(zip(embeddings.numpy(), labels.tolist())):
        logits = weight @ e + bias
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        probabilities[y] -= 1.0
        expected[i] = probabilities @ weight / 5
    inputs = embeddings.clone().requires_grad_(True)
    loss_fn(inputs, labels).backward()
    np.testing.assert_allclose(inputs.grad.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_without_bias_and_with_a_custom_loss_fct():
    embeddings, labels = batch(8, 6, 5, seed=5)
    loss_fn = loss_with_head(6, 5, seed=5, bias=False, loss_fct=nn.CrossEntropyLoss(label_smoothing=0.1))
    assert loss_fn.classifier.bias is None
    expected = F.cross_entropy(embeddings @ loss_fn.classifier.weight.T, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss_fn(embeddings, labels), expected)


def test_without_labels_it_returns_logits_and_predict_takes_their_argmax():
    embeddings, _ = batch(4, 3, 2, seed=6)
    loss_fn = loss_with_head(3, 2, seed=6)
    logits = loss_fn(embeddings)
    torch.testing.assert_close(logits, embeddings @ loss_fn.classifier.weight.T + loss_fn.classifier.bias)
    assert loss_fn.predict(embeddings).tolist() == logits.argmax(dim=1).tolist()


def test_a_well_separated_head_gives_a_small_loss_and_a_wrong_one_a_large_loss():
    loss_fn = ClassificationLoss(2, 2).double()
    with torch.no_grad():
        loss_fn.classifier.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))
        loss_fn.classifier.bias.zero_()
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    right = loss_fn(embeddings, torch.tensor([0, 1])).item()
    wrong = loss_fn(embeddings, torch.tensor([1, 0])).item()
    assert right == pytest.approx(math.log(1 + math.exp(-10.0)))
    assert wrong == pytest.approx(10.0 + math.log(1 + math.exp(-10.0)))


def test_the_head_is_a_parameter_and_fit_trains_it_with_its_own_learning_rate():
    from labkit.model import tiny_model
    from labkit.collate import TextDataset
    from labkit.train import fit

    model = tiny_model(seed=0)
    texts = [f"passage {i} about {'cats dogs birds fish'.split()[i % 4]}" for i in range(32)]
    labels = [i % 4 for i in range(32)]
    loss_fn = ClassificationLoss(model.embedding_dim, 4)
    assert {name for name, _ in loss_fn.named_parameters()} == {"classifier.weight", "classifier.bias"}
    head_before = loss_fn.classifier.weight.detach().clone()
    encoder_before = next(model.parameters()).detach().clone()
    result = fit(model, loss_fn, TextDataset(texts, labels), batch_size=8, steps=3, lr=1e-5, loss_lr=1e-2,
                 warmup_ratio=0.0, max_length=16, show_progress=False, live_plot=False)
    assert result.steps == 3
    head_change = (loss_fn.classifier.weight - head_before).abs().max().item()
    encoder_change = (next(model.parameters()) - encoder_before).abs().max().item()
    assert head_change > 0 and encoder_change > 0
    # Adam moves every parameter by about its learning rate per step: the head's is 1000x larger.
    assert head_change > 100 * encoder_change


def test_a_few_steps_on_fixed_embeddings_lower_the_loss():
    embeddings, labels = batch(12, 4, 3, seed=7, dtype=torch.float32)
    loss_fn = ClassificationLoss(4, 3)
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    first = loss_fn(embeddings, labels).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss_fn(embeddings, labels).backward()
        optimizer.step()
    assert loss_fn(embeddings, labels).item() < first


def test_embedding_dim_alias_and_constructor_errors():
    assert ClassificationLoss(embedding_dim=8, num_labels=3).embedding_dimension == 8
    with pytest.raises(TypeError, match="num_labels"):
        ClassificationLoss(8)
    with pytest.raises(ValueError, match="alias"):
        ClassificationLoss(8, 3, embedding_dim=4)
    with pytest.raises(ValueError, match="positive int"):
        ClassificationLoss(8, 0)
    with pytest.raises(ValueError, match="positive int"):
        ClassificationLoss(8.5, 3)


def test_bad_inputs_get_clear_errors():
    loss_fn = ClassificationLoss(4, 3)
    embeddings = torch.randn(5, 4)
    with pytest.raises(ValueError, match="embedding_dimension=4"):
        loss_fn(torch.randn(5, 6), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="0..2"):
        loss_fn(embeddings, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="0..2"):
        loss_fn(embeddings, torch.tensor([0, -1, 2, 1, 0]))
    with pytest.raises(TypeError, match="integer class labels"):
        loss_fn(embeddings, torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="expects 5 labels"):
        loss_fn(embeddings, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        loss_fn([[0.0] * 4], torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        loss_fn(torch.randn(4), torch.tensor([0]))


def test_labels_as_a_list_or_numpy_array_work():
    embeddings, labels = batch(6, 5, 4, seed=8)
    loss_fn = loss_with_head(5, 4, seed=8)
    expected = loss_fn(embeddings, labels)
    torch.testing.assert_close(loss_fn(embeddings, labels.tolist()), expected)
    torch.testing.assert_close(loss_fn(embeddings, labels.numpy()), expected)


def test_docstring_example_runs():
    import doctest

    import labkit.losses.classification as module

    failures, tried = doctest.testmod(module, verbose=False)
    assert tried > 0 and failures == 0
