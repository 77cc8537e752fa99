"""One retrieval experiment, end to end: a collection → (query, passage) pairs → `fit()` → IR metrics before and
after.

What `python -m labkit train / evaluate / mine` do with retrieval data. Three sources are recognised
(`retrieval_source`):

* ``beir``: a folder in BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``;
  `labkit.data.load_beir`);
* ``scifact``: the dataset name (`labkit.data.load_scifact`);
* ``pairs``: a (query, passage[, negative, …]) CSV / TSV / JSONL / JSON / parquet file (`labkit.data.load_pairs`),
  recognised by its column names (query ``query``/``anchor``/``question``, passage
  ``passage``/``positive``/``document``/``answer``) when no label, score or pair column is named.

The splits (`load_retrieval_experiment`):

* BEIR / SciFact: training pairs from the ``train`` qrels, test metrics on the ``test`` qrels against the whole
  corpus. Queries judged in both are dropped from training (the test queries are never trained on).
* a pairs file has no qrels and no test split, so a held-out share of its *queries* (20% by default, with all
  their rows) becomes a small retrieval collection: queries = the held-out queries, corpus = every passage of the
  file (positives and negatives, de-duplicated), a query's relevant documents = its passages in the file. The
  other queries' rows are trained on. ``python -m labkit evaluate`` on the same file evaluates on the same
  held-out queries (same seed), so it reproduces the training run's test metrics.
* dev (optional): a share of the *training* queries (`RetrievalData.split_queries`), evaluated with
  `IREvaluator` on a sampled corpus (`RetrievalData.sample_corpus`: every relevant document plus random others)
  to choose the checkpoint. The dev queries are not trained on; the test queries choose nothing.

Training: the (query, relevant passage[, negatives]) rows in `NoDuplicatesBatchSampler` batches (no text twice
in a batch, so no in-batch false negatives) with an in-batch-negatives loss (`RETRIEVAL_LOSSES`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import data as datasets
from labkit.data import RetrievalData
from labkit.losses import REGISTRY, build_loss
from labkit.model import frozen_copy
from labkit.retrieval import DEFAULT_MAX_CHUNK_BYTES, IREvaluator, check_ir_evaluation, evaluate_ir
from labkit.world import current_world

KIND = "retrieval"
MAIN_METRIC = "cosine_ndcg@10"
# The losses a retrieval run trains with: in-batch negatives on (query, passage) pairs, the cached ones built with the
# model, GIST's with a guide (a frozen copy of the starting model unless one is given). GlobalOrthogonalRegularization-
# Loss is left out: it is a regularizer added to a main loss.
RETRIEVAL_LOSSES = tuple(name for name, entry in REGISTRY.items()
                         if "positive_pairs" in entry.data_kinds and entry.inputs != "columns")
# Those that also take hard-negative columns (anchor, positive, negative…).
RETRIEVAL_LOSSES_WITH_NEGATIVES = tuple(name for name in RETRIEVAL_LOSSES if "triplets" in REGISTRY[name].data_kinds)
QUERY_COLUMNS = ("query", "anchor", "question")
PASSAGE_COLUMNS = ("passage", "positive", "document", "answer")
DEFAULT_DEV_CORPUS = 1000
# The k lists of the command line's IR metrics: sentence-transformers' defaults plus Precision/Recall@100 (BEIR's
# usual Recall@100; the largest k is 100 already, for MAP@100, so the memory bound is unchanged).
K_LISTS = {"precision_recall_at_k": (1, 3, 5, 10, 100)}


@dataclass
class RetrievalExperiment:
    """A retrieval run's data: `rows` to train on (anchor, positive[, negative…]), `test` (evaluated before and after
    training against its whole corpus), `dev` (None, or training queries set aside to choose the checkpoint) and
    `train` (the trained queries as a collection). `notes`: what was adjusted (e.g. queries dropped from training
    because the test split judges them too)."""

    source: str
    data: str
    rows: pd.DataFrame
    train: RetrievalData
    test: RetrievalData
    dev: RetrievalData | None = None
    notes: tuple = ()


def retrieval_source(data: str | None, label_column: str | None = None, score_column: str | None = None,
                     text_pair_column: str | None = None, query_column: str | None = None,
                     passage_column: str | None = None) -> str | None:
    """``"beir"`` (a folder), ``"scifact"`` (a retrieval dataset name), ``"pairs"`` (a file with query and passage
    columns, when no label/score/pair column is named; ``query_column`` / ``passage_column`` name them when their
    names are others), or None (labelled or pair data: the other path)."""
    if not data:
        return None
    named = query_column is not None or passage_column is not None
    if named:
        path = Path(data).expanduser()
        if not path.is_file():
            raise ValueError(f"--query-column / --passage-column name the columns of a pairs file; {data} is not a "
                             "file (a BEIR folder or scifact has its queries and corpus in their own files).")
        if any(c is not None for c in (label_column, score_column, text_pair_column)):
            raise ValueError("--query-column / --passage-column (retrieval pairs) do not go with --label-column, "
                             "--score-column or --text-pair-column (labelled or scored pairs): give one kind.")
        return "pairs"
    if data in datasets.DATASETS:
        return data if "qrels" in datasets.DATASETS[data].columns else None
    path = Path(data).expanduser()
    if path.is_dir():
        return "beir"
    if not path.is_file() or any(c is not None for c in (label_column, score_column, text_pair_column)):
        return None
    try:
        columns = set(map(str, datasets._read_table(path, None, []).columns))
    except Exception:  # unreadable: the labelled path says what is wrong with the file
        return None
    if columns & set(QUERY_COLUMNS) and columns & set(PASSAGE_COLUMNS):
        return "pairs"
    return None


def load_collection(data: str, split: str) -> RetrievalData:
    """One split of a BEIR folder or of a retrieval dataset (SciFact)."""
    if data in datasets.DATASETS:
        return datasets.load_dataset(data, split)
    return datasets.load_beir(data, split=split)


def check_loss(loss_name: str | None, with_negatives: bool = False) -> None:
    """Refuse, with the losses that fit, a loss that does not train on (query, passage) pairs."""
    fitting = RETRIEVAL_LOSSES_WITH_NEGATIVES if with_negatives else RETRIEVAL_LOSSES
    if loss_name in fitting:
        return
    shown = ", ".join(fitting)
    what = "(query, passage, negative…) rows" if with_negatives else "(query, passage) pairs"
    raise ValueError(f"{loss_name} does not train on retrieval data ({what}); use one of: {shown}.")


def _pairs_collections(rows: pd.DataFrame, heldout_size: float | int, seed: int, name: str, source: str):
    """(train collection, held-out collection, rows of the training queries) from a pairs file's rows: a held-out
    share of the unique queries with all their rows; the corpus is every passage of the file."""
    passage_columns = [c for c in rows.columns if c != "anchor"]
    passages = list(dict.fromkeys(text for column in passage_columns for text in rows[column]))
    doc_id = {text: f"d{i}" for i, text in enumerate(passages)}
    corpus = {doc_id[text]: text for text in passages}
    anchors = list(dict.fromkeys(rows["anchor"]))
    query_id = {text: f"q{i}" for i, text in enumerate(anchors)}
    count = int(round(heldout_size * len(anchors))) if isinstance(heldout_size, float) else int(heldout_size)
    if not 1 <= count < len(anchors):
        raise ValueError(f"{source} has {len(anchors)} distinct quer(ies): too few to hold {heldout_size!r} of them "
                         "out as the test collection (at least 1, and 1 left to train on); add rows.")
    order = np.random.default_rng(seed).permutation(len(anchors))
    heldout = {anchors[i] for i in order[:count].tolist()}
    qrels: dict = {}
    for anchor, positive in zip(rows["anchor"], rows["positive"]):
        qrels.setdefault(query_id[anchor], {})[doc_id[positive]] = 1

    def collection(texts, split):
        ids = [query_id[t] for t in anchors if t in texts]
        return RetrievalData(corpus, {q: anchors[int(q[1:])] for q in ids}, {q: qrels[q] for q in ids}, split, name,
                             source)

    train_texts = set(anchors) - heldout
    return collection(train_texts, "train"), collection(heldout, "heldout")


def load_retrieval_experiment(data: str, split: str = "train", eval_split: str = "test", dev_size: float | int = 0,
                              heldout_size: float | int = 0.2, seed: int = 42, query_column: str | None = None,
                              passage_column: str | None = None) -> RetrievalExperiment:
    """The training rows, the test collection and (with ``dev_size``) a dev collection carved from the training
    queries, for a BEIR folder, a retrieval dataset name or a pairs file (see the module docstring; a pairs
    file's columns are found by name unless ``query_column`` / ``passage_column`` say)."""
    source = retrieval_source(data, query_column=query_column, passage_column=passage_column)
    if source is None:
        raise ValueError(f"{data} is not retrieval data (a BEIR folder, scifact, or a file with query and passage "
                         "columns).")
    notes = []
    if source == "pairs":
        file_rows = datasets.load_pairs(data, query_column, passage_column)
        train, test = _pairs_collections(file_rows, heldout_size, seed, Path(data).stem, str(data))
    else:
        train, test = load_collection(data, split), load_collection(data, eval_split)
        shared = [q for q in train.queries if q in test.queries]
        if shared:
            train = train.with_queries([q for q in train.queries if q not in test.queries])
            notes.append(f"{len(shared)} quer(ies) judged in both qrels/{split}.tsv and qrels/{eval_split}.tsv "
                         "are not trained on (they are test queries)")
        if not train.queries:
            raise ValueError(f"no training queries are left: every query of the {split!r} split is judged in the "
                             f"{eval_split!r} split too. Train and test on different splits.")
    dev = None
    if dev_size:
        try:
            train, dev = train.split_queries(dev_size, seed=seed)
        except ValueError as err:
            raise ValueError(f"--dev-size {dev_size!r}: {err} (the training queries)") from None
    if source == "pairs":
        kept = set(train.queries.values())
        rows = file_rows[file_rows["anchor"].isin(kept)].reset_index(drop=True)
    else:
        rows = train.pairs()
    if rows.empty:
        raise ValueError(f"the {split!r} split has no relevant (query, passage) pair to train on.")
    return RetrievalExperiment(source, str(data), rows, train, test, dev, tuple(notes))


def heldout_collection(data: str, split: str = "test", heldout_size: float | int = 0.2, seed: int = 42,
                       query_column: str | None = None, passage_column: str | None = None) -> RetrievalData:
    """What `evaluate` scores: a split of a BEIR folder / SciFact, or a pairs file's held-out queries (the same
    ones `load_retrieval_experiment` tests on)."""
    if retrieval_source(data, query_column=query_column, passage_column=passage_column) == "pairs":
        rows = datasets.load_pairs(data, query_column, passage_column)
        return _pairs_collections(rows, heldout_size, seed, Path(data).stem, str(data))[1]
    return load_collection(data, split)


def dev_collection(dev: RetrievalData, size: int) -> RetrievalData:
    """The dev collection `IREvaluator` scores: `size` documents (at least every relevant one)."""
    relevant = {d for docs in dev.qrels.values() for d, score in docs.items() if score > 0}
    return dev.sample_corpus(max(int(size), len(relevant)))


def check_memory(collection: RetrievalData, what: str, corpus_chunk_size: int,
                 max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> None:
    """`check_ir_evaluation` before any slow work, its advice in command-line words."""
    try:
        check_ir_evaluation(collection, corpus_chunk_size=corpus_chunk_size, max_chunk_bytes=max_chunk_bytes,
                            **K_LISTS)
    except ValueError as err:
        text = str(err).replace("corpus_chunk_size", "--corpus-chunk-size").replace("max_chunk_bytes",
                                                                                      "--max-chunk-bytes")
        raise ValueError(f"the {what} ({collection.split!r} split): {text}") from None


def training_set(exp: RetrievalExperiment, batch_size: int, seed: int, group_by_length: bool = False,
                 tokenizer=None, max_length: int | None = None):
    """(PairDataset of the rows' columns, NoDuplicatesBatchSampler over them)."""
    from labkit.collate import PairDataset
    from labkit.sampling import NoDuplicatesBatchSampler, token_lengths

    columns = [list(exp.rows[c]) for c in exp.rows.columns]
    keys = list(zip(*columns))
    lengths = token_lengths(tokenizer, keys, max_length) if group_by_length and tokenizer is not None else None
    return PairDataset(*columns), NoDuplicatesBatchSampler(keys, batch_size=batch_size, seed=seed,
                                                           group_by_length=group_by_length, lengths=lengths)


def evaluate(model, collection: RetrievalData, corpus_chunk_size: int = 50_000,
             max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, **options) -> dict:
    """`evaluate_ir` with the command line's k lists (`K_LISTS`): what `evaluate` prints."""
    return evaluate_ir(model, collection, corpus_chunk_size=corpus_chunk_size, max_chunk_bytes=max_chunk_bytes,
                       **K_LISTS, **options)


def run_retrieval_experiment(
    model, exp: RetrievalExperiment, loss_name: str, steps: int | None = None, epochs: int | None = None,
    batch_size: int = 32, lr: float = 2e-5, max_length: int | None = None, out: str | Path | None = None,
    seed: int = 42, show_progress: bool = True, loss_kwargs: dict | None = None, eval_every: int | None = None,
    checkpoint_every: int | None = None, resume: bool = False, group_by_length: bool = False,
    dev_corpus_size: int = DEFAULT_DEV_CORPUS, corpus_chunk_size: int = 50_000,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, eval_batch_size: int = 32, guide=None, **fit_kwargs,
) -> dict:
    """IR metrics on the test collection (whole corpus), training, IR metrics again; the report, also written to
    out/metrics.json (`metrics_record`). With `exp.dev`, `fit()` evaluates `IREvaluator` on the dev queries (a
    corpus of `dev_corpus_size` documents) at the start, every `eval_every` steps and at the end, and keeps the
    weights of the best ``cosine_ndcg@10``. A loss with a guide (GISTEmbedLoss, CachedGISTEmbedLoss) gets a frozen copy
    of ``guide``, or of `model` as it is before training (the base model guides its own fine-tuning). ``resume=True``: go on from out/'s checkpoint (the test metrics before
    training are read back from out/before.json)."""
    from labkit.experiment import write_json
    from labkit.train import fit

    check_loss(loss_name, with_negatives=len(exp.rows.columns) > 2)
    kind = "triplets" if len(exp.rows.columns) > 2 else "positive_pairs"
    needs = {"model": model} if "model" in REGISTRY[loss_name].needs else {}
    if "guide" in REGISTRY[loss_name].needs:  # taken before training (and before a resume loads its checkpoint)
        needs["guide"] = frozen_copy(model) if guide is None else frozen_copy(guide)
    loss = build_loss(loss_name, kind, **needs, **(loss_kwargs or {}))
    dataset, sampler = training_set(exp, batch_size, seed, group_by_length, model.tokenizer, max_length)

    def test_metrics():
        return evaluate(model, exp.test, corpus_chunk_size, max_chunk_bytes, batch_size=eval_batch_size,
                        max_length=max_length)

    before_path = Path(out) / "before.json" if out is not None else None
    if resume and before_path is not None and before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        before = test_metrics()
        if before_path is not None and current_world().is_main:
            write_json(before_path, before)
    selection, dev_corpus = {}, None
    if exp.dev is not None:
        dev_corpus = dev_collection(exp.dev, dev_corpus_size)
        evaluator = IREvaluator(dev_corpus, main_metric=MAIN_METRIC, batch_size=eval_batch_size,
                                max_length=max_length, corpus_chunk_size=corpus_chunk_size,
                                max_chunk_bytes=max_chunk_bytes, **K_LISTS)
        selection = dict(evaluator=evaluator, metric=MAIN_METRIC, eval_every=eval_every)
    result = fit(model, loss, dataset, batch_sampler=sampler, batch_size=batch_size, steps=steps, epochs=epochs,
                 lr=lr, max_length=max_length, seed=seed, output_dir=out, show_progress=show_progress,
                 checkpoint_every=checkpoint_every, resume=resume, **selection, **fit_kwargs)
    after = test_metrics()
    dev = None if exp.dev is None else {
        "split": exp.dev.split, "queries": len(exp.dev.queries), "corpus": len(dev_corpus.corpus),
        "query_ids": list(exp.dev.queries), "metric": MAIN_METRIC, "eval_every": eval_every,
        "best_step": result.best_step, "best": result.best_metric, "evaluations": result.evaluations}
    report = {"loss": loss_name, "loss_args": dict(loss_kwargs or {}), "kind": KIND, "data": exp.data,
              "main_metric": MAIN_METRIC, "steps": result.steps,
              "train": {"split": exp.train.split, "queries": len(exp.train.queries), "rows": len(exp.rows)},
              "test": {"split": exp.test.split, "queries": len(exp.test.queries), "corpus": len(exp.test.corpus),
                       "before": before, "after": after},
              "dev": dev, "notes": list(exp.notes), "seconds": round(result.seconds, 1),
              "interrupted": result.interrupted, "history": result.history}
    if out is not None and current_world().is_main:
        write_json(Path(out) / "metrics.json", metrics_record(report))
    return report


def metrics_record(report: dict) -> dict:
    """What out/metrics.json holds: the report without the training history."""
    return {k: v for k, v in report.items() if k not in ("history", "interrupted")}
