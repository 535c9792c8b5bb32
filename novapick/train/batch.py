"""The batch format every training function reads (the plug-in contract's data side)."""
from __future__ import annotations

import torch

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
    b.setdefault("grasp_pose", torch.zeros(B, L, 7, device=device))  # unknown: no pose loss
    b.setdefault("grasp_pose_hand", torch.zeros(B, L, 7, device=device))
    b.setdefault("target_uv", torch.zeros(B, L, 3, device=device))   # unknown: no grounding loss
    return b
