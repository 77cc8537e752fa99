"""Hard negatives from a corpus: for each (anchor, positive) pair, the corpus texts the model ranks close to the
anchor that are not its positive, with sentence-transformers' `mine_hard_negatives` semantics.

This is *offline* mining for a retrieval data set (build (anchor, positive, negative) rows once, before training),
not the in-batch mining of `labkit.mining` (which picks triplets inside a labelled batch at every step).

How a negative is chosen, per unique anchor (as sentence-transformers 6.3 does it):

1. Texts are de-duplicated: the corpus is ``corpus + positives`` without repeats; repeated anchors are one query
   whose positives are all the texts paired with it.
2. The window: the ``range_max + max_positives + 1`` corpus texts with the highest cosine similarity to the
   anchor (``max_positives``: the most rows any anchor has). The extra places are for what step 3 removes.
3. Excluded from the window: the anchor's own positives and the anchor's own text if it is in the corpus.
4. Filters, in this order, each counted in the statistics: ``absolute_margin`` removes a candidate when
   ``score + absolute_margin > positive_score``; ``relative_margin`` when
   ``score > positive_score - |positive_score| * relative_margin``; ``max_score`` when ``score > max_score``;
   ``min_score`` when ``score < min_score``. ``positive_score`` is the anchor's *lowest* positive score.
5. The survivors, best first: the first ``range_max`` are kept and the first ``range_min`` of those skipped.
6. ``sampling_strategy="top"`` takes the first ``num_negatives`` of what is left; ``"random"`` draws
   ``num_negatives`` of them uniformly (then orders them best first).

The scoring is chunked: queries in blocks of ``query_chunk_size``, the corpus in blocks of ``chunk_size``, with a
running top-k, so the extra memory is about ``query_chunk_size * (chunk_size + k)`` scores plus the
``n_queries * k`` window, never the full queries x corpus matrix.

Functions: `mine_hard_negatives` (encodes with the model, then mines), `mine_from_embeddings` (embeddings already
computed, after `deduplicate_pairs`), `top_k_scores` (the chunked search). For the false-negative problem:
`false_negative_suspects` (mined negatives scoring at least their anchor's weakest positive), `suspect_examples`
(the highest-scored of them, to read) and `filter_sweep` (how many suspects each margin / max_score setting keeps).

Reference: sentence-transformers' ``sentence_transformers.util.mine_hard_negatives``
(https://sbert.net/docs/package_reference/util.html); NV-Retriever (Moreira et al., 2024,
https://arxiv.org/abs/2407.15831) on why margins matter: the closest "negatives" are often unlabelled positives.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
SAMPLING_STRATEGIES = ("top", "random")
FILTERS = ("absolute_margin", "relative_margin", "max_score", "min_score")


@dataclass
class MiningStatistics:
    """What the mining found and skipped, with sentence-transformers' verbose table as `table()`.

    ``positive_scores``: one per (anchor, positive) pair; ``negative_scores`` and ``difference_scores``
    (positive - negative): one per negative in the output, as sentence-transformers counts them.
    ``skipped[rule]`` / ``ratio[rule]``: candidates a filter removed (and the share of the candidates left when it
    ran); ``excluded``: positives and anchors' own texts removed from the windows; ``missing`` of ``possible``:
    output rows that could not be filled.
    """

    positive_scores: Tensor
    negative_scores: Tensor
    difference_scores: Tensor
    settings: dict
    skipped: dict = field(default_factory=dict)
    ratio: dict = field(default_factory=dict)
    excluded: int = 0
    window: int = 0
    range_max: int = 0
    possible: int = 0
    produced: int = 0

    @property
    def missing(self) -> int:
        return self.possible - self.produced

    def table(self) -> str:
        """The score table and the skip/missing lines, in sentence-transformers' exact wording."""
        row = "{:<6} {:>14} {:>14} {:>14}"
        lines = [row.format("Metric", "Positive", "Negative", "Difference"),
                 row.format("Count", f"{len(self.positive_scores):,}", f"{len(self.negative_scores):,}", "")]
        columns = (self.positive_scores, self.negative_scores, self.difference_scores)
        for name, summary in _SUMMARIES:
            lines.append(row.format(name, *(_format_value(summary(scores)) for scores in columns)))
        for rule in FILTERS:
            if self.skipped.get(rule):
                lines.append(f"Skipped {self.skipped[rule]:,} potential negatives ({self.ratio[rule]:.2%}) due to "
                             f"the {rule} of {self.settings[rule]}.")
        if self.missing > 0:
            lines.append(self._missing_line())
        return "\n".join(lines)

    def _missing_line(self) -> str:
        solutions = ["range_max"] + (["range_min"] if self.settings["range_min"] > 0 else [])
        solutions += [rule for rule in FILTERS[:3] if self.settings[rule] is not None]
        names = ", ".join(solutions[:-1]) + " and " + solutions[-1] if len(solutions) > 1 else solutions[0]
        return (f"Could not find enough negatives for {self.missing} samples ({self.missing / self.possible:.2%})."
                f" Consider adjusting the {names} parameter{'s' if len(solutions) > 1 else ''} if you'd like to "
                "find more valid negatives.")

    def __str__(self) -> str:
        return self.table()


