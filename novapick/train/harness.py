"""The training harness: runs *any* components' ``train_one_epoch`` (docs/contract.md).

    python -m novapick.train --profile quick --data data/synthetic_known_64px_... --steps 4000
    python -m novapick.train --components my_components --data ... --steps 200       # a student's
    torchrun --nproc_per_node 2 -m novapick.train --profile quick --data ... --steps 20  # data parallel

AdamW (weight decay 1e-4), linear warm-up then cosine decay, an EMA copy of the weights
for evaluation, checkpoints every ``checkpoint_every`` steps that resume exactly (same
weights as a run that never stopped), a tqdm bar and a loss-curve PNG. The harness
calls the student's ``train_one_epoch`` on chunks of ``log_every`` batches (one point of
the loss curves each); EMA and gradient averaging hook into the optimiser and autograd,
so the student's loop needs nothing for them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from novapick.config import get_profile
from novapick.data.dataset import EpisodeStore, EpisodeWindows, _Batched, load_stats
from novapick.data.scenes import SCENES_FILE
from novapick.policy.model import Components, build_model, load_components, parameters, unwrap
from novapick.train.checkpoint import (EMA, average_gradients_across_processes, random_state, save_checkpoint,
                                       set_random_state, warmup_cosine)
from novapick.train.extras import TrainingExtras, load_scene_tensors


class BatchChunk:
    """The next ``n`` batches of an epoch's iterator, each passed through ``prepare``
    when it is drawn (not ahead: the random streams advance as in one long loop).
    ``quiet``: a progress bar over it would only repeat the harness's own."""

    quiet = True

    def __init__(self, batches, n: int, prepare):
        self.batches, self.n, self.prepare, self.drawn = batches, n, prepare, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        while self.drawn < self.n:
            batch = next(self.batches)
            self.drawn += 1
            yield self.prepare(batch)


def plot_curves(history: list[dict], path: Path) -> None:
    """The loss terms and the learning rate over the run, smoothed, one panel each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["total_loss", "flow_loss", "grasp_loss", "lr",
            # the world model's terms: wm = latent + kl + reward + recon; imagine is the extension's
            "wm_loss", "kl_loss", "latent_loss", "reward_loss", "recon_loss", "imagine_loss",
            "pose_loss", "ground_loss"]
    keys = [k for k in keys if all(k in h for h in history)]
    rows = max(1, -(-len(keys) // 4))
    fig, axes = plt.subplots(rows, 4, figsize=(16, 3 * rows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
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


def training_scenes(data_dir: Path, tcfg, image_size: int, device: torch.device,
                    rank: int) -> dict[str, torch.Tensor] | None:
    """The grounding scenes stored with the first dataset, when the profile uses them
    (``scene_batch`` > 0); says so either way rather than silently training without."""
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


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world


def _set_statistics(model: dict, stats, store) -> None:
    """The extensions' standardisation buffers from the training split."""
    model["action_scaler"].set_stats(stats.action_mean, stats.action_std)
    known = np.abs(store.grasp_pose).sum(1) > 0
    if known.any():
        model["pose_head"].set_stats(store.grasp_pose[known])
        model["hand_pose_head"].set_stats(store.grasp_pose_hand[known])


