"""Command line: `python -m labkit download [NAMES] [--model ID]`.

`download` prefetches datasets (and, optionally, Hugging Face models) so a workshop on bad Wi-Fi has
everything cached before it starts.
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="prefetch datasets and models into the local caches")
    download.add_argument("names", nargs="*", help="dataset names (default: all of them)")
    download.add_argument("--model", action="append", default=[], metavar="ID",
                          help="also fetch this Hugging Face model id into the Hugging Face cache (repeatable)")
    download.add_argument("--data-dir", help="a local folder laid out like the dataset mirror to copy from")
    return parser


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
    try:
        return {"download": run_download}[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # our own errors already say what went wrong and how to fix it: no traceback needed
        print(f"error: {err}", file=sys.stderr)
        return 2