def _format_value(value) -> str:
    return f"{value.item():.4f}" if isinstance(value, Tensor) else f"{value:,}"


def _empty_or(function, empty):
    return lambda scores: function(scores) if scores.numel() > 0 else empty


# The same statistics (and the same torch functions: lower median, linear quantiles, unbiased std) as ST's table.
_SUMMARIES = [
    ("Mean", torch.mean), ("Median", _empty_or(torch.median, float("nan"))), ("Std", torch.std),
    ("Min", _empty_or(torch.min, float("inf"))),
    ("25%", _empty_or(lambda s: torch.quantile(s.float(), q=0.25), float("inf"))),
    ("50%", _empty_or(lambda s: torch.quantile(s.float(), q=0.5), float("inf"))),
    ("75%", _empty_or(lambda s: torch.quantile(s.float(), q=0.75), float("inf"))),
    ("Max", _empty_or(torch.max, float("-inf"))),
]


@dataclass
class MinedNegatives:
    """The mined rows (``columns``: name -> list, in sentence-transformers' column order) and their statistics.

    Index-level results for analysis, per unique anchor (``queries``, in first-appearance order):
    ``negative_indices`` / ``negative_scores`` (n_queries, num_negatives) into ``corpus`` (the de-duplicated
    corpus), -inf where nothing was found; ``positive_indices`` (per pair) and ``pair_query`` (its anchor).
    """

    columns: dict
    statistics: MiningStatistics
    queries: list
    corpus: list
    negative_indices: Tensor
    negative_scores: Tensor
    positive_indices: Tensor
    pair_query: Tensor
    positive_scores: Tensor

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def rows(self) -> list[dict]:
        names = list(self.columns)
        return [dict(zip(names, values)) for values in zip(*self.columns.values())]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.columns)

    def to_dataset(self):
        """A `datasets.Dataset` (needs the `datasets` package), as sentence-transformers returns."""
        from datasets import Dataset

        return Dataset.from_dict(self.columns)


@dataclass
class _Pairs:
    """De-duplicated texts and who is positive for whom (all integer tensors)."""

    queries: list
    corpus: list
    pair_query: Tensor  # (n_pairs,) unique query of each (query, positive) pair, sorted by query
    pair_positive: Tensor  # (n_pairs,) corpus index of the positive
    query_in_corpus: Tensor  # (n_queries,) corpus index of the query's own text, or -1
    max_rows: int  # most input rows of one anchor (ST's max_positives, duplicates included)
    n_rows: int


def _texts(values, what: str) -> list:
    if values is None:
        raise ValueError(f"{what} is missing: pass a list of strings.")
    texts = values.tolist() if hasattr(values, "tolist") else list(values)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"{what} must be strings; found {type(bad).__name__} {bad!r}.")
    return texts


def split_columns(table, anchor_column_name=None, positive_column_name=None):
    """(anchors, positives, anchor name, positive name) from a DataFrame or `datasets.Dataset`.

    As in sentence-transformers: a missing or unknown name falls back to the first (anchor) and second
    (positive) column.
    """
    names = list(table.column_names if hasattr(table, "column_names") else table.columns)
    anchor = anchor_column_name if anchor_column_name in names else names[0] if names else None
    positive = positive_column_name if positive_column_name in names else names[1] if len(names) > 1 else None
    if positive is None:
        raise ValueError(f"The table needs an anchor and a positive column; it has {names}.")
    return table[anchor], table[positive], anchor, positive


