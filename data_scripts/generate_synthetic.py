"""Generate scripted-expert demonstrations as a Hugging Face (parquet) dataset.

    python data_scripts/generate_synthetic.py --episodes 300 --split known --workers 2 \\
        --seed 0 --image-size 96 --out data/synthetic_known

Shards of 10 episodes are written as they finish (atomically); re-running the same
command resumes an interrupted run and never rewrites a finished shard. Half the
episodes are perturbed (noisy execution, clean labels). The same seed gives the same
dataset: the content hash is printed at the end and stored in meta/info.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from novapick.data.generate import generate  # noqa: E402
from novapick.data.writer import SHARD_EPISODES, GenerationConfig  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--items", type=int, default=5, help="bins of 1..K items")
    ap.add_argument("--perturb-fraction", type=float, default=0.5, help="share of episodes executed with noise")
    ap.add_argument("--shape-jitter", type=float, default=0.0,
                    help="scale every item's dimensions by 1 +- this (geometric domain randomisation)")
    ap.add_argument("--balance-modes", action="store_true",
                    help="alternate suction and jaw targets instead of going round all objects")
    ap.add_argument("--shard-episodes", type=int, default=SHARD_EPISODES, help="episodes per shard (resume unit)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        cfg = GenerationConfig(episodes=args.episodes, split=args.split, seed=args.seed, image_size=args.image_size,
                               max_items=args.items, perturb_fraction=args.perturb_fraction,
                               shard_episodes=args.shard_episodes, shape_jitter=args.shape_jitter,
                               balance_modes=args.balance_modes)
    except ValueError as error:
        ap.error(str(error))
    info = generate(cfg, args.out, args.workers)
    print(f"{info['episodes']} episodes, {info['frames']} frames, expert success "
          f"{info['expert_success_rate']:.1%}, {info['bytes_on_disk'] / 1e6:.1f} MB, "
          f"{info['generation_wall_s']:.0f} s ({info['resumed_shards']} shards resumed)")
    print(f"content_hash {info['content_hash']}")
    return info


if __name__ == "__main__":
    main()
