"""The training extras beyond the case study, applied by the harness through one hook.

A student's ``train_one_epoch(..., extras=None)`` computes the case study's composite
loss L = L_flow + 0.5 L_wm + 0.1 L_grasp. When the harness passes ``extras`` (a
:class:`TrainingExtras`), four calls are all it needs (``docs/contract.md``):

1. the batches it receives are already *prepared*: augmented windows, word dropout and
   the teacher-forced pose input (:meth:`TrainingExtras.prepare`, done by the harness),
2. ``obs = extras.observation(batch, obs_embed)`` right after the encoder: adds the
   robot's own state and perception's grasp-pose estimates to the embedding,
3. ``flow = extras.flow_loss(head, actions, cond, batch)`` instead of the plain MSE:
   standardised actions, masked padding, (1 - t)^2 weighting, several draws per frame,
4. ``for term in extras.loss(batch, losses, states=(H, Z)).values(): total = total + term``:
   the weighted pose and grounding losses and, given the RSSM's posterior states, the
   open-loop imagination loss (it also writes their unweighted values into ``losses``
   for the logs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from novapick.backbones import tokenize
from novapick.config import TrainConfig
from novapick.data.scenes import load_scenes
from novapick.data.schema import DEPTH_MAX_M
from novapick.policy.flow import extended_flow_loss
from novapick.policy.heads import grounding_loss
from novapick.policy.model import encoder_readouts, extend_observation, teacher_pose, unwrap
from novapick.train.augment import augment_training_windows
from novapick.train.batch import GROUNDED_KEYS, reconstruction_loss, unpack_batch

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


def load_scene_tensors(path: str | Path, image_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A grounding-scenes file (:func:`novapick.data.scenes.load_scenes`) as tensors on
    ``device``, the instructions tokenised once."""
    data = load_scenes(path, image_size)
    return {"rgb": torch.from_numpy(data["rgb"]).to(device),
            "depth": torch.from_numpy(data["depth"].astype(np.float32)).to(device),
            "language": tokenize(list(data["instruction"])).to(device),
            "target_uv": torch.from_numpy(data["target_uv"]).to(device)}


def scene_grounding_loss(model: dict, scenes: dict[str, torch.Tensor], tcfg: TrainConfig) -> torch.Tensor:
    """The grounding loss on ``tcfg.scene_batch`` random grounding scenes (first looks at
    other bins, :mod:`novapick.data.scenes`), augmented like the windows.

    Why (beyond the case study): the demonstrations show each bin from afar only once,
    so the VLA learns to find the named item among the others from 600 first looks; it
    then missed the item in the evaluation bins' first frames twice as often as in the
    training ones. Scenes cost no expert and no rollout: only the encoder runs on them,
    and only the language query's attention is supervised. ``scenes``: rgb (N, 3, S, S)
    uint8, depth (N, 1, S, S) metres, language (N, 77), target_uv (N, 3)."""
    pick = torch.randint(len(scenes["rgb"]), (tcfg.scene_batch,))
    rgb = scenes["rgb"][pick].float().div(255.0)
    depth = (scenes["depth"][pick].float() / DEPTH_MAX_M).clamp(0, 1)
    rgb, depth = augment_training_windows(rgb[:, None], depth[:, None], tcfg.colour_jitter,
                                          tcfg.depth_noise_m / DEPTH_MAX_M)       # as 1-step windows
    model["encoder"](rgb[:, 0], depth[:, 0], drop_words(scenes["language"][pick], tcfg.word_dropout))
    encoder = encoder_readouts(model)
    return grounding_loss(encoder.language_attention, scenes["target_uv"][pick], encoder.token_grid)


