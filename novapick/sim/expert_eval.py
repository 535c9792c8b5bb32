"""Evaluate the scripted expert on a catalog split.

    python -m novapick.sim.expert_eval --split novel --episodes 200 --items 10 --seed 0 --json

Episode i uses object i mod 50 of the split (every object is covered), a bin of
1..K items (K = --items; uniform per episode, or fixed with --fixed-items) and the seed
(S, i), so results do not depend on --workers. The last line printed with --json is one
JSON object: success_rate, mean_cycle_time_s, mean_jerk, collision_rate, damage_rate,
failure_counts, steps_per_s (control steps per wall second, rendering included), episodes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import numpy as np
from tqdm import tqdm

from novapick.metrics import success_interval, summarize_episodes
from novapick.sim.catalog import load_catalog
from novapick.sim.rollout import run_expert_episode


def episode_options(split: str, index: int, seed: int, max_items: int, fixed_items: bool) -> tuple[int, dict]:
    """(episode seed, reset options) of episode ``index`` — a pure function of its inputs."""
    objects = load_catalog().split(split)
    rng = np.random.default_rng([seed, index])
    n_items = max_items if fixed_items else int(rng.integers(1, max_items + 1))
    return int(rng.integers(1 << 31)), {"object": objects[index % len(objects)].name,
                                        "split": split, "n_items": n_items}


def _worker(args: tuple) -> list[dict]:
    split, indices, seed, max_items, fixed, image_size, force_mode = args
    from novapick.sim import make_env  # import inside the worker: one PyBullet client each
    env = make_env(image_size)
    out = []
    for i in indices:
        ep_seed, options = episode_options(split, i, seed, max_items, fixed)
        start = time.perf_counter()
        info, _, _ = run_expert_episode(env, ep_seed, options, record=False, force_mode=force_mode)
        out.append({**info, "index": i, "wall_s": time.perf_counter() - start})
    env.close()
    return out


def evaluate_expert(split: str = "known", episodes: int = 50, items: int = 5, seed: int = 0,
                    image_size: int = 96, workers: int = 1, fixed_items: bool = False,
                    force_mode: str | None = None, progress: bool = True) -> dict:
    """Run the expert and return the summary dict (plus per-episode ``infos``)."""
    chunks = [list(range(w, episodes, workers)) for w in range(workers)]
    jobs = [(split, c, seed, items, fixed_items, image_size, force_mode) for c in chunks if c]
    start = time.perf_counter()
    infos: list[dict] = []
    bar = tqdm(total=episodes, desc=f"expert/{split}", disable=not progress)
    if workers == 1:
        # One process: stream episode by episode so the bar moves.
        for i in range(episodes):
            infos += _worker((split, [i], seed, items, fixed_items, image_size, force_mode))
            bar.update(1)
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap_unordered(_worker, [(j[0], [i], *j[2:]) for j in jobs for i in j[1]]):
                infos += result
                bar.update(1)
    bar.close()
    wall = time.perf_counter() - start
    infos.sort(key=lambda i: i["index"])
    summary = summarize_episodes(infos)
    steps = sum(i["steps"] for i in infos)
    low, high = success_interval(sum(i["success"] for i in infos), len(infos))
    summary.update({"split": split, "items": items, "seed": seed, "image_size": image_size,
                    "workers": workers, "wall_s": wall,
                    # per process, resets included: what one simulator delivers
                    "steps_per_s": steps / sum(i["wall_s"] for i in infos),
                    "success_ci95": [low, high], "infos": infos})
    return summary


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--items", type=int, default=5, help="bins hold 1..K items (K <= 30)")
    ap.add_argument("--fixed-items", action="store_true", help="always exactly K items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=96, help="wrist camera resolution (square)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--force-mode", choices=["suction", "parallel_jaw", "wrong"], default=None,
                    help="override the best gripper mode; 'wrong' = the other one (shows that the mode matters)")
    ap.add_argument("--json", action="store_true", help="print one JSON summary line last")
    args = ap.parse_args(argv)
    if not 1 <= args.items <= 30:
        ap.error(f"--items must be in 1..30, got {args.items}")
    summary = evaluate_expert(args.split, args.episodes, args.items, args.seed, args.image_size,
                              args.workers, args.fixed_items, args.force_mode)
    failures = [(i["index"], i["target_name"], i["failure"], i["safety_stop"])
                for i in summary["infos"] if not i["success"]]
    public = {k: v for k, v in summary.items() if k != "infos"}
    if args.json:
        for f in failures:
            print("failed:", *f)
        print(json.dumps(public))
    else:
        for k, v in public.items():
            print(f"{k:>18}: {v}")
    return summary


if __name__ == "__main__":
    main()
