"""Schedule, EMA, checkpoints and random streams: what makes a run resumable exactly."""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
from torch import nn

from novapick.config import ModelConfig, TrainConfig
from novapick.policy.model import unwrap


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
            for s, p in zip(self.shadow[k].state_dict().values(), unwrap(m).state_dict().values()):
                if s.dtype.is_floating_point:
                    shadow.append(s)
                    live.append(p.detach())
                else:
                    s.copy_(p)
        # s <- s + (1 - decay) (p - s), all tensors in one call (a loop costs ~5 ms a step on CPU)
        torch._foreach_lerp_(shadow, live, 1 - self.decay)


def save_checkpoint(path: Path, model: dict, ema: EMA, optimizer, scheduler, step: int, history: list,
                    mcfg: ModelConfig, tcfg: TrainConfig, position: dict | None = None,
                    components: str = "solutions") -> None:
    """Write everything a resumed run needs to continue exactly: weights, EMA, optimiser,
    schedule, curves, the components module and ``position`` (where the data order and
    the random streams stand). Written to a temporary file, then renamed, so a run killed
    while saving leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": {k: unwrap(m).state_dict() for k, m in model.items()},
                "ema": {k: m.state_dict() for k, m in ema.shadow.items()},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "history": history, "model_config": vars(mcfg), "train_config": vars(tcfg),
                "components": components, "position": position or {}}, tmp)
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


def average_gradients_across_processes(params: list[nn.Parameter]) -> None:
    """Data parallelism across torchrun processes: each parameter's gradient is
    all-reduced and averaged as soon as backward has accumulated it, so that clipping
    and the optimiser step (identical on every rank) see the global gradient. What
    DistributedDataParallel does, done with hooks because the RSSM is called through
    several methods per step (DDP only hooks ``forward``) and train_one_epoch is the
    student's."""
    world = torch.distributed.get_world_size()

    def hook(p: nn.Parameter) -> None:
        torch.distributed.all_reduce(p.grad)
        p.grad.div_(world)
    for p in params:
        p.register_post_accumulate_grad_hook(hook)
