"""labkit.retrieval against sentence-transformers' InformationRetrievalEvaluator and a naive loop.

Both evaluators see the same embeddings: ST's is given a stand-in model whose ``encode_query`` and
``encode_document`` return the rows we chose. The SciFact comparison uses the test split with its relevant
documents plus 500 others and bag-of-hashed-words embeddings: cheap, meaningful enough to spread the metrics,
and integer counts, so dot scores tie exactly and the tie-breaking is compared too.
"""
from __future__ import annotations

import functools
import math
import random
import zlib

import numpy as np
import pytest
import torch

from labkit import data
from labkit.retrieval import BYTES_PER_SCORE, DEFAULT_K, evaluate_ir, ir_metrics, metrics_from_relevance, rank_corpus

pytestmark = pytest.mark.usefixtures("one_thread")
ALL_K = dict(accuracy_at_k=[1, 3, 5, 10], precision_recall_at_k=[1, 3, 5, 10, 100], mrr_at_k=[1, 10, 100],
             ndcg_at_k=[1, 3, 10, 100], map_at_k=[10, 100])


def hashed_words(texts, dim=256) -> torch.Tensor:
    """Word counts hashed into ``dim`` buckets (a deterministic, model-free embedding)."""
    return _hashed_words(tuple(texts), dim).clone()


@functools.lru_cache(maxsize=8)
def _hashed_words(texts, dim) -> torch.Tensor:
    rows, buckets = [], []
    for row, text in enumerate(texts):
        words = [zlib.crc32(word.strip(".,;:()").encode()) % dim for word in text.lower().split()]
        rows += [row] * len(words)
        buckets += words
    counts = np.bincount(np.asarray(rows) * dim + np.asarray(buckets), minlength=len(texts) * dim)
    return torch.from_numpy(counts.reshape(len(texts), dim).astype(np.float32))


class TableModel:
    """Stands in for a SentenceTransformer: encode_query / encode_document look the texts up in a table."""

    def __init__(self, texts, embeddings):
        self.rows = {text: i for i, text in enumerate(texts)}
        self.embeddings = embeddings

    def encode(self, sentences, **kwargs):
        return self.embeddings[[self.rows[s] for s in sentences]]

    encode_query = encode_document = encode


def st_metrics(queries: dict, corpus: dict, relevant: dict, embed, chunk_size: int, k_lists: dict) -> dict:
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim, dot_score

    texts = list(queries.values()) + list(corpus.values())
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, corpus_chunk_size=chunk_size,
                                              score_functions={"cosine": cos_sim, "dot": dot_score}, **k_lists)
    scores = evaluator.compute_metrices(TableModel(texts, embed(texts)))
    # flattened as InformationRetrievalEvaluator.__call__ does
    return {f"{name}_{metric.replace('@k', '@' + str(k))}": value
            for name, values in scores.items() for metric, by_k in values.items() for k, value in by_k.items()}


@pytest.fixture(scope="module")
def scifact_subset(data_dir):
    scifact = data.load_scifact("test", data_dir=data_dir)
    relevant_docs = {d for docs in scifact.qrels.values() for d in docs}
    others = random.Random(0).sample(sorted(set(scifact.corpus) - relevant_docs), 500)
    corpus = {d: text for d, text in scifact.corpus.items() if d in relevant_docs or d in others}
    return scifact.queries, corpus, scifact.qrels


@pytest.mark.parametrize("chunk_size", [50_000, 97])
def test_equal_to_sentence_transformers_on_scifact(scifact_subset, chunk_size):
    queries, corpus, qrels = scifact_subset
    k_lists = dict(DEFAULT_K, precision_recall_at_k=[1, 3, 5, 10, 100], mrr_at_k=[10, 100])
    expected = st_metrics(queries, corpus, {q: set(d) for q, d in qrels.items()}, hashed_words, chunk_size, k_lists)
    ours = ir_metrics(hashed_words(list(queries.values())), hashed_words(list(corpus.values())), qrels,
                      list(queries), list(corpus), ("cosine", "dot"), chunk_size, **k_lists)
    assert list(ours) == list(expected)  # same names, same order
    assert np.allclose(list(ours.values()), list(expected.values()), rtol=0, atol=1e-6)
    assert 0.1 < ours["cosine_ndcg@10"] < 0.9 and ours["dot_ndcg@10"] != ours["cosine_ndcg@10"]