def deduplicate_pairs(anchors, positives, corpus=None) -> _Pairs:
    """De-duplicate as sentence-transformers does: corpus = dict.fromkeys(corpus + positives), unique anchors
    in first-appearance order, each anchor's positives unique and in order of appearance."""
    anchors, positives = _texts(anchors, "anchors"), _texts(positives, "positives")
    if len(anchors) != len(positives):
        raise ValueError(f"anchors and positives must pair up: got {len(anchors)} anchors and "
                         f"{len(positives)} positives.")
    if not anchors:
        raise ValueError("No (anchor, positive) pairs: pass at least one.")
    corpus_texts = positives if corpus is None else _texts(corpus, "corpus")
    if corpus is not None and not corpus_texts:
        raise ValueError("The corpus is empty: pass the texts to mine negatives from, or corpus=None to mine "
                         "from the positives of the other anchors.")
    corpus_texts = list(dict.fromkeys(corpus_texts + positives))
    corpus_index = {text: i for i, text in enumerate(corpus_texts)}
    queries = list(dict.fromkeys(anchors))
    query_index = {text: i for i, text in enumerate(queries)}
    pairs = dict.fromkeys((query_index[a], corpus_index[p]) for a, p in zip(anchors, positives))
    pair_array = np.array(sorted(pairs, key=lambda qp: qp[0]), dtype=np.int64).reshape(-1, 2)  # stable: keeps order
    return _Pairs(
        queries=queries, corpus=corpus_texts,
        pair_query=torch.from_numpy(pair_array[:, 0].copy()), pair_positive=torch.from_numpy(pair_array[:, 1].copy()),
        query_in_corpus=torch.tensor([corpus_index.get(q, -1) for q in queries], dtype=torch.long),
        max_rows=Counter(anchors).most_common(1)[0][1], n_rows=len(anchors),
    )


def default_range_max(range_min: int, num_negatives: int, max_positives: int, filtered: bool) -> int:
    """sentence-transformers' default: room for ten times the negatives when a filter may skip candidates."""
    return range_min + num_negatives * (10 if filtered else 1) + max_positives


def _check_settings(range_min, range_max, num_negatives, sampling_strategy, output_format, chunk_size,
                    query_chunk_size):
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got num_negatives={num_negatives}.")
    if range_min < 0:
        raise ValueError(f"range_min must be non-negative, got range_min={range_min}.")
    if range_min >= range_max:
        raise ValueError(f"range_min must be smaller than range_max, got range_min={range_min} and "
                         f"range_max={range_max}.")
    if num_negatives > range_max - range_min:
        raise ValueError(f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates "
                         f"remain after skipping the first range_min={range_min} of range_max={range_max}. Decrease "
                         "num_negatives or range_min, or increase range_max.")
    if sampling_strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"Unknown sampling_strategy {sampling_strategy!r}: use one of {SAMPLING_STRATEGIES}.")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"Unknown output_format {output_format!r}: use one of {OUTPUT_FORMATS}.")
    if chunk_size < 1 or query_chunk_size < 1:
        raise ValueError(f"chunk_size and query_chunk_size must be at least 1, got {chunk_size} and "
                         f"{query_chunk_size}.")


