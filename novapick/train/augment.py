"""Training-time augmentation of the policy's windows (the harness's, not a TODO).

Notebook 01's ``augment_observation`` teaches crop, flip, jitter and depth noise on one
observation. The policy's training windows take only the label-preserving half of it
(lighting and sensor noise), batched: see :func:`augment_training_windows` for why.
"""
from __future__ import annotations

import torch
import torchvision.transforms.functional as TF


def colour_jitter(rgb: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                  saturation: torch.Tensor) -> torch.Tensor:
    """Brightness, then contrast, then saturation, as torchvision's ``adjust_*`` do, but
    with one factor per image so a whole batch is jittered at once.

    rgb (..., 3, H, W) in [0, 1]; each factor has rgb's leading shape (...) or is a
    scalar tensor (1 = unchanged). Clamped to [0, 1] after each step, like torchvision.
    Returns a new tensor (in-place steps after the first copy: it runs on every training
    batch)."""
    def per_image(factor: torch.Tensor) -> torch.Tensor:
        return factor.to(rgb)[..., None, None, None]

    out = (rgb * per_image(brightness)).clamp_(0.0, 1.0)
    mean = TF.rgb_to_grayscale(out).mean((-3, -2, -1), keepdim=True)  # contrast pivots on the mean grey
    out.sub_(mean).mul_(per_image(contrast)).add_(mean).clamp_(0.0, 1.0)
    gray = TF.rgb_to_grayscale(out)  # saturation pivots on each pixel's grey
    return out.sub_(gray).mul_(per_image(saturation)).add_(gray).clamp_(0.0, 1.0)


def add_depth_noise(depth: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, std) sensor noise on valid (> 0) pixels of normalised depth, any shape; an
    invalid pixel stays exactly 0 and a valid one stays valid (clamped to [1e-4, 1])."""
    noise = torch.randn(depth.shape, generator=generator).to(depth.device) * std
    return torch.where(depth > 0, (depth + noise).clamp(1e-4, 1.0), torch.zeros_like(depth))


def augment_training_windows(rgb: torch.Tensor, depth: torch.Tensor, jitter: float, depth_noise: float,
                             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-preserving augmentation of training windows for the policy.

    rgb (B, L, 3, H, W) in [0, 1]; depth (B, L, 1, H, W) normalised, 0 = invalid.
    Colour jitter with factors in [1 - jitter, 1 + jitter], one draw per window (every step
    of a window sees the same lighting, as in one real episode), and N(0, depth_noise)
    sensor noise on valid depth pixels, fresh per frame.

    Why not :func:`augment_observation`'s crop and flip: the actions are joint
    velocities towards where the item *is*. A crop moves the item in the image (at 30 cm
    a 4-pixel shift of a 64-pixel image is about 2 cm, twice the precision a grasp needs)
    and a flip mirrors it; the recorded action would no longer match the picture.
    Lighting and sensor noise change nothing the action depends on."""
    if rgb.ndim != 5 or rgb.shape[2] != 3:
        raise ValueError(f"expected rgb windows (B, L, 3, H, W), got {tuple(rgb.shape)}")
    if depth.shape != (*rgb.shape[:2], 1, *rgb.shape[3:]):
        raise ValueError(f"expected depth windows {(*rgb.shape[:2], 1, *rgb.shape[3:])}, got {tuple(depth.shape)}")
    B, L = rgb.shape[:2]
    if jitter > 0:
        factors = 1 + jitter * (2 * torch.rand(3, B, 1, generator=generator) - 1)   # (3, B, 1): per window
        rgb = colour_jitter(rgb, *(f.expand(B, L).to(rgb.device) for f in factors))
    if depth_noise > 0:
        depth = add_depth_noise(depth, depth_noise, generator)
    return rgb, depth
