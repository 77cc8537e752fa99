"""Information retrieval evaluation: rank a corpus for every query, chunk by chunk, and score the ranking.

The numbers are those of sentence-transformers' `InformationRetrievalEvaluator` on the same embeddings: the same
metrics, the same default k lists, the same names (``cosine_ndcg@10``), the same tie-breaking (equal scores are
ordered by ascending corpus id) and the same queries (those with at least one relevant document).

Definitions, for one query with R relevant documents and its ranked list ``rel_1, rel_2, …`` (1 where the
document at that rank is relevant, else 0); every metric is the mean over the queries:

* Accuracy@k: 1 if a relevant document is among the first k, else 0.
* Precision@k: (relevant among the first k) / k.  Recall@k: (relevant among the first k) / R.
* MRR@k: 1 / (rank of the first relevant document), 0 if none is in the first k.
* NDCG@k: DCG@k / IDCG@k, with DCG@k = sum_{i<=k} rel_i / log2(i + 1) and IDCG@k the DCG of a perfect ranking,
  sum_{i<=min(R, k)} 1 / log2(i + 1). Relevance is binary (as in sentence-transformers).
* MAP@k: sum_{i<=k} rel_i * Precision@i, divided by min(k, R).

Relevance comes from BEIR qrels (query id → {doc id: score}, score > 0 means relevant) or, as in
sentence-transformers, from query id → set of relevant doc ids.

How it is computed: the corpus is scored against all queries one chunk of ``corpus_chunk_size`` documents
at a time; each chunk is cut to its own top k (one ``torch.topk``) and merged into a running top-k per query
(no per-query loop). Working memory is O(Q × (C + K)) for Q queries, chunk size C and K the largest k asked
for: usually the chunk's 4-byte scores, at most 40 bytes per (query, candidate) when every query's k-th score
is tied (scores, id ranks and tie keys), plus the chunk's C × D embeddings, whatever the corpus size;
`evaluate_ir` encodes the corpus chunk by chunk, so the N × D corpus embeddings are never held at once.
The metrics are computed on the (Q, K) relevance matrix of the top K, vectorised.

References: sentence-transformers, ``sentence_transformers.evaluation.InformationRetrievalEvaluator``;
Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002 (NDCG);
Thakur et al., "BEIR", NeurIPS 2021 Datasets and Benchmarks.

Example::

    from labkit import data, load_model
    from labkit.retrieval import evaluate_ir

    scifact = data.load_scifact("test")
    scores = evaluate_ir(load_model(), scifact)
    scores["cosine_ndcg@10"], scores["cosine_mrr@10"]
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
from torch import Tensor

from labkit.distances import cosine_similarity
from labkit.validation import as_embeddings

__all__ = [
    "SCORE_FUNCTIONS", "DEFAULT_K", "Ranking", "dot_score", "rank_corpus", "relevance_matrix", "rank_discounts",
    "per_query_metrics", "metrics_from_relevance", "ir_metrics", "evaluate_ir", "ir_per_query", "IREvaluator",
    "check_ir_evaluation",
]


def dot_score(queries: Tensor, documents: Tensor) -> Tensor:
    """(Q, C) dot products, as sentence-transformers' ``util.dot_score``."""
    return queries @ documents.t()


# Same functions as sentence-transformers' cos_sim (rows L2-normalised, then a matrix product) and dot_score.
SCORE_FUNCTIONS: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {"cosine": cosine_similarity, "dot": dot_score}
# sentence-transformers' InformationRetrievalEvaluator defaults
DEFAULT_K = {"accuracy_at_k": (1, 3, 5, 10), "precision_recall_at_k": (1, 3, 5, 10), "mrr_at_k": (10,),
             "ndcg_at_k": (10,), "map_at_k": (100,)}
