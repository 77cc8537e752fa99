"""Command line for quick experiments and for people who do not use notebooks.

    python -m labkit train --data banking77 --loss BatchHardTripletLoss --steps 200 --batch 8x4 --out runs/b77
    python -m labkit train --data my.csv --text-column question --label-column intent --loss BatchAllTripletLoss ...
    python -m labkit train --data stsb --loss CoSENTLoss --batch 32 --steps 200 --out runs/sts
    python -m labkit train ... --dev-size 0.1 --eval-every 50 --checkpoint-every 50 --out runs/b77
    python -m labkit train --resume runs/b77
    python -m labkit evaluate --model runs/b77/model --data banking77
    python -m labkit download [NAMES] [--model ID]

Retrieval data (a BEIR folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv; scifact; a file of
(query, passage[, negative...]) columns):

    python -m labkit train --data scifact --loss MultipleNegativesRankingLoss --batch 32 --steps 200 \
        --dev-size 0.1 --eval-every 50 --out runs/scifact
    python -m labkit train --data pairs.csv --loss MultipleNegativesRankingLoss --batch 32 --epochs 1 --out runs/qa
    python -m labkit mine --data ~/beir/nfcorpus --split train --out negatives.jsonl [--model ID] [--num-negatives 3]
        [--range-min N] [--range-max N] [--absolute-margin M] [--relative-margin M] [--max-score S]
        [--sampling-strategy top|random] [--output-format triplet|n-tuple]
    python -m labkit evaluate --model runs/scifact/model --data scifact [--split test]

`train` evaluates the model on the held-out **test** data (the dataset's test split, --eval-data, or 20% of a
file) once before and once after training, and writes OUT/model (sentence-transformers format),
OUT/metrics.json (the test metrics under "test"; the dev selection under "dev"), OUT/curves.png and
OUT/umap.png (labelled data). The test data chooses nothing: with --dev-size (and --eval-every N) a dev split is
carved from the *training* data, the model is evaluated on it at the start, every N steps and at the end, and
the best dev evaluation's weights are the ones kept. `evaluate` prints a model's metrics as JSON. `download`
prefetches datasets (and Hugging Face models) for a workshop on bad Wi-Fi.

On retrieval data (`labkit.retrieval_experiment`) `train` trains an in-batch-negatives loss (MultipleNegatives-
RankingLoss and its symmetric, cached and MegaBatchMargin relatives, and GISTEmbedLoss / CachedGISTEmbedLoss with
--guide, by default a frozen copy of the starting model; others are refused with that list) on the
(query, relevant passage) pairs of --split (default train) in NoDuplicatesBatchSampler batches, and evaluates
IR metrics (labkit.retrieval.evaluate_ir: NDCG@10, MRR@10, MAP@100, Accuracy/Precision/Recall@1..100) on the
--eval-split queries (default test) against the whole corpus, before and after training ("test" in
OUT/metrics.json). Queries judged in both splits are not trained on. --dev-size / --eval-every carve dev queries
from the *training* queries, ranked among --dev-corpus-size documents (1000: every relevant one plus random
others; `IREvaluator`) to choose the checkpoint on NDCG@10. A pairs file (its columns found by name, or named
with --query-column / --passage-column) has no test split: 20% of its distinct queries are held out (all their
rows) and ranked against every passage of the file; `evaluate` on the same file
(with the same --seed) scores the same held-out queries. `mine` adds hard negatives to a split's pairs
(labkit.hard_negatives, the semantics and statistics table of sentence-transformers' mine_hard_negatives) and
writes them as JSON lines, atomically: a pairs file that `train` reads. `evaluate` prints a split's IR metrics as JSON.

Stopping and going on: `train` saves a checkpoint in OUT at the end, on Ctrl-C, and every --checkpoint-every N
steps; it also keeps its arguments (OUT/args.json) and the test metrics before training (OUT/before.json).
`train --resume OUT` reads the arguments back from OUT/args.json, goes on from the checkpoint, and ends with the
same weights and metrics as a run that never stopped. Arguments given again with --resume must equal the saved
ones (only --checkpoint-every may change): a run cannot be resumed on other data or with another loss. Every
file is written under a temporary name and renamed into place, so nothing in OUT is ever half-written.

Mistakes get one line, ``error: ...``, that says what is wrong and how to fix it (exit code 2), before any slow
work: a file with a header but no rows, a file that is not UTF-8 (--encoding), scores outside 0..1 for
CosineSimilarityLoss (--rescale-scores), classes too small for P×K batches (named by their label), an --out
that cannot be written, a --data that is neither a dataset name nor a path; for retrieval data a BEIR folder's
missing file, qrels naming ids that the queries or the corpus lack (how many, which), empty query texts, a
corpus over the scoring memory bound (--corpus-chunk-size, --max-chunk-bytes), a loss that does not fit pairs.

Several GPUs: `torchrun --nproc_per_node=4 -m labkit train ...` trains with one process per GPU; --batch is
per process (4 GPUs × 8x4 = one batch of 32 classes × 4), and only rank 0 prints and writes OUT/.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
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


def parse_size(text: str) -> float | int:
    """"0.1" → the fraction 0.1; "200" → 200 rows."""
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.1 or a row count like 200, got {text!r}") \
            from None


def parse_rescale(text: str) -> str | float:
    """"minmax" → "minmax"; "5" → 5.0 (divide the scores by 5)."""
    if text.strip().lower() == "minmax":
        return "minmax"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rescale-scores takes minmax or the largest possible score (e.g. 5), "
                                         f"got {text!r}") from None


def parse_bytes(text: str) -> int:
    """"2G" → 2 GiB, "500M", "64K", "1000" → a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.I)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size like 2G, 500M or 1000000 (bytes), got {text!r}")
    return int(float(match[1]) * 1024 ** "_KMGT".index(match[2].upper() or "_"))


