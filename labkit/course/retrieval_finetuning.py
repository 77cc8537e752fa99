"""Retrieval fine-tuning on a BEIR collection: one budget, several methods, several seeds, one honest table.

`compare_retrieval_methods` trains a fresh copy of one base model per (method, seed) on the training
queries' (query, relevant passage) pairs, keeps each run's best checkpoint on a dev split of the *training*
queries (`RetrievalData.split_queries`, scored against a sampled dev corpus), and scores every kept model
once on the test queries against the **whole** corpus (`labkit.retrieval.ir_metrics`):

* ``MNRL``: `MultipleNegativesRankingLoss` on (query, passage) pairs, in-batch negatives only;
* ``MNRL + hard negatives``: the same loss on (query, passage, mined negative) triplets, the negative mined
  from the corpus by the base model (`labkit.hard_negatives.mine_from_embeddings`, computed once outside);
* ``GIST``: `GISTEmbedLoss` on the pairs, with a frozen copy of the base model as the guide that takes
  likely false negatives out of the softmax.

Every run gets the same pairs, steps, batch size, learning rate, max length and dev evaluations; a seed
changes the batch order and dropout. Batches come from `NoDuplicatesBatchSampler`, so no text appears twice
in a batch (a claim with two relevant abstracts would otherwise be its own false negative).

`batch_duplicates` counts what plain shuffled batches would have held; `accumulation_versus_cache` shows on
real embeddings why gradient accumulation does not add negatives and GradCache does.

Taught in notebooks/14_retrieval_finetuning.ipynb.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from labkit.collate import PairDataset
from labkit.env import seed_everything
from labkit.losses.cached import CachedMultipleNegativesRankingLoss
from labkit.losses.gist import GISTEmbedLoss
from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.model import frozen_copy
from labkit.retrieval import IREvaluator, ir_metrics, ir_per_query
from labkit.sampling import NoDuplicatesBatchSampler

__all__ = ["METHODS", "REPORTED", "RetrievalComparison", "smaller_collection", "encode_collection",
           "train_copy", "compare_retrieval_methods", "batch_duplicates", "accumulation_versus_cache"]

METHODS = ("MNRL", "MNRL + hard negatives", "GIST")
REPORTED = ("cosine_ndcg@10", "cosine_mrr@10", "cosine_recall@100")  # the table's columns, in this order
K_LISTS = {"precision_recall_at_k": (1, 3, 5, 10, 100)}  # sentence-transformers' lists, plus recall@100
BASE = "base model"


def smaller_collection(train, test, queries: int = 0, corpus: int = 0, seed: int = 42):
    """(train, test) cut to the first `queries` queries of each split (0: all) and one shared corpus of `corpus`
    documents (0: all) that holds every document either split's qrels name: fast mode's collection."""
    from labkit.data import RetrievalData

    if queries:
        train = train.with_queries(list(train.queries)[:queries])
        test = test.with_queries(list(test.queries)[:queries])
    if corpus:
        both = RetrievalData(train.corpus, {**train.queries, **test.queries}, {**train.qrels, **test.qrels},
                             train.split, train.name, train.source).sample_corpus(corpus, seed)
        train, test = (RetrievalData(both.corpus, split.queries, split.qrels, split.split, split.name, split.source)
                       for split in (train, test))
    return train, test


def encode_collection(model, data, max_length: Optional[int] = None, precision: str = "auto",
                      batch_size: int = 32) -> Tuple[torch.Tensor, torch.Tensor]:
    """(query embeddings, corpus embeddings) of a `RetrievalData`, rows in its ``queries`` / ``corpus`` order.

    Encode the corpus once and reuse it: for the base model's test scores, for mining hard negatives from
    the same corpus, and for the per-query view.
    """
    def encode(texts):
        return model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, precision=precision,
                            max_length=max_length, show_progress_bar=False)

    return encode(data.queries.values()), encode(data.corpus.values())


@dataclass
class RetrievalComparison:
    """The runs of `compare_retrieval_methods`: test metrics, per-query NDCG@10 and dev histories."""

    runs: pd.DataFrame  # one row per (method, seed): the REPORTED test metrics, best_step, dev metric, seconds
    per_query: Dict[Tuple[str, int], pd.Series]  # (method, seed) -> test NDCG@10 per query id
    base: Dict[str, float]
    base_per_query: pd.Series
    histories: Dict[Tuple[str, int], list] = field(default_factory=dict)
    test_queries: Dict[str, str] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over seeds of each metric, the base model first; ``ndcg_change`` is the
        mean NDCG@10 change from the base model and ``change_in_sds`` that change in units of the seeds' sd."""
        rows = [{"method": BASE, "seeds": 0, **{f"{m} mean": self.base[m] for m in REPORTED},
                 **{f"{m} sd": 0.0 for m in REPORTED}, "ndcg_change": 0.0, "change_in_sds": float("nan")}]
        for method, group in self.runs.groupby("method", sort=False):
            row = {"method": method, "seeds": len(group)}
            for metric in REPORTED:
                row[f"{metric} mean"] = group[metric].mean()
                row[f"{metric} sd"] = group[metric].std(ddof=1) if len(group) > 1 else float("nan")
            row["ndcg_change"] = row["cosine_ndcg@10 mean"] - self.base["cosine_ndcg@10"]
            sd = row["cosine_ndcg@10 sd"]
            row["change_in_sds"] = row["ndcg_change"] / sd if sd and sd > 0 else float("nan")
            rows.append(row)
        return pd.DataFrame(rows)

    def query_changes(self, method: str, count: int = 3) -> pd.DataFrame:
        """The `count` test queries whose NDCG@10 (mean over the method's seeds) rose most and fell most from
        the base model, with their texts (fewer when fewer changed)."""
        seeds = [s for (m, s) in self.per_query if m == method]
        if not seeds:
            raise KeyError(f"No runs of {method!r}; the methods are {sorted({m for m, _ in self.per_query})}.")
        after = pd.concat([self.per_query[(method, s)] for s in seeds], axis=1).mean(axis=1)
        change = (after - self.base_per_query).sort_values(kind="stable")
        rose, fell = change[change > 1e-9], change[change < -1e-9]  # unchanged queries are neither
        picked = pd.concat([rose.tail(count).iloc[::-1], fell.head(count)])
        return pd.DataFrame({
            "query_id": picked.index, "query": [self.test_queries.get(q, "") for q in picked.index],
            "ndcg@10 before": self.base_per_query[picked.index].to_numpy(),
            "ndcg@10 after": after[picked.index].to_numpy(), "change": picked.to_numpy(),
        })

    def changed_counts(self, method: str) -> Dict[str, int]:
        """How many test queries the method (mean over seeds) made better, worse, or left equal in NDCG@10."""
        seeds = [s for (m, s) in self.per_query if m == method]
        after = pd.concat([self.per_query[(method, s)] for s in seeds], axis=1).mean(axis=1)
        change = after - self.base_per_query
        return {"better": int((change > 1e-9).sum()), "worse": int((change < -1e-9).sum()),
                "same": int((change.abs() <= 1e-9).sum())}

    def plot(self, metric: str = "cosine_ndcg@10", ax=None):
        """Each seed's test score per method (dots), their mean (a bar) and the base model (a dashed line)."""
        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 3.6))
        methods = list(dict.fromkeys(self.runs["method"]))
        for x, method in enumerate(methods):
            values = self.runs.loc[self.runs["method"] == method, metric].to_numpy()
            ax.bar(x, values.mean(), width=0.6, color="C0", alpha=0.35)
            ax.scatter(np.full(len(values), x), values, color="C0", zorder=3, label="one seed" if x == 0 else None)
        ax.axhline(self.base[metric], color="C3", linestyle="--", label=BASE)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_ylabel(f"test {metric.removeprefix('cosine_')}")
        values = np.append(self.runs[metric].to_numpy(), self.base[metric])
        spread = max(values.max() - values.min(), 0.01)
        ax.set_ylim(values.min() - spread, values.max() + spread)
        ax.legend(loc="lower right", fontsize=9)
        ax.set_title(f"{metric.removeprefix('cosine_')} on the test queries, whole corpus")
        return ax


