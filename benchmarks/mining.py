"""Hard-negative mining: `labkit.hard_negatives` against `sentence_transformers.util.mine_hard_negatives`.

The same SciFact train claims (809, 919 pairs), the same full corpus (5,183 abstracts) and the same embeddings
of all-MiniLM-L6-v2 for both. Two measurements, in one run:

* **Mining only** (the default): both get the embeddings already computed (sentence-transformers' model returns
  them from ``encode_query`` / ``encode_document``; labkit's `mine_from_embeddings` takes them), so the time is
  the search, the exclusions, the filters, the sampling and building the output rows (ST builds a
  `datasets.Dataset`; labkit's columns are timed alone and with ``to_dataset()``). De-duplication is included
  for both. The two take turns, round after round; the table shows medians and the median of per-round ratios.
  Each setting is also checked: labkit's rows equal ST's ("top" mode). labkit runs once more with small chunks
  (``chunk_size=1024, query_chunk_size=128``: bounded memory, same rows).
* **With encoding** (``--with-encoding N``): both encode N claims, their abstracts and 5N more themselves, in
  turns (``--encoding-rounds``); labkit in fp32 (the same rows as ST) and with ``precision="auto"`` (bf16 where
  the CPU has it natively). The encoder dominates: see benchmarks/encode.py.

Peak tensor memory of one mining run (`labkit.memory.peak_memory`, PyTorch's profiler) is reported too.

    python benchmarks/mining.py                                # full corpus, mining only, 5 rounds
    python benchmarks/mining.py --threads 1 --clock thread     # a busy shared CPU: CPU time of this thread
    python benchmarks/mining.py --max-length 64 --cache /tmp/scifact_emb.npz --with-encoding 100
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import labkit  # noqa: E402
from labkit.env import cpu_name  # noqa: E402
from labkit.hard_negatives import deduplicate_pairs, mine_from_embeddings, mine_hard_negatives  # noqa: E402
from labkit.memory import peak_memory  # noqa: E402
from labkit.model import default_model_path  # noqa: E402

SETTINGS = {
    "defaults (3 top)": dict(),
    "NV-Retriever: relative_margin=0.05, 10 top, n-tuple": dict(relative_margin=0.05, num_negatives=10,
                                                                output_format="n-tuple"),
    "range 10-50, max_score=0.8, absolute_margin=0.05, 5 top": dict(range_min=10, range_max=50, max_score=0.8,
                                                                   absolute_margin=0.05, num_negatives=5),
}
SMALL_CHUNKS = dict(chunk_size=1024, query_chunk_size=128)  # bounded memory: 128 x (1024 + k) scores at a time
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def read_scifact_train(folder: Path):
    """BEIR SciFact: (claims, cited abstracts), one per train qrels row, and the corpus (title + " " + text)."""
    with open(folder / "corpus.jsonl") as lines:
        docs = {d["_id"]: f"{d['title']} {d['text']}".strip() for d in map(json.loads, lines)}
    with open(folder / "queries.jsonl") as lines:
        claims = {q["_id"]: q["text"] for q in map(json.loads, lines)}
    with open(folder / "qrels" / "train.tsv") as rows:
        qrels = [(r["query-id"], r["corpus-id"]) for r in csv.DictReader(rows, delimiter="\t")]
    return [claims[q] for q, _ in qrels], [docs[d] for _, d in qrels], list(docs.values())


def embed_all(model, texts: list, max_length, batch_size: int, cache: Path | None) -> dict:
    """text -> embedding (labkit fp32, normalised), from ``cache`` when it holds these texts."""
    if cache and cache.exists():
        stored = np.load(cache, allow_pickle=False)
        if list(stored["texts"]) == texts:
            return dict(zip(texts, stored["embeddings"]))
    embeddings = model.encode(texts, batch_size=batch_size, normalize=True, max_length=max_length)
    if cache:
        np.savez(cache, texts=np.array(texts), embeddings=embeddings)
    return dict(zip(texts, embeddings))


def st_model_with(lookup: dict | None):
    """sentence-transformers' model of the same weights; with ``lookup``, its encoders return those embeddings."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    if lookup is not None:
        model.encode_query = model.encode_document = lambda texts, **_: np.stack([lookup[t] for t in texts])
    return model


