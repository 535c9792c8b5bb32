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
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from novapick.config import ModelConfig

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


# ---- the encoders a student plugs their fusion onto ---------------------------------------
# Section 3.4's visual and language encoders, and the quick profile's small trainable
# stand-ins with the same interfaces (patch tokens (B, N, D); text (B, 77) -> (B, 512)).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VOCAB_SIZE = 49408  # CLIP BPE vocabulary
# The small encoder's depth input: normalised depth (metres / 2 m) is centred on 0.3 m and
# scaled so that the cell's working range, 0.1-0.5 m from the wrist camera, spans [-1, 1]
# (invalid pixels, 0, land at -1.5). Unscaled, 1 cm of height is 0.005 units beside RGB's
# +-1 and the network learns heights from the category *word* instead of from depth.
DEPTH_CENTRE, DEPTH_GAIN = 0.15, 10.0


class DinoPatchEncoder(nn.Module):
    """Frozen DINOv2 ViT-S/14 patch tokens of the RGB image: (B,3,S,S) in [0,1] -> (B,N,384),
    N = (S/14)^2, row by row from the top-left. It does not see depth (``sees_depth`` is
    False): the observation encoder adds its own learned depth projection (Section 3.4)."""

    sees_depth = False
    patch_size = 14

    def __init__(self, image_size: int = 224, pretrained: bool = True):
        super().__init__()
        vit, self.pretrained = load_dinov2_vits14(pretrained, image_size)
        self.vit = freeze(vit)
        self.width = DINOV2_DIM
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            tokens = self.vit.forward_features((rgb - self.mean) / self.std)
        return tokens[:, self.vit.num_prefix_tokens:]                   # drop [CLS]/registers


class SmallPatchEncoder(nn.Module):
    """Quick-profile stand-in with the same kind of output: a trainable CNN over RGB-D
    (three stride-2 convolutions and one at full stride) whose (S/8 x S/8) feature map
    becomes N patch tokens of width ``width`` with learned positions. At 64 px: 8 x 8 =
    64 tokens, ~7 M multiply-adds per frame: > 2,000 frames/s train on 2 CPU cores."""

    sees_depth = True   # depth is the CNN's 4th input channel: no separate projection needed
    patch_size = 8

    def __init__(self, image_size: int = 64, width: int = 128):
        super().__init__()
        self.width = width
        chans, strides = [4, 16, 32, 64, width], [2, 2, 2, 1]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(chans[:-1], chans[1:], strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
        self.cnn = nn.Sequential(*layers[:-2])  # tokens end linearly (no norm/activation)
        # channels-last convolutions run faster on the CPU (oneDNN's native layout)
        self.cnn.to(memory_format=torch.channels_last)
        self.pos = nn.Parameter(torch.randn(1, (image_size // 8) ** 2, width) * 0.02)
        self.pretrained = False

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        x = torch.cat([rgb * 2 - 1, (depth - DEPTH_CENTRE) * DEPTH_GAIN], dim=1)
        x = self.cnn(x.contiguous(memory_format=torch.channels_last))       # (B, width, S/8, S/8)
        # channels-last memory is (B, S/8, S/8, width): the tokens without a copy; the
        # positions let the attention read out *where* the attended object is
        return x.permute(0, 2, 3, 1).flatten(1, 2) + self.pos              # (B, N, width)


class ClipTextEncoder(nn.Module):
    """Frozen CLIP ViT-B/32 text tower: (B, 77) tokens -> (B, 512). Each distinct
    instruction is encoded once and cached (instructions repeat across a dataset)."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        clip, self.pretrained = load_clip_text(pretrained)
        self.clip = freeze(clip)
        self._cache: dict[bytes, torch.Tensor] = {}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keys = [row.cpu().numpy().tobytes() for row in tokens]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            with torch.no_grad():
                feats = self.clip.encode_text(tokens[missing]).float()
            for i, f in zip(missing, feats):
                self._cache[keys[i]] = f.cpu()
        return torch.stack([self._cache[k] for k in keys]).to(tokens.device)


class SmallTextEncoder(nn.Module):
    """Quick-profile stand-in: trainable token embeddings + one transformer layer,
    mean-pooled over real tokens: (B, 77) -> (B, 512). Token ids are hashed into 4,096
    buckets: the course's instructions use ~100 distinct words, and a 49,408 x 128
    table would cost more optimiser time than the rest of the quick model."""

    def __init__(self, width: int = 128, out_dim: int = CLIP_TEXT_DIM, buckets: int = 4096):
        super().__init__()
        self.buckets = buckets
        self.embed = nn.Embedding(buckets, width)
        self.pos = nn.Parameter(torch.zeros(1, 77, width))
        self.layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.out = nn.Linear(width, out_dim)
        self.pretrained = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # A training batch of windows repeats each instruction once per step: encode each
        # distinct one once and copy the result (the same values and gradients, less work).
        # index_select, not self(unique)[index]: the backward of indexing with repeated
        # indices adds the copies' gradients in a thread-timing-dependent order on the
        # CPU, so two runs with the same seed drifted apart on a busy machine
        unique, index = torch.unique(tokens, dim=0, return_inverse=True)
        if len(unique) < len(tokens):
            return self(unique).index_select(0, index)
        length = max(1, int((tokens != 0).sum(1).max()))
        tokens = tokens[:, :length]  # drop the all-padding tail: same result, ~7x less work
        pad = tokens == 0                                                  # CLIP pads with 0
        ids = torch.where(pad, tokens, tokens % (self.buckets - 1) + 1)   # 0 stays padding
        x = self.layer(self.embed(ids) + self.pos[:, :tokens.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return self.out((x * keep).sum(1) / keep.sum(1).clamp(min=1))




def build_patch_encoder(cfg: "ModelConfig") -> nn.Module:
    """The profile's visual encoder: frozen DINOv2 ViT-S/14 (full) or the small RGB-D CNN
    (quick). Both map images (B, 3, S, S) (+ depth (B, 1, S, S)) to patch tokens (B, N, D)
    with ``width`` = D, ``patch_size`` and ``sees_depth`` telling how to fuse depth."""
    if cfg.visual_backbone == "dinov2_vits14":
        return DinoPatchEncoder(cfg.image_size, cfg.pretrained)
    return SmallPatchEncoder(cfg.image_size, cfg.token_dim)


def build_text_encoder(cfg: "ModelConfig") -> nn.Module:
    """The profile's language encoder: frozen CLIP ViT-B/32 text tower (full) or the small
    trainable one (quick); (B, 77) token ids -> (B, 512) either way."""
    return ClipTextEncoder(cfg.pretrained) if cfg.text_encoder == "clip_vit_b32" else SmallTextEncoder()