# Peak working memory per (query, candidate) while a chunk is merged into the running top-k: the chunk's float32
# scores, the concatenated scores and int64 id ranks, two int64 tie keys and a mask (33 bytes), rounded up.
BYTES_PER_SCORE = 40
DEFAULT_MAX_CHUNK_BYTES = 2 * 1024 ** 3


@dataclass(frozen=True)
class Ranking:
    """The top ``k`` documents of every query, best first: ``indices`` (Q, K) into ``corpus_ids``, ``scores`` (Q, K)."""

    query_ids: List[str]
    corpus_ids: List[str]
    indices: Tensor
    scores: Tensor

    def doc_ids(self, query_id: str) -> List[str]:
        """The ranked doc ids of one query."""
        row = self.query_ids.index(query_id)
        return [self.corpus_ids[i] for i in self.indices[row].tolist()]


# ----------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------
def _few(ids: Sequence, limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:limit])
    return f"{len(ids)} ({shown}{', …' if len(ids) > limit else ''})"


def _check_k_lists(k_lists: Mapping) -> Dict[str, Tuple[int, ...]]:
    unknown = sorted(set(k_lists) - set(DEFAULT_K))
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown}; the k lists are {', '.join(DEFAULT_K)}")
    out = {}
    for name, default in DEFAULT_K.items():
        values = tuple(k_lists.get(name) or default)
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in values):
            raise ValueError(f"{name} must be a list of positive ints (e.g. {list(default)}), got {list(values)}")
        out[name] = values
    return out


def _score_functions(names) -> Dict[str, Callable[[Tensor, Tensor], Tensor]]:
    if isinstance(names, Mapping):
        return dict(names)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in SCORE_FUNCTIONS]
    if unknown or not names:
        raise ValueError(f"unknown score function(s) {unknown or names}: use {', '.join(SCORE_FUNCTIONS)}, or pass "
                         f"a dict {{name: function(queries, documents) -> (Q, C) scores}}")
    return {n: SCORE_FUNCTIONS[n] for n in names}


def _relevant_sets(qrels: Mapping) -> Dict[str, set]:
    """query id → set of relevant doc ids: a qrels score above 0, or every id of a set/list (ST's form)."""
    out = {}
    for qid, judged in qrels.items():
        relevant = {d for d, s in judged.items() if s > 0} if isinstance(judged, Mapping) else set(judged)
        out[str(qid)] = {str(d) for d in relevant}
    return out


def _select_queries(query_ids: Sequence[str], corpus_ids: Sequence[str], qrels: Mapping) -> Tuple[List[int], Dict]:
    """Rows of the queries that have a relevant document (ST keeps only those), and their relevant sets.

    Qrels naming a query or a document that is not there are an error: sentence-transformers would
    silently count such a document in Recall's denominator while it can never be retrieved.
    """
    relevant = _relevant_sets(qrels)
    known_queries, known_docs = set(map(str, query_ids)), set(map(str, corpus_ids))
    no_query = [q for q in relevant if q not in known_queries]
    no_doc = sorted({d for docs in relevant.values() for d in docs if d not in known_docs})
    if no_query or no_doc:
        parts = ([f"{_few(no_query)} query id(s) that are not among the queries"] if no_query else []) + \
                ([f"{_few(no_doc)} relevant doc id(s) that are not in the corpus"] if no_doc else [])
        raise ValueError("the qrels name " + " and ".join(parts) + ". Evaluate on the corpus and queries the qrels "
                         "belong to (a subset of the corpus must keep every relevant document).")
    rows = [i for i, qid in enumerate(map(str, query_ids)) if relevant.get(qid)]
    if not rows:
        raise ValueError("no query has a relevant document in the qrels (score > 0): nothing to evaluate")
    return rows, relevant


def _check_ids(ids: Sequence, what: str) -> List[str]:
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        raise ValueError(f"{what} ids repeat: {_few(repeated)}; every id must be unique")
    return ids


