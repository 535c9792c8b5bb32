"""How good could the VLA be with perfect perception? A privileged closed-loop policy.

The flow head is trained on the expert's chunks conditioned on privileged inputs
(normalised joint state, gripper state and the expert's planned grasp pose, the Section
3.3 baseline's 7-d output), then run in the cell exactly like the VLA (16-step chunks,
execute 4, replan) with the planned pose of each evaluation episode as its input. Gaussian
noise of ``--pose-noise-cm`` (fixed per episode) on the pose's x and y shows how precise
perception must be for the controller to work:

    python benchmarks/bench_privileged_policy.py --data data/synthetic_known_64px_s0_jitter0.3 --steps 2000 --pose-noise-cm 0 1 2

Prints one JSON line per noise level: success rate and failure counts over one episode
per object of ``--split`` (bins of 1-5 items, the pipeline's evaluation seeds).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # solutions/ is not an installed package

from novapick.data.dataset import EpisodeStore, load_stats  # noqa: E402
from novapick.sim import make_env  # noqa: E402
from novapick.sim.catalog import load_catalog, resting_extents  # noqa: E402
from novapick.sim.expert import ScriptedExpert, grasp_pose_vector  # noqa: E402
from novapick.sim.world import BIN_HALF  # noqa: E402
from novapick.evaluate.episodes import plan_episodes  # noqa: E402
from novapick.policy.vla import EXECUTE_STEPS  # noqa: E402
from novapick.policy.flow import CleanChunkParametrization, extended_flow_loss  # noqa: E402
from solutions.flow_head import FlowMatchingActionHead  # noqa: E402


def train_privileged_head(data: str, steps: int, seed: int):
    """Flow head + input MLP on (proprio, gripper state, grasp pose) -> 16-step chunks."""
    torch.manual_seed(seed)
    store = EpisodeStore(data)
    stats = load_stats(data, store)
    keep = store.success.astype(bool)
    x = torch.tensor(np.concatenate([stats.normalize_proprio(store.proprio), store.gripper_state,
                                     store.grasp_pose], 1)[keep], dtype=torch.float32)
    chunks, pad = torch.tensor(store.action[store.chunk_rows][keep]), torch.tensor(store.chunk_pad[keep])
    mean, std = chunks.flatten(0, 1).mean(0), chunks.flatten(0, 1).std(0).clamp(min=1e-2)
    proj = nn.Sequential(nn.Linear(x.shape[1], 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, 512))
    head = CleanChunkParametrization(FlowMatchingActionHead(16, 10, 512))   # the reference's extension
    opt = torch.optim.AdamW([*proj.parameters(), *head.parameters()], lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05)
    for _ in range(steps):
        i = torch.randint(0, len(x), (256,))
        loss = extended_flow_loss(head, (chunks[i] - mean) / std, proj(x[i]), pad[i], weighting="x")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    head.eval()
    proj.eval()

    @torch.no_grad()
    def policy(inputs: np.ndarray, noise: torch.Tensor) -> np.ndarray:
        cond = proj(torch.tensor(inputs, dtype=torch.float32)[None])
        return (head.sample(cond, 10, noise=noise) * std + mean)[0].numpy()
    return policy, stats


def evaluate(policy, stats, split: str, noise_m: float, seed: int) -> dict:
    env = make_env(64)
    catalog = load_catalog()
    plans = plan_episodes([o.name for o in catalog.split(split)], 1, (1, 5), seed=7)
    generator = torch.Generator().manual_seed(seed)
    successes, failures = 0, {}
    for k, plan in enumerate(plans):
        obs, info = env.reset(seed=plan["seed"], options={"object": plan["object"], "split": split,
                                                          "n_items": plan["n_items"]})
        spec = env.unwrapped.target.spec
        pose = grasp_pose_vector(ScriptedExpert(env).plan, resting_extents(spec.geometry, spec.dims)[1])
        offset = np.random.default_rng([seed, k]).normal(size=2) * noise_m   # metres, fixed per episode
        pose[:2] += offset / BIN_HALF
        queue, done = [], False
        while not done:
            if not queue:
                inputs = np.r_[stats.normalize_proprio(obs["proprio"]), obs["gripper_state"], pose]
                queue = list(policy(inputs, torch.randn(1, 16, 10, generator=generator))[:EXECUTE_STEPS])
            action = queue.pop(0)
            action[:7] = np.clip(action[:7], -1, 1)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes += bool(info["success"])
        failures[info["failure"] or "none"] = failures.get(info["failure"] or "none", 0) + 1
    env.close()
    return {"split": split, "pose_noise_cm": noise_m * 100, "success_rate": successes / len(plans),
            "episodes": len(plans), "outcomes": failures}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--pose-noise-cm", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    policy, stats = train_privileged_head(args.data, args.steps, args.seed)
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    results = []
    for noise_cm in args.pose_noise_cm:
        results.append(evaluate(policy, stats, args.split, noise_cm / 100, args.seed))
        print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