def add_retrieval_arguments(parser: argparse.ArgumentParser, split_help: str) -> None:
    """The options of retrieval data (a BEIR folder, scifact, a pairs file); None where not given."""
    parser.add_argument("--split", help=split_help)
    parser.add_argument("--corpus-chunk-size", type=int, default=None, metavar="N",
                        help="retrieval: documents scored at a time (default 50000); memory about queries × (N + "
                             "100) × 40 bytes")
    parser.add_argument("--max-chunk-bytes", type=parse_bytes, default=None, metavar="SIZE",
                        help="retrieval: refuse, before any slow work, a chunk whose scores need more (default 2G)")


def add_pair_column_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query-column", help="retrieval pairs file: the query column (default: found by name, "
                                               "query/anchor/question)")
    parser.add_argument("--passage-column", help="retrieval pairs file: the relevant-passage column (default: "
                                                 "found by name, passage/positive/document/answer)")


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--data", required=required,
                        help="a dataset name (banking77, books, stsb, scifact), a CSV/TSV/JSONL/parquet file, or "
                             "retrieval data: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/*.tsv), scifact, "
                             "or a file of (query, passage[, negative...]) columns"
                             + ("" if required else " (required unless --resume)"))
    parser.add_argument("--eval-data", help="held-out test data (default: the dataset's test split, or 20%% of the "
                                            "file, stratified by label); evaluated before and after training only")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", help="class labels (single texts) or 0/1 labels (pairs)")
    parser.add_argument("--score-column", help="similarity scores (pairs); in 0..1 for CosineSimilarityLoss")
    parser.add_argument("--text-pair-column", help="the second text of each pair")
    add_pair_column_arguments(parser)
    parser.add_argument("--encoding", default="utf-8", help="of CSV/TSV/JSONL files, e.g. latin-1 (default utf-8)")
    parser.add_argument("--rescale-scores", type=parse_rescale, metavar="MAX|minmax",
                        help="map the scores to 0..1: divide by MAX (e.g. 5 for 0..5 scores), or minmax (the "
                             "training scores' min -> 0 and max -> 1, the same map for dev and test)")


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    add_data_arguments(train, required=False)
    train.add_argument("--loss", help="a loss class name from labkit.losses, e.g. BatchHardTripletLoss (required)")
    train.add_argument("--loss-args", type=parse_loss_args, default={}, metavar="NAME=VALUE,...",
                       help="the loss's arguments, e.g. margin=0.5 (a triplet margin for unit-length embeddings: the "
                            "default 5 keeps every triplet active)")
    train.add_argument("--model", default=None, help="Hugging Face id or folder (default: offline all-MiniLM-L6-v2)")
    train.add_argument("--guide", default=None, help="GISTEmbedLoss's guide model, frozen (default: a copy of "
                                                     "--model before training); retrieval data only")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps (this or --epochs is required)")
    length.add_argument("--epochs", type=int)
    train.add_argument("--batch", type=parse_batch, default=parse_batch("8x4"), help="P×K like 8x4, or a batch size")
    train.add_argument("--lr", type=float, default=2e-5)
    train.add_argument("--max-length", type=int, default=None)
    train.add_argument("--eval-subset", type=int, default=0, help="evaluate on at most this many held-out test rows")
    train.add_argument("--dev-size", type=parse_size, default=None, metavar="FRACTION|ROWS",
                       help="carve a dev split off the training data (stratified by label) to choose the checkpoint "
                            "on (default: none, or 0.1 with --eval-every)")
    train.add_argument("--eval-every", type=int, default=None, metavar="N",
                       help="evaluate on the dev split every N steps (and at the start and end) and keep the best")
    train.add_argument("--group-by-length", action="store_true",
                       help="MultipleNegativesRankingLoss on labelled data: no-duplicate pair batches of similar token "
                            "lengths (less padding, about 0.7x the epoch time; benchmarks/padding.py)")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--out", help="output folder (required; must be writable: checked before training)")
    train.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                       help="also save a checkpoint in OUT every N steps (always: at the end and on Ctrl-C)")
    train.add_argument("--resume", metavar="OUT",
                       help="go on from OUT's checkpoint with the arguments saved in OUT/args.json")
    add_retrieval_arguments(train, "retrieval: the qrels split to train on (default train; the test split is "
                                   "--eval-split)")
    train.add_argument("--eval-split", help="retrieval: the qrels split evaluated before and after (default test)")
    train.add_argument("--dev-corpus-size", type=int, default=None, metavar="N",
                       help="retrieval: the dev queries are ranked among N documents (every relevant one plus "
                            "random others; default 1000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="labkit experiments from the command line")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", allow_abbrev=False, help="fine-tune a model; evaluate it on the test data "
                                                                  "before and after")
    add_train_arguments(train)

    evaluate = commands.add_parser("evaluate", help="print a model's held-out metrics as JSON")
    add_data_arguments(evaluate)
    evaluate.add_argument("--model", required=True)
    add_retrieval_arguments(evaluate, "retrieval: the qrels split to evaluate on (default test)")
    evaluate.add_argument("--seed", type=int, default=42, help="a pairs file: the seed of its held-out queries "
                                                               "(train's --seed; default 42)")

    mine = commands.add_parser("mine", help="mine hard negatives for retrieval pairs from the corpus; write JSONL")
    mine.add_argument("--data", required=True, help="a BEIR folder, scifact, or a (query, passage) pairs file")
    mine.add_argument("--out", required=True, metavar="FILE.jsonl", help="where the mined rows go (JSON lines)")
    add_pair_column_arguments(mine)
    mine.add_argument("--model", default=None, help="Hugging Face id or folder (default: offline all-MiniLM-L6-v2)")
    mine.add_argument("--split", default="train", help="BEIR folder / scifact: the qrels split whose (query, "
                                                       "relevant passage) pairs get negatives (default train)")
    mine.add_argument("--num-negatives", type=int, default=3)
    mine.add_argument("--range-min", type=int, default=0, help="skip this many best-ranked candidates")
    mine.add_argument("--range-max", type=int, default=None, help="draw from the first N candidates (default: "
                                                                  "as sentence-transformers)")
    mine.add_argument("--absolute-margin", type=float, help="skip a candidate unless score + margin <= the "
                                                            "positive's score")
    mine.add_argument("--relative-margin", type=float, help="skip a candidate unless score <= positive score × "
                                                            "(1 - margin); 0.05 is NV-Retriever's choice")
    mine.add_argument("--max-score", type=float, help="skip candidates scoring above this")
    mine.add_argument("--min-score", type=float, help="skip candidates scoring below this")
    mine.add_argument("--sampling-strategy", choices=("top", "random"), default="top")
    mine.add_argument("--output-format", choices=("triplet", "n-tuple"), default="triplet",
                      help="triplet: one (anchor, positive, negative) row per negative; n-tuple: (anchor, "
                           "positive, negative_1..N) rows, only pairs with all N")
    mine.add_argument("--batch-size", type=int, default=32, help="encoding batch size")
    mine.add_argument("--seed", type=int, default=0, help="of --sampling-strategy random")

    download = commands.add_parser("download", help="prefetch datasets and models into the local caches")
    download.add_argument("names", nargs="*", help="dataset names (default: all of them)")
    download.add_argument("--model", action="append", default=[], metavar="ID",
                          help="also fetch this Hugging Face model id into the Hugging Face cache (repeatable)")
    download.add_argument("--data-dir", help="a local folder laid out like the dataset mirror to copy from")
    return parser


