"""Flow-matching extensions the harness applies around *any* flow head (beyond Section 3.4).

The case study's head outputs the velocity v(a_t, t, c) and is trained with the plain
MSE ||v - (a_1 - a_0)||^2 on one (a_0, t) draw per frame. The reference policy changes
three things, all here and all optional (``ModelConfig.extensions``):

* :class:`CleanChunkParametrization` ("x-prediction, v-loss"): the head's output is read
  as the *clean chunk* x̂ and the velocity derived from it, v = (x̂ - a_t) / (1 - t).
  A head that outputs v directly must copy the 160-d noise a_0 through itself
  (v = a_1 - a_0) with high precision, otherwise its samples stay noisy; reading the
  same network as x̂ it only has to say where the chunk is going. For the scripted
  expert's narrow, nearly deterministic chunks this trains several times faster.
* :func:`extended_flow_loss`: the velocity error weighted by (1 - t)^2 (the clean-chunk
  error ||x̂ - a_1||^2: same minimiser, no weight blow-up near t = 1), steps past the
  episode end masked out, and several (a_0, t) draws per frame (the head is cheap, the
  encoder is not).
* :func:`euler_sample`: integration from a chosen starting noise, so the policy can
  sample at temperature 0 (every replan starts from a_0 = 0, the most typical chunk).
"""
from __future__ import annotations

import torch
from torch import nn

MIN_REMAINING_TIME = 0.05   # 1 - t is clipped here when dividing: the weight stays finite near t = 1


class CleanChunkParametrization(nn.Module):
    """Wraps a flow head whose network is trained to output the clean chunk a_1.

    ``forward`` returns the implied velocity (B, 16, 10) so that Euler integration and
    the velocity loss work unchanged; ``sample`` integrates that velocity."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head
        self.action_chunk_size, self.action_dim = head.action_chunk_size, head.action_dim

    def predict_clean(self, noisy_actions: torch.Tensor, timestep: torch.Tensor,
                      condition: torch.Tensor) -> torch.Tensor:
        """The wrapped network's output read as the clean chunk: (B,16,10), (B,), (B,C) -> (B,16,10)."""
        return self.head(noisy_actions, timestep, condition)

    def forward(self, noisy_actions: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        timestep = timestep.expand(noisy_actions.shape[0]) if timestep.ndim == 0 else timestep
        clean = self.predict_clean(noisy_actions, timestep, condition)
        remaining = (1 - timestep).clamp(min=MIN_REMAINING_TIME)[:, None, None]
        return (clean - noisy_actions) / remaining

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, num_steps: int = 10, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Euler from ``noise`` (default N(0, I)) to t = 1: (B, C) -> (B, 16, 10), not clipped
        (the chunk is in standardised units; the policy un-standardises it)."""
        return euler_sample(self, condition, num_steps, noise, generator)


@torch.no_grad()
def euler_sample(velocity_field: nn.Module, condition: torch.Tensor, num_steps: int = 10,
                 noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Integrate da/dt = v(a, t, c) from a_0 = ``noise`` (or a draw from N(0, I)) at t = 0
    to t = 1 in ``num_steps`` Euler steps. condition (B, C) -> (B, 16, 10)."""
    B = condition.shape[0]
    shape = (B, velocity_field.action_chunk_size, velocity_field.action_dim)
    a = noise if noise is not None else torch.randn(shape, generator=generator, device=condition.device)
    if tuple(a.shape) != shape:
        raise ValueError(f"expected noise of shape {shape}, got {tuple(a.shape)}")
    dt = 1.0 / num_steps
    for k in range(num_steps):
        t = torch.full((B,), k * dt, device=condition.device)
        a = a + dt * velocity_field(a, t, condition)
    return a


def extended_flow_loss(head: nn.Module, actions: torch.Tensor, condition: torch.Tensor,
                       pad_mask: torch.Tensor | None = None, weighting: str = "x", samples: int = 1,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The flow-matching velocity MSE with the reference policy's options.

    actions (B, 16, 10) = a_1 (already standardised); condition (B, C); pad_mask (B, 16)
    True where the chunk ran past the episode end (no target there). ``weighting``:
    "uniform" (the case study's) or "x" (each sample weighted by (1 - t)^2, see the
    module docstring); ``samples`` (a_0, t) draws per frame. A scalar."""
    if weighting not in ("uniform", "x"):
        raise ValueError(f"weighting must be 'uniform' or 'x', got {weighting!r}")
    if samples > 1:
        actions, condition = actions.repeat(samples, 1, 1), condition.repeat(samples, 1)
        pad_mask = pad_mask.repeat(samples, 1) if pad_mask is not None else None
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
