"""Notebook 05 — joint training of encoder, RSSM, flow head and grasp head (Section 3.5).

    L = L_flow + 0.5 L_wm + 0.1 L_grasp          (Section 2)
        + lambda_pose L_pose + lambda_ground (L_ground + L_ground_scenes)  (auxiliary perception terms,
                                                                             beyond the case study)
    L_wm = next-latent MSE + beta * KL(balanced, free nats) + reward MSE + reconstruction MSE

    python -m solutions.training --profile quick --data data/synthetic_known_96px_s0_jitter0.3_balanced --steps 1500
    torchrun --nproc_per_node 2 -m solutions.training --profile quick --data ... --steps 20   # data parallel

AdamW (weight decay 1e-4), linear warm-up then cosine decay, gradient clipping at 100,
dropout 0.1 in the MLPs, an EMA copy of the weights for evaluation, checkpoints every
``checkpoint_every`` steps that resume exactly (same weights as a run that never
stopped), a tqdm bar and a loss-curve PNG.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from novapick.config import ModelConfig, TrainConfig, get_profile
from novapick.data.schema import DEPTH_MAX_M
from novapick.train.augment import augment_training_windows
from solutions.encoder import ObservationEncoder
from solutions.flow_head import FlowMatchingActionHead, flow_matching_loss
from solutions.rssm import RSSM, GraspSuccessHead, kl_balanced_loss, mlp

PROPRIO_INPUT = 14 + 2  # normalised joint state + gripper state (suction pressure, aperture)
POSE_FEATURES = 8       # grasp pose with yaw as (sin 2yaw, cos 2yaw), see grasp_pose_features
# The pose features the controller reads (see encode): from the bin-frame estimate
# x, y, z, roll, pitch and width (not its yaw); from the hand-relative one the offset
# (dx, dy: GraspPointHead) and the wrist turn still to go (sin, cos of 2 dyaw).
BIN_FEATURES_READ = (0, 1, 2, 3, 4, 7)
HAND_FEATURES_READ = (0, 1, 5, 6)


class ActionScaler(nn.Module):
    """Standardises each action dimension with the training split's mean and std, and back.

    Why: flow matching starts from N(0, I) noise. The expert's joint velocities have a
    std of only ~0.05-0.25 of the limit, so in raw units (or min-max scaled, where rare
    fast moves set the range) an imperfect velocity field leaves noise-sized errors that
    are larger than the signal. Standardised, every dimension has unit spread and the
    same field error becomes a small error in joint space. The statistics are buffers:
    they travel with the checkpoint."""

    MIN_STD = 1e-2  # a dimension that (almost) never varies must not blow up

    def __init__(self, dim: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=self.MIN_STD))

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.mean) / self.std

    def unnormalize(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled * self.std + self.mean


def grasp_pose_features(pose: torch.Tensor) -> torch.Tensor:
    """The 7-d grasp pose (x, y, z, roll, pitch, yaw, width), each in [-1, 1], as the 8
    regression targets of the pose head: yaw becomes (sin 2yaw, cos 2yaw) because a
    two-finger jaw is the same grasp after a half turn, and a raw angle would jump from
    +1 to -1 there. (..., 7) -> (..., 8)."""
    yaw = pose[..., 5] * math.pi
    return torch.cat([pose[..., :5], torch.stack([torch.sin(2 * yaw), torch.cos(2 * yaw)], -1),
                      pose[..., 6:7]], -1)


class GraspPoseHead(nn.Module):
    """Auxiliary head: observation embedding (B, obs_embed_dim) -> the expert's planned
    grasp pose as :func:`grasp_pose_features` (B, 8).

    Why (goes beyond the case study): with the flow loss alone, the only signal that
    reaches the encoder is the action error, a weak and indirect signal for *where* the
    named item is and how to hold it. A flow head given the true grasp pose picks 86-94 %
    of items in closed loop (benchmarks/bench_privileged_policy.py), so the embedding is
    asked to contain exactly that: the Section 3.3 baseline's output, predicted from the
    same pixels and instruction.
    Targets are standardised with the training split's statistics (buffers). The same
    class, trained on the hand-relative pose from the pixels alone, is the model's
    'hand_pose_head' (see :func:`encode`)."""

    def __init__(self, obs_embed_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = mlp([obs_embed_dim, 256, POSE_FEATURES], dropout)
        self.register_buffer("mean", torch.zeros(POSE_FEATURES))
        self.register_buffer("std", torch.ones(POSE_FEATURES))

    def set_stats(self, poses: np.ndarray) -> None:
        feats = grasp_pose_features(torch.as_tensor(poses, dtype=torch.float32))
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp(min=1e-2))

    def standardise(self, pose: torch.Tensor) -> torch.Tensor:
        """Poses (B, 7) -> the targets: standardised :func:`grasp_pose_features` (B, 8)."""
        return (grasp_pose_features(pose) - self.mean) / self.std

    def forward(self, obs_embed: torch.Tensor) -> torch.Tensor:
        """Standardised pose features (B, 8)."""
        return self.net(obs_embed)

    def loss(self, obs_embed: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """MSE in standardised units over the frames whose pose is known (not all zeros)."""
        return self.prediction_loss(self(obs_embed), pose)

    def prediction_loss(self, predicted: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` for an already computed prediction (B, 8) against poses (B, 7)."""
        known = (pose.abs().sum(-1) > 0).float()
        error = (predicted - self.standardise(pose)).pow(2).mean(-1)
        return (error * known).sum() / known.sum().clamp(min=1.0)


