"""``python -m novapick.evaluate``: a checkpoint's closed-loop metrics as JSON."""
from __future__ import annotations

import argparse
import json

from novapick.evaluate.workers import __doc__ as WORKERS_DOC
from novapick.evaluate.workers import evaluate_checkpoint
from novapick.policy.vla import DEFAULT_TEMPERATURE
from novapick.sim.catalog import load_catalog


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=WORKERS_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--stats", help="meta/stats.json of the training data (default: from the checkpoint's dir)")
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--episodes-per-object", type=int, default=2)
    ap.add_argument("--items", type=int, default=5, help="bins of 1..ITEMS items")
    ap.add_argument("--rehearsal-k", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                    help="flow sampling noise scale: 0 = most typical chunk, 1 = sample")
    ap.add_argument("--candidate-temperature", type=float, default=1.0,
                    help="rehearsal: noise scale of candidates 1..K-1 (candidate 0 is the plain chunk)")
    ap.add_argument("--rehearsal-margin", type=float, default=0.0,
                    help="rehearsal: a candidate replaces the plain chunk only when its score is this much higher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    objects = [o.name for o in load_catalog().split(args.split)]
    result = evaluate_checkpoint(args.checkpoint, objects, args.episodes_per_object, n_items=(1, args.items),
                                 seed=args.seed, rehearsal_k=args.rehearsal_k, workers=args.workers,
                                 stats_path=args.stats, temperature=args.temperature,
                                 candidate_temperature=args.candidate_temperature,
                                 rehearsal_margin=args.rehearsal_margin)
    result.pop("infos")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
