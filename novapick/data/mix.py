"""The course's curated data mix, one config (Section 3.1).

The full profile trains on synthetic + DROID + fractal (the case study's 10K DROID and
5K Google Robot episodes, scaled by `scale`); the quick profile on synthetic only.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataMix:
    """Which datasets to generate/load, and where. Paths are relative to the data root."""

    synthetic_episodes: int = 300
    synthetic_split: str = "known"
    droid_episodes: int = 0
    fractal_episodes: int = 0
    image_size: int = 96
    seed: int = 0
    root: str = "data"
    extra_dirs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if min(self.synthetic_episodes, self.droid_episodes, self.fractal_episodes) < 0:
            raise ValueError("episode counts must be >= 0")
        if self.synthetic_episodes == 0:
            raise ValueError("the synthetic split is the training split (normalisation statistics): need > 0 episodes")

    def directories(self) -> list[str]:
        """Dataset directories in loading order (the first defines the normalisation)."""
        dirs = [f"{self.root}/synthetic_{self.synthetic_split}_{self.image_size}px_s{self.seed}"]
        if self.droid_episodes:
            dirs.append(f"{self.root}/droid_{self.image_size}px")
        if self.fractal_episodes:
            dirs.append(f"{self.root}/fractal_{self.image_size}px")
        return dirs + list(self.extra_dirs)


MIXES = {
    "quick": DataMix(synthetic_episodes=300, image_size=96),
    "full": DataMix(synthetic_episodes=20_000, droid_episodes=10_000, fractal_episodes=5_000, image_size=224),
}
