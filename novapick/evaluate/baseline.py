"""The grasp-pose baseline's harness (Section 3.3): training on the expert's poses and
closed-loop execution of the predicted pose with the scripted motion."""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from novapick.data.dataset import EpisodeStore
from novapick.data.schema import DEPTH_MAX_M, DEPTH_SCALE_M
from novapick.evaluate.episodes import plan_episodes, plan_options
from novapick.metrics import summarize_episodes
from novapick.sim.expert import PoseExpert


def baseline_samples(store, first_frames: int = 3) -> np.ndarray:
    """Rows of the first frames of every successful episode: the camera still sees the bin
    from the home pose, and the target is the expert's planned grasp pose."""
    ok = store.success.astype(bool) & (store.frame_index < first_frames)
    return np.flatnonzero(ok)


def train_baseline(data_dirs: list[str], model_cls: type, steps: int = 600, batch_size: int = 32, lr: float = 1e-3,
                   seed: int = 0, pretrained: bool = True, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train the pose head with MSE against the expert's grasp poses (Section 3.3).

    A frozen ResNet-18's features are computed once and cached (the backbone never
    changes), so only the depth CNN and the MLP train; an unfrozen one (no pretrained
    weights) trains with them. ``model_cls``: the Section 3.3 ``GraspBaseline`` class
    (``pretrained=`` constructor keyword; ``frozen``, ``rgb_features`` and
    ``pose_from_features`` as in the reference)."""
    torch.manual_seed(seed)
    store = EpisodeStore(data_dirs)
    rows = baseline_samples(store)
    rgb = torch.from_numpy(store.rgb[rows]).float() / 255
    depth = (torch.from_numpy(store.depth[rows].astype(np.float32)) * (DEPTH_SCALE_M / DEPTH_MAX_M)).clamp(0, 1)
    target = torch.from_numpy(store.grasp_pose[rows])
    model = model_cls(pretrained=pretrained)
    start = time.perf_counter()
    if model.frozen:
        with torch.no_grad():
            cached = torch.cat([model.rgb_features(rgb[i:i + 64]) for i in range(0, len(rgb), 64)])
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="baseline", disable=not progress):
        idx = torch.randint(0, len(rows), (batch_size,), generator=gen)
        visual = cached[idx] if model.frozen else model.rgb_features(rgb[idx])
        pred = model.pose_from_features(visual, depth[idx])
        loss = torch.nn.functional.mse_loss(pred, target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return model, {"samples": int(len(rows)), "steps": steps, "final_mse": float(np.mean(losses[-20:])),
                   "first_mse": float(np.mean(losses[:20])), "train_s": time.perf_counter() - start,
                   "pretrained_backbone": model.pretrained, "frozen_backbone": model.frozen}


@torch.no_grad()
def run_baseline_episode(model: nn.Module, env, plan: dict) -> dict:
    """One planned episode (see :func:`novapick.evaluate.episodes.plan_episodes`): predict one grasp
    pose from the first wrist image and execute it with the scripted motion (approach,
    descend, grasp, lift). Returns the final info."""
    options = plan_options(env, plan)
    obs, info = env.reset(seed=plan["seed"], options=options)
    rgb = torch.as_tensor(obs["rgb"])[None]
    depth = (torch.as_tensor(obs["depth"])[None] / DEPTH_MAX_M).clamp(0, 1)
    expert = PoseExpert(env, model(rgb, depth)[0].numpy())
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        done = terminated or truncated
    return {**info, "object_name": plan["object"], "seed": plan["seed"], "options": options}


def summarize_baseline(infos: list[dict]) -> dict:
    """The episode metrics plus per-object success."""
    summary = summarize_episodes(infos)
    names = dict.fromkeys(i["object_name"] for i in infos)
    summary["per_object_success"] = {n: float(np.mean([i["success"] for i in infos if i["object_name"] == n]))
                                     for n in names}
    return summary


def evaluate_baseline(model: nn.Module, env, object_names: list[str], episodes_per_object: int = 1,
                      n_items: tuple[int, int] = (1, 5), seed: int = 0, progress: bool = True) -> dict:
    """The baseline in the same cell, on the same planned episodes as the VLA's
    evaluation (same seed -> same objects, bins and scenes), with the same metrics."""
    plans = plan_episodes(object_names, episodes_per_object, n_items, seed)
    model.eval()
    return summarize_baseline([run_baseline_episode(model, env, plan)
                               for plan in tqdm(plans, desc="baseline eval", disable=not progress)])