def _check_chunk(chunk_size, n_queries: int, n_corpus: int, max_k: int, max_bytes: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"corpus_chunk_size must be a positive int (sentence-transformers uses 50000), "
                         f"got {chunk_size!r}")
    width = min(chunk_size, n_corpus) + max_k
    needed = n_queries * width * BYTES_PER_SCORE
    if needed > max_bytes:
        fits = max_bytes // (n_queries * BYTES_PER_SCORE) - max_k
        fix = (f"Lower corpus_chunk_size to {fits:,} or less" if fits >= 1 else
               f"Even a chunk of 1 does not fit with k = {max_k}: evaluate fewer queries at a time")
        raise ValueError(
            f"scoring a corpus of {n_corpus:,} documents for {n_queries:,} queries in chunks of {chunk_size:,} needs "
            f"{needed:,} bytes at a time (queries × (chunk + k) × {BYTES_PER_SCORE} bytes), more than "
            f"max_chunk_bytes={max_bytes:,}. {fix} (or raise max_chunk_bytes if the memory is there).")
    return chunk_size


# ----------------------------------------------------------------------------------------------------------
# Ranking: a running top-k over corpus chunks
# ----------------------------------------------------------------------------------------------------------
def _id_ranks(corpus_ids: Sequence[str]) -> Tensor:
    """Position of each corpus entry in ascending id order: the tie-breaker (ST's ``get_corpus_id_ranks``)."""
    order = sorted(range(len(corpus_ids)), key=corpus_ids.__getitem__)
    ranks = torch.empty(len(corpus_ids), dtype=torch.long)
    ranks[torch.tensor(order, dtype=torch.long)] = torch.arange(len(corpus_ids))
    return ranks