ARGS_FILE = "args.json"  # a run's arguments, in OUT: what --resume reads back
MAY_DIFFER_ON_RESUME = ("checkpoint_every",)  # when checkpoints are written does not change the result
NOT_SAVED = ("command", "resume", "given")


def _experiment_data(args, dev_size: float | int = 0):
    from labkit.experiment import load_experiment_data

    return load_experiment_data(args.data, text_column=args.text_column, label_column=args.label_column,
                                score_column=args.score_column, text_pair_column=args.text_pair_column,
                                eval_data=args.eval_data, seed=getattr(args, "seed", 42), dev_size=dev_size,
                                encoding=args.encoding, rescale_scores=args.rescale_scores)


def given_options(argv: list[str]) -> set[str]:
    """The `train` options spelled out in `argv` (not left at their defaults), by destination name."""
    train = argparse.ArgumentParser(allow_abbrev=False)
    add_train_arguments(train)
    words = {word.split("=", 1)[0] for word in argv if word.startswith("--")}
    return {action.dest for action in train._actions if words & set(action.option_strings)}


def train_arguments(args) -> argparse.Namespace:
    """`args` ready to train: a fresh run's required arguments checked; with --resume OUT, the saved ones."""
    if args.resume is None:
        missing = [flag for flag, value in (("--data", args.data), ("--loss", args.loss), ("--out", args.out))
                   if value is None] + (["--steps or --epochs"] if args.steps is None and args.epochs is None else [])
        if missing:
            raise ValueError(f"train needs {', '.join(missing)} (or --resume OUT to go on with a stopped run).")
        return args
    return resumed_arguments(args)