class TrainingExtras:
    """The reference policy's additions to the case study's loss, for a model built with
    ``ModelConfig(extensions=True)`` (see the module docstring for the four calls)."""

    def __init__(self, model: dict, tcfg: TrainConfig, scenes: dict[str, torch.Tensor] | None = None):
        self.model, self.tcfg, self.scenes = model, tcfg, scenes
        self._pose: dict[str, torch.Tensor] | None = None

    def prepare(self, batch, device: torch.device) -> dict[str, torch.Tensor]:
        """A loader batch -> the batch train_one_epoch sees: windows augmented (colour
        jitter, depth noise), instruction words dropped, and 'teacher_pose' (B*L, 10),
        the true pose the controller gets in place of its estimate (NaN: use the estimate)."""
        b = unpack_batch(batch, device)
        t = self.tcfg
        b["rgb"], b["depth"] = augment_training_windows(b["rgb"], b["depth"], t.colour_jitter,
                                                        t.depth_noise_m / DEPTH_MAX_M)
        b["language"] = drop_words(b["language"], t.word_dropout)           # one draw per window
        b["teacher_pose"] = teacher_pose(self.model, b["grasp_pose"].flatten(0, 1),
                                         b["grasp_pose_hand"].flatten(0, 1), t.pose_teacher_p, t.pose_teacher_noise)
        return b

    def observation(self, batch: dict, obs_embed: torch.Tensor) -> torch.Tensor:
        """The encoder's embedding of the batch's frames (B*L, D) -> the extended one (B*L, D)."""
        robot_state = torch.cat([batch["proprioception"], batch["gripper_state"]], -1).flatten(0, 1)
        obs, self._pose = extend_observation(self.model, obs_embed, robot_state, batch.get("teacher_pose"))
        return obs

    def flow_loss(self, head, actions: torch.Tensor, condition: torch.Tensor, batch: dict) -> torch.Tensor:
        """The extended flow loss: actions (B*L, 16, 10) in raw units, condition (B*L, C)."""
        scaled = self.model["action_scaler"].normalize(actions)
        return extended_flow_loss(head, scaled, condition, batch["pad_mask"].flatten(0, 1),
                                  weighting=self.tcfg.flow_weighting, samples=self.tcfg.flow_samples)

    def loss(self, batch: dict, losses: dict[str, torch.Tensor],
             states: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The weighted extra terms to add to the total, {'pose', 'ground'} and, given the
        RSSM's posterior ``states`` (H (B, L, det), Z (B, L, stoch, classes)), 'imagine'
        (:func:`imagination_loss`); their unweighted values go into ``losses``
        ('pose_loss', 'ground_loss', 'scene_ground_loss', 'imagine_loss')."""
        if self._pose is None:
            raise RuntimeError("call extras.observation(batch, obs_embed) before extras.loss")
        m, t = self.model, self.tcfg
        hand_pose = batch["grasp_pose_hand"].flatten(0, 1)
        point_target = m["hand_pose_head"].standardise(hand_pose)[:, :2]
        known = (hand_pose.abs().sum(-1) > 0).float()
        point = ((self._pose["point"] - point_target).pow(2).mean(-1) * known).sum() / known.sum().clamp(min=1.0)
        pose = (m["pose_head"].prediction_loss(self._pose["bin"], batch["grasp_pose"].flatten(0, 1))
                + m["hand_pose_head"].prediction_loss(self._pose["hand"], hand_pose) + point)
        encoder = encoder_readouts(m)
        ground = grounding_loss(encoder.language_attention, batch["target_uv"].flatten(0, 1), encoder.token_grid)
        scene_ground = (scene_grounding_loss(m, self.scenes, t) if self.scenes is not None and t.scene_batch
                        else torch.zeros_like(ground))
        self._pose = None
        losses.update(pose_loss=pose, ground_loss=ground, scene_ground_loss=scene_ground)
        terms = {"pose": t.lambda_pose * pose, "ground": t.lambda_ground * (ground + scene_ground)}
        if states is not None and t.lambda_imagine > 0:
            losses["imagine_loss"] = imagination_loss(unwrap(m["rssm"]), *states, batch)
            terms["imagine"] = t.lambda_imagine * losses["imagine_loss"]
        return terms


def imagination_loss(rssm, H: torch.Tensor, Z: torch.Tensor, batch: dict) -> torch.Tensor:
    """Open-loop prediction error: from each posterior state of a window (H (B, L, det),
    Z (B, L, stoch, classes)), imagine the window's remaining steps under the executed
    actions with the prior alone, and decode them; normalised MSE against the grounded
    observations and rewards that really followed.

    Why (beyond the case study): the case study's terms train the prior one step at a
    time, to match the posterior's class probabilities, and the decoder on posterior
    states only. Nothing asks a *sequence* of prior states to decode into the future,
    which is exactly what rehearsal reads; without this term the imagined states decode
    worse than copying the last observation (docs/experiments.md)."""
    actions = batch["actions"][:, :, 0]                                # executed at each frame
    L = H.shape[1]
    loss = H.new_zeros(())
    for start in range(L - 1):
        dream = rssm.imagine_trajectory(H[:, start], Z[:, start], actions[:, start:L - 1])
        future = {k: batch[k][:, start + 1:] for k in (*GROUNDED_KEYS, "rewards")}   # what followed
        loss = loss + reconstruction_loss(rssm.decode_observation(dream["h_states"], dream["z_states"]), future)
        loss = loss + torch.nn.functional.mse_loss(dream["rewards"], future["rewards"].float())
    return loss / max(L - 1, 1)