def _keep_top(scores: Tensor, ranks: Tensor, k: int, n_corpus: int) -> Tuple[Tensor, Tensor]:
    """The k best (score, id rank) of each row, higher score first and, among equal scores, lower id rank.

    ``topk`` alone picks arbitrarily among scores tied with the k-th one; a key built from the id rank
    (entries above the k-th score first, then the tied ones, each by id) makes the choice exact.
    """
    k = min(k, scores.shape[1])
    threshold = scores.topk(k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    key = ranks + n_corpus  # tied with the k-th score: after the ones above it, by id
    key.masked_fill_(scores < threshold, 2 * n_corpus)  # below it: never chosen
    key = torch.where(scores > threshold, ranks, key)
    chosen = key.topk(k, dim=1, largest=False).indices
    return scores.gather(1, chosen), ranks.gather(1, chosen)


def _chunk_top(scores: Tensor, chunk_ranks: Tensor, k: int, n_corpus: int) -> Tuple[Tensor, Tensor]:
    """A chunk's k best (score, id rank) per query, in the same order as `_keep_top`, from one ``topk``.

    ``topk``'s choice is exact in a row whose (k+1)-th best score is below its k-th; only the rows where tied
    scores straddle the cut (integer-valued embeddings, duplicate documents) go through `_keep_top`'s
    (rows, C) keys, so the usual working memory is the chunk's scores alone.
    """
    if scores.shape[1] <= k:  # the whole chunk is kept
        return scores, chunk_ranks.expand(len(scores), -1)
    values, columns = scores.topk(k + 1, dim=1, sorted=True)
    tied = (values[:, k - 1] == values[:, k]).nonzero().squeeze(1)
    values, ranks = values[:, :k], chunk_ranks[columns[:, :k]]
    if len(tied):
        values[tied], ranks[tied] = _keep_top(scores[tied], chunk_ranks.expand(len(tied), -1), k, n_corpus)
    return values, ranks


def _rank_chunks(query_embeddings: Tensor, chunks: Iterable[Tuple[int, Tensor]], id_ranks: Tensor, k: int,
                 score_functions: Mapping) -> Dict[str, Tuple[Tensor, Tensor]]:
    """name → (scores, id ranks) of the top k, best first, over all chunks; each chunk is scored once per function."""
    n_queries, n_corpus = len(query_embeddings), len(id_ranks)
    best = {name: (query_embeddings.new_empty(n_queries, 0), torch.empty(n_queries, 0, dtype=torch.long))
            for name in score_functions}
    for start, documents in chunks:
        chunk_ranks = id_ranks[start: start + len(documents)]
        for name, score_function in score_functions.items():
            scores, ranks = _chunk_top(score_function(query_embeddings, documents).float(), chunk_ranks, k, n_corpus)
            kept_scores, kept_ranks = best[name]
            # the running top k and the chunk's top k: at most 2k candidates per query to merge
            best[name] = _keep_top(torch.cat([kept_scores, scores], 1), torch.cat([kept_ranks, ranks], 1), k, n_corpus)
    for name, (scores, ranks) in best.items():
        # kept entries sit in key order (higher-than-threshold by id, then ties by id): a stable sort on the
        # score keeps ascending id among equal scores, as ST's sort key (-score, corpus_id) does
        scores, order = scores.sort(dim=1, descending=True, stable=True)
        best[name] = (scores, ranks.gather(1, order))
    return best


def _slices(embeddings: Tensor, chunk_size: int) -> Iterator[Tuple[int, Tensor]]:
    for start in range(0, len(embeddings), chunk_size):
        yield start, embeddings[start: start + chunk_size]


def rank_corpus(query_embeddings, corpus_embeddings, k: int = 10, score_function: str = "cosine",
                corpus_ids: Optional[Sequence[str]] = None, query_ids: Optional[Sequence[str]] = None,
                corpus_chunk_size: int = 50_000, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> Ranking:
    """The top ``k`` documents of each query by ``score_function`` ("cosine" or "dot"), scored in chunks.

    Equal scores are ordered by ascending corpus id (``corpus_ids``, default "0", "1", … as strings, so
    "10" sorts before "2" as in sentence-transformers). Memory: O(Q × (corpus_chunk_size + k)).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (how many documents to keep per query), got {k!r}")
    queries = as_embeddings(query_embeddings, "query_embeddings")
    corpus = as_embeddings(corpus_embeddings, "corpus_embeddings")
    _check_dims(queries, corpus)
    corpus_ids = _check_ids(range(len(corpus)) if corpus_ids is None else corpus_ids, "corpus")
    query_ids = _check_ids(range(len(queries)) if query_ids is None else query_ids, "query")
    _check_lengths(queries, query_ids, corpus, corpus_ids)
    _check_chunk(corpus_chunk_size, len(queries), len(corpus), k, max_chunk_bytes)
    function = _score_functions(score_function)
    id_ranks = _id_ranks(corpus_ids)
    scores, ranks = _rank_chunks(queries, _slices(corpus, corpus_chunk_size), id_ranks, k, function)[
        next(iter(function))]
    return Ranking(query_ids, corpus_ids, torch.argsort(id_ranks)[ranks], scores)


def _check_dims(queries: Tensor, corpus: Tensor) -> None:
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"query embeddings have dimension {queries.shape[1]} but corpus embeddings have "
                         f"{corpus.shape[1]}: embed both with the same model")


def _check_lengths(queries: Tensor, query_ids: Sequence, corpus: Tensor, corpus_ids: Sequence) -> None:
    for what, rows, ids in (("query", queries, query_ids), ("corpus", corpus, corpus_ids)):
        if len(rows) != len(ids):
            raise ValueError(f"{len(rows):,} {what} embeddings but {len(ids):,} {what} ids: one id per row")


# ----------------------------------------------------------------------------------------------------------
# Metrics on the (Q, K) relevance matrix
# ----------------------------------------------------------------------------------------------------------
def relevance_matrix(ranked_doc_ids: Tensor, relevant_ids: Sequence[Sequence[int]]) -> Tensor:
    """(Q, K) bool: is the document at each rank relevant to its query? Indices are integer doc positions."""
    n = 1 + max([int(ranked_doc_ids.max())] + [max(docs) for docs in relevant_ids if len(docs)])
    pairs = torch.tensor([q * n + d for q, docs in enumerate(relevant_ids) for d in docs], dtype=torch.long)
    rows = torch.arange(len(ranked_doc_ids)).unsqueeze(1)
    return torch.isin(rows * n + ranked_doc_ids, pairs)


def rank_discounts(k: int) -> Tensor:
    """NDCG's discount of ranks 1..k: 1 / log2(rank + 1), float64 (1, 0.631, 0.5, 0.431, …)."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))


def per_query_metrics(hits: Tensor, n_relevant, k_lists: Optional[Mapping] = None) -> Dict[str, Tensor]:
    """Accuracy, Precision, Recall, NDCG, MRR and MAP @k of every query: name (``ndcg@10``) → (Q,) float64.

    ``hits`` (Q, K) says whether the document at each rank is relevant; ``n_relevant`` (Q,) is each query's
    number of relevant documents. The definitions are in the module docstring. A ranking shorter than k (a
    corpus smaller than k) counts the missing ranks as misses. Keys come in sentence-transformers' order.
    """
    ks = _check_k_lists(k_lists or {})
    if hits.dim() != 2 or hits.shape[1] == 0:
        raise ValueError(f"hits must be a (queries, ranks) matrix with at least one rank, "
                         f"got shape {tuple(hits.shape)}")
    hits = hits.double()
    n_relevant = torch.as_tensor(n_relevant, dtype=torch.float64)
    if n_relevant.shape != (len(hits),) or (n_relevant < 1).any():
        raise ValueError(f"n_relevant must hold one count >= 1 per query ({len(hits)}), got {n_relevant.tolist()}")
    discount = rank_discounts(max(max(values) for values in ks.values()))
    position = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    found = hits.cumsum(1)  # relevant documents among the first i
    found_at = {k: found[:, min(k, hits.shape[1]) - 1] for k in ks["accuracy_at_k"] + ks["precision_recall_at_k"]}
    out = {}
    for k in ks["accuracy_at_k"]:
        out[f"accuracy@{k}"] = (found_at[k] > 0).double()
    for k in ks["precision_recall_at_k"]:
        out[f"precision@{k}"] = found_at[k] / k
    for k in ks["precision_recall_at_k"]:
        out[f"recall@{k}"] = found_at[k] / n_relevant
    for k in ks["ndcg_at_k"]:
        dcg = (hits[:, :k] * discount[: hits[:, :k].shape[1]]).sum(1)
        ideal = discount[:k].cumsum(0)[(n_relevant.clamp(max=k) - 1).long()]  # all relevant documents first
        out[f"ndcg@{k}"] = dcg / ideal
    for k in ks["mrr_at_k"]:
        out[f"mrr@{k}"] = (hits[:, :k] / position[:k]).amax(1)  # the first hit has the largest 1/rank
    for k in ks["map_at_k"]:
        precision_at_i = found[:, :k] / position[:k]
        out[f"map@{k}"] = (precision_at_i * hits[:, :k]).sum(1) / n_relevant.clamp(max=k)
    return out


def metrics_from_relevance(hits: Tensor, n_relevant, k_lists: Optional[Mapping] = None) -> Dict[str, float]:
    """The mean over queries of :func:`per_query_metrics`: {"accuracy@1": …, …, "map@100": …}."""
    return {name: float(values.mean()) for name, values in per_query_metrics(hits, n_relevant, k_lists).items()}


# ----------------------------------------------------------------------------------------------------------
# The evaluator: embeddings or a model
# ----------------------------------------------------------------------------------------------------------
def _evaluate_per_query(queries: Tensor, chunks: Iterable[Tuple[int, Tensor]], query_ids: List[str],
                        corpus_ids: List[str], relevant: Mapping, score_functions: Mapping,
                        ks: Mapping) -> Dict[str, Dict[str, Tensor]]:
    """{score function: {metric: (Q,) values}}, from one pass over the corpus chunks."""
    id_ranks = _id_ranks(corpus_ids)
    max_k = max(max(values) for values in ks.values())
    ranked = _rank_chunks(queries, chunks, id_ranks, max_k, score_functions)
    rank_of = dict(zip(corpus_ids, id_ranks.tolist()))
    relevant_ranks = [[rank_of[d] for d in relevant[q]] for q in query_ids]  # bookkeeping, not scoring
    n_relevant = torch.tensor([len(r) for r in relevant_ranks])
    return {name: per_query_metrics(relevance_matrix(ranks, relevant_ranks), n_relevant, ks)
            for name, (_, ranks) in ranked.items()}


def _evaluate(queries: Tensor, chunks: Iterable[Tuple[int, Tensor]], query_ids: List[str], corpus_ids: List[str],
              relevant: Mapping, score_functions: Mapping, ks: Mapping) -> Dict[str, float]:
    """ST-named metrics (``cosine_ndcg@10``) of every score function, from one pass over the corpus chunks."""
    per_query = _evaluate_per_query(queries, chunks, query_ids, corpus_ids, relevant, score_functions, ks)
    return {f"{name}_{metric}": float(values.mean())
            for name, metrics in per_query.items() for metric, values in metrics.items()}


def ir_metrics(query_embeddings, corpus_embeddings, qrels: Mapping, query_ids: Optional[Sequence[str]] = None,
               corpus_ids: Optional[Sequence[str]] = None, score_functions=("cosine",),
               corpus_chunk_size: int = 50_000, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
               **k_lists) -> Dict[str, float]:
    """sentence-transformers' ``InformationRetrievalEvaluator`` metrics on precomputed embeddings.

    Args:
        query_embeddings, corpus_embeddings: (Q, D) and (N, D) arrays or tensors, one row per id.
        qrels: query id → {doc id: score} (BEIR; score > 0 is relevant) or query id → set of relevant doc ids.
        query_ids, corpus_ids: the ids of the rows (default "0", "1", …). Queries without a relevant document
            are left out, as in sentence-transformers; ties are broken by ascending corpus id.
        score_functions: "cosine", "dot", a list of them, or {name: function(queries, docs) -> (Q, C)}.
        corpus_chunk_size: documents scored at a time (ST's default 50,000). Memory O(Q × (chunk + K)).
        max_chunk_bytes: refuse (with the chunk size that fits) a chunk whose scores would need more.
        accuracy_at_k, precision_recall_at_k, mrr_at_k, ndcg_at_k, map_at_k: the k lists (ST's defaults).

    Returns:
        {"cosine_accuracy@1": …, "cosine_precision@1": …, "cosine_recall@1": …, …, "cosine_ndcg@10": …,
        "cosine_mrr@10": …, "cosine_map@100": …}, the keys sentence-transformers returns (without a name prefix).

    Raises ValueError, saying what to fix, for qrels naming ids that are not there, repeated ids, mismatched
    lengths or dimensions, non-finite embeddings, bad k lists and a chunk too large for ``max_chunk_bytes``.
    """
    ks = _check_k_lists(k_lists)
    queries = as_embeddings(query_embeddings, "query_embeddings")
    corpus = as_embeddings(corpus_embeddings, "corpus_embeddings")
    _check_dims(queries, corpus)
    query_ids = _check_ids(range(len(queries)) if query_ids is None else query_ids, "query")
    corpus_ids = _check_ids(range(len(corpus)) if corpus_ids is None else corpus_ids, "corpus")
    _check_lengths(queries, query_ids, corpus, corpus_ids)
    rows, relevant = _select_queries(query_ids, corpus_ids, qrels)
    max_k = max(max(values) for values in ks.values())
    _check_chunk(corpus_chunk_size, len(rows), len(corpus), max_k, max_chunk_bytes)
    functions = _score_functions(score_functions)
    return _evaluate(queries[rows], _slices(corpus, corpus_chunk_size), [query_ids[i] for i in rows], corpus_ids,
                     relevant, functions, ks)


def _texts(named: Mapping, ids: Sequence[str], what: str) -> List[str]:
    texts = [named[i] for i in ids]
    empty = [i for i, text in zip(ids, texts) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise ValueError(f"{_few(empty)} {what} have an empty or non-text text; fix or drop them (and their qrels)")
    return texts


def _prepare(data, corpus_chunk_size: int, max_chunk_bytes: int, k_lists: Mapping):
    """`evaluate_ir`'s checks, before any encoding: the ids, the qrels against them, the texts, the memory bound.
    Returns (query ids, query texts, corpus ids, corpus texts, relevant sets, k lists)."""
    queries, corpus, qrels = (data.queries, data.corpus, data.qrels) if hasattr(data, "qrels") else data
    ks = _check_k_lists(k_lists)
    query_ids, corpus_ids = _check_ids(list(queries), "query"), _check_ids(list(corpus), "corpus")
    rows, relevant = _select_queries(query_ids, corpus_ids, qrels)
    query_ids = [query_ids[i] for i in rows]
    query_texts = _texts(queries, query_ids, "queries")
    corpus_texts = _texts(corpus, corpus_ids, "documents")
    max_k = max(max(values) for values in ks.values())
    _check_chunk(corpus_chunk_size, len(query_ids), len(corpus_ids), max_k, max_chunk_bytes)
    return query_ids, query_texts, corpus_ids, corpus_texts, relevant, ks


def check_ir_evaluation(data, corpus_chunk_size: int = 50_000, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
                        **k_lists) -> None:
    """Every check `evaluate_ir` makes before it encodes anything (qrels naming missing ids, repeated ids, empty
    texts, bad k lists, a corpus chunk whose scores would need more than ``max_chunk_bytes``), without a model:
    call it to fail fast, before loading a model or training. Raises ValueError saying what to fix."""
    _prepare(data, corpus_chunk_size, max_chunk_bytes, k_lists)


def evaluate_ir(model, data, score_functions=("cosine",), corpus_chunk_size: int = 50_000, batch_size: int = 32,
                precision: str = "fp32", show_progress_bar: bool = False,
                max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, max_length: Optional[int] = None,
                **k_lists) -> Dict[str, float]:
    """Encode the queries once and the corpus chunk by chunk with ``model`` (an `EmbeddingModel`), then score
    as :func:`ir_metrics` (same arguments, same keys) — sentence-transformers' evaluator called on a model.

    ``data``: a :class:`labkit.data.RetrievalData` (``corpus``, ``queries``, ``qrels``) or a tuple
    ``(queries, corpus, qrels)`` of dicts keyed by id. ``precision`` goes to ``model.encode`` ("fp32" gives
    sentence-transformers' embeddings; "auto" is faster on bf16-capable hardware). ``max_length``: tokens per
    text (default the model's ``max_seq_length``). Memory: the queries' embeddings, one chunk of corpus
    embeddings and O(Q × (chunk + K)) scores.
    """
    query_ids, query_texts, corpus_ids, corpus_texts, relevant, ks = _prepare(
        data, corpus_chunk_size, max_chunk_bytes, k_lists)
    functions = _score_functions(score_functions)

    def encode(texts: List[str]) -> Tensor:
        return model.encode(texts, batch_size=batch_size, convert_to_tensor=True, precision=precision,
                            show_progress_bar=show_progress_bar, max_length=max_length)

    chunks = ((start, encode(corpus_texts[start: start + corpus_chunk_size]))
              for start in range(0, len(corpus_texts), corpus_chunk_size))
    return _evaluate(encode(query_texts), chunks, query_ids, corpus_ids, relevant, functions, ks)


def ir_per_query(query_embeddings, corpus_embeddings, qrels: Mapping, query_ids: Optional[Sequence[str]] = None,
                 corpus_ids: Optional[Sequence[str]] = None, score_function: str = "cosine",
                 corpus_chunk_size: int = 50_000, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
                 **k_lists) -> pd.DataFrame:
    """:func:`ir_metrics` query by query: one row per evaluated query (index: query id), one column per metric
    (``ndcg@10``, ``mrr@10``, …) for one score function. The column means are :func:`ir_metrics`' values.
    Use it to see *which* queries a change helped or hurt."""
    ks = _check_k_lists(k_lists)
    queries = as_embeddings(query_embeddings, "query_embeddings")
    corpus = as_embeddings(corpus_embeddings, "corpus_embeddings")
    _check_dims(queries, corpus)
    query_ids = _check_ids(range(len(queries)) if query_ids is None else query_ids, "query")
    corpus_ids = _check_ids(range(len(corpus)) if corpus_ids is None else corpus_ids, "corpus")
    _check_lengths(queries, query_ids, corpus, corpus_ids)
    rows, relevant = _select_queries(query_ids, corpus_ids, qrels)
    max_k = max(max(values) for values in ks.values())
    _check_chunk(corpus_chunk_size, len(rows), len(corpus), max_k, max_chunk_bytes)
    functions = _score_functions(score_function)
    kept = [query_ids[i] for i in rows]
    per_query = _evaluate_per_query(queries[rows], _slices(corpus, corpus_chunk_size), kept, corpus_ids,
                                    relevant, functions, ks)
    (metrics,) = per_query.values()
    return pd.DataFrame({name: values.numpy() for name, values in metrics.items()},
                        index=pd.Index(kept, name="query_id"))


class IREvaluator:
    """`fit()`'s evaluator for retrieval: :func:`evaluate_ir` of the model on a dev split, every ``eval_every``.

    ``IREvaluator(dev)(model)`` returns the ST-named metrics with ``main_metric`` first, so that `fit` keeps
    the checkpoint with the best ``main_metric`` (pass ``metric=evaluator.main_metric`` to be explicit).
    Give it a split carved from the training queries (`RetrievalData.split_queries`), never the test split; a
    dev corpus sampled down (`RetrievalData.sample_corpus`) makes each evaluation cheaper.

    Example::

        train, dev = data.load_scifact("train").split_queries(dev_size=0.1)
        evaluator = IREvaluator(dev.sample_corpus(1000))
        fit(model, loss, dataset, steps=100, evaluator=evaluator, metric=evaluator.main_metric, eval_every=25)
    """

    def __init__(self, data, main_metric: str = "cosine_ndcg@10", score_functions=("cosine",),
                 precision: str = "auto", batch_size: int = 32, max_length: Optional[int] = None,
                 corpus_chunk_size: int = 50_000, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, **k_lists):
        self.data = data
        self.main_metric = main_metric
        self.settings = dict(score_functions=score_functions, precision=precision, batch_size=batch_size,
                             max_length=max_length, corpus_chunk_size=corpus_chunk_size,
                             max_chunk_bytes=max_chunk_bytes, **k_lists)
        names = [f"{name}_" for name in _score_functions(score_functions)]
        if not any(main_metric.startswith(prefix) for prefix in names):
            raise ValueError(f"main_metric={main_metric!r} is not computed with score_functions={score_functions!r};"
                             f" name it like 'cosine_ndcg@10' with one of {[n[:-1] for n in names]}")

    def __call__(self, model) -> Dict[str, float]:
        metrics = evaluate_ir(model, self.data, **self.settings)
        if self.main_metric not in metrics:
            raise ValueError(f"main_metric={self.main_metric!r} is not among the metrics computed "
                             f"({', '.join(list(metrics)[:6])}, …): check its k against the k lists")
        return {self.main_metric: metrics[self.main_metric],
                **{name: value for name, value in metrics.items() if name != self.main_metric}}