class GraspPointHead(nn.Module):
    """Where the grasp is, seen from the hand: the offset (dx, dy) of
    :func:`novapick.sim.expert.hand_relative_pose`, standardised like the hand-relative
    pose head's first two features, read off the patches the instruction attends to.

    Every patch token (with its centre in the image) proposes the offset the grasp would
    have if the named item were at that patch; the language attention weighs the
    proposals. Why (beyond the case study): the offset is a visual-servoing quantity,
    "how far, and which way, is the item from the image's grasp point", which a patch
    knows from its position and depth; a pooled embedding has to carry it through two
    attention layers. Given the true offset instead of its estimate, the same controller
    picked 95 % / 85 % instead of 83 % / 66 % (and went for no wrong item): this number
    is what the policy is short of."""

    def __init__(self, token_dim: int, dropout: float = 0.1):
        super().__init__()
        self.net = mlp([token_dim + 2, 64, 2], dropout)

    def forward(self, patch_tokens: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """patch_tokens (B, N, D), attention (B, N) over a square grid -> (B, 2)."""
        grid = math.isqrt(attention.shape[1])
        centres = patch_centres(grid, attention)
        uv = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).view(1, -1, 2)  # (1, N, 2): u, v
        proposals = self.net(torch.cat([patch_tokens, uv.expand(len(patch_tokens), -1, -1)], -1))  # (B, N, 2)
        return (attention[..., None] * proposals).sum(1)


def patch_centres(grid: int, like: torch.Tensor) -> torch.Tensor:
    """Centres of ``grid`` patches along one image axis in [-1, 1] image coordinates (the
    convention of ``target_uv``), on ``like``'s device and dtype. (grid,)"""
    return (torch.arange(grid, device=like.device, dtype=like.dtype) + 0.5) / grid * 2 - 1


def grounding_loss(attention: torch.Tensor, target_uv: torch.Tensor, grid: int) -> torch.Tensor:
    """Cross-entropy between where the language query looks and where the named item is.

    attention (B, N): the language query's attention over the grid x grid patches (rows
    from the top); target_uv (B, 3): the target centre's image position (u, v) in [-1, 1]
    and an in-view flag (frames without the target in view, or without the label, are
    skipped). The target map is a Gaussian of one patch width around (u, v).

    Why (beyond the case study): it answers the notebook's thought question ("which
    patches should receive the most attention?") with supervision. Without it the
    encoder must discover *which* item the words mean from the action error alone, and
    within a CPU budget it learns a shortcut instead (follow the arm), not grounding.
    """
    centres = patch_centres(grid, attention)
    du = (centres[None, None, :] - target_uv[:, 0, None, None]) ** 2      # (B, 1, grid) columns
    dv = (centres[None, :, None] - target_uv[:, 1, None, None]) ** 2      # (B, grid, 1) rows
    sigma = 2.0 / grid
    target = torch.exp(-(du + dv) / (2 * sigma ** 2)).flatten(1)          # (B, N)
    target = target / target.sum(-1, keepdim=True)
    ce = -(target * attention.clamp(min=1e-6).log()).sum(-1)
    seen = target_uv[:, 2]
    return (ce * seen).sum() / seen.sum().clamp(min=1.0)


CLIP_SPECIAL_TOKENS = (0, 49406, 49407)  # padding, start of text, end of text