def _resume(path: Path, model, ema, optimizer, scheduler, position: dict, world: int, rank: int,
            dev: torch.device) -> tuple[int, list]:
    """Load a checkpoint into the live objects; (step, history)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for k, m in model.items():
        unwrap(m).load_state_dict(ckpt["model"][k])
    for k, m in ema.shadow.items():
        m.load_state_dict(ckpt["ema"][k])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    saved = ckpt.get("position") or {}
    if saved.get("world_size", world) != world:
        if rank == 0:
            print(f"resuming with {world} processes instead of {saved['world_size']}: the weights, "
                  "optimiser and schedule continue, the data order and random streams start afresh")
    elif saved:
        position.update({k: saved[k] for k in position})
        set_random_state(saved["random_state"][rank], dev)
    return ckpt["step"], ckpt["history"]


def configure(profile: str, steps, batch_size, seq_len, seed, lr, checkpoint_every, extensions):
    """The profile's model and training configs with the run's overrides applied."""
    prof = get_profile(profile)
    mcfg, tcfg = prof.model, prof.train
    mcfg.extensions = mcfg.extensions if extensions is None else extensions
    tcfg.total_steps = steps or tcfg.total_steps
    tcfg.lr = lr or tcfg.lr
    tcfg.warmup_steps = min(tcfg.warmup_steps, tcfg.total_steps // 10)
    tcfg.batch_size, tcfg.seq_len, tcfg.seed = batch_size or tcfg.batch_size, seq_len or tcfg.seq_len, seed
    tcfg.checkpoint_every = checkpoint_every or tcfg.checkpoint_every
    mcfg.context_steps = tcfg.seq_len  # the policy replays windows of the length it was trained on
    return mcfg, tcfg


def build_training(mcfg, tcfg, comps: Components, stats, store, dev: torch.device, rank: int, world: int):
    """Model, optimiser, schedule and EMA, in the order that fixes the random streams:
    weights from ``seed`` (the same on every rank), then ``seed + rank`` for the noise."""
    model = {k: m.to(dev) for k, m in build_model(mcfg, comps).items()}
    if mcfg.extensions:
        _set_statistics(model, stats, store)
    params = parameters(model)
    if world > 1:  # every rank starts from rank 0's weights
        for p in [p for m in model.values() for p in m.state_dict().values()]:
            torch.distributed.broadcast(p, src=0)
        average_gradients_across_processes(params)
    # fused: one kernel for all parameters instead of a loop over ~150 tensors; on the
    # quick profile's CPU step it saved ~10 ms of ~230 ms (same update, up to rounding)
    optimizer = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=True)
    scheduler = warmup_cosine(optimizer, tcfg)
    torch.manual_seed(tcfg.seed + rank)  # different flow-matching noise per rank
    ema = EMA(model, tcfg.ema_decay)
    optimizer.register_step_post_hook(lambda *_: ema.update(model))
    return model, optimizer, scheduler, ema


class TrainingRun:
    """One run's live state: where it stands (step, epoch, batches done) and how to save it."""

    def __init__(self, out: Path, model, optimizer, scheduler, ema, mcfg, tcfg, comps, rank, world, dev):
        self.last = out / "last.pt"
        self.model, self.optimizer, self.scheduler, self.ema = model, optimizer, scheduler, ema
        self.mcfg, self.tcfg, self.comps, self.rank, self.world, self.dev = mcfg, tcfg, comps, rank, world, dev
        self.step, self.history = 0, []
        # Where the data stands: the epoch, how many of its batches are done, and (one
        # process) the order generator's state when the epoch began, which re-creates its order.
        self.position = {"epoch": 0, "batches_done": 0, "order_state": None}

    def resume(self) -> None:
        if self.last.exists():
            self.step, self.history = _resume(self.last, self.model, self.ema, self.optimizer, self.scheduler,
                                              self.position, self.world, self.rank, self.dev)

    def save(self) -> None:
        # every process's random streams go into rank 0's file (gathering is collective)
        states = [random_state(self.dev)]
        if self.world > 1:
            states = [None] * self.world
            torch.distributed.all_gather_object(states, random_state(self.dev))
        if self.rank == 0:
            save_checkpoint(self.last, self.model, self.ema, self.optimizer, self.scheduler, self.step,
                            self.history, self.mcfg, self.tcfg,
                            {**self.position, "world_size": self.world, "random_state": states}, self.comps.source)

    def run_chunk(self, loader, n: int, prepare, extras, log_every: int) -> None:
        """``n`` batches through the components' train_one_epoch; curve point and checkpoint."""
        chunk = BatchChunk(loader, n, prepare)
        logs = self.comps.train_one_epoch(self.model, chunk, self.optimizer, self.scheduler, self.dev,
                                          self.position["epoch"], extras)
        if chunk.drawn != n:
            raise RuntimeError(f"train_one_epoch used {chunk.drawn} of the {n} batches it was given: it must "
                               "make one optimiser step per batch of the dataloader")
        before, self.step = self.step, self.step + n
        self.position["batches_done"] += n
        if self.step % log_every == 0 or self.step == self.tcfg.total_steps:
            self.history.append({"step": self.step, **{k: v for k, v in logs.items() if k != "steps"},
                                 "lr": self.scheduler.get_last_lr()[0]})
        every = self.tcfg.checkpoint_every
        if self.step // every > before // every and self.step < self.tcfg.total_steps:
            self.save()

    def run_epochs(self, windows, sampler, batches, prepare, extras, log_every: int, seed: int) -> None:
        """Epochs of the window sampler until total_steps, from wherever the run stands."""
        position, total = self.position, self.tcfg.total_steps
        bar = tqdm(total=total, initial=self.step, desc="train", disable=self.rank != 0)
        while self.step < total:
            if self.world > 1:
                sampler.set_epoch(position["epoch"])
            elif position["order_state"] is None:      # a new epoch: remember where its order begins
                position["order_state"] = sampler.generator.get_state()
            else:                                      # resuming mid-epoch: re-create its order
                sampler.generator.set_state(position["order_state"])
            remaining = list(batches)[position["batches_done"]:]
            # its own generator: by default each new iterator draws a worker seed from the global
            # stream, which a run resumed mid-epoch would draw once more than one that never stopped
            loader = iter(DataLoader(_Batched(windows, as_tuple=False), sampler=remaining, batch_size=None,
                                     collate_fn=lambda b: b, generator=torch.Generator().manual_seed(seed)))
            left = len(remaining)
            while left and self.step < total:
                n = min(log_every - self.step % log_every, left, total - self.step)
                self.run_chunk(loader, n, prepare, extras, log_every)
                left -= n
                bar.update(n)
            if self.step < total or position["batches_done"] == len(batches):  # the epoch is complete
                position.update(epoch=position["epoch"] + 1, batches_done=0, order_state=None)
        bar.close()


