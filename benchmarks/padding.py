"""Length-grouped no-duplicate batches against plain ones: padding, training step time, held-out quality.

`labkit.sampling.NoDuplicatesBatchSampler(..., group_by_length=True)` cuts each epoch's shuffled rows into
megabatches of up to 50 batches, sorts each by length and cuts the batches from that order (Hugging Face's
``group_by_length``), keeping the no-duplicate guarantee. The collate function pads each text column of a batch
to its longest text, so similar lengths mean fewer padded positions. One run measures, on SNLI dev entailment
pairs (3,329 (premise, hypothesis) rows; premises repeat, so the no-duplicate scan has work to do):

1. **Padding**: token positions per epoch (batch size × longest text, per column, cut at 128 tokens, summed
   over the epoch's batches) for plain batches, grouping by character counts (the sampler's default) and by
   token counts (`labkit.sampling.token_lengths`; what `run_experiment(group_by_length=True)` uses), several
   seeds, against the real (unpadded) tokens. Also the STS-B subset's train pairs.
2. **Step time**: one epoch of `labkit.train.fit` (all-MiniLM-L6-v2, MultipleNegativesRankingLoss, 32 pairs per
   batch, lr 2e-5, max length 128, ``precision="auto"``: bf16 autocast on a CPU with native bf16, labkit's
   default) with plain and with token-grouped batches, the two taking turns seed after seed. Each step is timed
   with ``--clock thread`` by default: the CPU time of the training thread with ``torch.set_num_threads(1)``
   and no DataLoader workers, so other jobs on a shared machine do not count (the tokenizer runs in that
   thread too). A hook on the token-embedding table counts the positions the model
   really computed on, which must equal the padding count of part 1.
3. **Quality**: after that epoch, held-out metrics the training never sees: STS-B test Spearman (cosine) and
   SNLI test pair retrieval (for each entailment premise, is its hypothesis the nearest of all test hypotheses:
   recall@1), against the start model (encoded with the same precision).

    python benchmarks/padding.py                          # padding + 3 seeds of both fits (34 min, busy 2 cores)
    python benchmarks/padding.py --seeds 0 --json padding.json
    python benchmarks/padding.py --padding-only           # part 1 only (seconds)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer's work stays in the timed thread

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import labkit  # noqa: E402
from labkit import data  # noqa: E402
from labkit.collate import PairDataset  # noqa: E402
from labkit.env import cpu_name  # noqa: E402
from labkit.evaluate import sts_correlation  # noqa: E402
from labkit.losses import MultipleNegativesRankingLoss  # noqa: E402
from labkit.sampling import NoDuplicatesBatchSampler, token_lengths  # noqa: E402
from labkit.train import fit  # noqa: E402

BATCH_SIZE, MAX_LENGTH = 32, 128
GROUPINGS = ("plain", "characters", "tokens")


def sampler_for(rows, grouping: str, tokens: np.ndarray, seed: int) -> NoDuplicatesBatchSampler:
    """Plain batches, or grouped by the sampler's character counts, or by the tokenizer's counts."""
    return NoDuplicatesBatchSampler(rows, BATCH_SIZE, seed=seed, group_by_length=grouping != "plain",
                                    lengths=tokens if grouping == "tokens" else None)


def padded_positions(batches, tokens: np.ndarray) -> tuple[int, int]:
    """(positions the model computes on, real tokens) over the batches: each column padded to its longest text."""
    index = np.concatenate(batches)
    batch_of = np.repeat(np.arange(len(batches)), [len(batch) for batch in batches])
    longest = np.zeros((len(batches), tokens.shape[1]), dtype=np.int64)
    np.maximum.at(longest, batch_of, tokens[index])
    sizes = np.bincount(batch_of)
    return int((longest * sizes[:, None]).sum()), int(tokens[index].sum())


def padding_table(name: str, rows, tokens: np.ndarray, seeds) -> list[dict]:
    table = []
    for grouping in GROUPINGS:
        counts = [padded_positions(sampler_for(rows, grouping, tokens, seed).batches_for_epoch(0), tokens)
                  for seed in seeds]
        padded = statistics.mean(c[0] for c in counts)
        table.append({"data": name, "grouping": grouping, "batches": len(sampler_for(rows, grouping, tokens, 0)),
                      "padded_positions": padded, "real_tokens": counts[0][1],
                      "padded_per_real": padded / counts[0][1]})
    plain = table[0]["padded_positions"]
    for row in table:
        row["vs_plain"] = row["padded_positions"] / plain
    return table


def heldout_metrics(model, precision: str) -> dict:
    """STS-B test Spearman and SNLI test recall@1 (premise → its entailed hypothesis among all test hypotheses)."""
    def encode(texts, **options):
        return model.encode(texts, batch_size=64, show_progress_bar=False, precision=precision, **options)

    stsb = data.load_stsb("test")
    a, b = encode(stsb["sentence1"].tolist()), encode(stsb["sentence2"].tolist())
    spearman = sts_correlation(a, b, stsb["score"].to_numpy())["spearman_cosine"]
    pairs = data.snli_pairs("test")
    queries = encode(pairs["anchor"].tolist(), normalize=True)
    answers = encode(pairs["positive"].tolist(), normalize=True)
    nearest = np.asarray(torch.as_tensor(queries) @ torch.as_tensor(answers).T).argmax(axis=1)
    texts = pairs["positive"].to_numpy()
    recall = float(np.mean(texts[nearest] == texts))  # an identical hypothesis text counts as found
    return {"stsb_spearman": float(spearman), "snli_recall_at_1": recall}


def timed_fit(rows, frame, grouping: str, tokens: np.ndarray, seed: int, args) -> dict:
    """One epoch of fit() on the pairs; per-step times, positions the model computed on, held-out metrics."""
    model = labkit.load_model(device="cpu")
    sampler = sampler_for(rows, grouping, tokens, seed)
    expected_positions = padded_positions(sampler.batches_for_epoch(0), tokens)[0]
    stamps, positions = [], []
    clock = time.thread_time if args.clock == "thread" else time.perf_counter

    def count_positions(module, inputs):
        if module.training:
            positions.append(inputs[0].numel())

    hook = model.transformer.get_input_embeddings().register_forward_pre_hook(count_positions)
    stamps.append(clock())
    torch.manual_seed(seed)
    fit(model, MultipleNegativesRankingLoss(), PairDataset(frame["anchor"].tolist(), frame["positive"].tolist()),
        batch_sampler=sampler, epochs=1, lr=2e-5, max_length=MAX_LENGTH, precision=args.precision, seed=seed,
        device="cpu", num_workers=0, show_progress=False, live_plot=False, on_step=lambda *_: stamps.append(clock()))
    hook.remove()
    steps = np.diff(stamps)[args.warmup_steps:]  # the first steps allocate and pick kernels
    if sum(positions) != expected_positions:
        raise AssertionError(f"the model saw {sum(positions)} positions, the padding count says {expected_positions}")
    return {"grouping": grouping, "seed": seed, "steps": len(stamps) - 1, "positions": sum(positions),
            "median_step_s": float(np.median(steps)), "mean_step_s": float(np.mean(steps)),
            "epoch_s": float(stamps[-1] - stamps[0]), **heldout_metrics(model, args.precision)}


def print_padding(table: list[dict]) -> None:
    print("| data | grouping | batches | padded positions / epoch | ÷ real tokens | ÷ plain |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['data']} | {row['grouping']} | {row['batches']} | {row['padded_positions']:,.0f} | "
              f"{row['padded_per_real']:.3f} | {row['vs_plain']:.3f} |")


def print_fits(fits: list[dict], start: dict) -> None:
    print(f"\nstart model: STS-B test Spearman {start['stsb_spearman']:.4f}, "
          f"SNLI test recall@1 {start['snli_recall_at_1']:.4f}")
    print("| grouping | seed | steps | positions | median step s | epoch s | STS-B Spearman | SNLI R@1 |")
    print("|---|---|---|---|---|---|---|---|")
    for run in fits:
        print(f"| {run['grouping']} | {run['seed']} | {run['steps']} | {run['positions']:,} | "
              f"{run['median_step_s']:.3f} | {run['epoch_s']:.1f} | {run['stsb_spearman']:.4f} | "
              f"{run['snli_recall_at_1']:.4f} |")
    by = {g: [r for r in fits if r["grouping"] == g] for g in ("plain", "tokens")}

    def mean(grouping, key):
        return statistics.mean(r[key] for r in by[grouping])

    def spread(grouping, key):
        values = [r[key] for r in by[grouping]]
        return statistics.stdev(values) if len(values) > 1 else float("nan")

    print(f"\ngrouped / plain: epoch time {mean('tokens', 'epoch_s') / mean('plain', 'epoch_s'):.3f}, median step "
          f"{mean('tokens', 'median_step_s') / mean('plain', 'median_step_s'):.3f}, positions "
          f"{mean('tokens', 'positions') / mean('plain', 'positions'):.3f}")
    for key in ("stsb_spearman", "snli_recall_at_1"):
        print(f"{key}: plain {mean('plain', key):.4f} ± {spread('plain', key):.4f}, "
              f"grouped {mean('tokens', key):.4f} ± {spread('tokens', key):.4f} (mean ± sd over seeds)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread",
                        help='"thread": CPU time of the training thread, one torch thread (a shared CPU)')
    parser.add_argument("--precision", default="auto",
                        help='fit() and encode() precision: "auto" (default: bf16 on a CPU with native bf16), "fp32"')
    parser.add_argument("--warmup-steps", type=int, default=2, help="first steps of each fit left out of the median")
    parser.add_argument("--padding-only", action="store_true", help="part 1 only: no training")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.clock == "thread":
        torch.set_num_threads(1)

    tokenizer = labkit.load_model(device="cpu").tokenizer
    snli = data.snli_pairs("dev")
    snli_rows = list(zip(snli["anchor"], snli["positive"]))
    snli_tokens = token_lengths(tokenizer, snli_rows, MAX_LENGTH)
    stsb = data.load_stsb("train")
    stsb_rows = list(zip(stsb["sentence1"], stsb["sentence2"]))
    table = padding_table("SNLI dev entailment", snli_rows, snli_tokens, args.seeds)
    table += padding_table("STS-B subset train", stsb_rows, token_lengths(tokenizer, stsb_rows, MAX_LENGTH), args.seeds)
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), clock {args.clock}, "
          f"batch {BATCH_SIZE}, max length {MAX_LENGTH}, seeds {args.seeds}\n")
    print_padding(table)
    sys.stdout.flush()
    report = {"cpu": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "clock": args.clock, "precision": args.precision, "padding": table}
    if not args.padding_only:
        report.update(start=heldout_metrics(labkit.load_model(device="cpu"), args.precision), fits=[])
        for seed in args.seeds:  # taking turns, seed after seed: a change in the machine's load hits both alike
            for grouping in ("plain", "tokens"):
                report["fits"].append(timed_fit(snli_rows, snli, grouping, snli_tokens, seed, args))
                print(json.dumps(report["fits"][-1]), flush=True)
                if args.json:  # after every fit: a long run that is stopped keeps what it measured
                    args.json.write_text(json.dumps(report, indent=2))
        print_fits(report["fits"], report["start"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