def drop_words(tokens: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Word dropout: each real token of (B, 77) CLIP ids becomes a random id with
    probability ``p`` (padding, start and end stay).

    Why: the novel objects are named with words no training instruction contains ("jar",
    "tube"). A trainable text encoder has never updated those embeddings, and a model
    that trusts every word is thrown off by one it has never seen; with dropout it learns
    to ground on the words it knows (colour, size, left/right) and to read shape and
    height from the pixels."""
    if p <= 0:
        return tokens
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for t in CLIP_SPECIAL_TOKENS:
        special |= tokens == t
    drop = (torch.rand(tokens.shape, generator=generator, device=tokens.device) < p) & ~special
    random_ids = torch.randint(1, CLIP_SPECIAL_TOKENS[1], tokens.shape, generator=generator, device=tokens.device)
    return torch.where(drop, random_ids, tokens)


def build_model(cfg: ModelConfig) -> dict[str, nn.Module]:
    """The model dict of the case study ('encoder', 'rssm', 'flow_head') plus the grasp
    head, a projection of the robot's own state (joint angles/velocities and the
    suction/jaw state), which is added to the observation embedding: the arm must know
    where it is and whether the cup has sealed, the grasp-pose head, and 'pose_input',
    which adds perception's explicit estimates back into the embedding (see :func:`encode`),
    and the hand-relative pose head (the grasp as the wrist camera sees it)."""
    return {
        "encoder": ObservationEncoder(cfg.obs_embed_dim, config=cfg),
        "proprio": nn.Sequential(nn.Linear(PROPRIO_INPUT, 128), nn.SiLU(), nn.Linear(128, cfg.obs_embed_dim)),
        "rssm": RSSM(cfg.obs_embed_dim, cfg.action_dim, cfg.det_dim, cfg.stoch_dim, cfg.stoch_classes,
                     cfg.hidden_dim),
        "flow_head": FlowMatchingActionHead(cfg.chunk_size, cfg.action_dim, cfg.cond_dim),
        "grasp_head": GraspSuccessHead(cfg.cond_dim, cfg.dropout),
        "pose_head": GraspPoseHead(cfg.obs_embed_dim, cfg.dropout),
        "hand_pose_head": GraspPoseHead(cfg.obs_embed_dim, cfg.dropout),
        "grasp_point_head": GraspPointHead(cfg.token_dim, cfg.dropout),
        "pose_input": nn.Sequential(nn.Linear(len(BIN_FEATURES_READ) + len(HAND_FEATURES_READ) + 3, 128),
                                    nn.SiLU(), nn.Linear(128, cfg.obs_embed_dim)),
        "action_scaler": ActionScaler(cfg.action_dim),
    }


def parameters(model: dict[str, nn.Module]) -> list[nn.Parameter]:
    return [p for m in model.values() for p in m.parameters() if p.requires_grad]


def condition(h: torch.Tensor, z: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Flow-head conditioning c = [h, z_flat, obs_embed]: (..., 512 + 1024 + 256)."""
    return torch.cat([h, z.flatten(-2), obs], dim=-1)


def encode(model: dict, rgb: torch.Tensor, depth: torch.Tensor, language: torch.Tensor,
           robot_state: torch.Tensor, return_pose: bool = False, true_pose: torch.Tensor | None = None):
    """Frames (N, ...) -> observation embeddings (N, 256): pixels and instruction, the
    robot's own state, and the model's own grasp-pose estimates. With ``return_pose``
    also those estimates, standardised :func:`grasp_pose_features` (N, 8) each:
    {"bin": in the bin's frame, "hand": as seen from the hand}, and "point" (N, 2) the
    hand-relative offset of :class:`GraspPointHead`.

    ``true_pose`` (N, 10), see :func:`teacher_pose`: wherever it is not NaN the
    controller is given it instead of the estimate (training; and the perception-oracle
    benchmark, benchmarks/bench_oracle_perception.py)."""
    seen_by_camera = model["encoder"](rgb, depth, language)
    obs = seen_by_camera + model["proprio"](robot_state)
    # Two estimates of the same grasp. In the bin's frame, with the arm's state at hand:
    # good at the height (transparent items give no depth; the arm's height and the
    # item's look do). But its yaw is learnt as a shortcut: in the expert's data the
    # wrist is already turning to the planned yaw, so the head reads it off the joint
    # angles, and on the policy's own rollouts, where the wrist had not turned, it said
    # "no turn needed" (every failed jaw pick of a 50-episode diagnosis had a 22-88
    # degree yaw error, every successful one under 6). So the yaw comes from the second
    # head, which sees the pixels alone and is asked for the grasp as the wrist camera
    # shows it (novapick.sim.expert.hand_relative_pose), and the offset to the grasp
    # from the patches the instruction attends to (GraspPointHead).
    encoder = _unwrap(model["encoder"])
    pose = {"bin": model["pose_head"](obs), "hand": model["hand_pose_head"](seen_by_camera),
            "point": model["grasp_point_head"](encoder.patch_tokens, encoder.language_attention)}
    seen = attention_centre(encoder.language_attention, encoder.token_grid)
    # The controller reads perception's explicit estimates, not only the 256-d embedding
    # that contains them: the grasp pose and where the named item is in the wrist image
    # (what visual servoing needs). A flow head given the pose directly is far more
    # precise (benchmarks/bench_privileged_policy.py). Detached, so the flow loss cannot
    # pull the estimates away from what they are supervised to be.
    hand = torch.cat([pose["point"], pose["hand"][:, HAND_FEATURES_READ[2:]]], -1)
    explicit = torch.cat([pose["bin"][:, BIN_FEATURES_READ], hand], -1).detach()
    if true_pose is not None:
        explicit = torch.where(true_pose.isnan(), explicit, true_pose)
    obs = obs + model["pose_input"](torch.cat([explicit, seen.detach()], -1))
    return (obs, pose) if return_pose else obs


