"""Search notebook 09's recipe: which settings lift Banking77 MAP@R most within a CPU time budget.

Every run: all-MiniLM-L6-v2, `BatchHardTripletLoss`, P×K batches of Banking77's train split *minus a
stratified dev split* (the model is selected on dev, as notebook 09 teaches), then one evaluation on the full
test split (3,080 texts, each querying the others). The settings tried are the command line's; each run
prints its dev and test MAP@R and its wall time, and `--json` keeps the table.

    python benchmarks/recipe_search.py --steps 300 --lr 3e-5 1e-4 --precision fp32 bf16
    python benchmarks/recipe_search.py --steps 500 --lr 1e-4 --margin 0.3 0.5 --max-length 32 --json runs.json

Test MAP@R is printed for the record; choose settings by dev MAP@R (and time), never by test.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import labkit  # noqa: E402
from labkit import data  # noqa: E402
from labkit.collate import TextDataset  # noqa: E402
from labkit.evaluate import evaluate_retrieval  # noqa: E402
from labkit.losses import BatchHardTripletLoss  # noqa: E402
from labkit.sampling import PKBatchSampler  # noqa: E402
from labkit.train import fit  # noqa: E402


def run(settings: dict, train, dev, test, base_state) -> dict:
    model = labkit.load_model(device="cpu")
    model.load_state_dict(base_state)
    sampler = PKBatchSampler(train["label"].to_numpy(), p=settings["p"], k=settings["k"], seed=settings["seed"])
    start = time.perf_counter()
    result = fit(model, BatchHardTripletLoss(margin=settings["margin"]),
                 TextDataset(list(train["text"]), list(train["label"])), batch_sampler=sampler,
                 steps=settings["steps"], lr=settings["lr"], warmup_ratio=settings["warmup"],
                 max_length=settings["max_length"], precision=settings["precision"], seed=settings["seed"],
                 evaluator=lambda m: evaluate_retrieval(m, list(dev["text"]), dev["label"].to_numpy()),
                 metric="mean_average_precision_at_r", eval_every=settings["eval_every"], show_progress=False, live_plot=False,
                 device="cpu")
    seconds = time.perf_counter() - start
    test_metrics = evaluate_retrieval(model, list(test["text"]), test["label"].to_numpy())
    return {**settings, "dev_map_at_r": result.best_metric, "test_map_at_r": test_metrics["mean_average_precision_at_r"],
            "test_precision_at_1": test_metrics["precision_at_1"], "train_seconds": round(seconds, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[300])
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-5])
    parser.add_argument("--margin", type=float, nargs="+", default=[0.5])
    parser.add_argument("--max-length", type=int, nargs="+", default=[64])
    parser.add_argument("--pk", nargs="+", default=["8x4"], help="P×K batch shapes, e.g. 8x4 16x4")
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--precision", nargs="+", default=["auto"])
    parser.add_argument("--dev-size", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    labkit.setup(seed=args.seed, fast=False)
    full_train = data.load_banking77("train")
    train, dev = data.train_dev_split(full_train, dev_size=args.dev_size, seed=args.seed)
    test = data.load_banking77("test")
    base_state = {k: v.clone() for k, v in labkit.load_model(device="cpu").state_dict().items()}
    before = evaluate_retrieval(labkit.load_model(device="cpu"), list(test["text"]), test["label"].to_numpy())
    print(f"train {len(train)}, dev {len(dev)}, test {len(test)}; before: test MAP@R {before['mean_average_precision_at_r']:.4f}")
    rows = []
    for steps, lr, margin, max_length, pk, precision in itertools.product(
            args.steps, args.lr, args.margin, args.max_length, args.pk, args.precision):
        p, k = (int(x) for x in pk.lower().split("x"))
        settings = {"steps": steps, "lr": lr, "margin": margin, "max_length": max_length, "p": p, "k": k,
                    "precision": precision, "warmup": args.warmup, "seed": args.seed,
                    "eval_every": min(args.eval_every, steps)}
        row = run(settings, train, dev, test, base_state)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"before": before, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
