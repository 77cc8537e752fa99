"""Command line for quick experiments and for people who do not use notebooks.

    python -m labkit train --data banking77 --loss BatchHardTripletLoss --steps 200 --batch 8x4 --out runs/b77
    python -m labkit train --data my.csv --text-column question --label-column intent --loss BatchAllTripletLoss ...
    python -m labkit train --data stsb --loss CoSENTLoss --batch 32 --steps 200 --out runs/sts
    python -m labkit evaluate --model runs/b77/model --data banking77
    python -m labkit download [NAMES] [--model ID]

`train` writes OUT/model (sentence-transformers format), OUT/metrics.json (held-out metrics before and
after), OUT/curves.png and OUT/umap.png (labelled data). `evaluate` prints the metrics as JSON.
`download` prefetches datasets (and Hugging Face models) for a workshop on bad Wi-Fi.

Several GPUs: `torchrun --nproc_per_node=4 -m labkit train ...` trains with one process per GPU; --batch is
per process (4 GPUs × 8x4 = one batch of 32 classes × 4), and only rank 0 prints and writes OUT/.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def parse_batch(text: str) -> tuple[int, int, int]:
    """"8x4" (or "8×4") → P×K batches of 8 classes × 4 examples; "32" → 32 rows. Returns (p, k, batch_size)."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×X*]\s*(\d+)\s*", text)
    if match:
        p, k = int(match[1]), int(match[2])
        return p, k, p * k
    if text.strip().isdigit():
        return 0, 0, int(text)
    raise argparse.ArgumentTypeError(f"--batch must look like 8x4 (P classes × K examples) or 32, got {text!r}")


def parse_loss_args(text: str) -> dict:
    """"margin=0.5,scale=20" → {"margin": 0.5, "scale": 20}: the loss's constructor arguments (numbers, true/false,
    or words such as a distance name)."""
    arguments = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise argparse.ArgumentTypeError(f"--loss-args must look like margin=0.5,scale=20, got {text!r}")
        value = value.strip()
        for convert in (int, float):
            try:
                arguments[name.strip()] = convert(value)
                break
            except ValueError:
                continue
        else:
            arguments[name.strip()] = {"true": True, "false": False}.get(value.lower(), value)
    return arguments


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a dataset name (banking77, books, stsb) or a CSV/TSV/JSONL/parquet file")
    parser.add_argument("--eval-data", help="held-out data (default: the dataset's test split, or 20%% of the file)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", help="class labels (single texts) or 0/1 labels (pairs)")
    parser.add_argument("--score-column", help="similarity scores in 0..1 (pairs)")
    parser.add_argument("--text-pair-column", help="the second text of each pair")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="labkit experiments from the command line")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a model and evaluate it before and after")
    add_data_arguments(train)
    train.add_argument("--loss", required=True, help="a loss class name from labkit.losses, e.g. BatchHardTripletLoss")
    train.add_argument("--loss-args", type=parse_loss_args, default={}, metavar="NAME=VALUE,...",
                       help="the loss's arguments, e.g. margin=0.5 (a triplet margin for unit-length embeddings: the "
                            "default 5 keeps every triplet active)")
    train.add_argument("--model", default=None, help="Hugging Face id or folder (default: offline all-MiniLM-L6-v2)")
    length = train.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int)
    length.add_argument("--epochs", type=int)
    train.add_argument("--batch", type=parse_batch, default=parse_batch("8x4"), help="P×K like 8x4, or a batch size")
    train.add_argument("--lr", type=float, default=2e-5)
    train.add_argument("--max-length", type=int, default=None)
    train.add_argument("--eval-subset", type=int, default=0, help="evaluate on at most this many held-out rows")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--out", required=True, help="output folder")

    evaluate = commands.add_parser("evaluate", help="print a model's held-out metrics as JSON")
    add_data_arguments(evaluate)
    evaluate.add_argument("--model", required=True)

    download = commands.add_parser("download", help="prefetch datasets and models into the local caches")
    download.add_argument("names", nargs="*", help="dataset names (default: all of them)")
    download.add_argument("--model", action="append", default=[], metavar="ID",
                          help="also fetch this Hugging Face model id into the Hugging Face cache (repeatable)")
    download.add_argument("--data-dir", help="a local folder laid out like the dataset mirror to copy from")
    return parser


def _experiment_data(args):
    from labkit.experiment import load_experiment_data

    return load_experiment_data(args.data, text_column=args.text_column, label_column=args.label_column,
                                score_column=args.score_column, text_pair_column=args.text_pair_column,
                                eval_data=args.eval_data, seed=getattr(args, "seed", 42))


def run_train(args) -> int:
    from labkit import distributed

    world = distributed.init_from_env()  # under torchrun: one process per GPU; otherwise nothing happens
    try:
        return _train(args, world)
    finally:
        if world.is_distributed:
            distributed.shutdown()


def _train(args, world) -> int:
    import labkit
    from labkit import viz
    from labkit.experiment import SAME_CLASS_PAIR_LOSSES, run_experiment

    labkit.setup(seed=args.seed, fast=False, quiet=not world.is_main)
    exp = _experiment_data(args)
    p, k, batch_size = args.batch
    if exp.kind == "labelled" and args.loss not in SAME_CLASS_PAIR_LOSSES and not p:
        raise ValueError("Batch triplet losses need P×K batches: pass --batch like 8x4 (8 classes × 4 examples).")
    model = labkit.load_model(args.model)
    before = model.encode(list(exp.heldout["text"][:2000])) if exp.kind == "labelled" and world.is_main else None
    # Several processes: all train together, rank 0 alone writes OUT/ and prints.
    report = run_experiment(model, exp, args.loss, loss_kwargs=args.loss_args, steps=args.steps, epochs=args.epochs, p=p, k=k,
                            batch_size=batch_size, lr=args.lr, max_length=args.max_length,
                            eval_subset=args.eval_subset, out=args.out if world.is_main else None, seed=args.seed,
                            show_progress=world.is_main)
    if not world.is_main:
        return 0
    out = Path(args.out)
    viz.plot_loss_curves(report["history"]).savefig(out / "curves.png", dpi=100, bbox_inches="tight")
    if before is not None:
        after = model.encode(list(exp.heldout["text"][:2000]))
        labels = exp.heldout["label"].to_numpy()[:2000]
        viz.plot_before_after(before, after, labels).savefig(out / "umap.png", dpi=100, bbox_inches="tight")
    print(json.dumps({k: report[k] for k in ("loss", "kind", "steps", "before", "after")}, indent=2))
    print(f"model, metrics and figures written to {out}/")
    return 0


def run_evaluate(args) -> int:
    import labkit
    from labkit.experiment import evaluate_model

    exp = _experiment_data(args)
    model = labkit.load_model(args.model)
    print(json.dumps({"model": args.model, "data": args.data, "kind": exp.kind, "rows": len(exp.heldout),
                      "metrics": evaluate_model(model, exp)}, indent=2))
    return 0


def run_download(args) -> int:
    from labkit import data
    from labkit.model import load_model

    data.download(args.names or None, data_dir=args.data_dir)
    for model_id in args.model:
        model = load_model(model_id, device="cpu")
        print(f"model {model_id}: ready ({model.embedding_dim}-dim, {model.pooling} pooling)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"train": run_train, "evaluate": run_evaluate, "download": run_download}
    try:
        return commands[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # our own errors already say what went wrong and how to fix it: no traceback needed
        print(f"error: {err}", file=sys.stderr)
        return 2