def teacher_pose(model: dict, grasp_pose: torch.Tensor, grasp_pose_hand: torch.Tensor, p: float,
                 noise: float) -> torch.Tensor:
    """The controller's explicit pose input made from the true poses (N, 7) each, as
    :func:`encode` reads it (N, 10), plus Gaussian noise of ``noise`` standard
    deviations, in a random fraction ``p`` of the frames; NaN rows elsewhere and where
    the pose is unknown (the estimate is used there).

    Why (beyond the case study): on the training frames the estimates are nearly exact
    and the embedding holds the same information, so a flow head trained on the
    estimates alone learns to read the embedding and ignores them; given the *true*
    pose it still picked 80 % / 74 %, no better than with its own estimate. Given the
    true pose, slightly noisy, in half the frames, it learns to trust this input, as the
    privileged controller (benchmarks/bench_privileged_policy.py) does."""
    bin_head, hand_head = model["pose_head"], model["hand_pose_head"]
    true = torch.cat([bin_head.standardise(grasp_pose)[:, BIN_FEATURES_READ],
                      hand_head.standardise(grasp_pose_hand)[:, HAND_FEATURES_READ]], -1)
    true = true + noise * torch.randn_like(true)
    use = (torch.rand(len(true), device=true.device) < p) & (grasp_pose.abs().sum(-1) > 0)
    return torch.where(use[:, None], true, torch.full_like(true, float("nan")))


def attention_centre(attention: torch.Tensor, grid: int) -> torch.Tensor:
    """Where an attention map over grid x grid patches (N, grid*grid) looks: its centre
    of mass (u, v) in [-1, 1], the same image coordinates as ``target_uv``, and its
    peak weight (how sure it is). (N, 3)"""
    centres = patch_centres(grid, attention)
    maps = attention.view(-1, grid, grid)                                  # rows from the top
    u = (maps.sum(1) * centres).sum(-1)
    v = (maps.sum(2) * centres).sum(-1)
    return torch.stack([u, v, attention.max(-1).values], -1)


def _unpack(batch, device: torch.device) -> dict[str, torch.Tensor]:
    """Accept the loader's dict or the case study's tuple (rgb, depth, language, actions,
    proprioception, rewards) of (B, L, ...) windows; move everything to ``device``."""
    if isinstance(batch, (tuple, list)):
        rgb, depth, language, actions, proprio, rewards = batch[:6]
        batch = {"rgb": rgb, "depth": depth, "language": language, "actions": actions,
                 "proprioception": proprio, "rewards": rewards}
    b = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
    if b["rgb"].ndim != 5:
        raise ValueError(f"train_one_epoch needs windows (B, L, 3, S, S); got rgb {tuple(b['rgb'].shape)} "
                         "(use make_dataloader(..., seq_len=L))")
    B, L = b["rgb"].shape[:2]
    if b["actions"].ndim == 3:                      # (B, L, 10): single actions, make 1-step chunks
        b["actions"] = b["actions"][:, :, None]
    b.setdefault("pad_mask", torch.zeros(b["actions"].shape[:3], dtype=torch.bool, device=device))
    b.setdefault("gripper_state", torch.zeros(B, L, 2, device=device))
    b.setdefault("grasp_chunk", (b["rewards"] > 0).float())
    b.setdefault("grasp_pose", torch.zeros(B, L, 7, device=device))  # unknown: no pose loss
    b.setdefault("grasp_pose_hand", torch.zeros(B, L, 7, device=device))
    b.setdefault("target_uv", torch.zeros(B, L, 3, device=device))   # unknown: no grounding loss
    return b


def scene_grounding_loss(model: dict, scenes: dict[str, torch.Tensor], tcfg: TrainConfig) -> torch.Tensor:
    """The grounding loss on ``tcfg.scene_batch`` random grounding scenes (first looks at
    other bins, :mod:`novapick.data.scenes`), augmented like the windows.

    Why (beyond the case study): the demonstrations show each bin from afar only once,
    so the VLA learns to find the named item among the others from 600 first looks; it
    then missed the item in the evaluation bins' first frames twice as often as in the
    training ones, and picked half of those. Scenes cost no expert and no rollout: only
    the encoder runs on them, and only the language query's attention is supervised.
    ``scenes``: rgb (N, 3, S, S) uint8, depth (N, 1, S, S) metres, language (N, 77),
    target_uv (N, 3), as :func:`load_scene_tensors` makes them."""
    pick = torch.randint(len(scenes["rgb"]), (tcfg.scene_batch,))
    rgb = scenes["rgb"][pick].float().div(255.0)
    depth = (scenes["depth"][pick].float() / DEPTH_MAX_M).clamp(0, 1)
    rgb, depth = augment_training_windows(rgb[:, None], depth[:, None], tcfg.colour_jitter,
                                          tcfg.depth_noise_m / DEPTH_MAX_M)       # as 1-step windows
    encoder = _unwrap(model["encoder"])
    model["encoder"](rgb[:, 0], depth[:, 0], drop_words(scenes["language"][pick], tcfg.word_dropout))
    return grounding_loss(encoder.language_attention, scenes["target_uv"][pick], encoder.token_grid)


