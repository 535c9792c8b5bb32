"""`make reference`: the course's main job, end to end, in one command.

Current stages (later issues add training, evaluation of the learned policies, error
analysis and benchmarking to this same driver):

1. generate the synthetic demonstrations of the profile's data mix (resumable) and
   validate them (`novapick.data.check`),
2. run the scripted expert over the known and the novel object sets,
3. print a results table (success, cycle time, jerk, collision/damage rates, failures),
4. write `artifacts/results.json` and a rollout video `artifacts/expert_rollouts.gif`.

    python -m solutions.pipeline --profile quick            # CPU, ~2 minutes here
    python -m solutions.pipeline --episodes 4 --data-episodes 4 --data-root /tmp/d   # smoke run
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from novapick.sim import make_env
from novapick.sim.expert_eval import episode_options, evaluate_expert
from novapick.sim.rollout import run_expert_episode
from novapick.video import caption, save_video


@dataclass
class PipelineConfig:
    profile: str = "quick"
    episodes: int = 50          # per split
    items: int = 5              # bins of 1..items items
    image_size: int = 96        # wrist camera resolution
    workers: int = 2
    seed: int = 0
    video_episodes: int = 3
    out: str = "artifacts"
    data_episodes: int = 300    # synthetic demonstrations (known split)
    data_root: str = "data"

    def __post_init__(self) -> None:
        if self.profile not in ("quick", "full"):
            raise ValueError(f"profile must be 'quick' or 'full', got {self.profile!r}")
        if self.episodes < 1 or not 1 <= self.items <= 30:
            raise ValueError(f"need episodes >= 1 and 1 <= items <= 30, got {self.episodes}, {self.items}")


PROFILES = {"quick": dict(episodes=50, items=5, image_size=96, data_episodes=300),
            "full": dict(episodes=200, items=10, image_size=224, data_episodes=20_000)}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table of the Section 2 metrics, one row per evaluated system/split."""
    head = ("| system | split | success | cycle time (s) | mean jerk (rad/s^3) | collision | damage | failures |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in rows.items():
        system, split = name.split("/")
        fails = ", ".join(f"{k} {v}" for k, v in r["failure_counts"].items() if v) or "-"
        cycle = f"{r['mean_cycle_time_s']:.2f}" if r["mean_cycle_time_s"] is not None else "-"
        lines.append(f"| {system} | {split} | {r['success_rate']:.1%} | {cycle} | {r['mean_jerk']:.1f} "
                     f"| {r['collision_rate']:.1%} | {r['damage_rate']:.1%} | {fails} |")
    return "\n".join(lines)


def record_video(cfg: PipelineConfig, out: Path) -> Path:
    """A few expert episodes from the third-person camera, green border = success."""
    env = make_env(cfg.image_size)
    frames: list[np.ndarray] = []
    for i in range(cfg.video_episodes):
        split = "known" if i % 2 == 0 else "novel"
        seed, options = episode_options(split, i, cfg.seed + 1000, cfg.items, fixed_items=False)
        info, _, ep_frames = run_expert_episode(env, seed, options, record=False, video_every=2)
        border = (40, 200, 60) if info["success"] else (220, 40, 40)
        frames += [caption(f, border) for f in ep_frames] + [caption(ep_frames[-1], border)] * 5
    env.close()
    return save_video(frames, out / "expert_rollouts.gif", fps=10)


def make_data(cfg: PipelineConfig) -> dict:
    """Stage 1: the synthetic training demonstrations (resumes if already there), validated."""
    from novapick.data.check import check_dataset
    from novapick.data.mix import DataMix
    from novapick.data.writer import GenerationConfig

    from novapick.data.generate import generate
    mix = DataMix(synthetic_episodes=cfg.data_episodes, image_size=cfg.image_size, seed=cfg.seed, root=cfg.data_root)
    root = Path(mix.directories()[0])
    info = generate(GenerationConfig(episodes=cfg.data_episodes, seed=cfg.seed, image_size=cfg.image_size),
                             root, workers=cfg.workers)
    check = check_dataset(root)
    if check["problems"]:
        raise SystemExit(f"generated data in {root} failed validation: {check['problems'][:5]}")
    return {"dir": str(root), "episodes": info["episodes"], "frames": info["frames"],
            "expert_success": info["expert_success_rate"], "content_hash": info["content_hash"],
            "bytes": info["bytes_on_disk"]}


def run(cfg: PipelineConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = make_data(cfg)
    data_s = time.perf_counter() - start
    rows = {}
    for split in ("known", "novel"):
        summary = evaluate_expert(split, cfg.episodes, cfg.items, cfg.seed, cfg.image_size, cfg.workers)
        summary.pop("infos")
        rows[f"expert/{split}"] = summary
    video = record_video(cfg, out)
    results = {
        "git_commit": git_commit(), "profile": cfg.profile, "config": asdict(cfg),
        "expert": {"success_known": rows["expert/known"]["success_rate"],
                   "success_novel": rows["expert/novel"]["success_rate"],
                   "known": rows["expert/known"], "novel": rows["expert/novel"]},
        "data": data,
        "timings": {"data_s": data_s, "total_s": time.perf_counter() - start},
        "artifacts": {"video": str(video)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\ndata: {data['episodes']} episodes / {data['frames']} frames in {data['dir']} "
          f"(expert success {data['expert_success']:.1%}, hash {data['content_hash'][:12]}..., {data_s:.0f} s)")
    print("\n" + format_table(rows))
    print(f"\nwrote {out / 'results.json'} and {video} in {results['timings']['total_s']:.0f} s")
    return results


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=list(PROFILES), default="quick")
    ap.add_argument("--episodes", type=int, help="per split (default: the profile's)")
    ap.add_argument("--items", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="artifacts")
    ap.add_argument("--data-episodes", type=int, help="synthetic demonstrations (default: the profile's)")
    ap.add_argument("--data-root", default="data")
    args = ap.parse_args(argv)
    settings = dict(PROFILES[args.profile])
    settings.update({k: v for k, v in (("episodes", args.episodes), ("items", args.items),
                                       ("data_episodes", args.data_episodes)) if v is not None})
    cfg = PipelineConfig(profile=args.profile, workers=args.workers, seed=args.seed, out=args.out,
                         data_root=args.data_root, **settings)
    return run(cfg)


if __name__ == "__main__":
    main()
