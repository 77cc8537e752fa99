"""labkit.course.smaller_and_cheaper (notebook 15): every-layer encoding against cut models, the truncation
and layer curves against ir_metrics on hand-truncated embeddings, the comparison tables' arithmetic on
hand-made numbers, and tiny end-to-end runs of both comparisons with their refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from labkit.course.retrieval_finetuning import BASE, K_LISTS, REPORTED
from labkit.course.smaller_and_cheaper import (
    SizeComparison, compare_distillation, compare_size_methods, encode_collection_layers, encode_layers,
    encoding_seconds, layer_curve, truncation_curve,
)
from labkit.hard_negatives import deduplicate_pairs, mine_from_embeddings
from labkit.model import keep_first_layers, tiny_model
from labkit.retrieval import ir_metrics

from test_retrieval_finetuning import toy_collection

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = ["a short one", "a much longer text about cells, genes and the proteins they make", "mid length text here"]


def test_every_layer_encoding_equals_the_cut_models_and_keeps_the_texts_order():
    model = tiny_model(seed=0, num_layers=3)
    layers = encode_layers(model, TEXTS, batch_size=2, max_length=16, precision="fp32")
    assert layers.shape == (4, len(TEXTS), model.embedding_dim)
    assert torch.allclose(layers[-1], torch.from_numpy(model.encode(TEXTS, max_length=16)), atol=1e-5)
    for kept in (1, 2):
        cut = keep_first_layers(model, kept).encode(TEXTS, max_length=16)
        assert torch.allclose(layers[kept], torch.from_numpy(cut), atol=1e-5)
    assert not torch.allclose(layers[1], layers[-1])  # the layers differ: the checks above are not vacuous


def test_truncation_curve_scores_the_first_dimensions_renormalised():
    data = toy_collection("test", 6)
    generator = torch.Generator().manual_seed(0)
    queries, corpus = torch.randn(6, 32, generator=generator), torch.randn(24, 32, generator=generator)
    curve = truncation_curve(queries, corpus, data, dims=(32, 8, 2))
    assert curve.index.tolist() == [32, 8, 2] and curve["bytes per vector"].tolist() == [128, 32, 8]
    for dim in (8, 2):
        # what a user of truncated vectors computes: cut, renormalise, dot product
        expected = ir_metrics(F.normalize(queries[:, :dim], dim=1), F.normalize(corpus[:, :dim], dim=1), data.qrels,
                              list(data.queries), list(data.corpus), score_functions="dot",
                              precision_recall_at_k=(1, 3, 5, 10, 100))
        assert np.isclose(curve.loc[dim, "cosine_ndcg@10"], expected["dot_ndcg@10"], atol=1e-6)
        assert np.isclose(curve.loc[dim, "cosine_recall@100"], expected["dot_recall@100"], atol=1e-6)
    with pytest.raises(ValueError, match="between 1 and the embedding size 32"):
        truncation_curve(queries, corpus, data, dims=(64,))


def test_layer_curve_has_one_row_per_depth_and_refuses_depths_the_model_lacks():
    data = toy_collection("test", 6)
    queries, corpus = encode_collection_layers(tiny_model(seed=0), data, max_length=16, precision="fp32")
    curve = layer_curve(queries, corpus, data)
    assert curve.index.tolist() == [1, 2] and list(curve.columns) == list(REPORTED)
    top = ir_metrics(queries[2], corpus[2], data.qrels, list(data.queries), list(data.corpus))
    assert np.isclose(curve.loc[2, "cosine_ndcg@10"], top["cosine_ndcg@10"])
    with pytest.raises(ValueError, match="between 1 and the model's 2 layers"):
        layer_curve(queries, corpus, data, layers=[3])


def test_size_tables_average_over_seeds_and_divide_by_the_full_size():
    rows = [(BASE, -1, 4, 0.6), (BASE, -1, 2, 0.3), ("MNRL", 1, 4, 0.7), ("MNRL", 2, 4, 0.5),
            ("MNRL", 1, 2, 0.2), ("MNRL", 2, 2, 0.4)]
    by_dim = pd.DataFrame(rows, columns=["method", "seed", "dim", "cosine_ndcg@10"])
    by_layers = by_dim.rename(columns={"dim": "layers"})
    comparison = SizeComparison(by_dim, by_layers, pd.DataFrame())
    means = comparison.table("dim")
    assert means.columns.tolist() == [4, 2] and means.index.tolist() == [BASE, "MNRL"]
    assert np.allclose(means.loc["MNRL"], [0.6, 0.3]) and np.allclose(means.loc[BASE], [0.6, 0.3])
    sds = comparison.table("dim", statistic="std")
    assert np.isclose(sds.loc["MNRL", 4], np.std([0.7, 0.5], ddof=1)) and sds.loc[BASE].isna().all()
    assert np.allclose(comparison.share_of_full("dim").loc["MNRL"], [1.0, 0.5])
    assert comparison.table("layers").columns.tolist() == [2, 4]  # depths ascending, dims descending


def test_a_tiny_size_comparison_scores_every_method_at_every_size(tiny):
    train_all, test = toy_collection("train", 12), toy_collection("test", 6, offset=100)
    train, dev = train_all.split_queries(dev_size=3, seed=0)
    base_layers = encode_collection_layers(tiny, test, max_length=16, precision="fp32")
    comparison = compare_size_methods(tiny, train, test, dev=dev, base_layers=base_layers, dims=(32, 16, 8),
                                      seeds=(0, 1), steps=2, batch_size=4, max_length=16, precision="fp32")
    assert comparison.runs[["method", "seed"]].values.tolist() == [
        [m, s] for m in ("MNRL", "Matryoshka", "AdaptiveLayer") for s in (0, 1)]
    assert comparison.table("dim").shape == (4, 3) and comparison.table("layers").shape == (4, 2)
    base = comparison.by_dim[comparison.by_dim["method"] == BASE].set_index("dim")
    expected = truncation_curve(base_layers[0][-1], base_layers[1][-1], test, (32, 16, 8))
    assert np.allclose(base["cosine_ndcg@10"], expected["cosine_ndcg@10"])  # the base rows are the base model's
    with pytest.raises(ValueError, match="in train and in dev or test"):
        compare_size_methods(tiny, train_all, test, dev=dev, base_layers=base_layers, steps=1, methods=("MNRL",))
    with pytest.raises(ValueError, match="Unknown methods"):
        compare_size_methods(tiny, train, test, dev=dev, base_layers=base_layers, steps=1, methods=("TSDAE",))


def test_encoding_seconds_times_every_model_and_refuses_zero_rounds(tiny):
    seconds = encoding_seconds({"a": tiny, "b": keep_first_layers(tiny, 1)}, TEXTS, max_length=16,
                               precision="fp32", rounds=1)
    assert seconds.index.tolist() == ["a", "b"] and (seconds > 0).all()
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        encoding_seconds({"a": tiny}, TEXTS, rounds=0)


def test_a_tiny_distillation_cuts_the_teacher_and_trains_each_student(tiny):
    train_all, test = toy_collection("train", 12), toy_collection("test", 6, offset=100)
    train, dev = train_all.split_queries(dev_size=3, seed=0)
    teacher_layers = encode_collection_layers(tiny, test, max_length=16, precision="fp32")
    pairs = train.pairs()
    mining = deduplicate_pairs(pairs["anchor"], pairs["positive"], list(train.corpus.values()))
    embed = lambda texts: torch.from_numpy(tiny.encode(texts, max_length=16))  # noqa: E731
    triplets = pd.DataFrame(mine_from_embeddings(mining, embed(mining.queries), embed(mining.corpus),
                                                 num_negatives=1, output_scores=True).columns)
    result = compare_distillation(tiny, train, test, dev=dev, student_layers=1,
                                  teacher_layers=teacher_layers, triplets=triplets, steps=2, batch_size=4, max_length=16, precision="fp32",
                                  timing_texts=TEXTS, timing_rounds=1)
    table = result.table
    assert table.index.tolist() == ["teacher", "student, no training", "student, MNRL", "student, MSELoss",
                                    "student, MarginMSELoss"]
    assert table["layers"].tolist() == [2, 1, 1, 1, 1]
    assert table.loc["teacher", "speed-up"] == 1.0 and (table["parameters (M)"].iloc[1:] < table["parameters (M)"].iloc[0]).all()
    # the untrained student's row comes from the teacher's layer-1 embeddings: what the cut model itself gives
    cut = keep_first_layers(tiny, 1)
    cut_embeddings = [torch.from_numpy(cut.encode(list(texts), max_length=16))
                      for texts in (test.queries.values(), test.corpus.values())]
    expected = ir_metrics(*cut_embeddings, test.qrels, list(test.queries), list(test.corpus), **K_LISTS)
    assert np.allclose(table.loc["student, no training", list(REPORTED)].to_numpy(dtype=float),
                       [expected[m] for m in REPORTED], atol=1e-6)
    assert result.runs["method"].tolist() == ["MNRL", "MSELoss", "MarginMSELoss"]
    assert result.runs.loc[1, "rows"] == len(set(pairs["anchor"])) + len(test.corpus)  # every claim and document
    with pytest.raises(ValueError, match="needs triplets"):
        compare_distillation(tiny, train, test, dev=dev, student_layers=1, steps=1, methods=("MarginMSELoss",),
                             teacher_layers=teacher_layers)