def train_copy(base_model, make_loss, rows: pd.DataFrame, *, labels: Optional[Sequence] = None, seed: int,
               steps: int, batch_size: int, lr: float, max_length: Optional[int], evaluator, eval_every: int,
               precision: str):
    """Train a fresh copy of `base_model` on the text columns of `rows`; return (model, `TrainResult`).

    ``make_loss(model)`` builds the loss for the copy (a loss that runs the model, such as
    `AdaptiveLayerLoss`, needs it). ``labels``: one per row (scores, a teacher's embeddings or margins), or
    None. Batches come from `NoDuplicatesBatchSampler` (no text twice in a batch); the copy ends at its best
    checkpoint on ``evaluator`` (``evaluator.main_metric``), which may be step 0's, the base model itself.
    """
    from labkit.train import fit

    seed_everything(seed)
    model = copy.deepcopy(base_model)
    dataset = PairDataset(*(rows[column].tolist() for column in rows.columns), labels=labels)
    sampler = NoDuplicatesBatchSampler(rows, batch_size=batch_size, seed=seed)
    result = fit(model, make_loss(model), dataset, batch_sampler=sampler, steps=steps, lr=lr, max_length=max_length,
                 evaluator=evaluator, metric=evaluator.main_metric, eval_every=eval_every, restore_best=True,
                 precision=precision, seed=seed, show_progress=False, live_plot=False)
    return model, result


