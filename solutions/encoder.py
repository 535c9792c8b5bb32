"""Notebook 04a — the multimodal observation encoder (Section 3.4, component 1).

Vision (RGB + depth) becomes a set of patch tokens (B, N, D) (D = 384 with DINOv2, 128 in
the quick profile's small CNN); the instruction becomes one 512-d embedding. Two
decoder blocks let the language side (a learnable [CLS] token plus the instruction
token) query the patches: the two queries first exchange information (self-attention),
then attend to the patches (cross-attention), so the patches showing "the RED bottle"
get the attention; the [CLS] output is the observation embedding (B, 256).

Training can supervise where the instruction token looks (``language_attention``; see
``solutions.training.grounding_loss``): the simulator knows where the named item is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from novapick.backbones import CLIP_TEXT_DIM, DINOV2_DIM, freeze, load_clip_text, load_dinov2_vits14
from novapick.config import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VOCAB_SIZE = 49408  # CLIP BPE vocabulary
# The small encoder's depth input: normalised depth (metres / 2 m) is centred on 0.3 m and
# scaled so that the cell's working range, 0.1-0.5 m from the wrist camera, spans [-1, 1]
# (invalid pixels, 0, land at -1.5). Unscaled, 1 cm of height is 0.005 units beside RGB's
# +-1 and the network learns heights from the category *word* instead of from depth.
DEPTH_CENTRE, DEPTH_GAIN = 0.15, 10.0


class DinoPatchEncoder(nn.Module):
    """Frozen DINOv2 ViT-S/14 patch tokens + a learned linear projection of the depth
    patches (the 4th channel), added token by token. (B,3,S,S),(B,1,S,S) -> (B,N,384)."""

    def __init__(self, image_size: int = 224, pretrained: bool = True):
        super().__init__()
        vit, self.pretrained = load_dinov2_vits14(pretrained, image_size)
        self.vit = freeze(vit)
        self.depth_proj = nn.Conv2d(1, DINOV2_DIM, kernel_size=14, stride=14)  # linear per patch
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = self.vit.forward_features((rgb - self.mean) / self.std)
        patches = tokens[:, self.vit.num_prefix_tokens:]                # drop [CLS]/registers
        return patches + self.depth_proj(depth).flatten(2).transpose(1, 2)  # (B, N, 384)


class SmallPatchEncoder(nn.Module):
    """Quick-profile stand-in with the same kind of output: a trainable CNN over RGB-D
    (three stride-2 convolutions and one at full stride) whose (S/8 x S/8) feature map
    becomes N patch tokens of width ``width`` with learned positions. At 64 px: 8 x 8 =
    64 tokens, ~7 M multiply-adds per frame: > 2,000 frames/s train on 2 CPU cores."""

    def __init__(self, image_size: int = 64, width: int = 128):
        super().__init__()
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


def multihead_attention(attn: nn.MultiheadAttention, queries: torch.Tensor,
                        keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v per head, with ``attn``'s own projections: queries (B, Q, D)
    attend to keys (B, N, D) (the values are projected from the same tokens) -> outputs
    (B, Q, D) and the attention weights averaged over the heads (B, Q, N).

    The same numbers as ``attn(queries, keys, keys)``, computed batch-first. Why not call
    the module: it works sequence-first, and transposing and repacking the (N, B, 2, D)
    keys and values made the quick profile's CPU training step ~8 % slower (183 against
    167 ms, median of 40 steps)."""
    (B, Q, D), N, H = queries.shape, keys.shape[1], attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    q = F.linear(queries, w_q, b_q).view(B, Q, H, D // H).transpose(1, 2)     # (B, H, Q, d)
    k = F.linear(keys, w_k, b_k).view(B, N, H, D // H).transpose(1, 2)        # (B, H, N, d)
    v = F.linear(keys, w_v, b_v).view(B, N, H, D // H).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H), dim=-1)  # (B, H, Q, N)
    out = (weights @ v).transpose(1, 2).reshape(B, Q, D)
    return attn.out_proj(out), weights.mean(1)


class CrossAttentionBlock(nn.Module):
    """Pre-norm decoder block over a few query tokens: the queries first attend to each
    other, then to the visual tokens, then an MLP.

    Why the self-attention: cross-attention alone treats every query independently, so
    the [CLS] query (whose output is the embedding) would pool the image without ever
    seeing the instruction: the embedding would be the same whichever item is named.
    Mixing the queries first lets [CLS] read the language token and look for *that* item.
    """

    def __init__(self, dim: int = DINOV2_DIM, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.norm_self, self.norm_q = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        # no dropout on the attention weights: they are read out (and supervised) as a map
        # of where each query looks; dropout 0.1 stays in the MLP (Section 3.5)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, Q, D), visual (B, N, D) -> queries (B, Q, D), attention weights (B, Q, N)."""
        q = self.norm_self(queries)
        queries = queries + multihead_attention(self.self_attn, q, q)[0]
        attended, weights = multihead_attention(self.attn, self.norm_q(queries), self.norm_kv(visual))
        queries = queries + attended
        return queries + self.mlp(self.norm_mlp(queries)), weights


class ObservationEncoder(nn.Module):
    """RGB-D + instruction -> observation embedding (B, 256).

    ``config`` chooses the backbones (full profile: frozen DINOv2 + CLIP; quick profile:
    small trainable encoders with identical interfaces). After a forward pass,
    ``last_attention`` holds the last layer's attention of the [CLS] query over the patches
    (B, N), detached, for plotting, ``language_attention`` the first layer's attention
    of the language query (B, N), with gradients: training can tell it where the named
    item is (see ``solutions.training.grounding_loss``), and ``patch_tokens`` the visual
    tokens (B, N, D). Patches form a
    ``token_grid`` x ``token_grid`` raster, row by row from the image's top-left.
    """

    def __init__(self, obs_embed_dim: int = 256, *, config: ModelConfig | None = None):
        super().__init__()
        cfg = config or ModelConfig(obs_embed_dim=obs_embed_dim)
        self.image_size = cfg.image_size
        if cfg.visual_backbone == "dinov2_vits14":
            self.visual = DinoPatchEncoder(cfg.image_size, cfg.pretrained)
        else:
            self.visual = SmallPatchEncoder(cfg.image_size, cfg.token_dim)
        self.token_grid = cfg.image_size // (14 if cfg.visual_backbone == "dinov2_vits14" else 8)
        self.text = ClipTextEncoder(cfg.pretrained) if cfg.text_encoder == "clip_vit_b32" else SmallTextEncoder()
        width = cfg.token_dim                                             # 384 with DINOv2
        self.lang_proj = nn.Linear(CLIP_TEXT_DIM, width)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)         # learnable pooling token
        self.blocks = nn.ModuleList(CrossAttentionBlock(width, 4, cfg.dropout) for _ in range(2))
        self.fuse = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 256))
        self.out = nn.Linear(256, obs_embed_dim)
        self.last_attention: torch.Tensor | None = None
        self.language_attention: torch.Tensor | None = None
        self.patch_tokens: torch.Tensor | None = None

    def encode_language(self, language_tokens: torch.Tensor) -> torch.Tensor:
        """(B, 77) CLIP token ids -> (B, 512)."""
        return self.text(language_tokens)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, language_tokens: torch.Tensor) -> torch.Tensor:
        """rgb (B,3,S,S) in [0,1], depth (B,1,S,S) in [0,1], language_tokens (B,77) -> (B,256)."""
        B, S = rgb.shape[0], self.image_size
        if rgb.shape[1:] != (3, S, S) or depth.shape[1:] != (1, S, S) or depth.shape[0] != B:
            raise ValueError(f"expected rgb (B, 3, {S}, {S}) and depth (B, 1, {S}, {S}), got "
                             f"{tuple(rgb.shape)} and {tuple(depth.shape)}")
        if language_tokens.ndim != 2 or language_tokens.shape[0] != B:
            raise ValueError(f"expected language_tokens (B, 77) int token ids, got {tuple(language_tokens.shape)}")
        visual = self.visual(rgb, depth)                                       # (B, N, D)
        self.patch_tokens = visual   # with gradients: the grasp-point head reads them (training.py)
        lang = self.lang_proj(self.encode_language(language_tokens.long()))    # (B, D)
        queries = torch.cat([self.cls.expand(B, -1, -1), lang[:, None]], dim=1)  # (B, 2, D)
        for i, block in enumerate(self.blocks):
            queries, weights = block(queries, visual)
            if i == 0:  # where the instruction looks first; [CLS] reads the result in block 2
                self.language_attention = weights[:, 1]                        # (B, N)
        self.last_attention = weights[:, 0].detach()                           # (B, N)
        return self.out(self.fuse(queries[:, 0]))                              # (B, 256)
