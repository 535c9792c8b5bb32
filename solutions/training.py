"""Notebook 05 — joint training of encoder, RSSM, flow head and grasp head (Section 3.5).

    L = L_flow + 0.5 L_wm + 0.1 L_grasp                                   (Section 2)
    L_wm = next-latent error + KL(balanced, free nats) + reward MSE + reconstruction MSE
           (reconstruction of the grounded observation: arm, gripper, held, coarse depth)

The harness around this loop (optimiser, schedule, EMA, checkpoints, exact resume, data
parallelism, curves) is :mod:`novapick.train.harness`; it calls ``train_one_epoch`` on
chunks of batches and may pass ``extras`` (:class:`novapick.train.extras.TrainingExtras`)
for the reference policy's additions beyond the case study. ``extras=None`` is the case
study's loss exactly.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from novapick.train.batch import reconstruction_loss, unpack_batch
from solutions.rssm import kl_balanced_loss

LAMBDA_WM, LAMBDA_GRASP = 0.5, 0.1     # Section 2
FREE_NATS, KL_BALANCE = 1.0, 0.8       # Section 3.5: DreamerV3-style KL balancing
GRAD_CLIP = 100.0                      # Section 3.5: max gradient norm
LOG_EVERY = 100


def flow_matching_loss(head: torch.nn.Module, actions: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """|| v(a_t, t, c) - (a_1 - a_0) ||^2 with t ~ U(0, 1), a_0 ~ N(0, I): the case study's
    loss as written. actions (B, 16, 10) = a_1, condition (B, C) -> scalar."""
    noise = torch.randn_like(actions)
    t = torch.rand(actions.shape[0], device=actions.device)
    a_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
    return F.mse_loss(head(a_t, t, condition), actions - noise)


def composite_loss(model: dict, batch: dict, extras=None) -> dict[str, torch.Tensor]:
    """Every loss term for one batch of (B, L, ...) windows; 'total_loss' is what trains."""
    rgb, actions = batch["rgb"], batch["actions"]                          # (B, L, 3, S, S), (B, L, 16, 10)
    B, L = rgb.shape[:2]
    obs = model["encoder"](rgb.flatten(0, 1), batch["depth"].flatten(0, 1),
                           batch["language"].repeat_interleave(L, 0))      # (B*L, D)
    if extras is not None:
        obs = extras.observation(batch, obs)
    obs = obs.view(B, L, -1)
    # Extension: the world model reads the embedding but does not reshape it. Its
    # reconstruction and imagination terms are 100x the flow loss; let into the encoder
    # they cost the policy 5-10 points (docs/experiments.md, issue 26).
    obs_wm = obs.detach() if extras is not None else obs
    rssm = model["rssm"]
    h, z = rssm.initial_state(B, rgb.device)        # a fresh state per window: no BPTT across windows
    prev_action = torch.zeros(B, actions.shape[-1], device=rgb.device)
    hs, zs, priors, posts = [], [], [], []
    for t in range(L):
        # h_t summarises (z_{t-1}, a_{t-1}): the action that *led to* step t. Feeding the
        # chunk's own first action a_t would hand the flow head its target through h_t.
        h, z, info = rssm.observe_step(obs_wm[:, t], prev_action, h, z)
        hs.append(h)
        zs.append(z)
        priors.append(info["prior_logits"])
        posts.append(info["posterior_logits"])
        prev_action = actions[:, t, 0]
    H, Z = torch.stack(hs, 1), torch.stack(zs, 1)                        # (B, L, 512), (B, L, 32, 32)
    prior, post = torch.stack(priors, 1), torch.stack(posts, 1)
    kl = kl_balanced_loss(post.flatten(0, 1), prior.flatten(0, 1), FREE_NATS, KL_BALANCE)
    # next-latent prediction: the prior at t+1 (having seen a_t) against the posterior at
    # t+1 (having seen o_{t+1}), as class probabilities; the target is not pushed
    latent = (F.softmax(prior[:, 1:], -1) - F.softmax(post[:, 1:], -1).detach()).pow(2).sum((-1, -2)).mean()
    reward = F.mse_loss(rssm.predict_reward(H, Z), batch["rewards"].float())
    # reconstruct what the simulator measured (a fixed target the model cannot move)
    recon = reconstruction_loss(rssm.decode_observation(H, Z), batch)
    wm = latent + kl + reward + recon
    cond = torch.cat([H, Z.flatten(-2), obs], -1).flatten(0, 1)            # (B*L, 512 + 1024 + 256)
    chunks = actions.flatten(0, 1)                                         # (B*L, 16, 10)
    flow = (extras.flow_loss(model["flow_head"], chunks, cond, batch) if extras is not None
            else flow_matching_loss(model["flow_head"], chunks, cond))
    grasp = F.binary_cross_entropy_with_logits(model["grasp_head"](cond), batch["grasp_chunk"].flatten().float())
    total = flow + LAMBDA_WM * wm + LAMBDA_GRASP * grasp
    losses = {"flow_loss": flow, "wm_loss": wm, "kl_loss": kl, "latent_loss": latent, "reward_loss": reward,
              "recon_loss": recon, "grasp_loss": grasp}
    if extras is not None:
        for term in extras.loss(batch, losses, states=(H, Z)).values():
            total = total + term
    return {"total_loss": total, **losses}


def train_one_epoch(model: dict, dataloader: DataLoader,
                    optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler._LRScheduler,
                    device: torch.device, epoch: int, extras=None) -> dict:
    """Train all components for one pass over ``dataloader`` (windows of L steps).

    Returns the epoch means of 'flow_loss', 'wm_loss', 'kl_loss', 'total_loss' (and the
    other terms). ``extras``: the harness's hook for the terms beyond the case study
    (see :mod:`novapick.train.extras`); None trains the case study's loss."""
    for m in model.values():
        m.train()
    params = [p for m in model.values() for p in m.parameters() if p.requires_grad]
    sums: dict[str, float] = {}
    steps = 0
    quiet = os.environ.get("RANK", "0") != "0"
    # the harness's chunks of a few batches say quiet=True: its own bar shows the progress
    bar = tqdm(dataloader, desc=f"epoch {epoch}", leave=False, disable=quiet or getattr(dataloader, "quiet", False))
    for batch in bar:
        losses = composite_loss(model, unpack_batch(batch, device), extras)
        optimizer.zero_grad(set_to_none=True)
        losses["total_loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        steps += 1
        if steps % LOG_EVERY == 0 and not quiet:
            print(f"epoch {epoch} step {steps}: loss {sums['total_loss'] / steps:.3f} "
                  f"flow {sums['flow_loss'] / steps:.3f} wm {sums['wm_loss'] / steps:.3f}")
    return {k: v / max(steps, 1) for k, v in sums.items()} | {"steps": steps}