def top_k_scores(query_embeddings: Tensor, corpus_embeddings: Tensor, k: int, chunk_size: int = 8192,
                 query_chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """The k highest cosine similarities of each query over the corpus, best first, and their corpus indices.

    Chunked with a running top-k: at most ``query_chunk_size x (chunk_size + k)`` scores exist at once. Rows are
    padded with score -inf and index -1 when the corpus has fewer than k texts.
    """
    corpus = corpus_embeddings.float()
    kept = min(k, len(corpus))
    all_scores, all_indices = [], []
    for q_start in range(0, len(query_embeddings), query_chunk_size):
        block = F.normalize(query_embeddings[q_start:q_start + query_chunk_size].float(), dim=-1)
        best_scores = block.new_empty(len(block), 0)
        best_indices = torch.empty(len(block), 0, dtype=torch.long)
        for c_start in range(0, len(corpus), chunk_size):
            # Normalised chunk by chunk (row by row, so the same numbers), to keep no normalised copy of the corpus.
            scores = block @ F.normalize(corpus[c_start:c_start + chunk_size], dim=-1).T
            scores, indices = scores.topk(min(kept, scores.size(1)), dim=1)
            best_scores = torch.cat([best_scores, scores], dim=1)
            best_indices = torch.cat([best_indices, indices + c_start], dim=1)
            if c_start > 0:  # merge with the previous chunks: the running best k, sorted
                best_scores, order = best_scores.topk(min(kept, best_scores.size(1)), dim=1)
                best_indices = best_indices.gather(1, order)
        all_scores.append(best_scores)
        all_indices.append(best_indices)
    scores, indices = torch.cat(all_scores), torch.cat(all_indices)
    if kept < k:
        scores = torch.cat([scores, scores.new_full((len(scores), k - kept), -float("inf"))], dim=1)
        indices = torch.cat([indices, indices.new_full((len(indices), k - kept), -1)], dim=1)
    return scores, indices


def _exclude(scores: Tensor, indices: Tensor, pairs: _Pairs) -> int:
    """Set -inf (in place) on padding, the anchors' own texts and their positives; return how many were real."""
    padding = indices == -1
    own_text = (indices == pairs.query_in_corpus.unsqueeze(1)) & ~padding
    # A candidate is a positive when its (query, corpus index) key is one of the pairs' keys.
    stride = len(pairs.corpus) + 1
    keys = (pairs.pair_query * stride + pairs.pair_positive).sort().values
    candidate_keys = torch.arange(len(indices)).unsqueeze(1) * stride + indices
    found = keys[torch.searchsorted(keys, candidate_keys).clamp(max=len(keys) - 1)] == candidate_keys
    positive = found & ~padding
    removed = padding | own_text | positive
    scores[removed] = -float("inf")
    return int((own_text | positive).sum())


def _apply_filters(scores: Tensor, weakest_positive: Tensor, settings: dict) -> tuple[dict, dict]:
    """Set -inf (in place) on candidates each filter rejects; counts and ratios as sentence-transformers reports."""
    skipped, ratio = {}, {}
    candidates = scores.numel()
    threshold = weakest_positive.unsqueeze(1)
    rules = {
        "absolute_margin": lambda m: scores + m > threshold,
        "relative_margin": lambda m: scores > threshold - threshold.abs() * m,
        "max_score": lambda m: scores > m,
        "min_score": lambda m: (scores < m) & (scores != -float("inf")),
    }
    for rule in FILTERS:
        if settings[rule] is None:
            continue
        removed = rules[rule](settings[rule])
        scores[removed] = -float("inf")
        count = int(removed.sum())
        if count:
            skipped[rule], ratio[rule] = count, count / candidates
            if rule in ("absolute_margin", "relative_margin"):  # ST stops shrinking the base after the margins
                candidates -= count
    return skipped, ratio


def _select(scores: Tensor, indices: Tensor, range_min: int, range_max: int, num_negatives: int,
            sampling_strategy: str, seed: int | None) -> tuple[Tensor, Tensor]:
    """The survivors best first, ranks range_min..range_max, then the top (or a random) num_negatives."""
    survivors_first = torch.argsort((scores == -float("inf")).to(torch.int8), dim=1, stable=True)
    order = survivors_first[:, range_min:range_max]
    scores, indices = scores.gather(1, order), indices.gather(1, order)
    if sampling_strategy == "top":
        return scores[:, :num_negatives], indices[:, :num_negatives]
    # Random: num_negatives distinct places among the finite ones (or the first num_negatives, if fewer).
    options = (scores.size(1) - scores.isinf().sum(1)).clamp(min=num_negatives)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    keys = torch.rand(scores.shape, generator=generator)
    keys[torch.arange(scores.size(1)).unsqueeze(0) >= options.unsqueeze(1)] = 2.0
    picked = keys.topk(num_negatives, dim=1, largest=False).indices
    scores, indices = scores.gather(1, picked), indices.gather(1, picked)
    scores, order = scores.sort(dim=1, descending=True)
    return scores, indices.gather(1, order)


def _triplets(pairs, queries, corpus, names, neg_scores, neg_indices, pos_scores, output_scores):
    keep = neg_scores != -float("inf")
    rows, slots = keep.nonzero(as_tuple=True)
    columns = {names[0]: queries[pairs.pair_query[rows]].tolist(),
               names[1]: corpus[pairs.pair_positive[rows]].tolist(),
               "negative": corpus[neg_indices[rows, slots]].tolist()}
    kept_pos = pos_scores[rows]
    if output_scores:
        columns["scores"] = torch.stack([kept_pos, neg_scores[rows, slots]], dim=1).tolist()
    kept_neg = neg_scores[keep]
    return columns, kept_neg, kept_pos - kept_neg, keep.numel()


def _n_tuples(pairs, queries, corpus, names, neg_scores, neg_indices, pos_scores, output_scores):
    keep = (neg_scores != -float("inf")).all(dim=1)
    columns = {names[0]: queries[pairs.pair_query[keep]].tolist(),
               names[1]: corpus[pairs.pair_positive[keep]].tolist()}
    for slot in range(neg_indices.size(1)):
        columns[f"negative_{slot + 1}"] = corpus[neg_indices[keep, slot]].tolist()
    if output_scores:
        columns["scores"] = torch.cat([pos_scores[keep].unsqueeze(1), neg_scores[keep]], dim=1).tolist()
    kept_neg = neg_scores[keep]
    return columns, kept_neg.flatten(), (pos_scores[keep].unsqueeze(1) - kept_neg).flatten(), len(keep)


def _labeled_lists(pairs, queries, corpus, names, neg_scores, neg_indices, pos_scores, output_scores):
    keep = neg_scores != -float("inf")
    rows = keep.any(dim=1).nonzero(as_tuple=True)[0].tolist()
    keep_list, index_list, score_list = keep.tolist(), neg_indices.tolist(), neg_scores.tolist()
    positive_texts = corpus[pairs.pair_positive].tolist()
    documents = [[positive_texts[r]] + [corpus[i] for i, k in zip(index_list[r], keep_list[r]) if k] for r in rows]
    columns = {names[0]: queries[pairs.pair_query[rows]].tolist(), names[1]: documents}
    if output_scores:
        columns["scores"] = [[float(pos_scores[r])] + [s for s, k in zip(score_list[r], keep_list[r]) if k]
                             for r in rows]
    else:
        columns["labels"] = [[1] + [0] * sum(keep_list[r]) for r in rows]
    kept_neg = neg_scores[keep]
    return columns, kept_neg, pos_scores.unsqueeze(1).expand_as(neg_scores)[keep] - kept_neg, len(keep)


def _labeled_pairs(pairs, queries, corpus, names, query_scores, query_indices, pos_scores, output_scores):
    """Per unique anchor: its positives (label 1) then its negatives (label 0); statistics per pair, as in ST."""
    texts, documents, values = [], [], []
    pair_query, positive = pairs.pair_query.tolist(), pairs.pair_positive.tolist()
    score_list, index_list = query_scores.tolist(), query_indices.tolist()
    start = 0
    for q in range(len(score_list)):
        stop = start
        while stop < len(pair_query) and pair_query[stop] == q:
            stop += 1
        negatives = [(i, s) for i, s in zip(index_list[q], score_list[q]) if s != -float("inf")]
        documents += [corpus[p] for p in positive[start:stop]] + [corpus[i] for i, _ in negatives]
        texts += [queries[q]] * (stop - start + len(negatives))
        values += (pos_scores[start:stop].tolist() if output_scores else [1] * (stop - start))
        values += [s for _, s in negatives] if output_scores else [0] * len(negatives)
        start = stop
    columns = {names[0]: texts, names[1]: documents, ("score" if output_scores else "label"): values}
    neg_scores = query_scores[pairs.pair_query]
    keep = neg_scores != -float("inf")
    kept_neg = neg_scores[keep]
    difference = pos_scores.unsqueeze(1).expand_as(neg_scores)[keep] - kept_neg
    return columns, kept_neg, difference, len(query_scores) * query_scores.size(1) + pairs.n_rows


_FORMATTERS = {"triplet": _triplets, "n-tuple": _n_tuples, "labeled-list": _labeled_lists,
               "labeled-pair": _labeled_pairs}


def mine_from_embeddings(
    pairs: _Pairs,
    query_embeddings: Tensor,
    corpus_embeddings: Tensor,
    *,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: str = "top",
    output_format: str = "triplet",
    output_scores: bool = False,
    chunk_size: int = 8192,
    query_chunk_size: int = 1024,
    seed: int | None = 0,
    column_names: tuple[str, str] = ("anchor", "positive"),
) -> MinedNegatives:
    """`mine_hard_negatives` on embeddings already computed: ``query_embeddings`` row i embeds
    ``pairs.queries[i]``, ``corpus_embeddings`` row j embeds ``pairs.corpus[j]`` (see `deduplicate_pairs`)."""
    if range_max is None:
        filtered = any(v is not None for v in (absolute_margin, relative_margin, max_score))
        range_max = default_range_max(range_min, num_negatives, pairs.max_rows, filtered)
    _check_settings(range_min, range_max, num_negatives, sampling_strategy, output_format, chunk_size,
                    query_chunk_size)
    if len(query_embeddings) != len(pairs.queries) or len(corpus_embeddings) != len(pairs.corpus):
        raise ValueError(f"Expected {len(pairs.queries)} query and {len(pairs.corpus)} corpus embeddings, got "
                         f"{len(query_embeddings)} and {len(corpus_embeddings)}.")
    settings = dict(range_min=range_min, range_max=range_max, max_score=max_score, min_score=min_score,
                    absolute_margin=absolute_margin, relative_margin=relative_margin)
    window = range_max + pairs.max_rows + 1
    scores, indices = top_k_scores(query_embeddings, corpus_embeddings, window, chunk_size, query_chunk_size)
    excluded = _exclude(scores, indices, pairs)
    pos_scores = (F.normalize(query_embeddings[pairs.pair_query].float(), dim=-1)
                  * F.normalize(corpus_embeddings[pairs.pair_positive].float(), dim=-1)).sum(-1)
    weakest = torch.full((len(pairs.queries),), float("inf")).scatter_reduce(0, pairs.pair_query, pos_scores, "amin")
    skipped, ratio = _apply_filters(scores, weakest, settings)
    neg_scores, neg_indices = _select(scores, indices, range_min, range_max, num_negatives, sampling_strategy, seed)
    queries, corpus = np.array(pairs.queries, dtype=object), np.array(pairs.corpus, dtype=object)
    per_pair = (neg_scores, neg_indices) if output_format == "labeled-pair" else (
        neg_scores[pairs.pair_query], neg_indices[pairs.pair_query])
    columns, kept_neg, difference, possible = _FORMATTERS[output_format](
        pairs, queries, corpus, column_names, *per_pair, pos_scores, output_scores)
    statistics = MiningStatistics(
        positive_scores=pos_scores, negative_scores=kept_neg, difference_scores=difference, settings=settings,
        skipped=skipped, ratio=ratio, excluded=excluded, window=window, range_max=range_max, possible=possible,
        produced=len(next(iter(columns.values()))))
    return MinedNegatives(columns, statistics, pairs.queries, pairs.corpus, neg_indices, neg_scores,
                          pairs.pair_positive, pairs.pair_query, pos_scores)


def mine_hard_negatives(
    model,
    anchors,
    positives=None,
    corpus: Sequence[str] | None = None,
    *,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: str = "top",
    output_format: str = "triplet",
    output_scores: bool = False,
    query_prompt: str | None = None,
    corpus_prompt: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 8192,
    query_chunk_size: int = 1024,
    seed: int | None = 0,
    precision: str = "fp32",
    verbose: bool = False,
) -> MinedNegatives:
    """Add hard negatives to (anchor, positive) pairs, as sentence-transformers' ``mine_hard_negatives`` does.

    Definitions: a *hard negative* is a corpus text the model puts close to the anchor that is not one of the
    anchor's positives. The closest ones are often *false negatives* (relevant, but unlabelled): the margins and
    ``max_score`` exist to skip them. The rules, in order, are in this module's docstring.

    Args:
        model: a `labkit.model.EmbeddingModel` (anything with ``encode(texts, batch_size=..., normalize=True,
            convert_to_tensor=True, ...)``). Scores are cosine similarities.
        anchors: the anchors (a list of strings), or a DataFrame / `datasets.Dataset` with anchor and positive
            columns (then leave ``positives`` out; see ``anchor_column_name``).
        positives: one positive per anchor. Repeated anchors are one query with several positives.
        corpus: texts to draw negatives from, besides the positives (None: the positives only).
        range_min, range_max: ranks (among the candidates left after exclusions and filters) to draw from:
            skip the first ``range_min``, stop at ``range_max`` (None: ``range_min + num_negatives + max_positives``,
            or ``range_min + 10 * num_negatives + max_positives`` when a margin or ``max_score`` is set).
        max_score, min_score: skip candidates scoring above / below.
        absolute_margin: skip a candidate unless ``score + absolute_margin <= positive_score``.
        relative_margin: skip a candidate unless ``score <= positive_score - |positive_score| * relative_margin``.
            ``positive_score`` is the anchor's lowest positive score.
        num_negatives: negatives per anchor. sampling_strategy: "top" (the best ones) or "random" (drawn with
            ``seed`` from the candidates left; ``seed=None`` uses torch's global generator).
        output_format: "triplet" (anchor, positive, negative) rows; "n-tuple" (anchor, positive, negative_1..n),
            only pairs with all n negatives; "labeled-pair" (anchor, text, label); "labeled-list"
            (anchor, [texts], labels). ``output_scores=True`` adds the scores as sentence-transformers does
            ("n-tuple" + scores is ST's old "n-tuple-scores").
        query_prompt, corpus_prompt: strings put before every anchor / corpus text when encoding.
        batch_size: encoding batch size. chunk_size, query_chunk_size: corpus / query block sizes of the search
            (memory about ``query_chunk_size * (chunk_size + range_max + max_positives + 1)`` floats).
        precision: passed to ``model.encode`` ("fp32": the same embeddings as sentence-transformers).
        verbose: print the statistics table (sentence-transformers prints it by default).

    Returns:
        `MinedNegatives`: ``.columns`` (also ``.to_pandas()``, ``.to_dataset()``), ``.statistics`` (``.table()``:
        sentence-transformers' verbose table) and the index-level results.

    Recommendations: NV-Retriever's best setting is ``relative_margin=0.05, sampling_strategy="top"``, at most 10
    negatives. Check ``statistics.missing``: anchors for which too few candidates passed the filters.

    Differences from sentence-transformers 6.3: no cross-encoder rescoring, prompt names, FAISS, multi-process or
    embedding cache; ``include_positives`` is not supported; an explicitly empty corpus is an error (ST silently
    uses the positives); ``verbose`` defaults to False (the table is returned instead); random sampling uses a
    seeded torch generator (ST: Python's global ``random``); exact score ties may be ordered differently.

    Example:
        >>> mined = mine_hard_negatives(model, claims, abstracts, corpus=all_abstracts, relative_margin=0.05)
        >>> print(mined.statistics.table())
        >>> mined.to_pandas().head()
    """
    names = (anchor_column_name or "anchor", positive_column_name or "positive")
    if positives is None and (hasattr(anchors, "column_names") or hasattr(anchors, "columns")):
        anchors, positives, *names = split_columns(anchors, anchor_column_name, positive_column_name)
    pairs = deduplicate_pairs(anchors, positives, corpus)
    if range_max is None:  # check before the (slow) encoding
        filtered = any(v is not None for v in (absolute_margin, relative_margin, max_score))
        range_max = default_range_max(range_min, num_negatives, pairs.max_rows, filtered)
    _check_settings(range_min, range_max, num_negatives, sampling_strategy, output_format, chunk_size,
                    query_chunk_size)

    def encode(texts, prompt):
        texts = [prompt + t for t in texts] if prompt else texts
        return model.encode(texts, batch_size=batch_size, normalize=True, convert_to_tensor=True, precision=precision)

    mined = mine_from_embeddings(
        pairs, encode(pairs.queries, query_prompt), encode(pairs.corpus, corpus_prompt), range_min=range_min,
        range_max=range_max, max_score=max_score, min_score=min_score, absolute_margin=absolute_margin,
        relative_margin=relative_margin, num_negatives=num_negatives, sampling_strategy=sampling_strategy,
        output_format=output_format, output_scores=output_scores, chunk_size=chunk_size,
        query_chunk_size=query_chunk_size, seed=seed, column_names=tuple(names))
    if verbose:
        print(mined.statistics.table())
    return mined


def false_negative_suspects(mined: MinedNegatives, slack: float = 0.0) -> Tensor:
    """(n_queries, num_negatives) bool: the mined negative scores at least its anchor's weakest positive - slack.

    The model ranks such a "negative" above (or level with) a text labelled relevant: in a retrieval corpus
    that is very often an unlabelled relevant text (a false negative). It is what ``absolute_margin=slack``
    would have skipped.
    """
    weakest = torch.full((len(mined.queries),), float("inf")).scatter_reduce(
        0, mined.pair_query, mined.positive_scores, "amin")
    finite = mined.negative_scores != -float("inf")
    return finite & (mined.negative_scores >= weakest.unsqueeze(1) - slack)


def filter_sweep(pairs: _Pairs, query_embeddings: Tensor, corpus_embeddings: Tensor, settings: dict,
                 relevant: set | None = None, **common) -> dict:
    """Mine once per named setting and count what each keeps: {name: {"negatives", "suspects",
    "suspect_top", "relevant", "skipped", "missing"}}.

    ``negatives``: negatives mined (over unique anchors); ``suspects``: of those, how many score at least the
    anchor's weakest positive (`false_negative_suspects`); ``suspect_top``: anchors whose top negative is one;
    ``relevant``: how many are in ``relevant``, a set of (anchor text, corpus text) pairs known to be relevant
    (None: not counted); ``skipped``: candidates each filter removed; ``missing``: output rows not filled.
    ``common`` holds the settings shared by all runs (e.g. ``num_negatives``).

    >>> filter_sweep(pairs, q, c, {"none": {}, "relative 5%": {"relative_margin": 0.05}}, num_negatives=3)
    """
    results = {}
    for name, options in settings.items():
        mined = mine_from_embeddings(pairs, query_embeddings, corpus_embeddings, **(common | options))
        finite = mined.negative_scores != -float("inf")
        suspects = false_negative_suspects(mined)
        found = None
        if relevant is not None:
            rows, slots = finite.nonzero(as_tuple=True)
            found = sum((mined.queries[q], mined.corpus[c]) in relevant
                        for q, c in zip(rows.tolist(), mined.negative_indices[rows, slots].tolist()))
        results[name] = dict(negatives=int(finite.sum()), suspects=int(suspects.sum()),
                             suspect_top=int(suspects[:, 0].sum()), relevant=found,
                             skipped=dict(mined.statistics.skipped), missing=mined.statistics.missing)
    return results


def suspect_examples(mined: MinedNegatives, count: int = 3, min_positive_score: float | None = None) -> list[dict]:
    """The anchors whose top negative is a `false_negative_suspects` one, highest negative score first:
    [{"anchor", "positive", "positive_score", "negative", "negative_score"}].

    ``min_positive_score`` keeps anchors whose weakest positive scores at least that (an anchor with a badly
    scored positive makes every close text a "suspect"; a well-scored one makes a closer text a likely false
    negative). Read them: whether a suspect is relevant is for a person (or a better model) to decide.
    """
    weakest = torch.full((len(mined.queries),), float("inf")).scatter_reduce(
        0, mined.pair_query, mined.positive_scores, "amin")
    candidates = false_negative_suspects(mined)[:, 0]
    if min_positive_score is not None:
        candidates &= weakest >= min_positive_score
    top_scores = torch.where(candidates, mined.negative_scores[:, 0], -float("inf"))
    chosen = [q for q in top_scores.argsort(descending=True)[:count].tolist() if candidates[q]]
    first_positive = {}
    for q, p in zip(mined.pair_query.tolist(), mined.positive_indices.tolist()):
        first_positive.setdefault(q, p)
    return [dict(anchor=mined.queries[q], positive=mined.corpus[first_positive[q]], positive_score=float(weakest[q]),
                 negative=mined.corpus[int(mined.negative_indices[q, 0])],
                 negative_score=float(mined.negative_scores[q, 0])) for q in chosen]