def train(data_dirs: list[str], out: str | Path, profile: str = "quick", steps: int | None = None,
          batch_size: int | None = None, seq_len: int | None = None, seed: int = 0,
          device: str | None = None, resume: bool = True, log_every: int = 10, lr: float | None = None,
          checkpoint_every: int | None = None, components: str | Components = "solutions",
          extensions: bool | None = None) -> dict:
    """Train the VLA built from ``components`` (a module name or :class:`Components`) from
    scratch or resume from ``out``/last.pt; returns a summary. ``extensions`` (default:
    the profile's) adds the reference policy's extras beyond the case study.

    A checkpoint is written every ``checkpoint_every`` steps (the profile's by default)
    and at the end. Resuming continues exactly where it was saved: the same remaining
    batches of the interrupted epoch and the same random streams, so a run stopped and
    resumed ends with the same weights as one that never stopped."""
    comps = load_components(components) if isinstance(components, str) else components
    if comps.train_one_epoch is None:
        raise ImportError(f"components module {comps.source!r} has no train_one_epoch (docs/contract.md)")
    rank, world = distributed()
    mcfg, tcfg = configure(profile, steps, batch_size, seq_len, seed, lr, checkpoint_every, extensions)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)  # same initial weights everywhere (rank 0's are broadcast too)
    out = Path(out)
    store = EpisodeStore(data_dirs)
    stats = load_stats(data_dirs[0], store)
    if rank == 0:
        stats.save(out / "stats.json")  # the policy normalises its inputs with these
    scenes = training_scenes(Path(data_dirs[0]), tcfg, mcfg.image_size, dev, rank) if mcfg.extensions else None
    windows = EpisodeWindows(store, stats, tcfg.seq_len, mcfg.image_size, only_success=True)
    sampler = torch.utils.data.DistributedSampler(windows, world, rank, shuffle=True, seed=seed) if world > 1 \
        else torch.utils.data.RandomSampler(windows, generator=torch.Generator().manual_seed(seed))
    batches = torch.utils.data.BatchSampler(sampler, tcfg.batch_size, drop_last=True)
    model, optimizer, scheduler, ema = build_training(mcfg, tcfg, comps, stats, store, dev, rank, world)
    extras = TrainingExtras(model, tcfg, scenes) if mcfg.extensions else None
    prepare = (lambda b: extras.prepare(b, dev)) if extras is not None else (lambda b: b)
    run = TrainingRun(out, model, optimizer, scheduler, ema, mcfg, tcfg, comps, rank, world, dev)
    if resume:
        run.resume()
    start, start_step = time.perf_counter(), run.step
    run.run_epochs(windows, sampler, batches, prepare, extras, log_every, seed)
    train_s = time.perf_counter() - start
    summary = {"steps": run.step, "train_s": train_s, "steps_per_s": (run.step - start_step) / max(train_s, 1e-9),
               "final": run.history[-1] if run.history else {}, "windows": len(windows), "world_size": world,
               "components": comps.source, "extensions": mcfg.extensions,
               "grounding_scenes": len(scenes["rgb"]) if scenes is not None else 0,
               "params": {k: sum(p.numel() for p in unwrap(m).parameters()) for k, m in model.items()}}
    run.save()
    if rank == 0:
        plot_curves(run.history, out / "loss_curves.png")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