def test_a_model_is_encoded_in_chunks_and_gives_the_same_numbers(scifact_subset, tiny):
    queries, corpus, qrels = scifact_subset
    queries = dict(list(queries.items())[:20])
    qrels = {q: qrels[q] for q in queries}
    corpus = {d: t for i, (d, t) in enumerate(corpus.items()) if i < 40 or any(d in qrels[q] for q in qrels)}
    seen = []
    encode = tiny.encode
    tiny.encode = lambda texts, **kwargs: seen.append(len(texts)) or encode(texts, **kwargs)
    ours = evaluate_ir(tiny, (queries, corpus, qrels), ("cosine", "dot"), corpus_chunk_size=16)
    assert seen[0] == 20 and max(seen[1:]) == 16 and sum(seen[1:]) == len(corpus)  # queries once, then chunks
    embed = lambda texts: encode(texts, convert_to_tensor=True)  # noqa: E731
    expected = st_metrics(queries, corpus, {q: set(d) for q, d in qrels.items()}, embed, 16, DEFAULT_K)
    assert np.allclose(list(ours.values()), list(expected.values()), rtol=0, atol=1e-6)
    assert list(ours) == list(expected)


# ------------------------------------------------------------------------------------------------------
# A naive reference: the whole score matrix, a sort per query, the textbook definitions in loops
# ------------------------------------------------------------------------------------------------------
def naive_metrics(queries, corpus, query_ids, corpus_ids, relevant, score, k_lists) -> dict:
    per_query = []
    for i, query_id in enumerate(query_ids):
        if not relevant.get(query_id):
            continue  # as sentence-transformers: queries without a relevant document are not evaluated
        scores = [float(score(queries[i], corpus[j])) for j in range(len(corpus))]
        ranked = sorted(range(len(corpus)), key=lambda j: (-scores[j], corpus_ids[j]))
        rel = [1 if corpus_ids[j] in relevant[query_id] else 0 for j in ranked]
        n_rel = len(relevant[query_id])
        values = {}
        for k in k_lists["accuracy_at_k"]:
            values[f"accuracy@{k}"] = 1.0 if sum(rel[:k]) else 0.0
        for k in k_lists["precision_recall_at_k"]:
            values[f"precision@{k}"] = sum(rel[:k]) / k
            values[f"recall@{k}"] = sum(rel[:k]) / n_rel
        for k in k_lists["ndcg_at_k"]:
            dcg = sum(r / math.log2(rank + 1) for rank, r in enumerate(rel[:k], start=1))
            ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(n_rel, k) + 1))
            values[f"ndcg@{k}"] = dcg / ideal
        for k in k_lists["mrr_at_k"]:
            values[f"mrr@{k}"] = next((1 / rank for rank, r in enumerate(rel[:k], start=1) if r), 0.0)
        for k in k_lists["map_at_k"]:
            precisions = [sum(rel[:rank]) / rank for rank, r in enumerate(rel[:k], start=1) if r]
            values[f"map@{k}"] = sum(precisions) / min(k, n_rel)
        per_query.append(values)
    return {name: sum(values[name] for values in per_query) / len(per_query) for name in per_query[0]}


def cosine(a, b):
    return float(a @ b) / max(float(a.norm()) * float(b.norm()), 1e-12) if a.norm() and b.norm() else 0.0


def random_collection(seed, n_queries=9, n_docs=30, dim=4, integer=False):
    generator = torch.Generator().manual_seed(seed)
    if integer:  # small integer vectors: dot scores tie exactly, many times
        queries = torch.randint(-2, 3, (n_queries, dim), generator=generator).float()
        corpus = torch.randint(-2, 3, (n_docs, dim), generator=generator).float()
    else:
        queries = torch.randn(n_queries, dim, generator=generator)
        corpus = torch.randn(n_docs, dim, generator=generator)
    rng = random.Random(seed)
    corpus_ids = [str(rng.randrange(10 ** 6)) + "x" * i for i in range(n_docs)]  # ids whose order is not the rows'
    query_ids = [f"q{i}" for i in range(n_queries)]
    qrels = {q: {d: 1 for d in rng.sample(corpus_ids, rng.randint(1, 5))} for q in query_ids[:-1]}  # last: none
    return queries, corpus, query_ids, corpus_ids, qrels


# integer vectors tie exactly under dot (exact in float32); under cosine a float64 loop could break a float32
# near-tie the other way, so cosine is compared on Gaussian vectors, where ties have probability 0
@pytest.mark.parametrize("seed, integer, name", [(0, False, "cosine"), (3, False, "cosine"), (0, False, "dot"),
                                                 (1, True, "dot"), (2, True, "dot")])
