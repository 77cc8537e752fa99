"""IR evaluation: `labkit.retrieval.ir_metrics` against sentence-transformers' `InformationRetrievalEvaluator`.

SciFact test (300 claims, 339 relevant pairs) against the whole corpus (5,183 abstracts, title + text), the
same all-MiniLM-L6-v2 embeddings for both (computed once by labkit, fp32, normalised). ST's evaluator gets them
from a stand-in model whose ``encode_query`` returns the query rows, and the corpus rows as its
``corpus_embeddings`` argument; labkit's `ir_metrics` takes both tensors. So the time is the scoring, the top-k
bookkeeping and the metrics, not the encoder (benchmarks/encode.py times that).

Each setting is checked first: every metric labkit reports equals ST's to 1e-6 (the same names, in the same
order). Then the two take turns, round after round; the table shows medians and the median of per-round
ratios, and the peak tensor memory of one run (`labkit.memory.peak_memory`, PyTorch's profiler). labkit also
runs with a small corpus chunk (``--small-chunk``, default 500 documents): the same numbers in bounded memory.

``--synthetic N`` adds a larger problem: the 300 test claims against N random unit vectors plus the real
abstracts (the qrels unchanged), to show how both scale with the corpus.

    python benchmarks/ir_evaluation.py --max-length 64 --cache /tmp/scifact_ir.npz      # SciFact, 9 rounds
    python benchmarks/ir_evaluation.py --threads 1 --clock thread                        # a busy shared CPU
    python benchmarks/ir_evaluation.py --cache /tmp/scifact_ir.npz --synthetic 200000
"""
from __future__ import annotations

import argparse
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
from labkit import data as labkit_data  # noqa: E402
from labkit.env import cpu_name  # noqa: E402
from labkit.memory import peak_memory  # noqa: E402
from labkit.retrieval import DEFAULT_K, ir_metrics  # noqa: E402

SETTINGS = {
    "defaults (cosine; ST's k lists)": dict(score_functions=("cosine",), k_lists=dict(DEFAULT_K)),
    "cosine + dot": dict(score_functions=("cosine", "dot"), k_lists=dict(DEFAULT_K)),
    "cosine, k up to 100 (MTEB-like)": dict(score_functions=("cosine",), k_lists=dict(
        accuracy_at_k=(1, 3, 5, 10, 100), precision_recall_at_k=(1, 3, 5, 10, 100), mrr_at_k=(10, 100),
        ndcg_at_k=(1, 3, 5, 10, 100), map_at_k=(10, 100))),
}
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
ST_CHUNK = 50_000  # both libraries' default corpus_chunk_size


class TableModel:
    """Stands in for a SentenceTransformer: encode_query looks the query texts up in a table of embeddings."""

    def __init__(self, texts, embeddings):
        self.rows = {text: i for i, text in enumerate(texts)}
        self.embeddings = embeddings

    def encode(self, sentences, **kwargs):
        return self.embeddings[[self.rows[s] for s in sentences]]

    encode_query = encode_document = encode


def read_problem(data_dir: Path | None, n_queries: int):
    """(query ids, query texts, corpus ids, corpus texts, qrels) of SciFact test; ``n_queries``: only the first
    N claims, their relevant abstracts and 5N others (a smoke run)."""
    scifact = labkit_data.load_scifact("test", data_dir=data_dir)
    query_ids = list(scifact.queries)
    corpus_ids = list(scifact.corpus)
    if n_queries:
        query_ids = query_ids[:n_queries]
        relevant = {d for q in query_ids for d in scifact.qrels[q]}
        others = [d for d in corpus_ids if d not in relevant][: 5 * n_queries]
        corpus_ids = [d for d in corpus_ids if d in relevant or d in set(others)]
    qrels = {q: scifact.qrels[q] for q in query_ids}
    return (query_ids, [scifact.queries[q] for q in query_ids], corpus_ids,
            [scifact.corpus[d] for d in corpus_ids], qrels)


def embed(texts: list, max_length, batch_size: int, cache: Path | None) -> torch.Tensor:
    """labkit fp32 normalised embeddings of ``texts``, from ``cache`` when it holds exactly these texts."""
    if cache and cache.exists():
        stored = np.load(cache, allow_pickle=False)
        if list(stored["texts"]) == texts and int(stored["max_length"]) == (max_length or 0):
            return torch.from_numpy(stored["embeddings"])
    model = labkit.load_model(device="cpu")
    embeddings = model.encode(texts, batch_size=batch_size, normalize=True, max_length=max_length)
    if cache:
        partial = cache.with_name(cache.name + ".partial.npz")
        np.savez(partial, texts=np.array(texts), embeddings=embeddings, max_length=max_length or 0)
        partial.replace(cache)  # never a half-written cache
    return torch.as_tensor(embeddings)


def add_synthetic(corpus_ids, corpus_embeddings, n: int, seed: int = 0):
    """The corpus with ``n`` random unit vectors appended (ids "synthetic-0", …); the qrels stay valid."""
    noise = torch.nn.functional.normalize(torch.randn(n, corpus_embeddings.shape[1],
                                                      generator=torch.Generator().manual_seed(seed)), dim=1)
    return corpus_ids + [f"synthetic-{i}" for i in range(n)], torch.cat([corpus_embeddings, noise])