def load_scene_tensors(path: str | Path, image_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A grounding-scenes file (:func:`novapick.data.scenes.load_scenes`) as tensors on
    ``device``, the instructions tokenised once."""
    from novapick.backbones import tokenize
    from novapick.data.scenes import load_scenes

    data = load_scenes(path, image_size)
    return {"rgb": torch.from_numpy(data["rgb"]).to(device),
            "depth": torch.from_numpy(data["depth"].astype(np.float32)).to(device),
            "language": tokenize(list(data["instruction"])).to(device),
            "target_uv": torch.from_numpy(data["target_uv"]).to(device)}


def compute_losses(model: dict, batch: dict, tcfg: TrainConfig,
                   scenes: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """All loss terms for one batch of windows (B, L, ...); with ``scenes`` also the
    grounding loss on a few grounding scenes (see :func:`scene_grounding_loss`)."""
    actions = batch["actions"]
    rgb, depth = augment_training_windows(batch["rgb"], batch["depth"], tcfg.colour_jitter,
                                          tcfg.depth_noise_m / DEPTH_MAX_M)
    B, L = rgb.shape[:2]
    robot_state = torch.cat([batch["proprioception"], batch["gripper_state"]], -1)
    language = drop_words(batch["language"], tcfg.word_dropout)           # one draw per window
    true_pose = teacher_pose(model, batch["grasp_pose"].flatten(0, 1), batch["grasp_pose_hand"].flatten(0, 1),
                             tcfg.pose_teacher_p, tcfg.pose_teacher_noise)
    obs, pose_estimate = encode(model, rgb.flatten(0, 1), depth.flatten(0, 1), language.repeat_interleave(L, 0),
                                robot_state.flatten(0, 1), return_pose=True, true_pose=true_pose)
    obs = obs.view(B, L, -1)
    rssm = model["rssm"]
    h, z = rssm.initial_state(B, rgb.device)        # a fresh state per window: no BPTT across windows
    prev_action = torch.zeros(B, actions.shape[-1], device=rgb.device)
    hs, zs, priors, posts = [], [], [], []
    for t in range(L):
        # h_t summarises (z_{t-1}, a_{t-1}): the action executed at the previous step
        h, z, info = rssm.observe_step(obs[:, t], prev_action, h, z)
        hs.append(h)
        zs.append(z)
        priors.append(info["prior_logits"])
        posts.append(info["posterior_logits"])
        prev_action = actions[:, t, 0]
    H, Z = torch.stack(hs, 1), torch.stack(zs, 1)
    prior, post = torch.stack(priors, 1), torch.stack(posts, 1)
    kl = kl_balanced_loss(post.flatten(0, 1), prior.flatten(0, 1), tcfg.free_nats, tcfg.kl_balance)
    # Next-latent prediction: the prior at t+1 (having seen a_t) against the posterior at
    # t+1 (having seen o_{t+1}), as class probabilities; the target is not pushed.
    latent = (F.softmax(prior[:, 1:], -1) - F.softmax(post[:, 1:], -1).detach()).pow(2).sum((-1, -2)).mean()
    reward = F.mse_loss(rssm.predict_reward(H, Z), batch["rewards"].float())
    # reconstruction of the observation embedding from the latent state; the target is
    # stopped so that the world model cannot make its own task easier by moving it
    recon = F.mse_loss(rssm.decode_observation(H, Z), obs.detach())
    cond = condition(H, Z, obs).flatten(0, 1)
    scaled = model["action_scaler"].normalize(actions.flatten(0, 1))
    k = tcfg.flow_samples
    flow = flow_matching_loss(model["flow_head"], scaled.repeat(k, 1, 1), cond.repeat(k, 1),
                              batch["pad_mask"].flatten(0, 1).repeat(k, 1), weighting=tcfg.flow_weighting)
    grasp = F.binary_cross_entropy_with_logits(model["grasp_head"](cond), batch["grasp_chunk"].flatten().float())
    hand_head, hand_pose = model["hand_pose_head"], batch["grasp_pose_hand"].flatten(0, 1)
    point_target = hand_head.standardise(hand_pose)[:, :2]
    known = (hand_pose.abs().sum(-1) > 0).float()
    point = ((pose_estimate["point"] - point_target).pow(2).mean(-1) * known).sum() / known.sum().clamp(min=1.0)
    pose = (model["pose_head"].prediction_loss(pose_estimate["bin"], batch["grasp_pose"].flatten(0, 1))
            + hand_head.prediction_loss(pose_estimate["hand"], hand_pose) + point)
    encoder = _unwrap(model["encoder"])
    ground = grounding_loss(encoder.language_attention, batch["target_uv"].flatten(0, 1), encoder.token_grid)
    scene_ground = (scene_grounding_loss(model, scenes, tcfg) if scenes is not None and tcfg.scene_batch
                    else torch.zeros_like(ground))
    wm = latent + tcfg.kl_beta * kl + reward + recon
    total = (flow + tcfg.lambda_wm * wm + tcfg.lambda_grasp * grasp
             + tcfg.lambda_pose * pose + tcfg.lambda_ground * (ground + scene_ground))
    return {"total_loss": total, "flow_loss": flow, "wm_loss": wm, "kl_loss": kl, "latent_loss": latent,
            "reward_loss": reward, "recon_loss": recon, "grasp_loss": grasp, "pose_loss": pose,
            "ground_loss": ground, "scene_ground_loss": scene_ground}


def train_one_epoch(model: dict, dataloader: DataLoader,
                    optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler._LRScheduler,
                    device: torch.device, epoch: int,
                    tcfg: TrainConfig | None = None, max_steps: int | None = None,
                    on_step=None, scenes: dict[str, torch.Tensor] | None = None) -> dict:
    """Train all components for one pass over ``dataloader`` (windows of L steps).

    Returns the epoch means of 'flow_loss', 'wm_loss', 'kl_loss', 'total_loss' (and the
    other terms). ``max_steps`` stops early; ``on_step(step_logs)`` is called per batch
    (EMA updates, curves); ``scenes`` adds the grounding-scenes loss (see compute_losses).
    """
    tcfg = tcfg or TrainConfig()
    for m in model.values():
        m.train()
    params = parameters(model)
    sums: dict[str, float] = {}
    steps = 0
    bar = tqdm(dataloader, desc=f"epoch {epoch}", leave=False, disable=os.environ.get("RANK", "0") != "0")
    for batch in bar:
        losses = compute_losses(model, _unpack(batch, device), tcfg, scenes)
        optimizer.zero_grad(set_to_none=True)
        losses["total_loss"].backward()
        _average_gradients(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs.update(grad_norm=float(grad_norm), lr=scheduler.get_last_lr()[0])
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        steps += 1
        if on_step is not None:
            on_step(logs)
        if steps % 100 == 0:
            bar.set_postfix(loss=f"{sums['total_loss'] / steps:.3f}", flow=f"{sums['flow_loss'] / steps:.3f}")
        if max_steps is not None and steps >= max_steps:
            break
    return {k: v / max(steps, 1) for k, v in sums.items()} | {"steps": steps}


def _average_gradients(params: list[nn.Parameter]) -> None:
    """Data parallelism across torchrun processes: all-reduce and average the gradients
    before the (identical) optimiser step on every rank — what DistributedDataParallel
    does, done explicitly because the RSSM is called through several methods per step
    (DDP only hooks ``forward``)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad.div_(world)


def warmup_cosine(optimizer: torch.optim.Optimizer, tcfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up 0 -> lr over warmup_steps, then cosine decay to min_lr at total_steps."""
    floor = tcfg.min_lr / tcfg.lr

    def factor(step: int) -> float:
        if step < tcfg.warmup_steps:
            return step / max(1, tcfg.warmup_steps)
        progress = min(1.0, (step - tcfg.warmup_steps) / max(1, tcfg.total_steps - tcfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA:
    """Exponential moving average of the weights (evaluated instead of the raw weights)."""

    def __init__(self, model: dict[str, nn.Module], decay: float):
        self.decay = decay
        self.shadow = {k: copy.deepcopy(m).eval().requires_grad_(False) for k, m in model.items()}

    @torch.no_grad()
    def update(self, model: dict[str, nn.Module]) -> None:
        shadow, live = [], []
        for k, m in model.items():
            for s, p in zip(self.shadow[k].state_dict().values(), _unwrap(m).state_dict().values()):
                if s.dtype.is_floating_point:
                    shadow.append(s)
                    live.append(p.detach())
                else:
                    s.copy_(p)
        # s <- s + (1 - decay) (p - s), all tensors in one call (a loop costs ~5 ms a step on CPU)
        torch._foreach_lerp_(shadow, live, 1 - self.decay)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def save_checkpoint(path: Path, model: dict, ema: EMA, optimizer, scheduler, step: int, history: list,
                    mcfg: ModelConfig, tcfg: TrainConfig, position: dict | None = None) -> None:
    """Write everything a resumed run needs to continue exactly: weights, EMA, optimiser,
    schedule, curves and ``position`` (where the data order and the random streams
    stand, see :func:`train`). Written to a temporary file, then renamed, so a run killed
    while saving leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": {k: _unwrap(m).state_dict() for k, m in model.items()},
                "ema": {k: m.state_dict() for k, m in ema.shadow.items()},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "history": history, "model_config": vars(mcfg), "train_config": vars(tcfg),
                "position": position or {}}, tmp)
    os.replace(tmp, path)


