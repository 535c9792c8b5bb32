"""Notebook 03 — the grasp-pose baseline (Section 3.3): no language, no memory, no world model.

Training it on the expert's poses and executing its pose with the scripted motion are
the harness's (:mod:`novapick.evaluate.baseline`)."""
from __future__ import annotations

import torch
from torch import nn

from novapick.backbones import IMAGENET_MEAN, IMAGENET_STD, RESNET18_DIM, freeze, load_resnet18

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
