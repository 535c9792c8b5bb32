"""Notebook 01 — data augmentation (Section 3.1)."""
from __future__ import annotations

import re

import torch
import torchvision.transforms.functional as TF

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """'the red bottle on the left' -> 'the red bottle on the right' (whole words only,
    case kept): a mirrored image must come with a mirrored instruction."""
    def swap(match: re.Match) -> str:
        word = match.group(0)
        new = "right" if word.lower() == "left" else "left"
        return new.capitalize() if word[0].isupper() else new
    return _SIDE.sub(swap, text)


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


def augment_observation(rgb: torch.Tensor, depth: torch.Tensor,
                        language: str, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Augment one observation; the output has the input's shapes.

    Args:
        rgb: (3, H, W) in [0, 1] (H = W = 224 in the full profile).
        depth: (1, H, W) in [0, 1]; 0 marks an invalid pixel.
        language: the instruction.
        generator: optional ``torch.Generator`` for reproducible augmentation.

    Returns:
        (rgb, depth, language): colour-jittered RGB (brightness, contrast, saturation
        +-0.2); the SAME random crop (scale 0.8-1.0, resized back) and the SAME
        horizontal flip (p = 0.5) on both images, with left/right swapped in the
        instruction when flipped; depth with N(0, 0.01) sensor noise on valid pixels.
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected rgb of shape (3, H, W), got {tuple(rgb.shape)}")
    if depth.ndim != 3 or depth.shape[0] != 1 or depth.shape[1:] != rgb.shape[1:]:
        raise ValueError(f"expected depth of shape (1, {rgb.shape[1]}, {rgb.shape[2]}), got {tuple(depth.shape)}")
    height, width = rgb.shape[1:]

    def uniform(low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand((), generator=generator))

    # 1. Colour jitter (RGB only): warehouse lighting varies; order fixed for reproducibility.
    brightness, contrast, saturation = (torch.tensor(uniform(0.8, 1.2)) for _ in range(3))
    rgb = colour_jitter(rgb, brightness, contrast, saturation)

    # 2. One crop for both modalities: draw the parameters once, apply twice.
    area = height * width * uniform(0.8, 1.0)
    aspect = uniform(3 / 4, 4 / 3)
    crop_h = min(height, int(round((area / aspect) ** 0.5)))
    crop_w = min(width, int(round((area * aspect) ** 0.5)))
    top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
    rgb = TF.resized_crop(rgb, top, left, crop_h, crop_w, [height, width], antialias=True)
    # Nearest neighbour for depth: interpolating would invent depths between an object
    # and the floor, and smear invalid (0) pixels into valid ones.
    depth = TF.resized_crop(depth, top, left, crop_h, crop_w, [height, width],
                            interpolation=TF.InterpolationMode.NEAREST)

    # 3. The same horizontal flip for both, and the words follow the pixels.
    if torch.rand((), generator=generator) < 0.5:
        rgb, depth, language = TF.hflip(rgb), TF.hflip(depth), swap_left_right(language)

    # 4. Sensor noise on valid depth only (invalid stays exactly 0, still countable).
    return rgb, add_depth_noise(depth, 0.01, generator), language

