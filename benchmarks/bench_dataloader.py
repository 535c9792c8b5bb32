"""DataLoader throughput on a generated dataset (no augmentation).

    python benchmarks/bench_dataloader.py data/synthetic_known --batch-size 64 --workers 1

Reads every sample once per pass (after one warm-up pass), 3 passes; prints samples/s
per pass, the median, and one JSON line last.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novapick.data.dataset import make_dataloader  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=None, help="resize on the fly (default: as stored)")
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--bar", type=float, default=2000.0, help="the issue's bar (samples/s) to report against")
    args = ap.parse_args()
    start = time.perf_counter()
    loader = make_dataloader(args.root, args.batch_size, seq_len=args.seq_len, image_size=args.image_size,
                             num_workers=args.workers)
    load_s = time.perf_counter() - start
    rates = []
    for p in range(args.passes + 1):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch["rgb"].shape[0] * (batch["rgb"].shape[1] if args.seq_len else 1)
        if p:  # the first pass warms up the worker
            rates.append(n / (time.perf_counter() - start))
    median = statistics.median(rates)
    print("samples/s per pass:", ", ".join(f"{r:.0f}" for r in rates))
    print(f"median {median:.0f} samples/s: {'meets' if median >= args.bar else 'BELOW'} the {args.bar:.0f}/s bar")
    print(json.dumps({"samples_per_s_median": round(median), "passes": [round(r) for r in rates], "samples": n,
                      "batch_size": args.batch_size, "workers": args.workers, "image_size": args.image_size,
                      "seq_len": args.seq_len, "load_s": round(load_s, 2)}))


if __name__ == "__main__":
    main()
