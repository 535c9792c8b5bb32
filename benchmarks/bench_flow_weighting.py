"""Why the flow head predicts the clean chunk and weights its loss by (1 - t)^2.

Trains the same FlowMatchingActionHead on the expert's action chunks with the two loss
weightings of ``novapick.policy.flow.extended_flow_loss`` and compares the sampled chunks
with the demonstrations on held-out episodes. To isolate the flow head from perception,
the conditioning is a small MLP over privileged inputs (normalised joint state, gripper
state and the expert's planned grasp pose): what a perfect encoder could provide.

    python benchmarks/bench_flow_weighting.py --data data/synthetic_known_64px_s0_jitter0.3 --steps 1500

Prints, per weighting, the mean squared error of the sampled joint velocities (all 16
steps, and the 4 the policy executes) next to two references: predicting zero, and a
plain MLP regression of the chunk from the same inputs.
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
from novapick.policy.flow import CleanChunkParametrization, extended_flow_loss  # noqa: E402
from solutions.flow_head import FlowMatchingActionHead  # noqa: E402


def privileged_inputs(store: EpisodeStore, data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 23) inputs and (N, 16, 10) action chunks, one row per frame."""
    stats = load_stats(data_dir, store)
    inputs = np.concatenate([stats.normalize_proprio(store.proprio), store.gripper_state, store.grasp_pose], 1)
    return torch.tensor(inputs, dtype=torch.float32), torch.tensor(store.action[store.chunk_rows])


def train_flow(x: torch.Tensor, chunks: torch.Tensor, weighting: str, steps: int, seed: int) -> tuple:
    torch.manual_seed(seed)
    mean, std = chunks.flatten(0, 1).mean(0), chunks.flatten(0, 1).std(0).clamp(min=1e-2)
    proj = nn.Sequential(nn.Linear(x.shape[1], 256), nn.SiLU(), nn.Linear(256, 512))
    head = CleanChunkParametrization(FlowMatchingActionHead(16, 10, 512))   # the reference's extension
    opt = torch.optim.AdamW([*proj.parameters(), *head.parameters()], lr=3e-4, weight_decay=1e-4)
    for _ in range(steps):
        i = torch.randint(0, len(x), (128,))
        loss = extended_flow_loss(head, (chunks[i] - mean) / std, proj(x[i]), weighting=weighting)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    return lambda inputs: head.sample(proj(inputs), 10) * std + mean


def train_regression(x: torch.Tensor, chunks: torch.Tensor, steps: int, seed: int):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, 160))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        i = torch.randint(0, len(x), (128,))
        loss = (net(x[i]) - chunks[i].flatten(1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda inputs: net(inputs).view(-1, 16, 10)


def joint_errors(pred: torch.Tensor, chunks: torch.Tensor) -> dict:
    err = (pred - chunks)[..., :7].pow(2)
    return {"mse_all_steps": round(float(err.mean()), 5), "mse_first_4": round(float(err[:, :4].mean()), 5)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    store = EpisodeStore(args.data)
    x, chunks = privileged_inputs(store, args.data)
    held_out = torch.from_numpy(store.episode_index % 10 == 0)   # every 10th episode
    results = {"zero_action": joint_errors(torch.zeros_like(chunks[held_out]), chunks[held_out])}
    for name, fit in (("flow_uniform", lambda: train_flow(x[~held_out], chunks[~held_out], "uniform", args.steps,
                                                         args.seed)),
                      ("flow_x_weighted", lambda: train_flow(x[~held_out], chunks[~held_out], "x", args.steps,
                                                            args.seed)),
                      ("mlp_regression", lambda: train_regression(x[~held_out], chunks[~held_out], args.steps,
                                                                  args.seed))):
        start = time.perf_counter()
        predict = fit()
        with torch.no_grad():
            results[name] = {**joint_errors(predict(x[held_out]), chunks[held_out]),
                             "train_s": round(time.perf_counter() - start, 1)}
        print(name, results[name], flush=True)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
