"""labkit's `EmbeddingModel.encode` against `SentenceTransformer.encode`: same model, same texts, one run.

Three encoders take turns, round after round (interleaved, so a change in the machine's load hits all of them):
sentence-transformers (fp32, its defaults), labkit fp32 (the default), labkit with ``precision="auto"`` (bf16
autocast where the device has native bf16, else fp32). Each round encodes the same Banking77 texts with batch size
64; the table reports the median seconds, texts/s and the ratio to sentence-transformers, and how far the
labkit embeddings are from sentence-transformers' (largest 1 - cosine over all texts).

    python benchmarks/encode.py                      # 1,024 Banking77 test texts, 5 rounds, both CPU threads
    python benchmarks/encode.py --texts 3080 --rounds 3 --json encode.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import labkit  # noqa: E402
from labkit import data  # noqa: E402
from labkit.env import cpu_name, native_cpu_bf16  # noqa: E402
from labkit.model import default_model_path  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    texts = data.load_banking77("test")["text"].tolist()[: args.texts]
    ours = labkit.load_model(device="cpu")
    theirs = SentenceTransformer(str(default_model_path()), device="cpu")
    encoders = {
        "sentence-transformers": lambda: theirs.encode(texts, batch_size=args.batch_size, show_progress_bar=False),
        "labkit fp32": lambda: ours.encode(texts, batch_size=args.batch_size, show_progress_bar=False),
        "labkit auto": lambda: ours.encode(texts, batch_size=args.batch_size, show_progress_bar=False,
                                           precision="auto"),
    }
    for encode in encoders.values():  # warm-up: first calls allocate and pick kernels
        encode()
    seconds = {name: [] for name in encoders}
    outputs = {}
    for _ in range(args.rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            outputs[name] = encode()
            seconds[name].append(time.perf_counter() - start)

    reference = torch.nn.functional.normalize(torch.as_tensor(outputs["sentence-transformers"]), dim=1)
    st_median = statistics.median(seconds["sentence-transformers"])
    rows = []
    for name in encoders:
        median = statistics.median(seconds[name])
        unit = torch.nn.functional.normalize(torch.as_tensor(np.asarray(outputs[name])), dim=1)
        rows.append({"encoder": name, "median_s": round(median, 3), "texts_per_s": round(len(texts) / median, 1),
                     "ratio_to_st": round(median / st_median, 3),
                     "max_1_minus_cos_vs_st": float((1 - (unit * reference).sum(1)).max())})
    machine = {"cpu": cpu_name(), "native_bf16": native_cpu_bf16(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "texts": len(texts), "rounds": args.rounds, "batch_size": args.batch_size}
    print(json.dumps(machine))
    print(f"{'encoder':24} {'median s':>9} {'texts/s':>9} {'÷ ST':>6} {'max 1-cos vs ST':>16}")
    for row in rows:
        print(f"{row['encoder']:24} {row['median_s']:9.3f} {row['texts_per_s']:9.1f} {row['ratio_to_st']:6.2f} "
              f"{row['max_1_minus_cos_vs_st']:16.2e}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