def _train_one(method: str, base_model, pairs: pd.DataFrame, triplets: Optional[pd.DataFrame], **budget):
    if method == "MNRL + hard negatives":
        rows, make_loss = triplets[["anchor", "positive", "negative"]], lambda model: MultipleNegativesRankingLoss()
    elif method == "GIST":
        guide = frozen_copy(base_model)
        rows, make_loss = pairs[["anchor", "positive"]], lambda model: GISTEmbedLoss(model, guide)
    elif method == "MNRL":
        rows, make_loss = pairs[["anchor", "positive"]], lambda model: MultipleNegativesRankingLoss()
    else:
        raise ValueError(f"Unknown method {method!r}; the methods are {', '.join(METHODS)}.")
    return train_copy(base_model, make_loss, rows, **budget)


def check_splits(train, dev, test) -> None:
    """Refuse a dev or test query that is also a training query (dev must be carved from train, not shared)."""
    overlap = set(dev.queries) & set(train.queries) or set(test.queries) & set(train.queries)
    if overlap:
        raise ValueError(f"{len(overlap)} query ids are in train and in dev or test (e.g. {sorted(overlap)[:3]}): "
                         "carve dev from the training queries with split_queries and train on the rest.")


def check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")


class StartingPointEvaluator:
    """Runs of one comparison all start from the same model, so `fit`'s step-0 dev evaluation of each is the same
    number: compute it once. ``for_run()`` gives one run its evaluator: the first call returns the shared
    starting score (computed on the first run's first call), later calls evaluate the model being trained."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.main_metric = evaluator.main_metric
        self.start: Dict[str, float] = {}

    def for_run(self):
        calls = []

        def evaluate(model) -> Dict[str, float]:
            calls.append(1)
            if len(calls) > 1:
                return self.evaluator(model)
            if not self.start:  # step 0: the run's model is still an unchanged copy of the starting model
                self.start.update(self.evaluator(model))
            return dict(self.start)

        evaluate.main_metric = self.main_metric
        return evaluate


def compare_retrieval_methods(
    base_model,
    train,
    test,
    *,
    dev,
    test_embeddings: Tuple[torch.Tensor, torch.Tensor],
    hard_negatives: Optional[pd.DataFrame] = None,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = (42, 43),
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-5,
    max_length: Optional[int] = None,
    eval_every: Optional[int] = None,
    precision: str = "auto",
) -> RetrievalComparison:
    """Train a copy of `base_model` per (method, seed), keep its best dev checkpoint, score it once on test.

    Args:
        base_model: an `EmbeddingModel`; copied for every run, never changed.
        train: the training queries (`RetrievalData`), without the dev queries: their pairs are trained on.
        test: the test split (`RetrievalData`), scored once per run against its whole corpus.
        dev: a `RetrievalData` of queries carved from train (`split_queries`), usually with a sampled corpus
            (`sample_corpus`): what each run's checkpoint is chosen on, every `eval_every` steps.
        test_embeddings: the base model's (query, corpus) embeddings of `test` (`encode_collection`), so the
            base model is scored from what the notebook already encoded.
        hard_negatives: (anchor, positive, negative) rows for "MNRL + hard negatives", mined from the training
            pairs only (`labkit.hard_negatives.mine_from_embeddings(..., num_negatives=1)`).
        steps, batch_size, lr, max_length: one budget for every run.
        eval_every: steps between dev evaluations (default: half of `steps`, so step 0, the middle and the end).

    Returns a `RetrievalComparison`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {', '.join(METHODS)}.")
    if "MNRL + hard negatives" in methods and hard_negatives is None:
        raise ValueError("'MNRL + hard negatives' needs hard_negatives: (anchor, positive, negative) rows mined "
                         "from the training pairs (labkit.hard_negatives.mine_from_embeddings, num_negatives=1).")
    check_splits(train, dev, test)
    check_steps(steps)
    eval_every = eval_every or max(1, steps // 2)
    pairs = train.pairs()
    evaluator = IREvaluator(dev, precision=precision, max_length=max_length)
    query_ids, corpus_ids = list(test.queries), list(test.corpus)

    def score(queries, corpus):
        return (ir_metrics(queries, corpus, test.qrels, query_ids, corpus_ids, **K_LISTS),
                ir_per_query(queries, corpus, test.qrels, query_ids, corpus_ids)["ndcg@10"])

    base, base_per_query = score(*test_embeddings)
    first_evaluation = StartingPointEvaluator(evaluator)

    rows, per_query, histories = [], {}, {}
    for method in methods:
        for seed in seeds:
            started = time.perf_counter()
            model, result = _train_one(method, base_model, pairs, hard_negatives, seed=seed, steps=steps,
                                       batch_size=batch_size, lr=lr, max_length=max_length,
                                       evaluator=first_evaluation.for_run(),
                                       eval_every=eval_every, precision=precision)
            metrics, per_query[(method, seed)] = score(*encode_collection(model, test, max_length, precision))
            rows.append({"method": method, "seed": seed, **{m: metrics[m] for m in REPORTED},
                         "best_step": result.best_step, "dev ndcg@10": result.best_metric,
                         "seconds": round(time.perf_counter() - started, 1)})
            histories[(method, seed)] = result.history
            del model
    return RetrievalComparison(pd.DataFrame(rows), per_query, base, base_per_query, histories, dict(test.queries))


def batch_duplicates(pairs: pd.DataFrame, batch_size: int, seed: int = 0) -> pd.DataFrame:
    """One epoch of plain shuffled batches against `NoDuplicatesBatchSampler`'s: how many batches hold a text
    twice (the same query with two passages, or one passage for two queries), and how many rows are in them.

    In such a batch MNRL scores a row's own relevant text as a negative of the other row: a false negative
    built into the loss.
    """
    from labkit.course.batch_composition import shuffled_batches

    columns = pairs[["anchor", "positive"]]
    codes = {name: pd.factorize(columns[name])[0] for name in columns}

    def count(batches) -> dict:
        with_duplicate = rows = 0
        for batch in batches:
            index = np.asarray(batch)
            repeated = [pd.Series(codes[name][index]).duplicated(keep=False).to_numpy() for name in codes]
            mask = np.logical_or.reduce(repeated)
            with_duplicate += bool(mask.any())
            rows += int(mask.sum())
        return {"batches": len(batches), "batches with a repeated text": with_duplicate,
                "rows sharing a text with another row": rows}

    sampler = NoDuplicatesBatchSampler(columns, batch_size=batch_size, seed=seed)
    return pd.DataFrame([
        {"sampler": "shuffled (DataLoader shuffle=True)", **count(shuffled_batches(len(columns), batch_size, seed))},
        {"sampler": "NoDuplicatesBatchSampler", **count(list(sampler))},
    ]).set_index("sampler")


def accumulation_versus_cache(model, anchors: Sequence[str], positives: Sequence[str], mini_batch_size: int,
                              max_length: Optional[int] = None) -> pd.DataFrame:
    """The loss of one batch three ways, on the model's real embeddings: MNRL on the whole batch, gradient
    accumulation over mini-batches (the mean of MNRL per mini-batch), and GradCache
    (`CachedMultipleNegativesRankingLoss`) with the same mini-batches. Also the negatives one anchor sees."""
    batch_size = len(anchors)
    if batch_size % mini_batch_size:
        raise ValueError(f"mini_batch_size={mini_batch_size} must divide the batch of {batch_size} pairs.")
    model = copy.deepcopy(model).eval()  # no dropout: the three numbers differ only by the method
    features = [model.tokenize(list(texts), max_length=max_length) for texts in (anchors, positives)]
    mnrl = MultipleNegativesRankingLoss()
    with torch.no_grad():
        anchor, positive = (model(f) for f in features)
        whole = float(mnrl(anchor, positive))
        pieces = [float(mnrl(anchor[i: i + mini_batch_size], positive[i: i + mini_batch_size]))
                  for i in range(0, batch_size, mini_batch_size)]
    cached = float(CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)(features).detach())
    return pd.DataFrame([
        {"method": f"MNRL, one batch of {batch_size}", "negatives per anchor": batch_size - 1, "loss": whole},
        {"method": f"gradient accumulation, {batch_size // mini_batch_size} x {mini_batch_size}",
         "negatives per anchor": mini_batch_size - 1, "loss": float(np.mean(pieces))},
        {"method": f"GradCache, mini-batches of {mini_batch_size}", "negatives per anchor": batch_size - 1,
         "loss": cached},
    ]).set_index("method")
