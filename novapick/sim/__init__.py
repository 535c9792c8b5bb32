"""The simulated NovaPick cell: a Franka Panda with a hybrid gripper over a bin of items.

Quick start::

    from novapick.sim import make_env
    env = make_env(image_size=96)
    obs, info = env.reset(seed=0, options={"split": "known", "n_items": 5})
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample().clip(-1, 1))

The environment is also registered with Gymnasium as ``NovaPick-v0``.
"""
from __future__ import annotations

import gymnasium as gym

from novapick.sim.env import NovaPickEnv

ENV_ID = "NovaPick-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="novapick.sim.env:NovaPickEnv")


def make_env(image_size: int | tuple[int, int] = 96, **kwargs) -> NovaPickEnv:
    """Create the cell directly (no Gymnasium wrappers), e.g. ``make_env(96, n_items=5)``."""
    return NovaPickEnv(image_size=image_size, **kwargs)


__all__ = ["ENV_ID", "NovaPickEnv", "make_env"]
