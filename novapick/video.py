"""Saving rollout videos (GIF everywhere; MP4 when imageio-ffmpeg is available)."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def save_video(frames: list[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    """Write (H, W, 3) uint8 frames to ``path`` (.gif or .mp4) and return the path."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, [np.asarray(f, np.uint8) for f in frames], duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(path, [np.asarray(f, np.uint8) for f in frames], fps=fps, macro_block_size=1)
    return path


def caption(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """A 4-pixel coloured border: green for success, red for failure."""
    out = frame.copy()
    out[:4], out[-4:], out[:, :4], out[:, -4:] = colour, colour, colour, colour
    return out


def side_by_side(scene: np.ndarray, wrist_rgb: np.ndarray) -> np.ndarray:
    """Third-person frame (H, W, 3) uint8 next to the wrist image ((3, h, w) float in
    [0, 1], as the policy sees it), scaled up by pixel repetition to height H."""
    wrist = (np.asarray(wrist_rgb).transpose(1, 2, 0) * 255).round().astype(np.uint8)
    scale = max(1, scene.shape[0] // wrist.shape[0])
    wrist = wrist.repeat(scale, 0).repeat(scale, 1)
    pad = np.zeros((scene.shape[0], wrist.shape[1], 3), np.uint8)
    pad[:wrist.shape[0]] = wrist[:scene.shape[0]]
    return np.concatenate([scene, pad], axis=1)
