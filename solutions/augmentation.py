"""Notebook 01 — data augmentation (Section 3.1). The answer to its TODO."""
from __future__ import annotations

import re

import torch
import torchvision.transforms.functional as TF

JITTER = 0.2              # brightness, contrast, saturation factors in 1 +- 0.2 (3.1, requirement 1)
CROP_SCALE = (0.8, 1.0)   # the crop keeps 80-100 % of the image area (requirement 2)
FLIP_P = 0.5              # horizontal flip probability (requirement 3)
DEPTH_NOISE_STD = 0.01    # Gaussian depth sensor noise, normalised units (requirement 4)

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """'the red bottle on the left' -> 'the red bottle on the right' (whole words only,
    case kept): a mirrored image must come with a mirrored instruction."""
    def swap(match: re.Match) -> str:
        word = match.group(0)
        new = "right" if word.lower() == "left" else "left"
        return new.capitalize() if word[0].isupper() else new
    return _SIDE.sub(swap, text)


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()))


def augment_observation(rgb: torch.Tensor, depth: torch.Tensor,
                        language: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Augment one observation; the output has the input's shapes.

    Args:
        rgb: (3, H, W) in [0, 1] (H = W = 224 in the full profile).
        depth: (1, H, W) in [0, 1]; 0 marks an invalid pixel.
        language: the instruction.

    Returns:
        (rgb, depth, language): colour-jittered RGB (brightness, contrast, saturation
        +-0.2); the SAME random crop (scale 0.8-1.0 of the area, resized back) and the
        SAME horizontal flip (p = 0.5) on both images, with left/right swapped in the
        instruction when flipped; depth with N(0, 0.01) sensor noise on valid pixels.
        Random draws come from torch's global generator (``torch.manual_seed`` repeats them).
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected rgb of shape (3, H, W), got {tuple(rgb.shape)}")
    if depth.ndim != 3 or depth.shape[0] != 1 or depth.shape[1:] != rgb.shape[1:]:
        raise ValueError(f"expected depth of shape (1, {rgb.shape[1]}, {rgb.shape[2]}), got {tuple(depth.shape)}")
    height, width = rgb.shape[1:]

    # 1. Colour jitter on RGB only: warehouse lighting varies, depth does not see it.
    rgb = TF.adjust_brightness(rgb, _uniform(1 - JITTER, 1 + JITTER))
    rgb = TF.adjust_contrast(rgb, _uniform(1 - JITTER, 1 + JITTER))
    rgb = TF.adjust_saturation(rgb, _uniform(1 - JITTER, 1 + JITTER))

    # 2. One crop for both modalities: draw the box once, apply it twice.
    area = height * width * _uniform(*CROP_SCALE)
    aspect = _uniform(3 / 4, 4 / 3)
    crop_h = min(height, int(round((area / aspect) ** 0.5)))
    crop_w = min(width, int(round((area * aspect) ** 0.5)))
    top = int(torch.randint(0, height - crop_h + 1, ()))
    left = int(torch.randint(0, width - crop_w + 1, ()))
    rgb = TF.resized_crop(rgb, top, left, crop_h, crop_w, [height, width], antialias=True)
    # Nearest neighbour for depth: interpolating would invent depths between an object
    # and the floor, and smear invalid (0) pixels into valid ones.
    depth = TF.resized_crop(depth, top, left, crop_h, crop_w, [height, width],
                            interpolation=TF.InterpolationMode.NEAREST)

    # 3. The same horizontal flip for both, and the words follow the pixels.
    if torch.rand(()) < FLIP_P:
        rgb, depth, language = TF.hflip(rgb), TF.hflip(depth), swap_left_right(language)

    # 4. Sensor noise on valid depth only (an invalid pixel stays exactly 0).
    noisy = (depth + DEPTH_NOISE_STD * torch.randn_like(depth)).clamp(1e-4, 1.0)
    return rgb.clamp(0.0, 1.0), torch.where(depth > 0, noisy, torch.zeros_like(depth)), language