def runners(anchors, positives, corpus, lookup, st_model, options):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})

    def labkit_run(to_dataset=False, **chunks):
        pairs = deduplicate_pairs(anchors, positives, corpus)
        embed = lambda texts: torch.from_numpy(np.stack([lookup[t] for t in texts]))  # noqa: E731
        mined = mine_from_embeddings(pairs, embed(pairs.queries), embed(pairs.corpus), **options, **chunks)
        return mined.to_dataset() if to_dataset else mined

    def st_run():
        return st_mine(dataset, st_model, corpus=corpus, verbose=False, **options)

    return {"labkit": labkit_run, "labkit + to_dataset()": lambda: labkit_run(True),
            "labkit, small chunks": lambda: labkit_run(**SMALL_CHUNKS), "sentence-transformers": st_run}


def timed(run, clock):
    start = clock()
    result = run()
    return clock() - start, result


def measure_setting(name, options, data, st_model, rounds, clock):
    runs = runners(*data, st_model, options)
    outputs = {impl: run() for impl, run in runs.items()}  # warm-up, and the outputs to compare
    same = outputs["labkit"].columns == outputs["sentence-transformers"].to_dict() == outputs[
        "labkit, small chunks"].columns
    seconds = {impl: [] for impl in runs}
    for round_index in range(rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for impl in order:
            seconds[impl].append(timed(runs[impl], clock)[0])
    ratios = [ours / theirs for ours, theirs in zip(seconds["labkit"], seconds["sentence-transformers"])]
    memory = {impl: peak_memory(runs[impl], device="cpu").peak_mib
              for impl in ("labkit", "labkit, small chunks", "sentence-transformers")}
    return dict(setting=name, same_rows=same, rows=len(outputs["labkit"]),
                median_s={impl: statistics.median(values) for impl, values in seconds.items()},
                ratio=statistics.median(ratios), peak_mib=memory)


def measure_with_encoding(anchors, positives, corpus, n_claims, max_length, rounds, clock):
    """Both encode themselves (labkit fp32 and bf16-where-native / ST defaults), default settings, in turns."""
    chosen = set(list(dict.fromkeys(anchors))[:n_claims])
    rows = [(a, p) for a, p in zip(anchors, positives) if a in chosen]
    sub_anchors, sub_positives = [a for a, _ in rows], [p for _, p in rows]
    sub_corpus = list(dict.fromkeys(sub_positives + corpus[: 5 * n_claims]))
    ours = labkit.load_model(device="cpu", max_seq_length=max_length)
    theirs = st_model_with(None)
    if max_length:
        theirs.max_seq_length = max_length
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    dataset = Dataset.from_dict({"anchor": sub_anchors, "positive": sub_positives})
    runs = {"labkit": lambda: mine_hard_negatives(ours, sub_anchors, sub_positives, sub_corpus).columns,
            "labkit auto": lambda: mine_hard_negatives(ours, sub_anchors, sub_positives, sub_corpus,
                                                       precision="auto").columns,
            "sentence-transformers": lambda: st_mine(dataset, theirs, corpus=sub_corpus, verbose=False).to_dict()}
    seconds, outputs = {impl: [] for impl in runs}, {}
    for round_index in range(rounds):
        for impl in (list(runs) if round_index % 2 == 0 else list(reversed(runs))):
            elapsed, outputs[impl] = timed(runs[impl], clock)
            seconds[impl].append(elapsed)
    median = {impl: statistics.median(values) for impl, values in seconds.items()}
    st_negatives = outputs["sentence-transformers"]["negative"]
    return dict(claims=len(chosen), corpus=len(sub_corpus), median_s=median,
                ratio=median["labkit"] / median["sentence-transformers"],
                ratio_auto=median["labkit auto"] / median["sentence-transformers"],
                same_rows=outputs["labkit"] == outputs["sentence-transformers"],
                auto_same_negatives=np.mean([a == b for a, b in zip(outputs["labkit auto"]["negative"], st_negatives)]))


def report(results, encoding, args, data) -> str:
    anchors, _, corpus, _ = data
    clock = "CPU time of the calling thread" if args.clock == "thread" else "wall-clock time"
    lines = [f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {torch.get_num_threads()} torch thread(s), torch "
             f"{torch.__version__}; {len(set(anchors))} claims ({len(anchors)} pairs) against {len(corpus):,} "
             f"abstracts; embeddings max_length={args.max_length or 'model default'}; {args.rounds} rounds, "
             f"{clock}, medians.", "",
             "| setting | rows | same rows as ST | labkit s | + to_dataset s | small chunks s | ST s | labkit ÷ ST "
             "| peak MiB labkit / small chunks / ST |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, m = r["median_s"], r["peak_mib"]
        lines.append(f"| {r['setting']} | {r['rows']:,} | {'✓' if r['same_rows'] else '✗'} | {s['labkit']:.3f} "
                     f"| {s['labkit + to_dataset()']:.3f} | {s['labkit, small chunks']:.3f} "
                     f"| {s['sentence-transformers']:.3f} | {r['ratio']:.2f} "
                     f"| {m['labkit']:.1f} / {m['labkit, small chunks']:.1f} / {m['sentence-transformers']:.1f} |")
    if encoding:
        s = encoding["median_s"]
        lines += ["", f"With encoding ({encoding['claims']} claims, {encoding['corpus']:,} abstracts, defaults, "
                  f"{args.encoding_rounds} rounds in turns, medians): labkit fp32 {s['labkit']:.2f} s, labkit "
                  f"precision='auto' {s['labkit auto']:.2f} s, ST {s['sentence-transformers']:.2f} s; labkit ÷ ST "
                  f"{encoding['ratio']:.2f} (fp32, same rows: {'✓' if encoding['same_rows'] else '✗'}), "
                  f"{encoding['ratio_auto']:.2f} ('auto'; {encoding['auto_same_negatives']:.1%} of the negatives "
                  "the same as ST's)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding scifact/ (LABKIT_DATA_DIR)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--claims", type=int, default=0, help="only the first N claims and 5N abstracts (0: all)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text when embedding (model's: 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", type=Path, help="an .npz to keep the embeddings in between runs")
    parser.add_argument("--with-encoding", type=int, default=0, metavar="N", help="also time N claims end to end")
    parser.add_argument("--encoding-rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.clock == "thread" and args.threads != 1:
        parser.error("--clock thread measures one thread's CPU time: use it with --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = (args.data_dir or Path(os.environ.get("LABKIT_DATA_DIR", "data"))) / "scifact"
    anchors, positives, corpus = read_scifact_train(folder)
    if args.claims:  # a smaller problem (smoke runs): the first claims, their abstracts and the first docs
        chosen = set(list(dict.fromkeys(anchors))[: args.claims])
        anchors, positives = zip(*[(a, p) for a, p in zip(anchors, positives) if a in chosen])
        anchors, positives, corpus = list(anchors), list(positives), corpus[: 5 * args.claims]
    texts = list(dict.fromkeys(anchors + corpus + positives))
    lookup = embed_all(labkit.load_model(device="cpu"), texts, args.max_length, args.batch_size, args.cache)
    data = (anchors, positives, corpus, lookup)
    st_model = st_model_with(lookup)
    clock = CLOCKS[args.clock]
    results = [measure_setting(name, options, data, st_model, args.rounds, clock) for name, options in SETTINGS.items()]
    encoding = measure_with_encoding(anchors, positives, corpus, args.with_encoding, args.max_length,
                                     args.encoding_rounds, clock) if args.with_encoding else None
    print(report(results, encoding, args, data))
    if args.json:
        args.json.write_text(json.dumps(dict(results=results, encoding=encoding), indent=1))
    return 0 if all(r["same_rows"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
