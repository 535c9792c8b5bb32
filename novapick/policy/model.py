"""Model assembly: a student's (or the reference's) components plus the harness's parts.

The plug-in contract (``docs/contract.md``): a *components module* provides the case
study's classes, ``ObservationEncoder``, ``RSSM`` and ``FlowMatchingActionHead``
(Section 3.4 constructors and shapes), optionally ``GraspSuccessHead``,
``train_one_epoch`` and ``evaluate_model``. :func:`build_model` makes the model dict
from them at the profile's sizes. With ``ModelConfig.extensions`` (the reference
policy's default) the harness adds its own heads around them (``novapick.policy.heads``)
and reads the flow head as a clean-chunk predictor (``novapick.policy.flow``); without,
the model is the case study's exactly: encoder, RSSM, flow head and grasp head.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from novapick.config import ModelConfig
from novapick.policy.flow import CleanChunkParametrization
from novapick.policy.heads import ActionScaler, GraspPointHead, GraspPoseHead, GraspSuccessHead, attention_centre

PROPRIO_INPUT = 14 + 2  # normalised joint state + gripper state (suction pressure, aperture)
# The pose features the controller reads (see extend_observation): from the bin-frame
# estimate x, y, z, roll, pitch and width (not its yaw); from the hand-relative one the
# offset (dx, dy: GraspPointHead) and the wrist turn still to go (sin, cos of 2 dyaw).
BIN_FEATURES_READ = (0, 1, 2, 3, 4, 7)
HAND_FEATURES_READ = (0, 1, 5, 6)
REQUIRED_CLASSES = ("ObservationEncoder", "RSSM", "FlowMatchingActionHead")
# What the extensions read from the encoder after its forward pass (docs/contract.md)
ENCODER_EXTENSION = ("language_attention", "patch_tokens", "token_grid")


@dataclass
class Components:
    """The pieces a student writes, found by name in one module (``source``)."""

    source: str
    encoder: type
    rssm: type
    flow_head: type
    grasp_head: type = GraspSuccessHead
    train_one_epoch: Callable | None = None
    evaluate_model: Callable | None = None


def load_components(module: str = "solutions") -> Components:
    """Import ``module`` (e.g. "solutions" or a student's "my_components") and collect its
    components; a missing class is named in the error."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"cannot import the components module {module!r}: {e}") from e
    missing = [name for name in REQUIRED_CLASSES if not hasattr(mod, name)]
    if missing:
        raise ImportError(f"components module {module!r} lacks {missing}; it must define "
                          f"{list(REQUIRED_CLASSES)} (docs/contract.md)")
    return Components(module, mod.ObservationEncoder, mod.RSSM, mod.FlowMatchingActionHead,
                      getattr(mod, "GraspSuccessHead", GraspSuccessHead),
                      getattr(mod, "train_one_epoch", None), getattr(mod, "evaluate_model", None))


def _accepts(cls: type, keyword: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_model(cfg: ModelConfig, components: Components) -> dict[str, nn.Module]:
    """The model dict: the case study's 'encoder', 'rssm', 'flow_head' and 'grasp_head',
    built with the profile's sizes; with ``cfg.extensions`` also the harness's parts:
    'proprio' (the robot's own state, added to the observation embedding: the arm must
    know where it is and whether the cup has sealed), the grasp-pose heads read by the
    controller, 'pose_input' (see :func:`extend_observation`) and 'action_scaler'.
    The construction order is fixed: it decides the random initial weights."""
    if not _accepts(components.encoder, "config"):
        raise TypeError(f"{components.source}.ObservationEncoder must accept the keyword config= "
                        "(the profile's ModelConfig: backbones and image size), see docs/contract.md")
    rssm_sizes = {"hidden_dim": cfg.hidden_dim} if _accepts(components.rssm, "hidden_dim") else {}
    ext = cfg.extensions
    model = {"encoder": components.encoder(cfg.obs_embed_dim, config=cfg)}
    if ext:
        model["proprio"] = nn.Sequential(nn.Linear(PROPRIO_INPUT, 128), nn.SiLU(), nn.Linear(128, cfg.obs_embed_dim))
    model["rssm"] = components.rssm(cfg.obs_embed_dim, cfg.action_dim, cfg.det_dim, cfg.stoch_dim,
                                    cfg.stoch_classes, **rssm_sizes)
    head = components.flow_head(cfg.chunk_size, cfg.action_dim, cfg.cond_dim)
    model["flow_head"] = CleanChunkParametrization(head) if ext else head
    model["grasp_head"] = components.grasp_head(cfg.cond_dim, cfg.dropout)
    if ext:
        pose_inputs = len(BIN_FEATURES_READ) + len(HAND_FEATURES_READ) + 3
        model |= {"pose_head": GraspPoseHead(cfg.obs_embed_dim, cfg.dropout),
                  "hand_pose_head": GraspPoseHead(cfg.obs_embed_dim, cfg.dropout),
                  "grasp_point_head": GraspPointHead(cfg.token_dim, cfg.dropout),
                  "pose_input": nn.Sequential(nn.Linear(pose_inputs, 128), nn.SiLU(),
                                              nn.Linear(128, cfg.obs_embed_dim)),
                  "action_scaler": ActionScaler(cfg.action_dim)}
    return model


def parameters(model: dict[str, nn.Module]) -> list[nn.Parameter]:
    """Every trainable parameter of the model dict, in the dict's order."""
    return [p for m in model.values() for p in m.parameters() if p.requires_grad]


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel-style wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") else module


def condition(h: torch.Tensor, z: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Flow-head conditioning c = [h, z_flat, obs_embed]: (..., 512 + 1024 + 256)."""
    return torch.cat([h, z.flatten(-2), obs], dim=-1)


def encoder_readouts(model: dict) -> nn.Module:
    """The encoder, checked for what the extensions read after its forward pass."""
    encoder = unwrap(model["encoder"])
    missing = [a for a in ENCODER_EXTENSION if getattr(encoder, a, None) is None]
    if missing:
        raise AttributeError(f"the encoder has no {missing} after its forward pass: the extensions (grounding "
                             "loss, grasp-point head) need them; set them in forward (docs/contract.md) or train "
                             "with ModelConfig(extensions=False)")
    return encoder


def extend_observation(model: dict, seen_by_camera: torch.Tensor, robot_state: torch.Tensor,
                       true_pose: torch.Tensor | None = None):
    """The encoder's embedding (N, D) -> the extended observation embedding (N, D) and
    perception's grasp-pose estimates, standardised :func:`grasp_pose_features` (N, 8)
    each: {"bin": in the bin's frame, "hand": as seen from the hand}, and "point" (N, 2)
    the hand-relative offset of :class:`GraspPointHead`. Call right after the encoder's
    forward pass (it reads the encoder's attention and patch tokens).

    ``true_pose`` (N, 10), see :func:`teacher_pose`: wherever it is not NaN the
    controller is given it instead of the estimate (training; and the perception-oracle
    benchmark, benchmarks/bench_oracle_perception.py)."""
    obs = seen_by_camera + model["proprio"](robot_state)
    # Two estimates of the same grasp. In the bin's frame, with the arm's state at hand:
    # good at the height (transparent items give no depth). But its yaw is learnt as a
    # shortcut: in the expert's data the wrist is already turning to the planned yaw, so
    # the head reads it off the joint angles, and on the policy's own rollouts it said
    # "no turn needed". So the yaw comes from the second head, which sees the pixels
    # alone and is asked for the grasp as the wrist camera shows it, and the offset to
    # the grasp from the patches the instruction attends to (GraspPointHead).
    encoder = encoder_readouts(model)
    pose = {"bin": model["pose_head"](obs), "hand": model["hand_pose_head"](seen_by_camera),
            "point": model["grasp_point_head"](encoder.patch_tokens, encoder.language_attention)}
    seen = attention_centre(encoder.language_attention, encoder.token_grid)
    # The controller reads perception's explicit estimates, not only the embedding that
    # contains them. Detached, so the flow loss cannot pull the estimates away from what
    # they are supervised to be.
    hand = torch.cat([pose["point"], pose["hand"][:, HAND_FEATURES_READ[2:]]], -1)
    explicit = torch.cat([pose["bin"][:, BIN_FEATURES_READ], hand], -1).detach()
    if true_pose is not None:
        explicit = torch.where(true_pose.isnan(), explicit, true_pose)
    return obs + model["pose_input"](torch.cat([explicit, seen.detach()], -1)), pose


def encode(model: dict, rgb: torch.Tensor, depth: torch.Tensor, language: torch.Tensor,
           robot_state: torch.Tensor, true_pose: torch.Tensor | None = None) -> torch.Tensor:
    """Frames (N, ...) -> observation embeddings (N, D): the encoder's, extended with the
    robot's state and perception's estimates when the model has the extensions."""
    seen_by_camera = model["encoder"](rgb, depth, language)
    if "proprio" not in model:
        return seen_by_camera
    return extend_observation(model, seen_by_camera, robot_state, true_pose)[0]


def teacher_pose(model: dict, grasp_pose: torch.Tensor, grasp_pose_hand: torch.Tensor, p: float,
                 noise: float) -> torch.Tensor:
    """The controller's explicit pose input made from the true poses (N, 7) each, as
    :func:`extend_observation` reads it (N, 10), plus Gaussian noise of ``noise`` standard
    deviations, in a random fraction ``p`` of the frames; NaN rows elsewhere and where
    the pose is unknown (the estimate is used there).

    Why (beyond the case study): on the training frames the estimates are nearly exact
    and the embedding holds the same information, so a flow head trained on the
    estimates alone learns to read the embedding and ignores them. Given the true pose,
    slightly noisy, in half the frames, it learns to trust this input, as the privileged
    controller (benchmarks/bench_privileged_policy.py) does."""
    bin_head, hand_head = model["pose_head"], model["hand_pose_head"]
    true = torch.cat([bin_head.standardise(grasp_pose)[:, BIN_FEATURES_READ],
                      hand_head.standardise(grasp_pose_hand)[:, HAND_FEATURES_READ]], -1)
    true = true + noise * torch.randn_like(true)
    use = (torch.rand(len(true), device=true.device) < p) & (grasp_pose.abs().sum(-1) > 0)
    return torch.where(use[:, None], true, torch.full_like(true, float("nan")))


def load_policy_model(path: str | Path, use_ema: bool = True,
                      components: Components | None = None) -> tuple[dict, ModelConfig]:
    """Model dict (eval mode) from a checkpoint, EMA weights by default. The components
    are the module the checkpoint was trained with unless given."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig(**ckpt["model_config"])
    model = build_model(mcfg, components or load_components(ckpt.get("components", "solutions")))
    weights = ckpt["ema"] if use_ema else ckpt["model"]
    for k, m in model.items():
        m.load_state_dict(weights[k])
        m.eval()
    return model, mcfg