def random_state(device: torch.device) -> dict:
    """This process's torch random streams (CPU, and the GPU's when training there):
    augmentation, word dropout, teacher forcing and the flow-matching noise draw from them."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def load_policy_model(path: str | Path, use_ema: bool = True) -> tuple[dict, ModelConfig]:
    """Model dict (eval mode) from a checkpoint, EMA weights by default."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig(**ckpt["model_config"])
    model = build_model(mcfg)
    weights = ckpt["ema"] if use_ema else ckpt["model"]
    for k, m in model.items():
        m.load_state_dict(weights[k])
        m.eval()
    return model, mcfg


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["total_loss", "flow_loss", "wm_loss", "kl_loss", "grasp_loss", "pose_loss", "ground_loss", "lr"]
    keys = [k for k in keys if all(k in h for h in history)]
    fig, axes = plt.subplots(2, 4, figsize=(16, 6))
    steps = [h["step"] for h in history]
    for ax, key in zip(axes.flat, keys):
        values = np.array([h[key] for h in history])
        ax.plot(steps, values, alpha=0.3)
        if len(values) >= 20:
            k = max(5, len(values) // 50)
            ax.plot(steps[k - 1:], np.convolve(values, np.ones(k) / k, "valid"))
        if key == "ground_loss" and any(h.get("scene_ground_loss") for h in history):
            # the grounding scenes' term beside the demonstrations' (same loss, other frames)
            ax.plot(steps, [h.get("scene_ground_loss", np.nan) for h in history], alpha=0.6, label="scenes")
            ax.legend()
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _training_scenes(data_dir: Path, tcfg: TrainConfig, image_size: int, device: torch.device,
                     rank: int) -> dict[str, torch.Tensor] | None:
    """The grounding scenes stored with the first dataset, when the profile uses them
    (``scene_batch`` > 0); says so either way rather than silently training without."""
    from novapick.data.scenes import SCENES_FILE

    if not tcfg.scene_batch:
        return None
    path = data_dir / SCENES_FILE
    if not path.exists():
        if rank == 0:
            print(f"no grounding scenes at {path}: training without them (make them with "
                  f"python -m novapick.data.scenes --out {data_dir} --image-size {image_size} ...)")
        return None
    scenes = load_scene_tensors(path, image_size, device)
    if rank == 0:
        print(f"grounding scenes: {len(scenes['rgb'])} from {path}, {tcfg.scene_batch} per step")
    return scenes


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world


def train(data_dirs: list[str], out: str | Path, profile: str = "quick", steps: int | None = None,
          batch_size: int | None = None, seq_len: int | None = None, seed: int = 0,
          device: str | None = None, resume: bool = True, log_every: int = 10, lr: float | None = None,
          checkpoint_every: int | None = None) -> dict:
    """Train the VLA from scratch or resume from ``out``/last.pt; returns a summary.

    A checkpoint is written every ``checkpoint_every`` steps (the profile's by default)
    and at the end. Resuming continues exactly where it was saved: the same remaining
    batches of the interrupted epoch and the same random streams, so a run stopped and
    resumed ends with the same weights as one that never stopped."""
    from novapick.data.dataset import EpisodeWindows, EpisodeStore, _Batched, load_stats

    rank, world = _distributed()
    prof = get_profile(profile)
    mcfg, tcfg = prof.model, prof.train
    tcfg.total_steps = steps or tcfg.total_steps
    tcfg.lr = lr or tcfg.lr
    tcfg.warmup_steps = min(tcfg.warmup_steps, tcfg.total_steps // 10)
    tcfg.batch_size, tcfg.seq_len, tcfg.seed = batch_size or tcfg.batch_size, seq_len or tcfg.seq_len, seed
    tcfg.checkpoint_every = checkpoint_every or tcfg.checkpoint_every
    mcfg.context_steps = tcfg.seq_len  # the policy replays windows of the length it was trained on
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)  # same initial weights everywhere (rank 0's are broadcast too)
    out = Path(out)

    store = EpisodeStore(data_dirs)
    stats = load_stats(data_dirs[0], store)
    if rank == 0:
        stats.save(out / "stats.json")  # the policy normalises its inputs with these
    scenes = _training_scenes(Path(data_dirs[0]), tcfg, mcfg.image_size, dev, rank)
    windows = EpisodeWindows(store, stats, tcfg.seq_len, mcfg.image_size, only_success=True)
    sampler = torch.utils.data.DistributedSampler(windows, world, rank, shuffle=True, seed=seed) if world > 1 \
        else torch.utils.data.RandomSampler(windows, generator=torch.Generator().manual_seed(seed))
    batches = torch.utils.data.BatchSampler(sampler, tcfg.batch_size, drop_last=True)

    model = {k: m.to(dev) for k, m in build_model(mcfg).items()}
    model["action_scaler"].set_stats(stats.action_mean, stats.action_std)
    known = np.abs(store.grasp_pose).sum(1) > 0
    if known.any():
        model["pose_head"].set_stats(store.grasp_pose[known])
        model["hand_pose_head"].set_stats(store.grasp_pose_hand[known])
    if world > 1:  # every rank starts from rank 0's weights
        for p in [p for m in model.values() for p in m.state_dict().values()]:
            torch.distributed.broadcast(p, src=0)
    # fused: one kernel for all parameters instead of a loop over ~150 tensors; on the
    # quick profile's CPU step it saved ~10 ms of ~230 ms (same update, up to rounding)
    optimizer = torch.optim.AdamW(parameters(model), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=True)
    scheduler = warmup_cosine(optimizer, tcfg)
    torch.manual_seed(seed + rank)  # different flow-matching noise per rank
    ema = EMA(model, tcfg.ema_decay)
    step, history = 0, []
    # Where the data stands: the epoch, how many of its batches are done, and (one
    # process) the order generator's state when the epoch began, which re-creates its order.
    position = {"epoch": 0, "batches_done": 0, "order_state": None}
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        for k, m in model.items():
            _unwrap(m).load_state_dict(ckpt["model"][k])
        for k, m in ema.shadow.items():
            m.load_state_dict(ckpt["ema"][k])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, history = ckpt["step"], ckpt["history"]
        saved = ckpt.get("position") or {}
        if saved.get("world_size", world) != world:
            if rank == 0:
                print(f"resuming with {world} processes instead of {saved['world_size']}: the weights, "
                      "optimiser and schedule continue, the data order and random streams start afresh")
        elif saved:
            position.update({k: saved[k] for k in position})
            set_random_state(saved["random_state"][rank], dev)

    def save() -> None:
        # every process's random streams go into rank 0's file (gathering is collective)
        states = [random_state(dev)]
        if world > 1:
            states = [None] * world
            torch.distributed.all_gather_object(states, random_state(dev))
        if rank == 0:
            save_checkpoint(last, model, ema, optimizer, scheduler, step, history, mcfg, tcfg,
                            {**position, "world_size": world, "random_state": states})

    start, start_step = time.perf_counter(), step

    def on_step(logs: dict) -> None:
        nonlocal step
        step += 1
        position["batches_done"] += 1
        ema.update(model)
        if step % log_every == 0 or step == tcfg.total_steps:
            history.append({"step": step, **logs})
        if step % tcfg.checkpoint_every == 0 and step < tcfg.total_steps:
            save()

    bar = tqdm(total=tcfg.total_steps, initial=step, desc="train", disable=rank != 0)
    while step < tcfg.total_steps:
        if world > 1:
            sampler.set_epoch(position["epoch"])
        elif position["order_state"] is None:      # a new epoch: remember where its order begins
            position["order_state"] = sampler.generator.get_state()
        else:                                      # resuming mid-epoch: re-create its order
            sampler.generator.set_state(position["order_state"])
        remaining = list(batches)[position["batches_done"]:]
        # its own generator: by default each new iterator draws a worker seed from the
        # global stream, which a run resumed mid-epoch would draw once more than one that never stopped
        loader = DataLoader(_Batched(windows, as_tuple=False), sampler=remaining, batch_size=None,
                            collate_fn=lambda b: b, generator=torch.Generator().manual_seed(seed))
        before = step
        train_one_epoch(model, loader, optimizer, scheduler, dev, position["epoch"], tcfg,
                        max_steps=tcfg.total_steps - step, on_step=on_step, scenes=scenes)
        bar.update(step - before)
        if step < tcfg.total_steps or position["batches_done"] == len(batches):  # the epoch is complete
            position.update(epoch=position["epoch"] + 1, batches_done=0, order_state=None)
    bar.close()
    train_s = time.perf_counter() - start
    summary = {"steps": step, "train_s": train_s, "steps_per_s": (step - start_step) / max(train_s, 1e-9),
               "final": history[-1] if history else {}, "windows": len(windows), "world_size": world,
               "grounding_scenes": len(scenes["rgb"]) if scenes is not None else 0,
               "params": {k: sum(p.numel() for p in _unwrap(m).parameters()) for k, m in model.items()}}
    save()
    if rank == 0:
        plot_curves(history, out / "loss_curves.png")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=["quick", "full"], default="quick")
    ap.add_argument("--data", nargs="+", required=True, help="dataset directories (the first is the training split)")
    ap.add_argument("--out", default="artifacts/vla")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, help="peak learning rate (default: the profile's)")
    ap.add_argument("--device")
    ap.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the profile's)")
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)
    summary = train(args.data, args.out, args.profile, args.steps, args.batch_size, args.seq_len, args.seed,
                    args.device, resume=not args.no_resume, lr=args.lr, checkpoint_every=args.checkpoint_every)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
