"""Notebook 03 — the grasp-pose baseline (Section 3.3): no language, no memory, no world model."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from novapick.backbones import RESNET18_DIM, freeze, load_resnet18

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POSE_DIM = 7  # (x, y, z, roll, pitch, yaw, gripper_width), each scaled to [-1, 1]


def depth_cnn(out_dim: int = 128) -> nn.Sequential:
    """Depth (B, 1, H, W) -> (B, out_dim): three stride-2 3x3 convs 1 -> 32 -> 64 -> 128
    with batch norm, then global average pooling."""
    layers: list[nn.Module] = []
    channels = [1, 32, 64, out_dim]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class GraspBaseline(nn.Module):
    """Frozen ResNet-18 (RGB, 512-d) + small depth CNN (128-d) -> MLP -> 7-d grasp pose.

    Pretrained ImageNet weights load where torchvision can download them; otherwise the
    same architecture starts from random weights (with a warning), see
    :mod:`novapick.backbones`. ``freeze_backbone`` (default: freeze only pretrained
    weights, the case study's design) decides whether the ResNet trains: a frozen
    *random* ResNet extracts nothing useful (measured offline: 0 % picks), so without
    the download it trains with the rest and the baseline stays a real baseline.
    """

    def __init__(self, pretrained: bool = True, freeze_backbone: bool | None = None):
        super().__init__()
        backbone, self.pretrained = load_resnet18(pretrained)
        self.frozen = self.pretrained if freeze_backbone is None else freeze_backbone
        self.rgb_encoder = freeze(backbone) if self.frozen else backbone
        self.depth_encoder = depth_cnn(128)
        self.head = nn.Sequential(
            nn.Linear(RESNET18_DIM + 128, 256), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, POSE_DIM), nn.Tanh(),  # every pose entry is normalised to [-1, 1]
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "GraspBaseline":
        super().train(mode)
        if self.frozen:
            self.rgb_encoder.eval()  # frozen: its batch-norm statistics must not drift
        return self

    def rgb_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, H, W) in [0, 1] -> ResNet-18 features (B, 512), no gradient if frozen."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.rgb_encoder((rgb - self.mean) / self.std)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, H, W) in [0, 1], depth (B, 1, H, W) -> grasp pose (B, 7) in [-1, 1]."""
        if rgb.ndim != 4 or rgb.shape[1] != 3 or depth.shape[1:2] != (1,) or depth.shape[0] != rgb.shape[0]:
            raise ValueError(f"expected rgb (B, 3, H, W) and depth (B, 1, H, W), got {tuple(rgb.shape)} "
                             f"and {tuple(depth.shape)}")
        return self.pose_from_features(self.rgb_features(rgb), depth)

    def pose_from_features(self, visual: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """ResNet features (B, 512) and depth (B, 1, H, W) -> grasp pose (B, 7); training
        calls it directly with cached features when the backbone is frozen."""
        return self.head(torch.cat([visual, self.depth_encoder(depth)], dim=1))  # (B, 640) -> (B, 7)


# ---- training and closed-loop execution ---------------------------------------------------
def baseline_samples(store, first_frames: int = 3) -> np.ndarray:
    """Rows of the first frames of every successful episode: the camera still sees the bin
    from the home pose, and the target is the expert's planned grasp pose."""
    ok = store.success.astype(bool) & (store.frame_index < first_frames)
    return np.flatnonzero(ok)


def train_baseline(data_dirs: list[str], steps: int = 600, batch_size: int = 32, lr: float = 1e-3,
                   seed: int = 0, pretrained: bool = True, progress: bool = True) -> tuple["GraspBaseline", dict]:
    """Train the pose head with MSE against the expert's grasp poses (Section 3.3).

    A frozen ResNet-18's features are computed once and cached (the backbone never
    changes), so only the depth CNN and the MLP train; an unfrozen one (no pretrained
    weights, see :class:`GraspBaseline`) trains with them."""
    import time

    from tqdm import tqdm

    from novapick.data.dataset import EpisodeStore
    from novapick.data.schema import DEPTH_MAX_M, DEPTH_SCALE_M

    torch.manual_seed(seed)
    store = EpisodeStore(data_dirs)
    rows = baseline_samples(store)
    rgb = torch.from_numpy(store.rgb[rows]).float() / 255
    depth = (torch.from_numpy(store.depth[rows].astype(np.float32)) * (DEPTH_SCALE_M / DEPTH_MAX_M)).clamp(0, 1)
    target = torch.from_numpy(store.grasp_pose[rows])
    model = GraspBaseline(pretrained=pretrained)
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
def run_baseline_episode(model: "GraspBaseline", env, plan: dict) -> dict:
    """One planned episode (see ``solutions.evaluation.plan_episodes``): predict one grasp
    pose from the first wrist image and execute it with the scripted motion (approach,
    descend, grasp, lift). Returns the final info."""
    from novapick.data.schema import DEPTH_MAX_M
    from novapick.sim.expert import PoseExpert

    options = {"object": plan["object"], "split": env.unwrapped.catalog.get(plan["object"]).split,
               "n_items": plan["n_items"]}
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
    from novapick.metrics import summarize_episodes

    summary = summarize_episodes(infos)
    names = dict.fromkeys(i["object_name"] for i in infos)
    summary["per_object_success"] = {n: float(np.mean([i["success"] for i in infos if i["object_name"] == n]))
                                     for n in names}
    return summary


def evaluate_baseline(model: "GraspBaseline", env, object_names: list[str], episodes_per_object: int = 1,
                      n_items: tuple[int, int] = (1, 5), seed: int = 0, progress: bool = True) -> dict:
    """The baseline in the same cell, on the same planned episodes as the VLA's
    evaluation (same seed -> same objects, bins and scenes), with the same metrics."""
    from tqdm import tqdm

    from solutions.evaluation import plan_episodes

    plans = plan_episodes(object_names, episodes_per_object, n_items, seed)
    model.eval()
    return summarize_baseline([run_baseline_episode(model, env, plan)
                               for plan in tqdm(plans, desc="baseline eval", disable=not progress)])
