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
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from novapick.data.writer import GenerationConfig, shard_path, write_metadata, write_shard  # noqa: E402

_ENV = None


def _init_worker(image_size: int) -> None:
    global _ENV
    from novapick.sim import make_env
    _ENV = make_env(image_size)


def _run(args: tuple) -> dict:
    cfg, out, shard = args
    return write_shard(cfg, Path(out), shard, env=_ENV)


def generate(cfg: GenerationConfig, out: Path, workers: int = 1, progress: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "meta" / "generation.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    if config_file.exists() and json.loads(config_file.read_text()) != vars(cfg):
        raise SystemExit(f"{out} holds a dataset generated with different settings "
                         f"({config_file.read_text().strip()}); use another --out or delete it")
    config_file.write_text(json.dumps(vars(cfg)))
    todo = [s for s in range(cfg.num_shards) if not shard_path(out, s).exists()]
    done = cfg.num_shards - len(todo)
    start = time.perf_counter()
    summaries = []
    bar = tqdm(total=cfg.episodes, initial=sum(len(cfg.shard_range(s)) for s in range(cfg.num_shards)
                                               if s not in todo), desc="episodes", unit="ep", disable=not progress)
    if todo:
        if workers <= 1:
            _init_worker(cfg.image_size)
            results = map(_run, [(cfg, str(out), s) for s in todo])
        else:
            pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(cfg.image_size,))
            results = pool.imap_unordered(_run, [(cfg, str(out), s) for s in todo])
        for summary in results:
            summaries.append(summary)
            bar.update(summary.get("episodes", 0))
        if workers > 1:
            pool.close()
            pool.join()
    bar.close()
    info = write_metadata(cfg, out, summaries, time.perf_counter() - start)
    info["resumed_shards"] = done
    return info


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--items", type=int, default=5, help="bins of 1..K items")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    cfg = GenerationConfig(episodes=args.episodes, split=args.split, seed=args.seed,
                           image_size=args.image_size, max_items=args.items)
    info = generate(cfg, args.out, args.workers)
    print(f"{info['episodes']} episodes, {info['frames']} frames, expert success "
          f"{info['expert_success_rate']:.1%}, {info['bytes_on_disk'] / 1e6:.1f} MB, "
          f"{info['generation_wall_s']:.0f} s ({info['resumed_shards']} shards resumed)")
    print(f"content_hash {info['content_hash']}")
    return info


if __name__ == "__main__":
    main()