def resumed_arguments(args) -> argparse.Namespace:
    """--resume OUT: the arguments saved in OUT/args.json; those given again must equal them (--checkpoint-every
    may change)."""
    from labkit.checkpoint import CHECKPOINT_FILE

    out = Path(args.resume)
    if not (out / CHECKPOINT_FILE).is_file() or not (out / ARGS_FILE).is_file():
        raise FileNotFoundError(f"--resume {out}: no run to go on with there (it needs {CHECKPOINT_FILE} and "
                                f"{ARGS_FILE}, written by python -m labkit train --out {out}); start a run with --out.")
    if args.out is not None and Path(args.out).resolve() != out.resolve():
        raise ValueError(f"--resume {out} goes on writing into {out}: leave out --out {args.out}.")
    saved, current = json.loads((out / ARGS_FILE).read_text()), _recorded(args)
    given = getattr(args, "given", set())  # set by main(): the options spelled out on the command line
    differ = [name for name in sorted(given) if name in saved and name not in (*MAY_DIFFER_ON_RESUME, "out")
              and current[name] != saved[name]]
    if differ:
        shown = "; ".join(f"--{name.replace('_', '-')} {current[name]!r} (the run used {saved[name]!r})"
                          for name in differ)
        raise ValueError(f"--resume {out}: {shown}. A resumed run must train as the stopped one did: give the same "
                         f"arguments (or none, they are read from {out / ARGS_FILE}), or start a new run with "
                         "another --out.")
    kept = {name: current[name] for name in MAY_DIFFER_ON_RESUME if name in given}
    merged = {**vars(args), **saved, **kept, "out": str(out)}
    merged["batch"] = tuple(merged["batch"])
    return argparse.Namespace(**merged)


