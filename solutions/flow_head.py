"""Notebook 04c — the flow-matching action head (Section 3.4, component 3).

A velocity field v(a_t, t, c) is trained to move noise a_0 ~ N(0, I) (t = 0) straight to
the demonstrated chunk a_1 (t = 1): along a_t = (1 - t) a_0 + t a_1 the velocity is
constant, a_1 - a_0. At inference, 10 Euler steps integrate it from fresh noise and the
chunk is clipped to [-1, 1].

This is the case study's head exactly: the MLP outputs the velocity. The reference
policy reads the same network as a clean-chunk predictor instead, an extension the
harness applies around any head (``novapick.policy.flow``, taught in notebook 04's
"going further" cell).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from novapick.layers import mlp

TIME_EMBED_DIM = 128
ACTION_LIMIT = 1.0          # Section 3.4 hint: clip final actions to [-1, 1]


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
        if timestep.shape != (B,):
            raise ValueError(f"expected timestep of shape ({B},) or a scalar, got {tuple(timestep.shape)}")
        x = torch.cat([noisy_actions.flatten(1), sinusoidal_embedding(timestep), condition], dim=-1)
        return self.net(x).view(B, self.action_chunk_size, self.action_dim)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, num_steps: int = 10) -> torch.Tensor:
        """Euler-integrate from a_0 ~ N(0, I) at t = 0 to t = 1 and clip to [-1, 1].
        condition (B, 1792) -> actions (B, 16, 10)."""
        B = condition.shape[0]
        a = torch.randn(B, self.action_chunk_size, self.action_dim, device=condition.device)
        dt = 1.0 / num_steps
        for k in range(num_steps):
            t = torch.full((B,), k * dt, device=condition.device)
            a = a + dt * self(a, t, condition)
        return a.clamp(-ACTION_LIMIT, ACTION_LIMIT)
