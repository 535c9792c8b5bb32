"""``python -m novapick.train``: train a VLA from the command line (see novapick.train.harness)."""
from __future__ import annotations

import argparse
import json
import os

from novapick.train.harness import __doc__ as HARNESS_DOC
from novapick.train.harness import train


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=HARNESS_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=["quick", "full"], default="quick")
    ap.add_argument("--data", nargs="+", required=True, help="dataset directories (the first is the training split)")
    ap.add_argument("--out", default="artifacts/vla")
    ap.add_argument("--components", default="solutions",
                    help="module with ObservationEncoder, RSSM, FlowMatchingActionHead, train_one_epoch")
    ap.add_argument("--spec-exact", action="store_true", help="the case study's model and loss, no extensions")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, help="peak learning rate (default: the profile's)")
    ap.add_argument("--device")
    ap.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the profile's)")
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)
    summary = train(args.data, args.out, args.profile, args.steps, args.batch_size, args.seq_len, args.seed,
                    args.device, resume=not args.no_resume, lr=args.lr, checkpoint_every=args.checkpoint_every,
                    components=args.components, extensions=False if args.spec_exact else None)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