def runners(problem, setting, small_chunk: int):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim, dot_score

    query_ids, query_texts, corpus_ids, query_embeddings, corpus_embeddings, qrels = problem
    functions, ks = setting["score_functions"], setting["k_lists"]
    st_functions = {name: {"cosine": cos_sim, "dot": dot_score}[name] for name in functions}
    # ST needs the corpus texts only to count and index them: the ids stand in, the embeddings are given
    evaluator = InformationRetrievalEvaluator(
        dict(zip(query_ids, query_texts)), dict(zip(corpus_ids, corpus_ids)),
        {q: set(docs) for q, docs in qrels.items()}, corpus_chunk_size=ST_CHUNK, score_functions=st_functions,
        show_progress_bar=False, **ks)
    table = TableModel(query_texts, query_embeddings)

    def st_run():
        scores = evaluator.compute_metrices(table, corpus_embeddings=corpus_embeddings)
        # flattened and named as InformationRetrievalEvaluator.__call__ does
        return {f"{name}_{metric.replace('@k', '@' + str(k))}": value
                for name, values in scores.items() for metric, by_k in values.items() for k, value in by_k.items()}

    def labkit_run(chunk=ST_CHUNK):
        return ir_metrics(query_embeddings, corpus_embeddings, qrels, query_ids, corpus_ids, functions,
                          corpus_chunk_size=chunk, **ks)

    return {"labkit": labkit_run, f"labkit, chunk {small_chunk}": lambda: labkit_run(small_chunk),
            "sentence-transformers": st_run}


def agreement(outputs: dict) -> float:
    """Largest |labkit − ST| over every metric, or inf when the names or their order differ."""
    theirs = outputs["sentence-transformers"]
    worst = 0.0
    for impl, ours in outputs.items():
        if list(ours) != list(theirs):
            return float("inf")
        worst = max(worst, max(abs(ours[name] - theirs[name]) for name in theirs))
    return worst


def timed(run, clock):
    start = clock()
    result = run()
    return clock() - start, result


def measure(name, setting, problem, small_chunk, rounds, clock):
    runs = runners(problem, setting, small_chunk)
    outputs = {impl: run() for impl, run in runs.items()}  # warm-up, and the numbers to compare
    seconds = {impl: [] for impl in runs}
    for round_index in range(rounds):
        for impl in (list(runs) if round_index % 2 == 0 else list(reversed(runs))):
            seconds[impl].append(timed(runs[impl], clock)[0])
    ratios = [ours / theirs for ours, theirs in zip(seconds["labkit"], seconds["sentence-transformers"])]
    return dict(setting=name, metrics=len(outputs["labkit"]), max_abs_difference=agreement(outputs),
                median_s={impl: statistics.median(values) for impl, values in seconds.items()},
                ratio=statistics.median(ratios),
                peak_mib={impl: peak_memory(run, device="cpu").peak_mib for impl, run in runs.items()},
                ndcg10=outputs["labkit"]["cosine_ndcg@10"])


def report(results, args, problem, small_chunk) -> str:
    query_ids, _, corpus_ids, _, _, _ = problem
    clock = "CPU time of the calling thread" if args.clock == "thread" else "wall-clock time"
    small = f"labkit, chunk {small_chunk}"
    lines = [f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {torch.get_num_threads()} torch thread(s), torch "
             f"{torch.__version__}; {len(query_ids)} queries against {len(corpus_ids):,} documents "
             f"({args.synthetic:,} of them synthetic); embeddings max_length={args.max_length or 'model default'}; "
             f"{args.rounds} rounds, {clock}, medians.", "",
             f"| setting | metrics | max \\|labkit − ST\\| | labkit s | chunk {small_chunk} s | ST s | labkit ÷ ST "
             f"| peak MiB labkit / chunk {small_chunk} / ST |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, m = r["median_s"], r["peak_mib"]
        lines.append(f"| {r['setting']} | {r['metrics']} | {r['max_abs_difference']:.1e} | {s['labkit']:.4f} "
                     f"| {s[small]:.4f} | {s['sentence-transformers']:.4f} | {r['ratio']:.2f} "
                     f"| {m['labkit']:.1f} / {m[small]:.1f} / {m['sentence-transformers']:.1f} |")
    lines += ["", f"cosine NDCG@10 (labkit = ST): {results[0]['ndcg10']:.4f}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding scifact/ (LABKIT_DATA_DIR)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=0, help="only the first N claims (0: all 300)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text when embedding (model's: 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", type=Path, help="an .npz to keep the embeddings in between runs")
    parser.add_argument("--small-chunk", type=int, default=500, help="labkit's bounded-memory corpus chunk")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="append N random unit vectors")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.clock == "thread" and args.threads != 1:
        parser.error("--clock thread measures one thread's CPU time: use it with --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir or Path(os.environ.get("LABKIT_DATA_DIR", "data"))
    query_ids, query_texts, corpus_ids, corpus_texts, qrels = read_problem(data_dir, args.queries)
    embeddings = embed(query_texts + corpus_texts, args.max_length, args.batch_size, args.cache)
    query_embeddings, corpus_embeddings = embeddings[: len(query_texts)], embeddings[len(query_texts):]
    if args.synthetic:
        corpus_ids, corpus_embeddings = add_synthetic(corpus_ids, corpus_embeddings, args.synthetic)
    problem = (query_ids, query_texts, corpus_ids, query_embeddings, corpus_embeddings, qrels)
    clock = CLOCKS[args.clock]
    results = [measure(name, setting, problem, args.small_chunk, args.rounds, clock)
               for name, setting in SETTINGS.items()]
    print(report(results, args, problem, args.small_chunk))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["max_abs_difference"] <= 1e-6 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