@pytest.mark.parametrize("chunk_size", [1, 3, 1000])  # chunks smaller than k, and one larger than the corpus
def test_equal_to_a_naive_loop(seed, integer, chunk_size, name):
    queries, corpus, query_ids, corpus_ids, qrels = random_collection(seed, integer=integer)
    score = cosine if name == "cosine" else (lambda a, b: float(a @ b))
    relevant = {q: set(docs) for q, docs in qrels.items()}
    expected = naive_metrics(queries, corpus, query_ids, corpus_ids, relevant, score, ALL_K)
    ours = ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, name, chunk_size, **ALL_K)
    assert sorted(ours) == sorted(f"{name}_{metric}" for metric in expected)
    assert np.allclose([ours[f"{name}_{m}"] for m in expected], list(expected.values()), rtol=0, atol=1e-12)


def test_equal_scores_are_ranked_by_ascending_corpus_id():
    ranking = rank_corpus(torch.ones(1, 2), torch.ones(12, 2), k=5, corpus_ids=[str(i) for i in range(12)],
                          corpus_chunk_size=4)
    assert ranking.doc_ids("0") == ["0", "1", "10", "11", "2"]  # string order, as in sentence-transformers
    ranking = rank_corpus(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0], [2, 0], [1, 0], [2, 0]]), k=3,
                          score_function="dot", corpus_ids=["a", "d", "c", "b"], corpus_chunk_size=1)
    assert ranking.doc_ids("0") == ["b", "d", "c"] and ranking.scores.tolist() == [[2.0, 2.0, 1.0]]


def test_metrics_by_hand_on_a_relevance_matrix():
    hits = torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool)  # 2 and 1 relevant documents
    got = metrics_from_relevance(hits, torch.tensor([2, 1]), dict(accuracy_at_k=[1], precision_recall_at_k=[2],
                                                                   mrr_at_k=[4], ndcg_at_k=[4], map_at_k=[4]))
    ndcg_first = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert got == pytest.approx({"accuracy@1": 0.5, "precision@2": 0.5, "recall@2": 0.75,
                                 "ndcg@4": (ndcg_first + 1) / 2, "mrr@4": 0.75, "map@4": ((1 / 2 + 2 / 4) / 2 + 1) / 2})


# ------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------
def test_qrels_naming_missing_ids_say_which_and_how_many():
    queries, corpus, query_ids, corpus_ids, qrels = random_collection(0)
    bad = dict(qrels, ghost={"nope": 1, corpus_ids[0]: 1})
    bad["q0"] = {"missing-doc": 1}
    with pytest.raises(ValueError, match=r"1 \('ghost'\) query id.*and 2 \('missing-doc', 'nope'\) relevant doc id"):
        ir_metrics(queries, corpus, bad, query_ids, corpus_ids)
    with pytest.raises(ValueError, match="no query has a relevant document"):
        ir_metrics(queries, corpus, {"q0": {corpus_ids[0]: 0}}, query_ids, corpus_ids)


def test_a_chunk_too_large_for_the_memory_bound_suggests_a_size_that_fits():
    queries, corpus, query_ids, corpus_ids, qrels = random_collection(0)
    with pytest.raises(ValueError, match=r"30 documents for 8 queries in chunks of 50,000.*Lower corpus_chunk_size "
                                         r"to 10 or less"):
        ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, max_chunk_bytes=8 * BYTES_PER_SCORE * 110)
    # the size it suggests works
    assert ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, corpus_chunk_size=10,
                      max_chunk_bytes=8 * BYTES_PER_SCORE * 110)
    with pytest.raises(ValueError, match="corpus_chunk_size must be a positive int"):
        ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, corpus_chunk_size=0)
    with pytest.raises(ValueError, match="Even a chunk of 1 does not fit"):
        ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, max_chunk_bytes=1000)
    with pytest.raises(ValueError, match="k must be a positive int"):
        rank_corpus(queries, corpus, k=0)


def test_bad_inputs_get_clear_errors(tiny):
    queries, corpus, query_ids, corpus_ids, qrels = random_collection(0)
    cases = [
        (dict(query_embeddings=queries[:, :3]), "dimension 3 but corpus embeddings have 4"),
        (dict(corpus_ids=corpus_ids[:-1]), "30 corpus embeddings but 29 corpus ids"),
        (dict(corpus_ids=[corpus_ids[0]] * 30), r"corpus ids repeat: 1 \("),
        (dict(score_functions="euclidean"), r"unknown score function.*cosine, dot"),
        (dict(ndcg_at_k=[0]), "ndcg_at_k must be a list of positive ints"),
        (dict(corpus_embeddings=corpus * float("nan")), "NaN or infinite"),
    ]
    for change, match in cases:
        arguments = {**dict(query_embeddings=queries, corpus_embeddings=corpus, qrels=qrels, query_ids=query_ids,
                            corpus_ids=corpus_ids), **change}
        with pytest.raises(ValueError, match=match):
            ir_metrics(**arguments)
    with pytest.raises(TypeError, match="unknown argument.*recall_at_k"):
        ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, recall_at_k=[1])
    with pytest.raises(ValueError, match=r"1 \('b'\) queries have an empty"):
        evaluate_ir(tiny, ({"a": "fine", "b": " "}, {"d": "doc"}, {"a": {"d": 1}, "b": {"d": 1}}))


