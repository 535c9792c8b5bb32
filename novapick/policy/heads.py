"""Heads and losses the reference model adds beyond the case study (the harness's).

Section 3.4's components are the encoder, the RSSM and the flow head; Section 2's loss
also needs a grasp-confidence head. What else is here is what the reference policy uses
to work on a CPU budget (``docs/contract.md``, "Extensions"): action standardisation,
grasp-pose heads read by the controller, and a grounding loss on the encoder's
language attention. A student's components never need to implement any of it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from novapick.layers import mlp

POSE_FEATURES = 8       # grasp pose with yaw as (sin 2yaw, cos 2yaw), see grasp_pose_features


class GraspSuccessHead(nn.Module):
    """Grasp confidence per action chunk: conditioning [h, z_flat, obs] (B, 1792) -> logit (B,).
    Trained with binary cross-entropy on the grasp outcome (Section 2, loss 3)."""

    def __init__(self, cond_dim: int = 1792, dropout: float = 0.1):
        super().__init__()
        self.net = mlp([cond_dim, 256, 1], dropout)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition).squeeze(-1)



class ActionScaler(nn.Module):
    """Standardises each action dimension with the training split's mean and std, and back.

    Why: flow matching starts from N(0, I) noise. The expert's joint velocities have a
    std of only ~0.05-0.25 of the limit, so in raw units (or min-max scaled, where rare
    fast moves set the range) an imperfect velocity field leaves noise-sized errors that
    are larger than the signal. Standardised, every dimension has unit spread and the
    same field error becomes a small error in joint space. The statistics are buffers:
    they travel with the checkpoint."""

    MIN_STD = 1e-2  # a dimension that (almost) never varies must not blow up

    def __init__(self, dim: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=self.MIN_STD))

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.mean) / self.std

    def unnormalize(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled * self.std + self.mean


def grasp_pose_features(pose: torch.Tensor) -> torch.Tensor:
    """The 7-d grasp pose (x, y, z, roll, pitch, yaw, width), each in [-1, 1], as the 8
    regression targets of the pose head: yaw becomes (sin 2yaw, cos 2yaw) because a
    two-finger jaw is the same grasp after a half turn, and a raw angle would jump from
    +1 to -1 there. (..., 7) -> (..., 8)."""
    yaw = pose[..., 5] * math.pi
    return torch.cat([pose[..., :5], torch.stack([torch.sin(2 * yaw), torch.cos(2 * yaw)], -1),
                      pose[..., 6:7]], -1)


class GraspPoseHead(nn.Module):
    """Auxiliary head: observation embedding (B, obs_embed_dim) -> the expert's planned
    grasp pose as :func:`grasp_pose_features` (B, 8).

    Why (goes beyond the case study): with the flow loss alone, the only signal that
    reaches the encoder is the action error, a weak and indirect signal for *where* the
    named item is and how to hold it. A flow head given the true grasp pose picks far
    more items in closed loop (benchmarks/bench_privileged_policy.py), so the embedding is
    asked to contain exactly that: the Section 3.3 baseline's output, predicted from the
    same pixels and instruction.
    Targets are standardised with the training split's statistics (buffers). The same
    class, trained on the hand-relative pose from the pixels alone, is the model's
    'hand_pose_head' (see :func:`novapick.policy.model.encode`)."""

    def __init__(self, obs_embed_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = mlp([obs_embed_dim, 256, POSE_FEATURES], dropout)
        self.register_buffer("mean", torch.zeros(POSE_FEATURES))
        self.register_buffer("std", torch.ones(POSE_FEATURES))

    def set_stats(self, poses: np.ndarray) -> None:
        feats = grasp_pose_features(torch.as_tensor(poses, dtype=torch.float32))
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp(min=1e-2))

    def standardise(self, pose: torch.Tensor) -> torch.Tensor:
        """Poses (B, 7) -> the targets: standardised :func:`grasp_pose_features` (B, 8)."""
        return (grasp_pose_features(pose) - self.mean) / self.std

    def forward(self, obs_embed: torch.Tensor) -> torch.Tensor:
        """Standardised pose features (B, 8)."""
        return self.net(obs_embed)

    def loss(self, obs_embed: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """MSE in standardised units over the frames whose pose is known (not all zeros)."""
        return self.prediction_loss(self(obs_embed), pose)

    def prediction_loss(self, predicted: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` for an already computed prediction (B, 8) against poses (B, 7)."""
        known = (pose.abs().sum(-1) > 0).float()
        error = (predicted - self.standardise(pose)).pow(2).mean(-1)
        return (error * known).sum() / known.sum().clamp(min=1.0)


