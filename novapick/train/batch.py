"""The batch format every training function reads (the plug-in contract's data side)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

CASE_STUDY_FIELDS = ("rgb", "depth", "language", "actions", "proprioception", "rewards")


def unpack_batch(batch, device: torch.device | str) -> dict[str, torch.Tensor]:
    """A batch of (B, L, ...) windows as a dict of tensors on ``device``.

    Accepts the case study's tuple (rgb, depth, language, actions, proprioception,
    rewards) or the course loader's dict (:func:`novapick.data.dataset.make_dataloader`,
    which adds pad_mask, gripper_state, grasp_chunk, grasp_pose, grasp_pose_hand and
    target_uv). Missing extras get neutral defaults: single actions become 1-step chunks,
    nothing is padded, the grasp label is ``rewards > 0`` and unknown poses / target
    positions are zeros (the losses that need them skip such frames)."""
    if isinstance(batch, (tuple, list)):
        if len(batch) < len(CASE_STUDY_FIELDS):
            raise ValueError(f"a tuple batch needs the fields {CASE_STUDY_FIELDS}; got {len(batch)} items")
        batch = dict(zip(CASE_STUDY_FIELDS, batch))
    missing = [k for k in CASE_STUDY_FIELDS if k not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}; expected the keys {CASE_STUDY_FIELDS}")
    b = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
    if b["rgb"].ndim != 5:
        raise ValueError(f"training needs windows (B, L, 3, S, S); got rgb {tuple(b['rgb'].shape)} "
                         "(use make_dataloader(..., seq_len=L))")
    B, L = b["rgb"].shape[:2]
    if b["actions"].ndim == 3:                      # (B, L, 10): single actions, make 1-step chunks
        b["actions"] = b["actions"][:, :, None]
    b.setdefault("pad_mask", torch.zeros(b["actions"].shape[:3], dtype=torch.bool, device=device))
    b.setdefault("gripper_state", torch.zeros(B, L, 2, device=device))
    b.setdefault("grasp_chunk", (b["rewards"] > 0).float())
    b.setdefault("grasp", (b["rewards"] > 0).float())
    b.setdefault("grasp_pose", torch.zeros(B, L, 7, device=device))  # unknown: no pose loss
    b.setdefault("grasp_pose_hand", torch.zeros(B, L, 7, device=device))
    b.setdefault("target_uv", torch.zeros(B, L, 3, device=device))   # unknown: no grounding loss
    return b


# ---------------------------------------------------- what the world model reconstructs

DEPTH_GRID = 8        # depth pooled to 8 x 8: where things are, not their texture
DEPTH_SCALE = 4.0     # pooled depth in [0, 1] varies by ~0.1: scaled so it weighs like the rest
# The layout of the grounded observation (B, L, GROUNDED_DIM): name -> columns
GROUNDED_LAYOUT = {"proprio": slice(0, 14),            # 7 joint angles + 7 velocities, normalised
                   "gripper": slice(14, 16),           # suction pressure, jaw aperture
                   "held": slice(16, 17),              # 1 while the target is held
                   "depth": slice(17, 17 + DEPTH_GRID ** 2)}
GROUNDED_DIM = 17 + DEPTH_GRID ** 2                    # 81
GROUNDED_KEYS = ("proprioception", "gripper_state", "grasp", "depth")   # the batch fields it is made of
# How much each dimension's normalised error counts in the reconstruction loss. The
# gripper's two numbers and the held flag decide a pick but are 3 of 81 dimensions;
# the 64 depth cells are the scene's layout, much of it redundant between neighbours.
GROUNDED_WEIGHTS = {"proprio": 1.0, "gripper": 4.0, "held": 4.0, "depth": 0.5}


def grounded_observation(batch: dict) -> torch.Tensor:
    """The world model's reconstruction target (B, L, GROUNDED_DIM), see GROUNDED_LAYOUT.

    Why these and not the observation embedding: an embedding the same network produces
    can drift towards whatever is easiest to predict (in the limit a constant), while the
    arm's state, the gripper's and a coarse depth map are what the simulator measured.
    A latent that reconstructs them has to carry where the arm is, whether the cup has
    sealed and where things stand; imagination can then be checked against them."""
    depth = batch["depth"]                                            # (B, L, 1, S, S) in [0, 1]
    B, L = depth.shape[:2]
    coarse = F.adaptive_avg_pool2d(depth.flatten(0, 1).float(), DEPTH_GRID).view(B, L, -1)
    return torch.cat([batch["proprioception"].float(), batch["gripper_state"].float(),
                      batch["grasp"].float()[..., None], DEPTH_SCALE * coarse], -1)


def grounded_weights(device: torch.device | str = "cpu") -> torch.Tensor:
    """GROUNDED_WEIGHTS per dimension of the grounded observation: (GROUNDED_DIM,)."""
    w = torch.empty(GROUNDED_DIM, device=device)
    for name, cols in GROUNDED_LAYOUT.items():
        w[cols] = GROUNDED_WEIGHTS[name]
    return w


def reconstruction_loss(decoded: torch.Tensor, batch: dict) -> torch.Tensor:
    """The world model's reconstruction term: ``decoded`` (..., GROUNDED_DIM) against
    the batch's :func:`grounded_observation` (same leading shape), the weighted
    :func:`normalised_squared_error`."""
    target = grounded_observation(batch)
    if decoded.shape != target.shape:
        raise ValueError(f"decode_observation gave {tuple(decoded.shape)}; expected {tuple(target.shape)} "
                         f"(the grounded observation, GROUNDED_DIM = {GROUNDED_DIM})")
    return normalised_squared_error(decoded, target, grounded_weights(decoded.device))


def normalised_squared_error(prediction: torch.Tensor, target: torch.Tensor,
                             weights: torch.Tensor | None = None, floor: float = 1e-3) -> torch.Tensor:
    """Squared error of (..., d) per dimension over that dimension's variance in the
    batch (floored), summed over the d dimensions and averaged over frames: d is as good
    as predicting each dimension's mean, whatever its units (``weights`` (d,) scale each
    dimension's share).

    Why normalised: the grounded quantities differ in scale by 100x (a joint velocity
    over its limit moves by ~0.05, a held flag by 1); a plain MSE would ignore the small
    ones. Why summed, as a log-likelihood sums over dimensions (DreamerV3's decoder
    loss): the KL term is in nats for the whole state; against a mean over 81 numbers,
    carrying the arm's 7 angles through the stochastic state would cost more KL than it
    saves, and the latent would drop them."""
    variance = target.flatten(0, -2).var(0).clamp(min=floor).detach()
    per_dim = (prediction - target).pow(2).flatten(0, -2).mean(0) / variance
    return (per_dim if weights is None else per_dim * weights).sum()
