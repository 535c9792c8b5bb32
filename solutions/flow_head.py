"""Notebook 04c — the flow-matching action head (Section 3.4, component 3).

A velocity field v(a_t, t, c) is trained to move noise a_0 ~ N(0, I) (t = 0) straight to
the demonstrated chunk a_1 (t = 1): along a_t = (1 - t) a_0 + t a_1 the velocity is
constant, a_1 - a_0. At inference, 10 Euler steps integrate it from fresh noise.

Parametrisation ("x-prediction, v-loss"): the network predicts the clean chunk
x̂ = D(a_t, t, c) and the velocity is derived from it, v = (x̂ - a_t) / (1 - t). The
loss is still the MSE on the velocity. Why: a network that outputs v directly must copy
the 160-d noise a_0 through itself (v = a_1 - a_0) with high precision, otherwise its
samples stay noisy; D only has to say where the chunk is going. For narrow, nearly
deterministic action distributions (a scripted expert) this trains many times faster.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from solutions.rssm import mlp

TIME_EMBED_DIM = 128
MIN_REMAINING_TIME = 0.05   # 1 - t is clipped here when dividing: the weight stays finite near t = 1


def sinusoidal_embedding(t: torch.Tensor, dim: int = TIME_EMBED_DIM, max_period: float = 1000.0) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, dim): [sin(t f_k), cos(t f_k)] for geometric frequencies f_k."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half) * max_period
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowMatchingActionHead(nn.Module):
    """MLP velocity field over flattened chunks: [a_t (160), t_emb (128), c (1792)] ->
    1024 -> 512 -> 256 -> 160, reshaped to (B, 16, 10)."""

    def __init__(self, action_chunk_size: int = 16, action_dim: int = 10,
                 cond_dim: int = 1792):
        super().__init__()
        self.action_chunk_size = action_chunk_size
        self.action_dim = action_dim
        self.cond_dim = cond_dim
        flat = action_chunk_size * action_dim
        self.net = mlp([flat + TIME_EMBED_DIM + cond_dim, 1024, 512, 256, flat])

    def forward(self, noisy_actions: torch.Tensor, timestep: torch.Tensor,
                condition: torch.Tensor) -> torch.Tensor:
        """noisy_actions (B,16,10), timestep (B,) in [0,1], condition (B,1792) -> velocity (B,16,10)."""
        B = noisy_actions.shape[0]
        if noisy_actions.shape[1:] != (self.action_chunk_size, self.action_dim):
            raise ValueError(f"expected noisy_actions (B, {self.action_chunk_size}, {self.action_dim}), "
                             f"got {tuple(noisy_actions.shape)}")
        if condition.shape != (B, self.cond_dim):
            raise ValueError(f"expected condition ({B}, {self.cond_dim}), got {tuple(condition.shape)}")
        timestep = timestep.expand(B) if timestep.ndim == 0 else timestep
        clean = self.predict_clean(noisy_actions, timestep, condition)
        remaining = (1 - timestep).clamp(min=MIN_REMAINING_TIME)[:, None, None]
        return (clean - noisy_actions) / remaining

    def predict_clean(self, noisy_actions: torch.Tensor, timestep: torch.Tensor,
                      condition: torch.Tensor) -> torch.Tensor:
        """The network's estimate of the clean chunk a_1: (B,16,10), (B,), (B,1792) -> (B,16,10)."""
        x = torch.cat([noisy_actions.flatten(1), sinusoidal_embedding(timestep), condition], dim=-1)
        return self.net(x).view(-1, self.action_chunk_size, self.action_dim)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, num_steps: int = 10,
               noise: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Euler-integrate from a_0 ~ N(0, I) (or the given ``noise``) to t = 1.
        condition (B, 1792) -> actions (B, 16, 10) in the space the head was trained in
        (the policy un-standardises them and clips joint velocities to their limits)."""
        B = condition.shape[0]
        shape = (B, self.action_chunk_size, self.action_dim)
        a = noise if noise is not None else torch.randn(shape, generator=generator, device=condition.device)
        dt = 1.0 / num_steps
        for k in range(num_steps):
            t = torch.full((B,), k * dt, device=condition.device)
            a = a + dt * self(a, t, condition)
        return a


def flow_matching_loss(head: nn.Module, actions: torch.Tensor, condition: torch.Tensor,
                       pad_mask: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, weighting: str = "uniform") -> torch.Tensor:
    """|| v(a_t, t, c) - (a_1 - a_0) ||^2 with t ~ U(0, 1), a_0 ~ N(0, I), mean over valid
    steps. actions (B,16,10) = a_1; pad_mask (B,16) True where the chunk ran past the
    episode end (those steps carry no target).

    ``weighting``: "uniform" is the case study's loss as written. "x" weights each sample
    by (1 - t)^2, which turns the velocity error into the error of the predicted clean
    chunk, ||x̂ - a_1||^2 (a weighted flow-matching loss with the same minimiser). Why it
    matters: unweighted, samples near t = 1 get weights up to 1 / 0.05^2 and the head spends
    its capacity copying a_t there; on the expert's chunks the "x" weighting reached a
    4-5x lower action error in the same number of steps (see docs/experiments.md)."""
    if weighting not in ("uniform", "x"):
        raise ValueError(f"weighting must be 'uniform' or 'x', got {weighting!r}")
    noise = torch.randn(actions.shape, generator=generator, device=actions.device)
    t = torch.rand(actions.shape[0], generator=generator, device=actions.device)
    a_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
    error = (head(a_t, t, condition) - (actions - noise)).pow(2).mean(-1)      # (B, 16)
    if weighting == "x":
        error = error * (1 - t).clamp(min=MIN_REMAINING_TIME).pow(2)[:, None]
    if pad_mask is None:
        return error.mean()
    valid = (~pad_mask).float()
    return (error * valid).sum() / valid.sum().clamp(min=1.0)
