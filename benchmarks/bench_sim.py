"""Control steps per wall second of one simulator process, wrist RGB-D rendered every step.

    python benchmarks/bench_sim.py --image-size 96 --runs 5
    python benchmarks/bench_sim.py --height 480 --width 640 --runs 3

Each run resets a bin of 5 items and lets the scripted expert act for 60 steps (physics,
contact checks, the gripper and the wrist render included; resets excluded). Prints the
median and every run, and one JSON line last.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from novapick.sim import make_env
from novapick.sim.expert import ScriptedExpert


def steps_per_second(env, seed: int, steps: int, items: int) -> float:
    obs, _ = env.reset(seed=seed, options={"n_items": items})
    expert = ScriptedExpert(env)
    done, count = False, 0
    start = time.perf_counter()
    while count < steps:
        if done:  # keep going on a new episode (reset time not counted)
            pause = time.perf_counter()
            obs, _ = env.reset(seed=seed + count, options={"n_items": items})
            expert = ScriptedExpert(env)
            start += time.perf_counter() - pause
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        done = terminated or truncated
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--items", type=int, default=5)
    args = ap.parse_args()
    size = (args.height, args.width) if args.height and args.width else args.image_size
    env = make_env(size)
    rates = [steps_per_second(env, seed, args.steps, args.items) for seed in range(args.runs)]
    env.close()
    median = statistics.median(rates)
    print("runs:", ", ".join(f"{r:.1f}" for r in rates))
    print(json.dumps({"image_size": size, "runs": len(rates), "median_steps_per_s": median,
                      "min": min(rates), "max": max(rates), "items": args.items}))


if __name__ == "__main__":
    main()