# ------------------------------------------------------------------------------------------------------
# Per-query metrics, fit's evaluator, and the splits that keep model selection off the test queries
# ------------------------------------------------------------------------------------------------------
def test_per_query_rows_average_to_the_overall_metrics():
    from labkit.retrieval import ir_per_query

    queries, corpus, query_ids, corpus_ids, qrels = random_collection(4)
    overall = ir_metrics(queries, corpus, qrels, query_ids, corpus_ids, ("dot",), 7, **ALL_K)
    table = ir_per_query(queries, corpus, qrels, query_ids, corpus_ids, "dot", 7, **ALL_K)
    assert list(table.index) == query_ids[:-1]  # the query without a relevant document is not evaluated
    for column in table.columns:
        assert abs(table[column].mean() - overall[f"dot_{column}"]) < 1e-6, column
    expected = naive_metrics(queries, corpus, query_ids, corpus_ids, qrels, lambda a, b: float(a @ b), ALL_K)
    assert abs(table["ndcg@10"].mean() - expected["ndcg@10"]) < 1e-6


def scifact_like(n_queries=12, n_docs=40):
    corpus = {f"d{i}": f"document number {i} about topic {i % 5}" for i in range(n_docs)}
    queries = {f"q{i}": f"which document is about topic {i % 5}" for i in range(n_queries)}
    qrels = {f"q{i}": {f"d{(3 * i) % n_docs}": 1, f"d{(3 * i + 1) % n_docs}": 1} for i in range(n_queries)}
    return data.RetrievalData(corpus, queries, qrels, "train", "toy")


def test_split_queries_is_disjoint_complete_and_keeps_the_corpus():
    collection = scifact_like()
    rest, dev = collection.split_queries(dev_size=0.25, seed=1)
    assert len(dev.queries) == 3 and len(rest.queries) == 9
    assert not set(rest.queries) & set(dev.queries) and set(rest.queries) | set(dev.queries) == set(collection.queries)
    assert rest.corpus is collection.corpus and dev.corpus is collection.corpus
    assert set(dev.qrels) == set(dev.queries) and dev.split == "train-dev"
    assert collection.split_queries(3, seed=1)[1].queries == dev.queries  # a count gives the same split
    assert collection.split_queries(0.25, seed=2)[1].queries != dev.queries
    for bad in (0, 12, 0.0):
        with pytest.raises(ValueError, match="at least 1 and fewer than all"):
            collection.split_queries(bad)
    with pytest.raises(ValueError, match="query ids are not in"):
        collection.with_queries(["q0", "nope"])


def test_sample_corpus_keeps_every_relevant_document_and_refuses_a_size_too_small():
    collection = scifact_like()
    relevant = {d for docs in collection.qrels.values() for d in docs}
    smaller = collection.sample_corpus(30, seed=0)
    assert len(smaller.corpus) == 30 and relevant <= set(smaller.corpus)
    assert list(smaller.corpus) == [d for d in collection.corpus if d in smaller.corpus]  # file order kept
    assert smaller.queries == collection.queries and smaller.qrels == collection.qrels
    assert collection.sample_corpus(30, seed=1).corpus != smaller.corpus
    assert collection.sample_corpus(100) is collection
    with pytest.raises(ValueError, match=f"cannot hold the {len(relevant)} relevant documents"):
        collection.sample_corpus(len(relevant) - 1)


def test_the_ir_evaluator_puts_its_main_metric_first_and_refuses_one_it_does_not_compute(tiny):
    from labkit.retrieval import IREvaluator

    collection = scifact_like(6, 20)
    evaluator = IREvaluator(collection, main_metric="cosine_mrr@10", max_length=16)
    metrics = evaluator(tiny)
    assert list(metrics)[0] == "cosine_mrr@10"
    assert metrics == {**metrics, **evaluate_ir(tiny, collection, max_length=16)}  # the same values
    with pytest.raises(ValueError, match="not computed with score_functions"):
        IREvaluator(collection, main_metric="dot_ndcg@10")
    with pytest.raises(ValueError, match="not among the metrics computed"):
        IREvaluator(collection, main_metric="cosine_ndcg@7")(tiny)