def _recorded(args) -> dict:
    """The run's arguments as OUT/args.json keeps them (JSON values: the batch as a list)."""
    return json.loads(json.dumps({k: v for k, v in vars(args).items() if k not in NOT_SAVED}))


def check_out_folder(out: Path) -> None:
    """Refuse, before any slow work, an --out that cannot be written: a file in the way, or no permission."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        in_the_way = next((part for part in [out, *out.parents] if part.exists()), out)
        why = f"{in_the_way} is a file, not a folder" if in_the_way.is_file() else err.strerror or str(err)
        raise ValueError(f"--out {out} cannot be written ({why}): choose another --out, a folder you can "
                         "write to.") from None


def run_train(args) -> int:
    from labkit import distributed

    args = train_arguments(args)
    world = distributed.init_from_env()  # under torchrun: one process per GPU; otherwise nothing happens
    try:
        return _train(args, world)
    finally:
        if world.is_distributed:
            distributed.shutdown()


RETRIEVAL_OPTIONS = ("split", "eval_split", "dev_corpus_size", "corpus_chunk_size", "max_chunk_bytes", "guide",
                     "query_column", "passage_column")
RETRIEVAL_DEFAULTS = {"dev_corpus_size": 1000, "corpus_chunk_size": 50_000, "max_chunk_bytes": 2 * 1024 ** 3}


def check_data_exists(data: str | None) -> None:
    """Refuse a --data that is neither a dataset name nor an existing file or folder."""
    from labkit.data import DATASETS

    if data is not None and data not in DATASETS and not Path(data).expanduser().exists():
        raise ValueError(f"--data {data!r} is neither a dataset name ({', '.join(DATASETS)}) nor an existing file "
                         "or BEIR folder: check the name or the path.")


def _retrieval_source(args) -> str | None:
    from labkit.retrieval_experiment import retrieval_source

    return retrieval_source(args.data, args.label_column, args.score_column, args.text_pair_column,
                            args.query_column, args.passage_column)


def _refuse_retrieval_options(args) -> None:
    given = [f"--{name.replace('_', '-')}" for name in RETRIEVAL_OPTIONS if getattr(args, name, None) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to retrieval data (a BEIR "
                         f"folder, scifact, or a file of query and passage columns); {args.data} is not.")


def _retrieval_setting(args, name: str):
    value = getattr(args, name, None)
    return RETRIEVAL_DEFAULTS[name] if value is None else value


def _train(args, world) -> int:
    import labkit
    from labkit.experiment import SAME_CLASS_PAIR_LOSSES, check_experiment, run_experiment, write_json

    check_data_exists(args.data)
    source = _retrieval_source(args)
    if source is not None:
        return _train_retrieval(args, world)
    _refuse_retrieval_options(args)
    labkit.setup(seed=args.seed, fast=False, quiet=not world.is_main)
    resume, out = args.resume is not None, Path(args.out)
    dev_size = args.dev_size if args.dev_size is not None else (0.1 if args.eval_every else 0)
    exp = _experiment_data(args, dev_size)
    p, k, batch_size = args.batch
    if exp.kind == "labelled" and args.loss not in SAME_CLASS_PAIR_LOSSES and not p:
        raise ValueError("Batch triplet losses need P×K batches: pass --batch like 8x4 (8 classes × 4 examples).")
    check_experiment(exp, args.loss, p, k)
    if world.is_main:
        check_out_folder(out)
    model = labkit.load_model(args.model)
    if world.is_main and not resume:
        write_json(out / ARGS_FILE, _recorded(args))
    before = _embeddings_before(model, exp, out, resume) if world.is_main else None
    # Several processes: all train together (each reads OUT's checkpoint when resuming), rank 0 alone writes OUT/.
    report = run_experiment(model, exp, args.loss, loss_kwargs=args.loss_args, steps=args.steps, epochs=args.epochs,
                            p=p, k=k, batch_size=batch_size, lr=args.lr, max_length=args.max_length,
                            eval_subset=args.eval_subset, out=out, seed=args.seed, show_progress=world.is_main,
                            eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, resume=resume,
                            group_by_length=getattr(args, "group_by_length", False))
    if world.is_main:
        _write_figures(model, exp, report, before, out)
    return 0


def _train_retrieval(args, world) -> int:
    """`train` on retrieval data: (query, relevant passage) pairs, IR metrics on the test split before and after."""
    import labkit
    from labkit import retrieval_experiment as rx
    from labkit.experiment import atomic_file, write_json

    for flag, value in (("--eval-data", args.eval_data), ("--rescale-scores", args.rescale_scores),
                        ("--eval-subset", args.eval_subset or None)):
        if value is not None:
            raise ValueError(f"{flag} does not apply to retrieval data ({args.data}): the test queries are "
                             "--eval-split's (BEIR folder, scifact) or a held-out 20% of a pairs file's queries, "
                             "all of them evaluated against the whole corpus.")
    rx.check_loss(args.loss)
    if args.guide is not None and "guide" not in rx.REGISTRY[args.loss].needs:
        raise ValueError(f"--guide is for a loss that filters negatives with a guide model (GISTEmbedLoss, "
                         f"CachedGISTEmbedLoss); {args.loss} takes none. Drop --guide or change --loss.")
    p, k, batch_size = args.batch
    if p and "batch" in getattr(args, "given", set()):
        raise ValueError(f"retrieval pairs train on batches of rows, not P×K: pass --batch {batch_size} "
                         f"(not --batch {p}x{k}).")
    dev_size = args.dev_size if args.dev_size is not None else (0.1 if args.eval_every else 0)
    exp = rx.load_retrieval_experiment(args.data, split=args.split or "train", eval_split=args.eval_split or "test",
                                       dev_size=dev_size, seed=args.seed, query_column=args.query_column,
                                       passage_column=args.passage_column)
    rx.check_loss(args.loss, with_negatives=len(exp.rows.columns) > 2)
    if len(exp.rows) < batch_size:
        raise ValueError(f"the training split has {len(exp.rows)} (query, passage) rows, fewer than --batch "
                         f"{batch_size}: pass a smaller --batch.")
    chunk, max_bytes = _retrieval_setting(args, "corpus_chunk_size"), _retrieval_setting(args, "max_chunk_bytes")
    rx.check_memory(exp.test, "test collection", chunk, max_bytes)
    dev_corpus = _retrieval_setting(args, "dev_corpus_size")
    if exp.dev is not None:
        rx.check_memory(rx.dev_collection(exp.dev, dev_corpus), "dev collection", chunk, max_bytes)
    resume, out = args.resume is not None, Path(args.out)
    if world.is_main:
        check_out_folder(out)
    labkit.setup(seed=args.seed, fast=False, quiet=not world.is_main)
    for note in exp.notes:
        if world.is_main:
            print(f"note: {note}")
    model = labkit.load_model(args.model)
    guide = labkit.load_model(args.guide) if args.guide is not None else None
    if world.is_main and not resume:
        write_json(out / ARGS_FILE, _recorded(args))
    report = rx.run_retrieval_experiment(
        model, exp, args.loss, loss_kwargs=args.loss_args, steps=args.steps, epochs=args.epochs,
        batch_size=batch_size, lr=args.lr, max_length=args.max_length, out=out, seed=args.seed,
        show_progress=world.is_main, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        resume=resume, group_by_length=getattr(args, "group_by_length", False), dev_corpus_size=dev_corpus,
        corpus_chunk_size=chunk, max_chunk_bytes=max_bytes, guide=guide)
    if world.is_main:
        from labkit import viz

        with atomic_file(out / "curves.png") as tmp:
            viz.plot_loss_curves(report["history"]).savefig(tmp, dpi=100, bbox_inches="tight")
        record = rx.metrics_record(report)
        if record["dev"] is not None:
            record["dev"] = {k: v for k, v in record["dev"].items() if k not in ("evaluations", "query_ids")}
        print(json.dumps({k: v for k, v in record.items() if k not in ("loss_args", "seconds", "notes")}, indent=2))
        if report.get("interrupted"):
            print(f"interrupted at step {report['steps']}: go on with python -m labkit train --resume {out}")
        print(f"model, metrics and figures written to {out}/")
    return 0


def _embeddings_before(model, exp, out: Path, resume: bool):
    """Labelled data: the untrained model's embeddings of up to 2000 test texts, for the before/after map (kept in
    OUT, so a resumed run draws the same map). None for pairs."""
    import numpy as np
    from labkit.experiment import atomic_file

    if exp.kind != "labelled":
        return None
    path = out / "before_embeddings.npy"
    if resume and path.is_file():
        return np.load(path)
    embeddings = model.encode(list(exp.heldout["text"][:2000]))
    with atomic_file(path) as tmp:
        np.save(tmp, embeddings)
    return embeddings


def _write_figures(model, exp, report: dict, before, out: Path) -> None:
    """OUT/curves.png, OUT/umap.png (labelled data), and the test metrics printed."""
    from labkit import viz
    from labkit.experiment import atomic_file, metrics_record

    with atomic_file(out / "curves.png") as tmp:
        viz.plot_loss_curves(report["history"]).savefig(tmp, dpi=100, bbox_inches="tight")
    if before is not None:
        after = model.encode(list(exp.heldout["text"][:2000]))
        labels = exp.heldout["label"].to_numpy()[:2000]
        with atomic_file(out / "umap.png") as tmp:
            viz.plot_before_after(before, after, labels).savefig(tmp, dpi=100, bbox_inches="tight")
    record = metrics_record(report)
    if record["dev"] is not None:
        record["dev"] = {k: v for k, v in record["dev"].items() if k != "evaluations"}
    print(json.dumps({k: v for k, v in record.items() if k not in ("loss_args", "seconds")}, indent=2))
    if report.get("interrupted"):
        print(f"interrupted at step {report['steps']}: go on with python -m labkit train --resume {out}")
    print(f"model, metrics and figures written to {out}/")


def run_evaluate(args) -> int:
    import labkit
    from labkit.experiment import evaluate_model

    check_data_exists(args.data)
    if _retrieval_source(args) is not None:
        return _evaluate_retrieval(args)
    _refuse_retrieval_options(args)
    exp = _experiment_data(args)
    model = labkit.load_model(args.model)
    print(json.dumps({"model": args.model, "data": args.data, "kind": exp.kind, "rows": len(exp.heldout),
                      "metrics": evaluate_model(model, exp)}, indent=2))
    return 0


def _evaluate_retrieval(args) -> int:
    """`evaluate` on retrieval data: `labkit.retrieval.evaluate_ir` on a split (a pairs file: its held-out queries)."""
    import labkit
    from labkit import retrieval_experiment as rx
    if args.eval_data is not None:
        raise ValueError(f"--eval-data does not apply to retrieval data ({args.data}): choose the qrels with --split.")
    collection = rx.heldout_collection(args.data, split=args.split or "test", seed=args.seed,
                                       query_column=args.query_column, passage_column=args.passage_column)
    chunk, max_bytes = _retrieval_setting(args, "corpus_chunk_size"), _retrieval_setting(args, "max_chunk_bytes")
    rx.check_memory(collection, "evaluation collection", chunk, max_bytes)
    model = labkit.load_model(args.model)
    metrics = rx.evaluate(model, collection, corpus_chunk_size=chunk, max_chunk_bytes=max_bytes)
    print(json.dumps({"model": args.model, "data": args.data, "kind": rx.KIND, "split": collection.split,
                      "queries": len(collection.queries), "corpus": len(collection.corpus), "metrics": metrics},
                     indent=2))
    return 0


def run_mine(args) -> int:
    """`mine`: hard negatives for the (query, relevant passage) pairs, from the corpus; JSONL rows written
    atomically, the statistics table printed."""
    import labkit
    from labkit import hard_negatives as hn
    from labkit import retrieval_experiment as rx
    from labkit.data import load_pairs
    from labkit.experiment import atomic_file

    check_data_exists(args.data)
    source = rx.retrieval_source(args.data, query_column=args.query_column, passage_column=args.passage_column)
    if source is None:
        raise ValueError(f"mine needs retrieval data: a BEIR folder, scifact, or a file with query and passage "
                         f"columns ({', '.join(rx.QUERY_COLUMNS)} / {', '.join(rx.PASSAGE_COLUMNS)}); {args.data} "
                         "is none of those.")
    if source == "pairs":
        rows = load_pairs(args.data, args.query_column, args.passage_column)
        anchors, positives = list(rows["anchor"]), list(rows["positive"])
        corpus = list(dict.fromkeys(t for c in rows.columns if c != "anchor" for t in rows[c]))
    else:
        collection = rx.load_collection(args.data, args.split)
        pairs = collection.pairs()
        if pairs.empty:
            raise ValueError(f"the {args.split!r} split of {args.data} has no relevant (query, passage) pair.")
        anchors, positives, corpus = list(pairs["anchor"]), list(pairs["positive"]), list(collection.corpus.values())
    settings = dict(range_min=args.range_min, range_max=args.range_max, max_score=args.max_score,
                    min_score=args.min_score, absolute_margin=args.absolute_margin,
                    relative_margin=args.relative_margin, num_negatives=args.num_negatives,
                    sampling_strategy=args.sampling_strategy, output_format=args.output_format)
    pairs_ = hn.deduplicate_pairs(anchors, positives, corpus)  # the settings checked before the model is loaded
    range_max = args.range_max if args.range_max is not None else hn.default_range_max(
        args.range_min, args.num_negatives, pairs_.max_rows,
        any(v is not None for v in (args.absolute_margin, args.relative_margin, args.max_score)))
    try:
        hn._check_settings(args.range_min, range_max, args.num_negatives, args.sampling_strategy,
                           args.output_format, 8192, 1024)
    except ValueError as err:
        text = str(err)
        for name in ("range_min", "range_max", "num_negatives"):
            text = text.replace(name, f"--{name.replace('_', '-')}")
        raise ValueError(text) from None
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name such as {out / 'negatives.jsonl'}.")
    check_out_folder(out.parent)
    model = labkit.load_model(args.model)
    mined = hn.mine_hard_negatives(model, anchors, positives, corpus=corpus, batch_size=args.batch_size,
                                   seed=args.seed, **settings)
    with atomic_file(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in mined.rows():
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(mined.statistics.table())
    print(f"{len(mined)} rows ({', '.join(mined.columns)}) written to {out}")
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        args.given = given_options(argv[1:])
    commands = {"train": run_train, "evaluate": run_evaluate, "mine": run_mine, "download": run_download}
    try:
        return commands[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # our own errors already say what went wrong and how to fix it: no traceback needed
        print(f"error: {err}", file=sys.stderr)
        return 2
