"""Smaller and cheaper embeddings: fewer dimensions (Matryoshka), fewer layers (AdaptiveLayer), a smaller
student (distillation), each measured by NDCG@10 on a BEIR collection against its whole corpus.

* `encode_layers` embeds texts after every transformer layer in one pass (`EmbeddingModel.layer_embeddings`),
  so one encoding gives the model's quality at every depth; the last layer is the model's own embedding.
* `truncation_curve` scores the first d dimensions of every embedding (cosine renormalises them, as
  `MatryoshkaLoss` and sentence-transformers' ``truncate_dim`` do); `layer_curve` scores each depth.
* `compare_size_methods` trains a copy of the base model per (method, seed) on the training pairs — plain
  MNRL, MNRL wrapped in `MatryoshkaLoss`, MNRL wrapped in `AdaptiveLayerLoss` — keeps each run's best dev
  checkpoint, and scores every kept model at every size and depth on the test queries.
* `compare_distillation` cuts the base model to its first layers (`labkit.model.keep_first_layers`) and
  trains that student three ways — MNRL on the pairs (no teacher), `MSELoss` towards the teacher's
  embeddings, `MarginMSELoss` towards the teacher's score margins on mined triplets — then scores each and
  times its encoding against the teacher's, in turns in one run.

Taught in notebooks/15_smaller_and_cheaper.ipynb.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import pandas as pd
import torch

from labkit.course.retrieval_finetuning import (
    BASE, K_LISTS, REPORTED, StartingPointEvaluator, check_splits, check_steps, train_copy,
)
from labkit.losses.adaptive_layer import AdaptiveLayerLoss
from labkit.losses.distillation import MarginMSELoss, MSELoss
from labkit.losses.matryoshka import MatryoshkaLoss
from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.model import keep_first_layers
from labkit.retrieval import IREvaluator, ir_metrics

__all__ = ["DIMS", "SIZE_METHODS", "DISTILLATION_METHODS", "encode_layers", "encode_collection_layers",
           "truncation_curve", "layer_curve", "SizeComparison", "compare_size_methods", "encoding_seconds",
           "DistillationComparison", "compare_distillation"]

DIMS = (384, 256, 128, 64, 32)  # all-MiniLM-L6-v2's 384, halved down to 32
SIZE_METHODS = ("MNRL", "Matryoshka", "AdaptiveLayer")
DISTILLATION_METHODS = ("no training", "MNRL", "MSELoss", "MarginMSELoss")
TEACHER = "teacher"


def encode_layers(model, texts: Sequence[str], batch_size: int = 32, max_length: Optional[int] = None,
                  precision: str = "auto") -> torch.Tensor:
    """(layers + 1, len(texts), dim) float32: row ``[i]`` is every text's embedding after the first i layers.

    ``[-1]`` is `model.encode`'s embedding; ``[i]`` is what `keep_first_layers(model, i)` would give
    (`EmbeddingModel.encode_layers`: one model pass per batch, the hidden states of every layer pooled), with
    the course's default precision ("auto", as `fit()`), and no progress bar.
    """
    return model.encode_layers(texts, batch_size=batch_size, max_length=max_length, precision=precision,
                               show_progress_bar=False)


def encode_collection_layers(model, data, max_length: Optional[int] = None, precision: str = "auto",
                             batch_size: int = 32) -> Tuple[torch.Tensor, torch.Tensor]:
    """`encode_layers` of a `RetrievalData`'s queries and corpus (rows in its ``queries`` / ``corpus`` order)."""
    def encode(texts):
        return encode_layers(model, list(texts), batch_size=batch_size, max_length=max_length, precision=precision)

    return encode(data.queries.values()), encode(data.corpus.values())


def _scores(queries: torch.Tensor, corpus: torch.Tensor, data) -> Dict[str, float]:
    metrics = ir_metrics(queries, corpus, data.qrels, list(data.queries), list(data.corpus), **K_LISTS)
    return {name: metrics[name] for name in REPORTED}


def truncation_curve(queries: torch.Tensor, corpus: torch.Tensor, data, dims: Sequence[int] = DIMS) -> pd.DataFrame:
    """One row per size d: bytes per stored vector (float32) and the test metrics of the first d dimensions.

    ``queries`` (Q, D) and ``corpus`` (N, D) are full embeddings (the last row of `encode_layers`' output);
    cosine renormalises the truncated vectors.
    """
    too_big = [d for d in dims if not 1 <= d <= queries.shape[-1]]
    if too_big:
        raise ValueError(f"dims {too_big} are not between 1 and the embedding size {queries.shape[-1]}.")
    return pd.DataFrame([{"dim": d, "bytes per vector": 4 * d, **_scores(queries[:, :d], corpus[:, :d], data)}
                         for d in dims]).set_index("dim")