class GraspPointHead(nn.Module):
    """Where the grasp is, seen from the hand: the offset (dx, dy) of
    :func:`novapick.sim.expert.hand_relative_pose`, standardised like the hand-relative
    pose head's first two features, read off the patches the instruction attends to.

    Every patch token (with its centre in the image) proposes the offset the grasp would
    have if the named item were at that patch; the language attention weighs the
    proposals. Why (beyond the case study): the offset is a visual-servoing quantity,
    "how far, and which way, is the item from the image's grasp point", which a patch
    knows from its position and depth; a pooled embedding has to carry it through two
    attention layers. Given the true offset instead of its estimate, the same controller
    picks markedly more (benchmarks/bench_oracle_perception.py, docs/experiments.md)."""

    def __init__(self, token_dim: int, dropout: float = 0.1):
        super().__init__()
        self.net = mlp([token_dim + 2, 64, 2], dropout)

    def forward(self, patch_tokens: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """patch_tokens (B, N, D), attention (B, N) over a square grid -> (B, 2)."""
        grid = math.isqrt(attention.shape[1])
        centres = patch_centres(grid, attention)
        uv = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).view(1, -1, 2)  # (1, N, 2): u, v
        proposals = self.net(torch.cat([patch_tokens, uv.expand(len(patch_tokens), -1, -1)], -1))  # (B, N, 2)
        return (attention[..., None] * proposals).sum(1)


def patch_centres(grid: int, like: torch.Tensor) -> torch.Tensor:
    """Centres of ``grid`` patches along one image axis in [-1, 1] image coordinates (the
    convention of ``target_uv``), on ``like``'s device and dtype. (grid,)"""
    return (torch.arange(grid, device=like.device, dtype=like.dtype) + 0.5) / grid * 2 - 1


def grounding_loss(attention: torch.Tensor, target_uv: torch.Tensor, grid: int) -> torch.Tensor:
    """Cross-entropy between where the language query looks and where the named item is.

    attention (B, N): the language query's attention over the grid x grid patches (rows
    from the top); target_uv (B, 3): the target centre's image position (u, v) in [-1, 1]
    and an in-view flag (frames without the target in view, or without the label, are
    skipped). The target map is a Gaussian of one patch width around (u, v).

    Why (beyond the case study): it answers the notebook's thought question ("which
    patches should receive the most attention?") with supervision. Without it the
    encoder must discover *which* item the words mean from the action error alone, and
    within a CPU budget it learns a shortcut instead (follow the arm), not grounding.
    """
    centres = patch_centres(grid, attention)
    du = (centres[None, None, :] - target_uv[:, 0, None, None]) ** 2      # (B, 1, grid) columns
    dv = (centres[None, :, None] - target_uv[:, 1, None, None]) ** 2      # (B, grid, 1) rows
    sigma = 2.0 / grid
    target = torch.exp(-(du + dv) / (2 * sigma ** 2)).flatten(1)          # (B, N)
    target = target / target.sum(-1, keepdim=True)
    ce = -(target * attention.clamp(min=1e-6).log()).sum(-1)
    seen = target_uv[:, 2]
    return (ce * seen).sum() / seen.sum().clamp(min=1.0)


def attention_centre(attention: torch.Tensor, grid: int) -> torch.Tensor:
    """Where an attention map over grid x grid patches (N, grid*grid) looks: its centre
    of mass (u, v) in [-1, 1], the same image coordinates as ``target_uv``, and its
    peak weight (how sure it is). (N, 3)"""
    centres = patch_centres(grid, attention)
    maps = attention.view(-1, grid, grid)                                  # rows from the top
    u = (maps.sum(1) * centres).sum(-1)
    v = (maps.sum(2) * centres).sum(-1)
    return torch.stack([u, v, attention.max(-1).values], -1)
