"""Frozen backbones with their real loading code, and what happens without the internet.

In Colab the pretrained weights download from their hubs. Where a hub cannot be reached
(this project's CI machines, an offline laptop), the *same architecture* is built with
random weights and a one-line warning says so: shapes, parameter counts and latencies
stay true, only the features are not pretrained. Nothing pretends to be pretrained.

* DINOv2 ViT-S/14 (timm ``vit_small_patch14_dinov2.lvd142m``; torch.hub as a fallback)
* CLIP ViT-B/32 text tower (open_clip, OpenAI weights)
* ResNet-18 ImageNet (torchvision)

Set ``HF_HUB_OFFLINE=1`` to skip the download attempts (they take a few seconds to fail).
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch
from torch import nn

DINOV2_DIM = 384        # ViT-S/14 token width
CLIP_TEXT_DIM = 512     # CLIP ViT-B/32 text embedding
CLIP_CONTEXT = 77       # CLIP tokenizer context length
RESNET18_DIM = 512


class PretrainedUnavailable(UserWarning):
    """Raised as a warning when a backbone falls back to random initialisation."""


def _warn_random(name: str, error: Exception) -> None:
    warnings.warn(f"{name}: pretrained weights unavailable ({type(error).__name__}); using the same "
                  "architecture with RANDOM weights — features are not pretrained", PretrainedUnavailable,
                  stacklevel=3)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode (no dropout / batch-norm updates): a frozen feature extractor."""
    module.requires_grad_(False)
    return module.eval()


def load_dinov2_vits14(pretrained: bool = True, img_size: int = 224) -> tuple[nn.Module, bool]:
    """DINOv2 ViT-S/14 returning (model, is_pretrained). ``model.forward_features(x)``
    gives (B, 1 + N_patches, 384) for x (B, 3, img_size, img_size); img_size % 14 == 0."""
    import timm

    if img_size % 14:
        raise ValueError(f"DINOv2 uses 14-pixel patches: img_size must be a multiple of 14, got {img_size}")
    name = "vit_small_patch14_dinov2.lvd142m"
    if pretrained:
        try:
            return timm.create_model(name, pretrained=True, img_size=img_size, num_classes=0), True
        except Exception as error:  # noqa: BLE001 - any hub/network failure means "not available"
            _warn_random("DINOv2 ViT-S/14", error)
    return timm.create_model(name, pretrained=False, img_size=img_size, num_classes=0), False


def load_clip_text(pretrained: bool = True) -> tuple[nn.Module, bool]:
    """CLIP ViT-B/32 text tower returning (model, is_pretrained); use ``model.encode_text(tokens)``.

    open_clip builds the whole CLIP model; only the text side is kept (the image tower,
    ~88 M parameters, would be dead weight in memory and in the parameter counts)."""
    import open_clip

    model, ok = None, False
    if pretrained:
        try:
            model, ok = open_clip.create_model("ViT-B-32", pretrained="openai"), True
        except Exception as error:  # noqa: BLE001
            _warn_random("CLIP ViT-B/32", error)
    if model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # open_clip's own "initialized randomly" log line
            model = open_clip.create_model("ViT-B-32", pretrained=None)
    model.visual = nn.Identity()  # encode_text never touches it
    return model, ok


def load_resnet18(pretrained: bool = True) -> tuple[nn.Module, bool]:
    """torchvision ResNet-18 with its classifier removed: (B, 3, H, W) -> (B, 512)."""
    import torchvision

    model, ok = None, False
    if pretrained:
        try:
            model = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
            ok = True
        except Exception as error:  # noqa: BLE001
            _warn_random("ResNet-18", error)
    if model is None:
        model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()
    return model, ok


@lru_cache(maxsize=1)
def clip_tokenizer():
    """The CLIP BPE tokenizer (its vocabulary ships inside open_clip: works offline)."""
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


def tokenize(texts: list[str] | str) -> torch.Tensor:
    """Instructions -> (B, 77) int64 CLIP token ids (start, ..., end, zero padding)."""
    if isinstance(texts, str):
        texts = [texts]
    return clip_tokenizer()(list(texts)).long()