def layer_curve(query_layers: torch.Tensor, corpus_layers: torch.Tensor, data,
                layers: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """One row per depth i (default 1..L): the test metrics of the embeddings after the first i layers."""
    total = query_layers.shape[0] - 1
    layers = list(range(1, total + 1)) if layers is None else list(layers)
    wrong = [i for i in layers if not 1 <= i <= total]
    if wrong:
        raise ValueError(f"layers {wrong} are not between 1 and the model's {total} layers.")
    return pd.DataFrame([{"layers": i, **_scores(query_layers[i], corpus_layers[i], data)}
                         for i in layers]).set_index("layers")


@dataclass
class SizeComparison:
    """Every run's test metrics at every size (``by_dim``) and depth (``by_layers``), long form: one row per
    (method, seed, size); the base model's rows have seed -1. ``runs``: one row per training run."""

    by_dim: pd.DataFrame
    by_layers: pd.DataFrame
    runs: pd.DataFrame

    def table(self, by: str = "dim", metric: str = "cosine_ndcg@10", statistic: str = "mean") -> pd.DataFrame:
        """Methods × sizes: the ``statistic`` ("mean" or "std" over seeds) of ``metric``."""
        long = {"dim": self.by_dim, "layers": self.by_layers}[by]
        wide = long.pivot_table(index="method", columns=by, values=metric, aggfunc=statistic, sort=False, dropna=False)
        # the base model has one run: its sd is NaN, and the row stays (in the runs' order)
        return wide.reindex(long["method"].unique())[sorted(wide.columns, reverse=(by == "dim"))]

    def share_of_full(self, by: str = "dim", metric: str = "cosine_ndcg@10") -> pd.DataFrame:
        """`table` divided by each method's own score at full size: how much of its quality a cut keeps."""
        means = self.table(by, metric)
        full = means[max(means.columns)]
        return means.div(full, axis=0)

    def plot(self, metric: str = "cosine_ndcg@10", axes=None):
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, by, label in zip(axes, ("dim", "layers"), ("dimensions kept", "transformer layers kept")):
            means, sds = self.table(by, metric), self.table(by, metric, "std")
            for method in means.index:
                ax.errorbar(means.columns, means.loc[method], yerr=sds.loc[method].fillna(0), marker="o",
                            capsize=3, label=method)
            ax.set_xlabel(label)
            ax.set_ylabel(f"test {metric}")
            ax.grid(alpha=0.3)
        axes[0].set_xscale("log", base=2)
        axes[0].set_xticks(sorted(self.by_dim["dim"].unique()))
        axes[0].get_xaxis().set_major_formatter(plt.ScalarFormatter())
        axes[0].legend(loc="lower right")
        axes[0].set_title("NDCG@10 against the truncated dimension")
        axes[1].set_title("NDCG@10 against the layers kept")
        plt.tight_layout()
        return axes


def _mnrl(model):
    return MultipleNegativesRankingLoss()


def _size_loss(method: str, dims: Sequence[int]):
    if method == "MNRL":
        return _mnrl
    if method == "Matryoshka":
        return lambda model: MatryoshkaLoss(MultipleNegativesRankingLoss(), list(dims))
    if method == "AdaptiveLayer":
        return lambda model: AdaptiveLayerLoss(model, MultipleNegativesRankingLoss())
    raise ValueError(f"Unknown method {method!r}; the methods are {', '.join(SIZE_METHODS)}.")


def _curves(method: str, seed: int, query_layers, corpus_layers, data, dims) -> Tuple[pd.DataFrame, pd.DataFrame]:
    by_dim = truncation_curve(query_layers[-1], corpus_layers[-1], data, dims).reset_index()
    by_layers = layer_curve(query_layers, corpus_layers, data).reset_index()
    for frame in (by_dim, by_layers):
        frame.insert(0, "seed", seed)
        frame.insert(0, "method", method)
    return by_dim, by_layers


def compare_size_methods(
    base_model,
    train,
    test,
    *,
    dev,
    base_layers: Tuple[torch.Tensor, torch.Tensor],
    methods: Sequence[str] = SIZE_METHODS,
    dims: Sequence[int] = DIMS,
    seeds: Sequence[int] = (42, 43),
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-5,
    max_length: Optional[int] = None,
    eval_every: Optional[int] = None,
    precision: str = "auto",
) -> SizeComparison:
    """Train a copy of `base_model` per (method, seed) on `train`'s pairs and score it at every size and depth.

    Every run gets the same pairs, steps, batch size, learning rate, max length and dev evaluations (the full
    embedding's NDCG@10 on `dev`, which chooses the checkpoint); only the loss and the seed change:
    ``"MNRL"`` (`MultipleNegativesRankingLoss`), ``"Matryoshka"`` (MNRL at each of `dims`, weights 1) and
    ``"AdaptiveLayer"`` (MNRL after the last layer and after one random earlier layer per step, plus the
    KL term that pulls that layer towards the last; sentence-transformers' defaults). Each kept model is
    encoded once (`encode_collection_layers`) and scored on `test` against its whole corpus.

    ``base_layers``: the base model's `encode_collection_layers` of `test`, scored as the "base model" rows.
    """
    unknown = [m for m in methods if m not in SIZE_METHODS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {', '.join(SIZE_METHODS)}.")
    check_splits(train, dev, test)
    check_steps(steps)
    eval_every = eval_every or max(1, steps // 2)
    evaluator = StartingPointEvaluator(IREvaluator(dev, precision=precision, max_length=max_length))
    rows = train.pairs()[["anchor", "positive"]]
    curves = [_curves(BASE, -1, *base_layers, test, dims)]
    runs = []
    for method in methods:
        for seed in seeds:
            started = time.perf_counter()
            model, result = train_copy(base_model, _size_loss(method, dims), rows, seed=seed, steps=steps,
                                       batch_size=batch_size, lr=lr, max_length=max_length,
                                       evaluator=evaluator.for_run(), eval_every=eval_every, precision=precision)
            layers = encode_collection_layers(model, test, max_length, precision)
            curves.append(_curves(method, seed, *layers, test, dims))
            runs.append({"method": method, "seed": seed, "best_step": result.best_step,
                         "dev ndcg@10": result.best_metric, "seconds": round(time.perf_counter() - started)})
            del model
    return SizeComparison(pd.concat([c[0] for c in curves], ignore_index=True),
                          pd.concat([c[1] for c in curves], ignore_index=True), pd.DataFrame(runs))


def encoding_seconds(models: Mapping[str, torch.nn.Module], texts: Sequence[str], max_length: Optional[int] = None,
                     precision: str = "auto", rounds: int = 3, batch_size: int = 32) -> pd.Series:
    """Median seconds each model takes to encode `texts`, the models taking turns round after round (so a
    change in the machine's load hits them all alike). One warm-up encoding each is not timed."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    texts = list(texts)

    def run(model):
        model.encode(texts, batch_size=batch_size, max_length=max_length, precision=precision, show_progress_bar=False)

    for model in models.values():
        run(model)
    seconds = {name: [] for name in models}
    for round_index in range(rounds):
        names = list(models) if round_index % 2 == 0 else list(reversed(models))
        for name in names:
            started = time.perf_counter()
            run(models[name])
            seconds[name].append(time.perf_counter() - started)
    return pd.Series({name: statistics.median(values) for name, values in seconds.items()}, name="seconds")


@dataclass
class DistillationComparison:
    """The teacher and each student: layers, parameters, test metrics, encoding time and speed-up."""

    table: pd.DataFrame
    runs: pd.DataFrame


def _distillation_rows(method: str, pairs: pd.DataFrame, triplets: Optional[pd.DataFrame], teacher, corpus, *,
                       max_length, precision) -> Tuple[pd.DataFrame, Optional[list], object]:
    """(rows, labels, make_loss) of one distillation method; ``corpus``: (texts, the teacher's embeddings)."""
    if method == "MNRL":
        return pairs[["anchor", "positive"]], None, _mnrl
    if method == "MSELoss":
        # MSE needs no labels, only the teacher's vectors: every training claim and every corpus document
        claims = list(dict.fromkeys(pairs["anchor"]))
        claim_targets = teacher.encode(claims, max_length=max_length, precision=precision, convert_to_tensor=True,
                                       show_progress_bar=False)
        texts, targets = claims + list(corpus[0]), torch.cat([claim_targets, corpus[1].float()])
        return pd.DataFrame({"text": texts}), list(targets), lambda model: MSELoss()
    if method == "MarginMSELoss":
        if triplets is None:
            raise ValueError("'MarginMSELoss' needs triplets: (anchor, positive, negative) rows with the teacher's "
                             "'scores' [positive, negative] (mine_from_embeddings(..., output_scores=True)).")
        margins = [positive - negative for positive, negative in triplets["scores"]]
        return triplets[["anchor", "positive", "negative"]], margins, lambda model: MarginMSELoss()
    raise ValueError(f"Unknown method {method!r}; the methods are {', '.join(DISTILLATION_METHODS)}.")


def compare_distillation(
    teacher,
    train,
    test,
    *,
    dev,
    teacher_layers: Tuple[torch.Tensor, torch.Tensor],
    student_layers: int = 3,
    triplets: Optional[pd.DataFrame] = None,
    methods: Sequence[str] = DISTILLATION_METHODS,
    seed: int = 42,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-5,
    max_length: Optional[int] = None,
    eval_every: Optional[int] = None,
    precision: str = "auto",
    timing_texts: Sequence[str] = (),
    timing_rounds: int = 3,
) -> DistillationComparison:
    """A student = the teacher's first `student_layers` layers, trained per method; every one scored on `test`.

    Methods: ``"no training"`` (the cut model as it is), ``"MNRL"`` (the student fine-tuned on the pairs,
    no teacher: the control), ``"MSELoss"`` (the student's embedding of every training text towards the
    teacher's, on every training claim and every corpus document: MSE needs no labels, and the corpus one
    searches is known in advance), ``"MarginMSELoss"`` (the student's cos(q, p) − cos(q, n) towards the teacher's, on
    `triplets` mined by the teacher with their ``scores``). One budget and one seed for every run; the
    checkpoint is chosen on `dev`. ``teacher_layers``: the teacher's `encode_collection_layers` of `test`; its
    last layer scores the teacher, its layer `student_layers` the untrained student (the same embeddings a
    cut model gives), so neither is encoded again.
    ``timing_texts``: texts every model encodes in turns (`encoding_seconds`) for the speed column.
    """
    unknown = [m for m in methods if m not in DISTILLATION_METHODS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {', '.join(DISTILLATION_METHODS)}.")
    check_splits(train, dev, test)
    check_steps(steps)
    eval_every = eval_every or max(1, steps // 2)
    evaluator = StartingPointEvaluator(IREvaluator(dev, precision=precision, max_length=max_length))
    pairs = train.pairs()
    cut = keep_first_layers(teacher, student_layers)
    students, rows, runs = {}, [], []
    for method in methods:
        started = time.perf_counter()
        if method == "no training":
            student = cut
        else:
            columns, labels, make_loss = _distillation_rows(method, pairs, triplets, teacher,
                                                            (test.corpus.values(), teacher_layers[1][-1]),
                                                            max_length=max_length, precision=precision)
            student, result = train_copy(cut, make_loss, columns, labels=labels, seed=seed, steps=steps,
                                         batch_size=batch_size, lr=lr, max_length=max_length,
                                         evaluator=evaluator.for_run(), eval_every=eval_every, precision=precision)
            runs.append({"method": method, "rows": len(columns), "best_step": result.best_step,
                         "dev ndcg@10": result.best_metric, "seconds": round(time.perf_counter() - started)})
        students[f"student, {method}"] = student
    models = {TEACHER: teacher, **students}
    for name, model in models.items():
        if model is teacher or model is cut:
            depth = -1 if model is teacher else student_layers
            embeddings = (teacher_layers[0][depth], teacher_layers[1][depth])
        else:
            embeddings = tuple(model.encode(list(texts), max_length=max_length, precision=precision,
                                            convert_to_tensor=True, show_progress_bar=False)
                               for texts in (test.queries.values(), test.corpus.values()))
        rows.append({"model": name, "layers": model.transformer.config.num_hidden_layers,
                     "parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6,
                     **_scores(*embeddings, test)})
    table = pd.DataFrame(rows).set_index("model")
    if timing_texts:
        # one model per depth: the students share the cut model's architecture, so they share its speed
        seconds = encoding_seconds({TEACHER: teacher, "student": cut}, timing_texts, max_length, precision,
                                   timing_rounds)
        table["encode seconds"] = [seconds[TEACHER] if name == TEACHER else seconds["student"] for name in table.index]
        table["speed-up"] = seconds[TEACHER] / table["encode seconds"]
    return DistillationComparison(table, pd.DataFrame(runs))
