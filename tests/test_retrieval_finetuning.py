"""labkit.course.retrieval_finetuning (notebook 14): the batch-duplicate counts against a naive loop, the
accumulation/GradCache comparison against the loss computed directly, the comparison's summary and per-query
view on hand-made numbers, and one tiny end-to-end comparison with its refusals."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from labkit.course.batch_composition import shuffled_batches
from labkit.course.retrieval_finetuning import (
    REPORTED, RetrievalComparison, StartingPointEvaluator, accumulation_versus_cache, batch_duplicates,
    compare_retrieval_methods, encode_collection, smaller_collection,
)
from labkit.data import RetrievalData
from labkit.losses import MultipleNegativesRankingLoss

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_collection(split="train", n_queries=10, n_docs=24, offset=0):
    corpus = {f"d{i}": f"abstract {i} about subject {i % 6} and cells" for i in range(n_docs)}
    queries = {f"q{offset + i}": f"claim on subject {i % 6} number {i}" for i in range(n_queries)}
    qrels = {q: {f"d{(2 * i) % n_docs}": 1, **({f"d{(2 * i + 1) % n_docs}": 1} if i % 3 == 0 else {})}
             for i, q in enumerate(queries)}
    return RetrievalData(corpus, queries, qrels, split, "toy")


def naive_duplicate_counts(pairs, batches):
    with_duplicate = rows = 0
    for batch in batches:
        anchors = [pairs["anchor"][i] for i in batch]
        positives = [pairs["positive"][i] for i in batch]
        shared = [anchors.count(a) > 1 or positives.count(p) > 1 for a, p in zip(anchors, positives)]
        with_duplicate += any(shared)
        rows += sum(shared)
    return with_duplicate, rows


def test_batch_duplicates_counts_as_a_naive_loop_and_the_sampler_has_none():
    pairs = toy_collection(n_queries=30).pairs()
    table = batch_duplicates(pairs, batch_size=6, seed=3)
    shuffled = table.loc["shuffled (DataLoader shuffle=True)"]
    expected = naive_duplicate_counts(pairs, shuffled_batches(len(pairs), 6, 3))
    assert (shuffled["batches with a repeated text"], shuffled["rows sharing a text with another row"]) == expected
    assert expected[1] > 0  # the toy data does repeat texts: the check above is not vacuous
    assert table.loc["NoDuplicatesBatchSampler", "rows sharing a text with another row"] == 0


def test_accumulation_is_the_mean_of_mini_batch_losses_and_gradcache_the_whole_batch(tiny):
    anchors = [f"claim {i} about cells" for i in range(8)]
    positives = [f"abstract {i} on cells and genes" for i in range(8)]
    table = accumulation_versus_cache(tiny, anchors, positives, mini_batch_size=2, max_length=16)
    model = tiny.eval()
    with torch.no_grad():
        a, p = (model(model.tokenize(t, max_length=16)) for t in (anchors, positives))
    whole = float(MultipleNegativesRankingLoss()(a, p))
    pieces = np.mean([float(MultipleNegativesRankingLoss()(a[i:i + 2], p[i:i + 2])) for i in range(0, 8, 2)])
    losses = table["loss"].to_numpy()
    assert math.isclose(losses[0], whole, rel_tol=1e-5) and math.isclose(losses[2], whole, rel_tol=1e-4)
    assert math.isclose(losses[1], pieces, rel_tol=1e-5)
    assert table["negatives per anchor"].tolist() == [7, 1, 7]
    with pytest.raises(ValueError, match="must divide"):
        accumulation_versus_cache(tiny, anchors, positives, mini_batch_size=3)


def hand_made_comparison():
    runs = pd.DataFrame([
        {"method": "MNRL", "seed": 1, **{m: v for m, v in zip(REPORTED, (0.60, 0.55, 0.90))}},
        {"method": "MNRL", "seed": 2, **{m: v for m, v in zip(REPORTED, (0.64, 0.57, 0.92))}},
        {"method": "GIST", "seed": 1, **{m: v for m, v in zip(REPORTED, (0.50, 0.45, 0.80))}},
        {"method": "GIST", "seed": 2, **{m: v for m, v in zip(REPORTED, (0.52, 0.47, 0.84))}},
    ])
    index = pd.Index(["a", "b", "c", "d"], name="query_id")
    base = pd.Series([0.5, 0.5, 0.5, 0.5], index=index)
    per_query = {("MNRL", 1): pd.Series([0.9, 0.5, 0.3, 0.5], index=index),
                 ("MNRL", 2): pd.Series([0.7, 0.5, 0.1, 0.5], index=index),
                 ("GIST", 1): base, ("GIST", 2): base}
    return RetrievalComparison(runs, per_query, dict(zip(REPORTED, (0.58, 0.5, 0.88))), base,
                               test_queries={"a": "claim a", "b": "claim b", "c": "claim c", "d": "claim d"})


def test_summary_means_sds_and_change_in_sds():
    summary = hand_made_comparison().summary().set_index("method")
    mnrl = summary.loc["MNRL"]
    assert math.isclose(mnrl["cosine_ndcg@10 mean"], 0.62) and math.isclose(mnrl["cosine_ndcg@10 sd"], 0.04 / math.sqrt(2))
    assert math.isclose(mnrl["ndcg_change"], 0.62 - 0.58)
    assert math.isclose(mnrl["change_in_sds"], 0.04 / (0.04 / math.sqrt(2)))
    assert summary.index[0] == "base model" and summary.loc["base model", "seeds"] == 0


def test_query_changes_lists_only_queries_that_moved_with_their_texts():
    comparison = hand_made_comparison()
    table = comparison.query_changes("MNRL", count=3)
    assert table["query_id"].tolist() == ["a", "c"]  # a rose by 0.3, c fell by 0.3; b and d did not move
    assert table["query"].tolist() == ["claim a", "claim c"]
    assert np.allclose(table["change"], [0.3, -0.3])
    assert comparison.changed_counts("MNRL") == {"better": 1, "worse": 1, "same": 2}
    assert comparison.query_changes("GIST").empty
    with pytest.raises(KeyError, match="No runs of"):
        comparison.query_changes("TSDAE")


def test_a_tiny_comparison_selects_on_dev_and_scores_test_once(tiny):
    train_all, test = toy_collection("train", 12), toy_collection("test", 6, offset=100)
    train, dev = train_all.split_queries(dev_size=3, seed=0)
    test_embeddings = encode_collection(tiny, test, max_length=16, precision="fp32")
    comparison = compare_retrieval_methods(tiny, train, test, dev=dev, test_embeddings=test_embeddings,
                                           methods=("MNRL", "GIST"), seeds=(0, 1), steps=2, batch_size=4,
                                           max_length=16, precision="fp32")
    assert comparison.runs[["method", "seed"]].values.tolist() == [["MNRL", 0], ["MNRL", 1], ["GIST", 0], ["GIST", 1]]
    assert set(comparison.per_query[("MNRL", 0)].index) == set(test.qrels)
    assert all(0 <= value <= 1 for value in comparison.runs["cosine_ndcg@10"])
    with pytest.raises(ValueError, match="in train and in dev or test"):
        compare_retrieval_methods(tiny, train_all, test, dev=dev, test_embeddings=test_embeddings, steps=1,
                                  methods=("MNRL",))
    with pytest.raises(ValueError, match="needs hard_negatives"):
        compare_retrieval_methods(tiny, train, test, dev=dev, test_embeddings=test_embeddings, steps=1)


def test_smaller_collection_keeps_relevant_documents_of_both_splits():
    train, test = toy_collection("train", 10, 60), toy_collection("test", 10, 60, offset=50)
    small_train, small_test = smaller_collection(train, test, queries=4, corpus=20)
    assert len(small_train.queries) == 4 and len(small_test.queries) == 4
    assert small_train.corpus == small_test.corpus and len(small_train.corpus) == 20
    relevant = {d for split in (small_train, small_test) for docs in split.qrels.values() for d in docs}
    assert relevant <= set(small_test.corpus)


def test_the_starting_point_is_evaluated_once_for_all_runs_and_later_calls_evaluate_the_model():
    calls = []

    def evaluator(model):
        calls.append(model)
        return {"ndcg": float(model)}

    evaluator.main_metric = "ndcg"
    shared = StartingPointEvaluator(evaluator)
    first, second = shared.for_run(), shared.for_run()
    assert first.main_metric == "ndcg"
    assert first(0.5) == {"ndcg": 0.5} and first(0.7) == {"ndcg": 0.7}
    assert second(0.9) == {"ndcg": 0.5}  # step 0 of the second run: the same starting model, not re-evaluated
    assert second(0.8) == {"ndcg": 0.8}
    assert calls == [0.5, 0.7, 0.8]
