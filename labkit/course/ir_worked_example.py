"""NDCG@3 by hand: a 3-query, 6-document ranking small enough to work out on paper.

A made-up retriever gave every (query, document) pair a score (`TOY_SCORES`); the qrels say which documents
are relevant. The learner ranks each query's documents, marks the relevant ones in the top 3, adds up
``relevant / log2(rank + 1)`` (DCG), divides by the best possible DCG (IDCG: all relevant documents first) and
averages over the queries. Every number shown comes from `labkit.retrieval`, the evaluator used on SciFact:
the ranking from `rank_corpus`, the discounts from `rank_discounts`, NDCG from `per_query_metrics` and
`ir_metrics`, so the worked example and the real evaluation cannot drift apart.

The scores become embeddings whose dot products are exactly those scores: query i is the one-hot vector e_i,
document j is column j of the score table.
"""
from __future__ import annotations

import pandas as pd
import torch

from labkit.retrieval import ir_metrics, per_query_metrics, rank_corpus, rank_discounts, relevance_matrix

TOY_QUERIES = {
    "q1": "does coffee keep you awake?",
    "q2": "why does the sea have tides?",
    "q3": "how to house-train a puppy",
}
TOY_DOCS = {
    "d1": "Caffeine blocks adenosine, the molecule that builds sleep pressure.",
    "d2": "The Moon's gravity pulls the oceans into two bulges.",
    "d3": "Reward a puppy the moment it goes outside.",
    "d4": "A cup of coffee six hours before bed still cuts sleep by an hour.",
    "d5": "Puppies need to go out after every meal and nap.",
    "d6": "A crate helps a young dog learn to hold it.",
}
TOY_QRELS = {"q1": {"d1": 1, "d4": 1}, "q2": {"d2": 1}, "q3": {"d3": 1, "d5": 1, "d6": 1}}
# rows: q1, q2, q3; columns: d1 … d6 (the retriever's mistakes are the point: q2's answer d2 comes third)
TOY_SCORES = torch.tensor([
    [0.70, 0.80, 0.10, 0.90, 0.30, 0.20],
    [0.20, 0.60, 0.40, 0.10, 0.90, 0.70],
    [0.80, 0.30, 0.95, 0.20, 0.60, 0.50],
])


def toy_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """(query embeddings, document embeddings) whose dot products are `TOY_SCORES`."""
    return torch.eye(len(TOY_QUERIES)), TOY_SCORES.t().contiguous()


def _ranking(k: int):
    queries, docs = toy_embeddings()
    return rank_corpus(queries, docs, k=k, score_function="dot", corpus_ids=list(TOY_DOCS),
                       query_ids=list(TOY_QUERIES))


def toy_ranking(k: int = 3) -> pd.DataFrame:
    """The top ``k`` of every query: query, rank, doc, score, relevant (0/1), discount 1/log2(rank+1), gain
    (relevant × discount: the term this rank adds to DCG)."""
    ranking = _ranking(k)
    discounts = rank_discounts(k)
    rows = []
    for row, query in enumerate(ranking.query_ids):
        for position, (doc, score) in enumerate(zip(ranking.doc_ids(query), ranking.scores[row].tolist())):
            relevant = int(TOY_QRELS[query].get(doc, 0) > 0)
            discount = float(discounts[position])
            rows.append((query, position + 1, doc, round(score, 4), relevant, discount, relevant * discount))
    return pd.DataFrame(rows, columns=["query", "rank", "doc", "score", "relevant", "discount", "gain"])


def ndcg_by_hand(k: int = 3) -> pd.DataFrame:
    """One row per query: relevant in the top k (as 0/1 string), number relevant R, DCG, IDCG (the first
    min(R, k) discounts), and NDCG = DCG / IDCG from `labkit.retrieval.per_query_metrics`."""
    ranking = _ranking(k)
    doc_row = {doc: i for i, doc in enumerate(ranking.corpus_ids)}
    relevant_rows = [[doc_row[d] for d, s in TOY_QRELS[q].items() if s > 0] for q in ranking.query_ids]
    hits = relevance_matrix(ranking.indices, relevant_rows)
    n_relevant = torch.tensor([len(rows) for rows in relevant_rows])
    discounts = rank_discounts(k)
    ndcg = per_query_metrics(hits, n_relevant, dict(ndcg_at_k=[k]))[f"ndcg@{k}"]
    return pd.DataFrame({
        "query": ranking.query_ids,
        "relevant_in_top_k": ["".join(str(int(h)) for h in row) for row in hits.tolist()],
        "n_relevant": n_relevant.tolist(),
        "dcg": (hits.double() * discounts).sum(1).tolist(),
        "idcg": [float(discounts[: min(int(n), k)].sum()) for n in n_relevant],
        f"ndcg@{k}": ndcg.tolist(),
    })


def toy_ndcg(k: int = 3) -> float:
    """The mean NDCG@k over the three queries, from the evaluator used on real data (`ir_metrics`)."""
    queries, docs = toy_embeddings()
    scores = ir_metrics(queries, docs, TOY_QRELS, list(TOY_QUERIES), list(TOY_DOCS), "dot",
                        accuracy_at_k=[k], precision_recall_at_k=[k], mrr_at_k=[k], ndcg_at_k=[k], map_at_k=[k])
    return scores[f"dot_ndcg@{k}"]
