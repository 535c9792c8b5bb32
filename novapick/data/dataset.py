"""PyTorch datasets over NovaPick episodes: frames with action chunks, and windows.

Everything is loaded once into numpy arrays (rendered frames compress ~10x in parquet,
so a 300-episode quick-profile dataset is ~0.4 GB in memory) and batches are gathered
with vectorised indexing, which is what makes > 2,000 samples/s possible on one core.

A frame sample (dict):
    rgb (3, S, S) float [0, 1] · depth (1, S, S) float [0, 1] (metres / 2 m; 0 = invalid)
    language (77,) int64 CLIP tokens · actions (16, 10) chunk starting at this frame
    pad_mask (16,) bool, True past the episode end (padded by repeating the last action)
    grasp_chunk () 1.0 if the target is held at some step of this chunk (grasp-head label)
    proprioception (14,) normalised · gripper_state (2,) · rewards () · grasp ()
    grasp_pose (7,) the expert's planned grasp of this episode (zeros where unknown)
    grasp_pose_hand (7,) the same grasp seen from this frame's hand pose (see
        novapick.sim.expert.hand_relative_pose; zeros where unknown)
    target_uv (3,) where the target is in this frame's image: u, v in [-1, 1], in_view
    depth_valid / proprio_valid / action_valid () bool: False where the source has no depth,
    no joint angles or no joint-velocity actions (real data; see novapick.data.lerobot):
    mask the corresponding loss terms · episode_index, frame_index
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from novapick.data.normalize import NormStats
from novapick.data.schema import (CHUNK_SIZE, DEPTH_MAX_M, DEPTH_SCALE_M, DataFormatError, decode_images,
                                  vector_column)
from novapick.data.writer import read_shard

TUPLE_KEYS = ("rgb", "depth", "language", "actions", "proprioception", "rewards")
VALID_FLAGS = ("depth_valid", "proprio_valid", "action_valid")  # per-frame masks for real data


class EpisodeStore:
    """All frames of one or more dataset directories as numpy arrays (loaded once)."""

    def __init__(self, roots: list[str | Path] | str | Path, chunk_size: int = CHUNK_SIZE):
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        parts = [self._load(Path(r)) for r in roots]
        offset = 0
        for part in parts:  # episode ids stay unique across directories
            part["episode_index"] = part["episode_index"] + offset
            offset = int(part["episode_index"].max()) + 1
        for key in parts[0]:
            setattr(self, key, np.concatenate([p[key] for p in parts]))
        order = np.lexsort((self.frame_index, self.episode_index))
        for key in parts[0]:
            setattr(self, key, getattr(self, key)[order])
        self.chunk_size = chunk_size
        self._index_episodes()

    @staticmethod
    def _load(root: Path) -> dict[str, np.ndarray]:
        from novapick.data.check import image_size_of

        size = image_size_of(root)
        shards = sorted((root / "data").glob("shard-*.parquet"))
        if not shards:
            raise DataFormatError(f"no shards under {root / 'data'}: generate the data first")
        cols: dict[str, list] = {k: [] for k in ("rgb", "depth", "proprio", "gripper_state", "action", "reward",
                                                 "grasp", "episode_index", "frame_index", "instruction", "success",
                                                 "grasp_pose", "target_uv", *VALID_FLAGS)}
        for path in shards:
            table = read_shard(path)
            rgb, depth = decode_images(table, size, size)
            cols["rgb"].append(rgb)
            cols["depth"].append(depth)
            for key, dim in (("proprio", 14), ("gripper_state", 2), ("action", 10)):
                cols[key].append(vector_column(table, key, dim))
            for key in ("reward", "grasp", "episode_index", "frame_index", "success"):
                cols[key].append(table.column(key).to_numpy(zero_copy_only=False))
            cols["instruction"].append(np.array(table.column("instruction").to_pylist(), dtype=object))
            for flag in VALID_FLAGS:  # synthetic data has everything: the flags are absent and True
                cols[flag].append(table.column(flag).to_numpy(zero_copy_only=False).astype(bool)
                                  if flag in table.column_names else np.ones(table.num_rows, bool))
            cols["grasp_pose"].append(vector_column(table, "grasp_pose", 7) if "grasp_pose" in table.column_names
                                      else np.zeros((table.num_rows, 7), np.float32))
            cols["target_uv"].append(vector_column(table, "target_uv", 3) if "target_uv" in table.column_names
                                     else np.zeros((table.num_rows, 3), np.float32))
        out = {k: np.concatenate(v) for k, v in cols.items()}
        for key in ("proprio", "action", "gripper_state", "reward", "grasp"):
            bad = ~np.isfinite(out[key].reshape(len(out[key]), -1)).all(1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataFormatError(f"{root}: episode {int(out['episode_index'][row])}, field {key!r}: NaN/inf "
                                      f"at frame {int(out['frame_index'][row])}")
        return out

    def _index_episodes(self) -> None:
        eps, starts, lengths = np.unique(self.episode_index, return_index=True, return_counts=True)
        self.episodes, self.episode_start, self.episode_length = eps, starts, lengths
        ends = np.repeat(starts + lengths - 1, lengths)                      # last row of each frame's episode
        rows = np.arange(len(self.episode_index))[:, None] + np.arange(self.chunk_size)[None]
        self.chunk_pad = rows > ends[:, None]                                # (N, 16)
        self.chunk_rows = np.minimum(rows, ends[:, None])                    # repeat the last action
        self.episode_of_row = np.repeat(np.arange(len(eps)), lengths)
        instructions = self.instruction[starts]
        from novapick.backbones import tokenize
        self.tokens = tokenize(list(instructions)).numpy()                   # (E, 77), once per episode

    def __len__(self) -> int:
        return len(self.episode_index)

    @cached_property
    def grasp_pose_hand(self) -> np.ndarray:
        """(N, 7) the planned grasp relative to each frame's hand (forward kinematics of the
        recorded joint angles, ~50 us per frame, computed on first use)."""
        from novapick.sim.expert import hand_relative_pose

        return hand_relative_pose(self.grasp_pose, self.proprio[:, :7])


class NovaPickDataset(Dataset):
    """Frames with their 16-step action chunks (Sections 3.2 / 3.5)."""

    def __init__(self, store: EpisodeStore, stats: NormStats, image_size: int | None = None,
                 only_success: bool = False):
        self.store, self.stats = store, stats
        self.image_size = image_size
        keep = np.ones(len(store), bool)
        if only_success:
            keep &= store.success.astype(bool)
        self.rows = np.flatnonzero(keep)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {k: v[0] for k, v in self.batch(np.array([i])).items()}

    def batch(self, items: np.ndarray) -> dict[str, torch.Tensor]:
        """Gather a whole batch with vectorised indexing: items (B,) -> dict of (B, ...)."""
        s, rows = self.store, self.rows[np.asarray(items)]
        out = self._images(rows)
        out.update({
            "language": torch.from_numpy(s.tokens[s.episode_of_row[rows]]),
            "actions": torch.from_numpy(s.action[s.chunk_rows[rows]]),
            "pad_mask": torch.from_numpy(s.chunk_pad[rows]),
            "proprioception": torch.from_numpy(self.stats.normalize_proprio(s.proprio[rows])),
            "gripper_state": torch.from_numpy(s.gripper_state[rows]),
            "rewards": torch.from_numpy(s.reward[rows].astype(np.float32)),
            "grasp": torch.from_numpy(s.grasp[rows].astype(np.float32)),
            # grasp outcome of this chunk: is the target held at some step of it?
            "grasp_chunk": torch.from_numpy(s.grasp[s.chunk_rows[rows]].max(1).astype(np.float32)),
            # the expert's planned grasp (x, y, z, roll, pitch, yaw, width) in [-1, 1]; all
            # zeros where the source has none (real data): an auxiliary target, see training
            "grasp_pose": torch.from_numpy(s.grasp_pose[rows]),
            "grasp_pose_hand": torch.from_numpy(s.grasp_pose_hand[rows]),
            "target_uv": torch.from_numpy(s.target_uv[rows]),
            **{flag: torch.from_numpy(getattr(s, flag)[rows]) for flag in VALID_FLAGS},
            "episode_index": torch.from_numpy(s.episode_index[rows].astype(np.int64)),
            "frame_index": torch.from_numpy(s.frame_index[rows].astype(np.int64)),
        })
        return out

    def _images(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        s = self.store
        rgb = torch.from_numpy(s.rgb[rows]).float().div_(255.0)
        depth = torch.from_numpy(s.depth[rows].astype(np.float32)).mul_(DEPTH_SCALE_M / DEPTH_MAX_M).clamp_(0, 1)
        if self.image_size and self.image_size != rgb.shape[-1]:
            size = (self.image_size, self.image_size)
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
            depth = F.interpolate(depth, size=size, mode="nearest")  # never blend invalid (0) pixels
        return {"rgb": rgb, "depth": depth}


class EpisodeWindows(NovaPickDataset):
    """Windows of L consecutive steps of one episode, for RSSM training: every field
    gets a time axis, (B, L, ...). Episodes shorter than L are skipped (and counted)."""

    def __init__(self, store: EpisodeStore, stats: NormStats, seq_len: int, image_size: int | None = None,
                 only_success: bool = False):
        super().__init__(store, stats, image_size, only_success=False)
        self.seq_len = seq_len
        long_enough = store.episode_length >= seq_len
        if only_success:
            long_enough &= store.success[store.episode_start].astype(bool)
        self.too_short = int((store.episode_length < seq_len).sum())
        starts = [np.arange(st, st + n - seq_len + 1) for st, n, ok in
                  zip(store.episode_start, store.episode_length, long_enough) if ok]
        if not starts:
            raise DataFormatError(f"no episode has >= {seq_len} steps (seq_len too long for this data)")
        self.rows = np.concatenate(starts)

    def batch(self, items: np.ndarray) -> dict[str, torch.Tensor]:
        starts = self.rows[np.asarray(items)]
        B, L = len(starts), self.seq_len
        frames = NovaPickDataset.__new__(NovaPickDataset)
        frames.store, frames.stats, frames.image_size = self.store, self.stats, self.image_size
        frames.rows = (starts[:, None] + np.arange(L)[None]).reshape(-1)
        flat = frames.batch(np.arange(B * L))
        out = {k: v.view(B, L, *v.shape[1:]) for k, v in flat.items()}
        out["language"] = out["language"][:, 0]                            # one instruction per episode
        return out


def _collate_identity(batch):
    return batch


class _Batched(Dataset):
    """Adapter: each item of this dataset is a whole batch (index = list of items)."""

    def __init__(self, base: NovaPickDataset, as_tuple: bool):
        self.base, self.as_tuple = base, as_tuple

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, items):
        out = self.base.batch(np.asarray(items))
        return tuple(out[k] for k in TUPLE_KEYS) if self.as_tuple else out


def load_stats(root: str | Path, store: EpisodeStore | None = None) -> NormStats:
    """meta/stats.json of the training data; computed and saved on first use."""
    path = Path(root) / "meta" / "stats.json"
    if path.exists():
        return NormStats.load(path)
    store = store or EpisodeStore(root)
    stats = NormStats.from_arrays(store.proprio, store.action)
    stats.save(path)
    return stats


def make_dataloader(roots: str | Path | list, batch_size: int = 64, seq_len: int | None = None,
                    image_size: int | None = None, shuffle: bool = True, num_workers: int = 0,
                    seed: int = 0, as_tuple: bool = False, only_success: bool = False,
                    stats: NormStats | None = None) -> DataLoader:
    """A DataLoader over one or more dataset directories.

    ``seq_len`` None -> frames with action chunks; an int -> windows of that many steps.
    ``as_tuple`` -> (rgb, depth, language, actions, proprioception, rewards) as in the
    case study; otherwise a dict with the extra fields (pad_mask, grasp, ...).
    Normalisation statistics come from the first directory (the training split).
    """
    first = roots[0] if isinstance(roots, (list, tuple)) else roots
    store = EpisodeStore(roots)
    stats = stats or load_stats(first, store)
    base = (EpisodeWindows(store, stats, seq_len, image_size, only_success) if seq_len
            else NovaPickDataset(store, stats, image_size, only_success))
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(base, generator=generator) if shuffle else SequentialSampler(base)
    return DataLoader(_Batched(base, as_tuple), sampler=BatchSampler(sampler, batch_size, drop_last=False),
                      batch_size=None, num_workers=num_workers, collate_fn=_collate_identity,
                      persistent_workers=num_workers > 0)
