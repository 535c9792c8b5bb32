"""Notebook 02 — dataset statistics with streaming (Welford) moments (Section 3.2)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader

DEPTH_VALID_THRESHOLD = 0.01   # normalised depth below this is an invalid measurement
ANOMALY_ACTION_STD = 0.01      # an episode whose actions barely vary: the robot did not move


class Welford:
    """Streaming mean / variance per feature, merged batch by batch (Chan et al.), so
    the whole dataset never needs to be in memory and the result equals numpy's."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def update(self, x: np.ndarray) -> None:
        """x: (N, dim) new samples."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.mean.shape[0])
        if len(x) == 0:
            return
        n_b, mean_b = len(x), x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        delta, total = mean_b - self.mean, self.n + n_b
        self.mean = self.mean + delta * n_b / total
        self.m2 = self.m2 + m2_b + delta ** 2 * self.n * n_b / total
        self.n = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof = 0, like ``np.std``)."""
        return np.sqrt(self.m2 / max(self.n, 1))


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(depth, actions, episode ids or None) from a tuple or dict batch."""
    if isinstance(batch, dict):
        return batch["depth"], batch["actions"], batch.get("episode_index")
    if not isinstance(batch, (tuple, list)) or len(batch) < 5:
        raise ValueError("expected batches of (rgb, depth, language, actions, proprioception[, ...]) "
                         f"or a dict with 'depth' and 'actions', got {type(batch).__name__}")
    extra = batch[-1] if isinstance(batch[-1], dict) else {}
    return batch[1], batch[3], extra.get("episode_index")


def compute_dataset_statistics(dataloader: DataLoader) -> dict:
    """Statistics over the whole dataset in one streaming pass.

    Batches: (rgb, depth, language, actions, proprioception[, ...]) with actions
    (B, 10) or chunks (B, T, 10) (the first step is used), or a dict. Episode lengths and
    anomalies need an ``episode_index`` (B,) per sample (dict key, or in a trailing dict).

    Returns: action_mean (7,), action_std (7,) over the joint-velocity part;
    episode_lengths (list); depth_valid_fraction (one per sample, pixels > 0.01);
    num_anomalous_episodes (episodes whose joint actions have std < 0.01).
    """
    joints = Welford(7)
    per_episode: dict[int, Welford] = defaultdict(lambda: Welford(7))
    lengths: dict[int, int] = defaultdict(int)
    valid_fraction: list[float] = []
    for batch in dataloader:
        depth, actions, episodes = _unpack(batch)
        actions = actions[:, 0] if actions.ndim == 3 else actions
        if actions.shape[-1] < 7:
            raise ValueError(f"expected actions (B, 10) or (B, T, 10), got {tuple(actions.shape)}")
        joint_actions = actions[:, :7].detach().cpu().double().numpy()
        joints.update(joint_actions)
        fraction = (depth > DEPTH_VALID_THRESHOLD).flatten(1).float().mean(1)
        valid_fraction += fraction.tolist()
        if episodes is not None:
            for ep, row in zip(torch.as_tensor(episodes).tolist(), joint_actions):
                lengths[int(ep)] += 1
                per_episode[int(ep)].update(row[None])
    anomalous = sum(int(w.std.mean() < ANOMALY_ACTION_STD) for w in per_episode.values())
    return {
        "action_mean": joints.mean.astype(np.float32),
        "action_std": joints.std.astype(np.float32),
        "episode_lengths": [lengths[k] for k in sorted(lengths)],
        "depth_valid_fraction": valid_fraction,
        "num_anomalous_episodes": anomalous,
    }
