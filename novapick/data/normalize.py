"""Normalisation statistics, computed on the training split and saved beside the data."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from novapick.sim.robot import ARM_MAX_VELOCITY


@dataclass
class NormStats:
    """Per-joint statistics. Angles map [min, max] -> [-1, 1]; velocities are divided by
    the joint's velocity limit; actions are already normalised by the simulator."""

    joint_min: list[float]
    joint_max: list[float]
    velocity_scale: list[float]
    action_mean: list[float]
    action_std: list[float]
    frames: int
    action_min: list[float] | None = None   # per-dimension range: flow matching works on
    action_max: list[float] | None = None   # actions rescaled to [-1, 1] (see ActionScaler)

    @classmethod
    def from_arrays(cls, proprio: np.ndarray, actions: np.ndarray) -> "NormStats":
        """proprio (N, 14), actions (N, 10) of the training split."""
        if len(proprio) == 0:
            raise ValueError("cannot compute normalisation statistics from zero frames")
        return cls(joint_min=proprio[:, :7].min(0).tolist(), joint_max=proprio[:, :7].max(0).tolist(),
                   velocity_scale=ARM_MAX_VELOCITY.tolist(), action_mean=actions.mean(0).tolist(),
                   action_std=actions.std(0).tolist(), frames=int(len(proprio)),
                   action_min=actions.min(0).tolist(), action_max=actions.max(0).tolist())

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "NormStats":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: compute it with NormStats.from_arrays on the training "
                                    "split (make_dataloader does this on first use)")
        return cls(**json.loads(path.read_text()))

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.asarray(self.joint_min, np.float32), np.asarray(self.joint_max, np.float32)
        return lo, np.maximum(hi - lo, 1e-6)  # a joint that never moved: avoid dividing by 0

    def normalize_proprio(self, proprio: np.ndarray) -> np.ndarray:
        """(..., 14) raw -> angles in [-1, 1] on the training range, velocities / limits."""
        lo, span = self._range()
        out = np.array(proprio, dtype=np.float32, copy=True)
        out[..., :7] = 2 * (out[..., :7] - lo) / span - 1
        out[..., 7:] = out[..., 7:] / np.asarray(self.velocity_scale, np.float32)
        return out

    def unnormalize_proprio(self, normalized: np.ndarray) -> np.ndarray:
        """Exact inverse of :meth:`normalize_proprio`."""
        lo, span = self._range()
        out = np.array(normalized, dtype=np.float32, copy=True)
        out[..., :7] = (out[..., :7] + 1) / 2 * span + lo
        out[..., 7:] = out[..., 7:] * np.asarray(self.velocity_scale, np.float32)
        return out
