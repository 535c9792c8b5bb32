"""Small building blocks shared by the harness's heads and usable by any component."""
from __future__ import annotations

from torch import nn


def mlp(sizes: list[int], dropout: float = 0.1) -> nn.Sequential:
    """Linear -> LayerNorm -> SiLU -> Dropout between sizes; the last layer is linear."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(b), nn.SiLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)
