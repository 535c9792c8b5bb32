"""A second, deliberately minimal implementation of the course's components, written
from docs/contract.md alone (it imports nothing from ``solutions``). tests/test_contract.py
plugs it into the harness: if it trains, rolls out and benchmarks, the contract is what
the harness really needs, not the reference classes' internals."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from novapick.evaluate.episodes import plan_episodes, plan_options, run_episode
from novapick.policy.vla import VLAPolicy
from novapick.train.batch import GROUNDED_DIM, grounded_observation, normalised_squared_error, unpack_batch


class ObservationEncoder(nn.Module):
    """Patchify RGB-D with one strided conv; the instruction (hashed bag of tokens) queries
    the patches once; the attended patch feature plus the instruction is the embedding."""

    def __init__(self, obs_embed_dim: int = 256, *, config=None):
        super().__init__()
        patch = 8
        self.token_grid = config.image_size // patch
        self.patchify = nn.Conv2d(4, config.token_dim, patch, stride=patch)
        self.words = nn.EmbeddingBag(1024, config.token_dim, mode="mean")
        self.out = nn.Linear(2 * config.token_dim, obs_embed_dim)
        self.language_attention = self.patch_tokens = None

    def forward(self, rgb, depth, language_tokens):
        tokens = self.patchify(torch.cat([rgb, depth], 1)).flatten(2).transpose(1, 2)   # (B, N, D)
        query = self.words(language_tokens.long() % 1024)                                # (B, D)
        attention = torch.softmax((tokens @ query[:, :, None]).squeeze(-1) / tokens.shape[-1] ** 0.5, -1)
        self.patch_tokens, self.language_attention = tokens, attention                  # the contract's read-outs
        attended = (attention[..., None] * tokens).sum(1)
        return self.out(torch.cat([attended, query], -1))


class RSSM(nn.Module):
    """GRU memory + categorical latent; straight-through one-hot samples (argmax in eval)."""

    def __init__(self, obs_embed_dim=256, action_dim=10, det_dim=512, stoch_dim=32, stoch_classes=32):
        super().__init__()
        self.det_dim, self.stoch_dim, self.stoch_classes, self.action_dim = det_dim, stoch_dim, stoch_classes, action_dim
        flat = stoch_dim * stoch_classes
        self.gru = nn.GRUCell(flat + action_dim, det_dim)
        self.prior = nn.Linear(det_dim, flat)
        self.posterior = nn.Linear(det_dim + obs_embed_dim, flat)
        self.reward = nn.Linear(det_dim + flat, 1)
        self.decoder = nn.Linear(det_dim + flat, GROUNDED_DIM)

    def initial_state(self, batch_size, device):
        return (torch.zeros(batch_size, self.det_dim, device=device),
                torch.zeros(batch_size, self.stoch_dim, self.stoch_classes, device=device))

    def _sample(self, logits):
        logits = logits.view(-1, self.stoch_dim, self.stoch_classes)
        probs = logits.softmax(-1)
        hard = F.one_hot(probs.argmax(-1), self.stoch_classes).to(probs.dtype)
        return hard + probs - probs.detach() if self.training else hard

    def observe_step(self, obs_embed, action, h_prev, z_prev):
        h = self.gru(torch.cat([z_prev.flatten(1), action], -1), h_prev)
        prior = self.prior(h).view(-1, self.stoch_dim, self.stoch_classes)
        post = self.posterior(torch.cat([h, obs_embed], -1)).view(-1, self.stoch_dim, self.stoch_classes)
        return h, self._sample(post), {"prior_logits": prior, "posterior_logits": post}

    def imagine_step(self, action, h_prev, z_prev):
        h = self.gru(torch.cat([z_prev.flatten(1), action], -1), h_prev)
        return h, self._sample(self.prior(h))

    def imagine_trajectory(self, initial_h, initial_z, actions):
        h, z, hs, zs = initial_h, initial_z, [], []
        for t in range(actions.shape[1]):
            h, z = self.imagine_step(actions[:, t], h, z)
            hs.append(h)
            zs.append(z)
        H, Z = torch.stack(hs, 1), torch.stack(zs, 1)
        return {"h_states": H, "z_states": Z, "rewards": self.predict_reward(H, Z)}

    def predict_reward(self, h, z):
        return self.reward(torch.cat([h, z.flatten(-2)], -1)).squeeze(-1)

    def decode_observation(self, h, z):
        return self.decoder(torch.cat([h, z.flatten(-2)], -1))


class FlowMatchingActionHead(nn.Module):
    """A two-layer velocity field; the time enters as one scalar feature."""

    def __init__(self, action_chunk_size=16, action_dim=10, cond_dim=1792):
        super().__init__()
        self.action_chunk_size, self.action_dim = action_chunk_size, action_dim
        flat = action_chunk_size * action_dim
        self.net = nn.Sequential(nn.Linear(flat + 1 + cond_dim, 256), nn.SiLU(), nn.Linear(256, flat))

    def forward(self, noisy_actions, timestep, condition):
        B = noisy_actions.shape[0]
        t = timestep.expand(B) if timestep.ndim == 0 else timestep
        x = torch.cat([noisy_actions.flatten(1), t[:, None], condition], -1)
        return self.net(x).view(B, self.action_chunk_size, self.action_dim)

    @torch.no_grad()
    def sample(self, condition, num_steps=10):
        a = torch.randn(condition.shape[0], self.action_chunk_size, self.action_dim)
        for k in range(num_steps):
            a = a + self(a, torch.full((condition.shape[0],), k / num_steps), condition) / num_steps
        return a.clamp(-1, 1)


def train_one_epoch(model, dataloader, optimizer, scheduler, device, epoch, extras=None):
    """flow + 0.5 (KL + reward + grounded reconstruction) + 0.1 grasp, with the harness's extras hook."""
    params = [p for m in model.values() for p in m.parameters()]
    totals, steps = {}, 0
    for m in model.values():
        m.train()
    for raw in dataloader:
        b = unpack_batch(raw, device)
        B, L = b["rgb"].shape[:2]
        obs = model["encoder"](b["rgb"].flatten(0, 1), b["depth"].flatten(0, 1), b["language"].repeat_interleave(L, 0))
        if extras is not None:
            obs = extras.observation(b, obs)
        obs = obs.view(B, L, -1)
        h, z = model["rssm"].initial_state(B, device)
        prev = torch.zeros(B, b["actions"].shape[-1], device=device)
        hs, zs, kl = [], [], 0.0
        for t in range(L):
            h, z, info = model["rssm"].observe_step(obs[:, t], prev, h, z)
            post, prior = info["posterior_logits"].log_softmax(-1), info["prior_logits"].log_softmax(-1)
            kl = kl + (post.exp() * (post - prior)).sum((-1, -2)).mean().clamp(min=1.0) / L
            hs.append(h)
            zs.append(z)
            prev = b["actions"][:, t, 0]
        H, Z = torch.stack(hs, 1), torch.stack(zs, 1)
        wm = (kl + F.mse_loss(model["rssm"].predict_reward(H, Z), b["rewards"].float())
              + normalised_squared_error(model["rssm"].decode_observation(H, Z), grounded_observation(b)))
        cond = torch.cat([H, Z.flatten(-2), obs], -1).flatten(0, 1)
        chunks = b["actions"].flatten(0, 1)
        if extras is not None:
            flow = extras.flow_loss(model["flow_head"], chunks, cond, b)
        else:
            noise, t = torch.randn_like(chunks), torch.rand(len(chunks), device=device)
            a_t = (1 - t[:, None, None]) * noise + t[:, None, None] * chunks
            flow = F.mse_loss(model["flow_head"](a_t, t, cond), chunks - noise)
        grasp = F.binary_cross_entropy_with_logits(model["grasp_head"](cond), b["grasp_chunk"].flatten().float())
        losses = {"flow_loss": flow, "wm_loss": wm, "kl_loss": kl}
        total = flow + 0.5 * wm + 0.1 * grasp
        if extras is not None:
            for term in extras.loss(b, losses, states=(H, Z)).values():
                total = total + term
        losses["total_loss"] = total
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 100)
        optimizer.step()
        scheduler.step()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach())
        steps += 1
    return {k: v / max(steps, 1) for k, v in totals.items()} | {"steps": steps}


def evaluate_model(model, eval_env, object_set, num_episodes=100, *, mcfg=None, stats=None, seed=0, **_):
    """Success rate and per-object success over the planned episodes."""
    policy = VLAPolicy(model, mcfg, stats, seed=seed)
    infos = []
    for plan in plan_episodes(object_set, num_episodes, (1, 5), seed):
        info = run_episode(policy, eval_env, plan["seed"], plan_options(eval_env, plan))
        infos.append({**info, "object_name": plan["object"]})
    per_object = {n: float(np.mean([i["success"] for i in infos if i["object_name"] == n])) for n in object_set}
    return {"pick_success_rate": float(np.mean([i["success"] for i in infos])), "per_object_success": per_object,
            "infos": infos}
