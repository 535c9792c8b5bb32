"""Notebook 04b — the RSSM world model (Section 3.4, component 2).

State = deterministic h_t (B, 512), a GRU memory, + stochastic z_t (B, 32, 32): 32
categorical variables of 32 classes. The *posterior* q(z_t | h_t, o_t) sees the
observation; the *prior* p(z_t | h_t) must guess it from memory alone, which is what
imagination runs on.

Sampling z: the case study asks for a straight-through **Gumbel-softmax** sample
(temperature 1): the forward pass uses a hard one-hot sample from
softmax((logits + Gumbel noise) / tau), the backward pass the soft sample's gradient.
DreamerV3 instead samples the categorical directly (mixed with 1 % uniform) and uses the
plain straight-through estimator  z = onehot + p - sg(p). Both give one-hot forward
passes with low-variance biased gradients; we implement the case study's version.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from novapick.layers import mlp
from novapick.train.batch import GROUNDED_DIM


class RSSM(nn.Module):
    """Recurrent state-space model: GRU transition, prior, posterior, reward predictor.

    Beyond the case study's signature: ``hidden_dim`` (the MLPs' width; the profile
    passes 128 in the quick profile) and two read-outs the world-model loss and
    rehearsal use, ``predict_reward`` and ``decode_observation`` (docs/contract.md)."""

    def __init__(self, obs_embed_dim: int = 256, action_dim: int = 10,
                 det_dim: int = 512, stoch_dim: int = 32,
                 stoch_classes: int = 32, hidden_dim: int = 512):
        super().__init__()
        self.det_dim = det_dim
        self.stoch_dim = stoch_dim
        self.stoch_classes = stoch_classes
        self.action_dim = action_dim
        stoch_flat = stoch_dim * stoch_classes
        self.gru = nn.GRUCell(stoch_flat + action_dim, det_dim)             # [z_{t-1}, a_{t-1}] -> h_t
        self.prior = mlp([det_dim, hidden_dim, stoch_flat])                        # h_t -> logits
        self.posterior = mlp([det_dim + obs_embed_dim, hidden_dim, stoch_flat])    # [h_t, o_t] -> logits
        self.reward_head = mlp([det_dim + stoch_flat, hidden_dim // 2, 1])              # [h_t, z_t] -> r_t
        # [h_t, z_t] -> o_t: the reconstruction term of the world-model loss. Without it
        # nothing asks z to carry information about the observation, and prior and
        # posterior agree trivially on a constant z (a collapsed, useless world model).
        # It reconstructs what the simulator measured (arm, gripper, held, coarse depth:
        # novapick.train.batch.grounded_observation), not the embedding, which could
        # collapse with it.
        self.obs_decoder = mlp([det_dim + stoch_flat, hidden_dim, GROUNDED_DIM])
        self.temperature = 1.0

    def initial_state(self, batch_size: int, device: torch.device) -> tuple:
        """Return initial (h_0, z_0) with zeros: (B, 512), (B, 32, 32)."""
        return (torch.zeros(batch_size, self.det_dim, device=device),
                torch.zeros(batch_size, self.stoch_dim, self.stoch_classes, device=device))

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.view(-1, self.stoch_dim, self.stoch_classes)          # (B, 32, 32)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """One-hot z (B, 32, 32): straight-through Gumbel-softmax while training, the mode
        (argmax) in eval mode so that evaluation is deterministic."""
        if self.training:
            return F.gumbel_softmax(logits, tau=self.temperature, hard=True, dim=-1)
        return F.one_hot(logits.argmax(-1), self.stoch_classes).to(logits.dtype)

    def _transition(self, action: torch.Tensor, h_prev: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        if action.shape[-1] != self.action_dim:
            raise ValueError(f"expected action (B, {self.action_dim}), got {tuple(action.shape)}")
        return self.gru(torch.cat([z_prev.flatten(1), action], dim=-1), h_prev)

    def observe_step(self, obs_embed: torch.Tensor, action: torch.Tensor,
                     h_prev: torch.Tensor, z_prev: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """One step with a real observation: h_t from the GRU, z_t from the posterior.

        Returns (h_t (B,512), z_t (B,32,32), {'prior_logits', 'posterior_logits'} (B,32,32)).
        """
        h = self._transition(action, h_prev, z_prev)
        prior_logits = self._logits(self.prior(h))
        posterior_logits = self._logits(self.posterior(torch.cat([h, obs_embed], dim=-1)))
        z = self.sample(posterior_logits)
        return h, z, {"prior_logits": prior_logits, "posterior_logits": posterior_logits}

    def imagine_step(self, action: torch.Tensor, h_prev: torch.Tensor,
                     z_prev: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step without an observation: z_t from the prior. Returns (h_t, z_t)."""
        h = self._transition(action, h_prev, z_prev)
        return h, self.sample(self._logits(self.prior(h)))

    def predict_reward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """[h (..., 512), z (..., 32, 32)] -> reward (...)."""
        return self.reward_head(torch.cat([h, z.flatten(-2)], dim=-1)).squeeze(-1)

    def decode_observation(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """[h (..., 512), z (..., 32, 32)] -> the reconstructed grounded observation
        (..., GROUNDED_DIM): proprioception, gripper state, held flag, 8 x 8 depth."""
        return self.obs_decoder(torch.cat([h, z.flatten(-2)], dim=-1))

    def imagine_trajectory(self, initial_h: torch.Tensor,
                           initial_z: torch.Tensor,
                           actions: torch.Tensor) -> dict:
        """Dream T steps ahead from (h, z) under ``actions`` (B, T, 10).

        Returns {'h_states': (B,T,512), 'z_states': (B,T,32,32), 'rewards': (B,T)}.
        """
        if actions.ndim != 3:
            raise ValueError(f"expected actions (B, T, {self.action_dim}), got {tuple(actions.shape)}")
        h, z, hs, zs = initial_h, initial_z, [], []
        for t in range(actions.shape[1]):
            h, z = self.imagine_step(actions[:, t], h, z)
            hs.append(h)
            zs.append(z)
        h_states, z_states = torch.stack(hs, 1), torch.stack(zs, 1)
        return {"h_states": h_states, "z_states": z_states, "rewards": self.predict_reward(h_states, z_states)}


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between factorised categoricals (..., 32, 32), summed over the 32
    variables: (...,) in nats."""
    p_log = F.log_softmax(p_logits, -1)
    return (p_log.exp() * (p_log - F.log_softmax(q_logits, -1))).sum((-1, -2))


def kl_balanced_loss(posterior_logits: torch.Tensor, prior_logits: torch.Tensor,
                     free_nats: float = 1.0, balance: float = 0.8) -> torch.Tensor:
    """DreamerV3-style KL: ``balance`` of the gradient trains the prior towards the
    (stopped) posterior, the rest regularises the posterior towards the (stopped) prior;
    each term is clipped below at ``free_nats`` (no pressure once they agree that well).
    Mean over the batch; a scalar in nats."""
    dyn = categorical_kl(posterior_logits.detach(), prior_logits).clamp(min=free_nats)
    rep = categorical_kl(posterior_logits, prior_logits.detach()).clamp(min=free_nats)
    return (balance * dyn + (1 - balance) * rep).mean()
